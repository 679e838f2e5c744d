"""Azure DNS zones and record sets, in memory, shared by the ARM handler, the admin API and the DNS server.

A zone is identified by (subscription, resource group, zone name) as in ARM, and its name is unique across the
store because the one DNS server answers for every zone. Record data are dnspython rdata objects, so the DNS
server serves exactly what ARM wrote without any translation of its own.

Reads are lock-free: every write replaces the zone with a new immutable `Zone` snapshot (copy on write), so a
DNS query or an ARM GET always sees one consistent version, and a write is visible to the next query at once.
"""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.SOA import SOA

RECORD_TYPES: tuple[str, ...] = ("A", "CAA", "CNAME", "NS", "SOA", "TXT")
APEX = "@"

# Fake, but shaped like Azure's (ns1-01.azure-dns.com. ...); Azure's nameServers list keeps the trailing dot.
NAME_SERVERS: tuple[str, ...] = (
    "ns1-01.azure-dns.emulator.",
    "ns2-01.azure-dns.emulator.",
    "ns3-01.azure-dns.emulator.",
    "ns4-01.azure-dns.emulator.",
)
# Azure's defaults for a new zone's SOA and NS record sets.
SOA_TTL = 3600
NS_TTL = 172800
SOA_EMAIL = "azuredns-hostmaster.microsoft.com."
SOA_TIMERS = {"serial": 1, "refresh": 3600, "retry": 300, "expire": 2419200, "minimum": 300}


class DnsStoreError(Exception):
    """Base for the store's refusals; the ARM handler maps each to Azure's error shape."""


class ZoneNotFound(DnsStoreError):
    pass


class ZoneExists(DnsStoreError):
    pass


class PreconditionFailed(DnsStoreError):
    """An If-Match etag did not match, or If-None-Match: * met an existing record set."""


class InvalidRecordSet(DnsStoreError):
    """A write Azure DNS would reject (bad name, CNAME conflict, SOA outside the apex, ...)."""


def new_etag() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class ZoneKey:
    subscription_id: str
    resource_group: str
    name: str

    @classmethod
    def of(cls, subscription_id: str, resource_group: str, name: str) -> "ZoneKey":
        # ARM ids compare case-insensitively; DNS names too.
        return cls(subscription_id.lower(), resource_group.lower(), normalize_zone_name(name))


@dataclass(frozen=True)
class RecordSet:
    name: str  # relative to the zone, lower-case, "@" for the apex
    type: str  # upper-case, one of RECORD_TYPES
    ttl: int
    records: tuple[dns.rdata.Rdata, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)
    etag: str = field(default_factory=new_etag)


@dataclass(frozen=True)
class Zone:
    subscription_id: str  # as given at creation (display form)
    resource_group: str
    name: str  # lower-case, no trailing dot
    etag: str
    tags: Mapping[str, str]
    record_sets: Mapping[tuple[str, str], RecordSet]  # (relative name, type) -> record set

    @property
    def key(self) -> ZoneKey:
        return ZoneKey.of(self.subscription_id, self.resource_group, self.name)

    @property
    def origin(self) -> dns.name.Name:
        return dns.name.from_text(self.name)

    @property
    def name_servers(self) -> list[str]:
        """The servers Azure assigned to the zone (its ARM ``nameServers``). Fixed for the zone's life, as in
        Azure: editing the apex NS record set changes what the zone's servers answer, not this list, which is
        how a zone can end up served with an NS set its delegation does not match."""
        return list(NAME_SERVERS)

    def record_set(self, name: str, type_: str) -> RecordSet | None:
        return self.record_sets.get((normalize_relative_name(name), type_.upper()))

    def absolute_name(self, relative: str) -> dns.name.Name:
        return self.origin if relative == APEX else dns.name.from_text(relative, self.origin)

    def relative_name(self, name: dns.name.Name) -> str:
        """The record-set name of `name` inside this zone (which must contain it)."""
        rel = name.relativize(self.origin)
        return APEX if rel == dns.name.empty else rel.to_text().lower()


def normalize_zone_name(name: str) -> str:
    text = name.strip().rstrip(".").lower()
    if not text:
        raise InvalidRecordSet("zone name must not be empty")
    try:
        dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise InvalidRecordSet(f"zone name {name!r} is not a valid DNS name: {exc}") from exc
    return text


def normalize_relative_name(name: str) -> str:
    text = name.strip().lower()
    if text in ("", APEX):
        return APEX
    if text.endswith("."):
        raise InvalidRecordSet(f"record set name {name!r} must be relative to the zone (no trailing dot)")
    try:
        dns.name.from_text(text, None)
    except dns.exception.DNSException as exc:
        raise InvalidRecordSet(f"record set name {name!r} is not a valid DNS name: {exc}") from exc
    return text


def _rdata(type_: str, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(type_), text)


def _initial_record_sets(zone_name: str) -> dict[tuple[str, str], RecordSet]:
    soa_text = "{} {} {serial} {refresh} {retry} {expire} {minimum}".format(NAME_SERVERS[0], SOA_EMAIL, **SOA_TIMERS)
    return {
        (APEX, "SOA"): RecordSet(APEX, "SOA", SOA_TTL, (_rdata("SOA", soa_text),)),
        (APEX, "NS"): RecordSet(APEX, "NS", NS_TTL, tuple(_rdata("NS", ns) for ns in NAME_SERVERS)),
    }


def _check_write(zone: Zone, name: str, type_: str, records: tuple[dns.rdata.Rdata, ...]) -> None:
    if type_ not in RECORD_TYPES:
        raise InvalidRecordSet(f"record type {type_!r} is not supported; use one of {', '.join(RECORD_TYPES)}")
    for r in records:
        if dns.rdatatype.to_text(r.rdtype) != type_:
            raise InvalidRecordSet(f"a {type_} record set cannot hold {dns.rdatatype.to_text(r.rdtype)} records")
    if type_ == "SOA" and name != APEX:
        raise InvalidRecordSet("the SOA record set exists only at the zone apex ('@')")
    if type_ == "SOA" and len(records) != 1:
        raise InvalidRecordSet("the SOA record set holds exactly one record")
    if type_ == "CNAME":
        if name == APEX:
            raise InvalidRecordSet("a CNAME record set cannot be created at the zone apex")
        if len(records) > 1:
            raise InvalidRecordSet("a CNAME record set holds at most one record")
    # A CNAME owns its name alone (RFC 1034 3.6.2); Azure DNS enforces the same.
    others = {t for (n, t) in zone.record_sets if n == name and t != type_}
    if type_ == "CNAME" and others:
        raise InvalidRecordSet(f"a record set of type {sorted(others)[0]} already exists with name {name!r}")
    if type_ != "CNAME" and "CNAME" in others:
        raise InvalidRecordSet(f"a CNAME record set already exists with name {name!r}")


def _check_preconditions(current: RecordSet | None, if_match: str | None, if_none_match: str | None) -> None:
    if if_none_match is not None and if_none_match.strip() == "*" and current is not None:
        raise PreconditionFailed(f"the record set {current.name} already exists")
    if if_match is not None:
        wanted = if_match.strip()
        if wanted == "*":
            if current is None:
                raise PreconditionFailed("the record set does not exist")
        elif current is None or wanted.strip('"') != current.etag:
            raise PreconditionFailed("the record set has been modified (etag mismatch)")


class ZoneStore:
    """All zones of all subscriptions. Thread-safe; reads return immutable snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._zones: dict[ZoneKey, Zone] = {}
        self._groups: set[tuple[str, str]] = set()  # (subscription, resource group), lower-case

    # -- zones ---------------------------------------------------------------------------------------------------

    def create_zone(
        self, subscription_id: str, resource_group: str, name: str, *, tags: Mapping[str, str] | None = None
    ) -> Zone:
        key = ZoneKey.of(subscription_id, resource_group, name)
        with self._lock:
            if any(z.name == key.name for z in self._zones.values()):
                raise ZoneExists(f"a zone named {key.name} already exists")
            zone = Zone(
                subscription_id, resource_group, key.name, new_etag(), MappingProxyType(dict(tags or {})),
                MappingProxyType(_initial_record_sets(key.name)),
            )
            self._zones[key] = zone
            self._groups.add((key.subscription_id, key.resource_group))
            return zone

    def set_zone_tags(self, key: ZoneKey, tags: Mapping[str, str]) -> Zone:
        with self._lock:
            zone = replace(self._require(key), tags=MappingProxyType(dict(tags)), etag=new_etag())
            self._zones[key] = zone
            return zone

    def delete_zone(self, subscription_id: str, resource_group: str, name: str) -> bool:
        with self._lock:
            return self._zones.pop(ZoneKey.of(subscription_id, resource_group, name), None) is not None

    def get_zone(self, subscription_id: str, resource_group: str, name: str) -> Zone | None:
        try:
            key = ZoneKey.of(subscription_id, resource_group, name)
        except InvalidRecordSet:
            return None
        return self._zones.get(key)

    def zone_by_name(self, name: str) -> Zone | None:
        wanted = name.rstrip(".").lower()
        return next((z for z in list(self._zones.values()) if z.name == wanted), None)

    def list_zones(self, subscription_id: str | None = None, resource_group: str | None = None) -> list[Zone]:
        zones = [
            z for z in list(self._zones.values())
            if (subscription_id is None or z.subscription_id.lower() == subscription_id.lower())
            and (resource_group is None or z.resource_group.lower() == resource_group.lower())
        ]
        return sorted(zones, key=lambda z: z.name)

    def resource_group_exists(self, subscription_id: str, resource_group: str) -> bool:
        """Resource groups exist implicitly: one is known once a zone has been created in it."""
        return (subscription_id.lower(), resource_group.lower()) in self._groups

    def zone_for(self, qname: dns.name.Name) -> Zone | None:
        """The most specific zone that contains `qname`, or None when no zone does."""
        best: Zone | None = None
        for zone in list(self._zones.values()):
            origin = zone.origin
            if qname.is_subdomain(origin) and (best is None or len(origin) > len(best.origin)):
                best = zone
        return best

    # -- record sets ---------------------------------------------------------------------------------------------

    def list_record_sets(
        self, key: ZoneKey, type_: str | None = None, name_suffix: str | None = None
    ) -> list[RecordSet]:
        zone = self._require(key)
        suffix = name_suffix.strip().lower().rstrip(".") if name_suffix else None
        out = [
            rs for rs in zone.record_sets.values()
            if (type_ is None or rs.type == type_.upper())
            and (not suffix or rs.name == suffix or rs.name.endswith("." + suffix))
        ]
        return sorted(out, key=lambda rs: (rs.name != APEX, rs.name, rs.type))

    def get_record_set(self, key: ZoneKey, name: str, type_: str) -> RecordSet | None:
        return self._require(key).record_set(name, type_)

    def put_record_set(
        self,
        key: ZoneKey,
        name: str,
        type_: str,
        *,
        ttl: int,
        records: Iterable[dns.rdata.Rdata],
        metadata: Mapping[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> tuple[RecordSet, bool]:
        """Create or replace a record set; returns it and whether it was created. New etag on every write."""
        rel, rtype, rdatas = normalize_relative_name(name), type_.upper(), tuple(records)
        if ttl < 0 or ttl > 2147483647:
            raise InvalidRecordSet(f"TTL {ttl} is out of range (0 to 2147483647)")
        with self._lock:
            zone = self._require(key)
            current = zone.record_sets.get((rel, rtype))
            _check_preconditions(current, if_match, if_none_match)
            if current is None and rtype == "SOA":
                raise InvalidRecordSet("the SOA record set cannot be created, only updated")
            _check_write(zone, rel, rtype, rdatas)
            record_set = RecordSet(rel, rtype, ttl, rdatas, MappingProxyType(dict(metadata or {})))
            self._replace(zone, {**zone.record_sets, (rel, rtype): record_set})
            return record_set, current is None

    def delete_record_set(self, key: ZoneKey, name: str, type_: str, *, if_match: str | None = None) -> bool:
        """Delete a record set; False when there was none. The apex SOA and NS belong to the zone."""
        rel, rtype = normalize_relative_name(name), type_.upper()
        with self._lock:
            zone = self._require(key)
            current = zone.record_sets.get((rel, rtype))
            _check_preconditions(current, if_match, None)
            if rel == APEX and rtype in ("SOA", "NS"):
                raise InvalidRecordSet(f"the {rtype} record set at the zone apex cannot be deleted")
            if current is None:
                return False
            self._replace(zone, {k: v for k, v in zone.record_sets.items() if k != (rel, rtype)})
            return True

    # -- persistence ---------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            zones, groups = list(self._zones.values()), sorted([list(g) for g in self._groups])
        return {
            "zones": [
                {
                    "subscriptionId": z.subscription_id,
                    "resourceGroup": z.resource_group,
                    "name": z.name,
                    "etag": z.etag,
                    "tags": dict(z.tags),
                    "recordSets": [
                        {
                            "name": rs.name, "type": rs.type, "ttl": rs.ttl, "etag": rs.etag,
                            "metadata": dict(rs.metadata), "records": [r.to_text() for r in rs.records],
                        }
                        for rs in z.record_sets.values()
                    ],
                }
                for z in zones
            ],
            "resourceGroups": groups,
        }

    def load_dict(self, data: Mapping[str, Any]) -> None:
        """Replace the whole content with `data` (from `to_dict`), keeping this object (servers hold it)."""
        zones: dict[ZoneKey, Zone] = {}
        for z in data.get("zones", []):
            sets = {
                (rs["name"], rs["type"]): RecordSet(
                    rs["name"], rs["type"], int(rs["ttl"]), tuple(_rdata(rs["type"], t) for t in rs["records"]),
                    MappingProxyType(dict(rs.get("metadata", {}))), rs["etag"],
                )
                for rs in z.get("recordSets", [])
            }
            zone = Zone(
                z["subscriptionId"], z["resourceGroup"], normalize_zone_name(z["name"]), z["etag"],
                MappingProxyType(dict(z.get("tags", {}))), MappingProxyType(sets),
            )
            zones[zone.key] = zone
        groups = {(s.lower(), g.lower()) for s, g in data.get("resourceGroups", [])}
        groups |= {(k.subscription_id, k.resource_group) for k in zones}
        with self._lock:
            self._zones, self._groups = zones, groups

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ZoneStore":
        store = cls()
        store.load_dict(data)
        return store

    # -- internals -----------------------------------------------------------------------------------------------

    def _require(self, key: ZoneKey) -> Zone:
        zone = self._zones.get(key)
        if zone is None:
            raise ZoneNotFound(f"zone {key.name} not found in resource group {key.resource_group}")
        return zone

    def _replace(self, zone: Zone, record_sets: dict[tuple[str, str], RecordSet]) -> None:
        # Called with the lock held. The zone's etag stays: it versions the zone resource, not its record sets.
        self._zones[zone.key] = replace(zone, record_sets=MappingProxyType(record_sets))


def soa_of(zone: Zone) -> tuple[RecordSet, SOA]:
    soa_set = zone.record_sets[(APEX, "SOA")]
    rdata = soa_set.records[0]
    assert isinstance(rdata, SOA)
    return soa_set, rdata

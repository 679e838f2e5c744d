"""ZoneStore: identity of zones, etags and preconditions, record-set rules, persistence."""
from __future__ import annotations

import json
import threading

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from emulator.dns_store import (
    NAME_SERVERS,
    InvalidRecordSet,
    PreconditionFailed,
    ZoneExists,
    ZoneKey,
    ZoneNotFound,
    ZoneStore,
)


def rd(type_: str, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(type_), text)


@pytest.fixture()
def store() -> ZoneStore:
    s = ZoneStore()
    s.create_zone("sub-a", "rg-dns", "Example.COM.")
    s.create_zone("sub-b", "rg-other", "example.net")
    return s


KEY = ZoneKey.of("sub-a", "rg-dns", "example.com")


def test_new_zone_has_azure_style_soa_and_ns(store: ZoneStore) -> None:
    zone = store.get_zone("SUB-A", "RG-dns", "example.com")
    assert zone is not None and zone.name == "example.com"
    assert zone.name_servers == list(NAME_SERVERS)
    assert {(rs.name, rs.type) for rs in store.list_record_sets(KEY)} == {("@", "SOA"), ("@", "NS")}
    assert store.get_zone("sub-b", "rg-dns", "example.com") is None  # other subscription, same group name


def test_zone_names_are_unique_across_subscriptions(store: ZoneStore) -> None:
    with pytest.raises(ZoneExists):
        store.create_zone("sub-c", "rg", "EXAMPLE.com")
    assert [z.name for z in store.list_zones("sub-b")] == ["example.net"]
    assert store.resource_group_exists("sub-b", "RG-OTHER") and not store.resource_group_exists("sub-b", "rg-dns")


def test_every_write_changes_the_etag(store: ZoneStore) -> None:
    first, created = store.put_record_set(KEY, "_acme-challenge", "txt", ttl=60, records=[rd("TXT", '"a"')])
    second, created_again = store.put_record_set(KEY, "_ACME-challenge", "TXT", ttl=60, records=[rd("TXT", '"a"')])
    assert created and not created_again
    assert first.etag != second.etag
    assert store.get_record_set(KEY, "_acme-challenge", "TXT") == second


def test_if_match_and_if_none_match(store: ZoneStore) -> None:
    rs, _ = store.put_record_set(KEY, "x", "TXT", ttl=60, records=[rd("TXT", '"1"')], if_none_match="*")
    with pytest.raises(PreconditionFailed):
        store.put_record_set(KEY, "x", "TXT", ttl=60, records=[rd("TXT", '"2"')], if_none_match="*")
    with pytest.raises(PreconditionFailed):
        store.put_record_set(KEY, "x", "TXT", ttl=60, records=[rd("TXT", '"2"')], if_match="stale")
    updated, _ = store.put_record_set(KEY, "x", "TXT", ttl=60, records=[rd("TXT", '"2"')], if_match=f'"{rs.etag}"')
    with pytest.raises(PreconditionFailed):
        store.delete_record_set(KEY, "x", "TXT", if_match=rs.etag)
    assert store.get_record_set(KEY, "x", "TXT") == updated
    assert store.delete_record_set(KEY, "x", "TXT", if_match=updated.etag)
    assert not store.delete_record_set(KEY, "x", "TXT")
    with pytest.raises(PreconditionFailed):
        store.put_record_set(KEY, "x", "TXT", ttl=60, records=[], if_match="*")


def test_only_one_of_concurrent_creates_wins(store: ZoneStore) -> None:
    wins: list[bool] = []

    def create(i: int) -> None:
        try:
            store.put_record_set(KEY, "race", "TXT", ttl=60, records=[rd("TXT", f'"{i}"')], if_none_match="*")
            wins.append(True)
        except PreconditionFailed:
            wins.append(False)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1 and len(wins) == 16


@pytest.mark.parametrize(
    ("name", "type_", "records"),
    [
        ("www", "SOA", ["ns. host. 1 2 3 4 5"]),  # SOA only at the apex
        ("@", "CNAME", ["target.example.org."]),  # no CNAME at the apex
        ("alias", "CNAME", ["a.example.org.", "b.example.org."]),  # one CNAME per name
        ("www", "MX", []),  # unsupported type
        ("bad..name", "TXT", []),
    ],
)
def test_invalid_writes_are_refused(store: ZoneStore, name: str, type_: str, records: list[str]) -> None:
    with pytest.raises(InvalidRecordSet):
        store.put_record_set(KEY, name, type_, ttl=60, records=[rd(type_, r) for r in records])


def test_cname_owns_its_name(store: ZoneStore) -> None:
    store.put_record_set(KEY, "alias", "CNAME", ttl=60, records=[rd("CNAME", "www.example.com.")])
    with pytest.raises(InvalidRecordSet):
        store.put_record_set(KEY, "alias", "TXT", ttl=60, records=[rd("TXT", '"x"')])
    store.put_record_set(KEY, "www", "A", ttl=60, records=[rd("A", "192.0.2.1")])
    with pytest.raises(InvalidRecordSet):
        store.put_record_set(KEY, "www", "CNAME", ttl=60, records=[rd("CNAME", "x.example.org.")])


def test_apex_soa_and_ns_cannot_be_deleted_and_soa_not_created(store: ZoneStore) -> None:
    for type_ in ("SOA", "NS"):
        with pytest.raises(InvalidRecordSet):
            store.delete_record_set(KEY, "@", type_)
    store.delete_zone("sub-a", "rg-dns", "example.com")
    with pytest.raises(ZoneNotFound):
        store.put_record_set(KEY, "x", "TXT", ttl=60, records=[])


def test_name_suffix_filter(store: ZoneStore) -> None:
    for name in ("_acme-challenge.www", "_acme-challenge.api", "www"):
        store.put_record_set(KEY, name, "TXT", ttl=60, records=[rd("TXT", '"v"')])
    names = [rs.name for rs in store.list_record_sets(KEY, "TXT", name_suffix="www")]
    assert names == ["_acme-challenge.www", "www"]


def test_persistence_round_trip_through_json(store: ZoneStore) -> None:
    store.put_record_set(KEY, "_acme-challenge", "TXT", ttl=60, records=[rd("TXT", '"a" "b"'), rd("TXT", '"c"')],
                         metadata={"owner": "keyvault-acme"})
    store.put_record_set(KEY, "@", "CAA", ttl=300, records=[rd("CAA", '0 issue "letsencrypt.org"')])
    data = json.loads(json.dumps(store.to_dict()))
    restored = ZoneStore.from_dict(data)
    assert restored.to_dict() == store.to_dict()
    assert restored.get_record_set(KEY, "_acme-challenge", "TXT") == store.get_record_set(KEY, "_acme-challenge", "TXT")
    with pytest.raises(ZoneExists):  # uniqueness survives the restart
        restored.create_zone("sub-z", "rg", "example.net")

    in_place = ZoneStore()
    in_place.load_dict(data)
    assert in_place.to_dict() == store.to_dict()

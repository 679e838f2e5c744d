"""Azure DNS through Azure Resource Manager (api-version 2018-05-01), as azure-mgmt-dns 9.0.0 speaks it.

ARM answers in two voices and so does this module: the front door (authentication, api-version, RBAC, resource
groups, parent resources) wraps errors as {"error": {"code", "message"}}; the DNS resource provider itself
answers {"code", "message"} unwrapped, as recorded from real Azure DNS ("The resource record ... does not exist").
Ids use lower-case "dnszones" the way Azure DNS returns them, whatever the caller sent.

Also the emulator's own admin API for zones under /admin/zones (plain JSON, no ARM envelope).
"""
from __future__ import annotations

import json
import threading
import uuid
from typing import Any, Callable, Mapping, Protocol
from urllib.parse import urlencode

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.CAA import CAA
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A

from emulator.dns_store import (
    InvalidRecordSet,
    PreconditionFailed,
    RecordSet,
    Zone,
    ZoneExists,
    ZoneKey,
    ZoneNotFound,
    ZoneStore,
)
from emulator.wire import Request, Response

# 2023-07-01-preview is what the .NET and PowerShell clients send (DNSSEC era); its zone and record set shapes are
# the 2018-05-01 ones for everything the emulator serves.
API_VERSIONS = frozenset({"2016-04-01", "2017-09-01", "2017-10-01", "2018-03-01-preview", "2018-05-01",
                          "2023-07-01-preview"})
# A zone DELETE is a long-running operation: 202 and these headers, then the operation's status and result.
OPERATION_STATUSES, OPERATION_RESULTS = "dnsOperationStatuses", "dnsOperationResults"
RETRY_AFTER_S = "1"  # the pace the emulator asks pollers for; its deletions are done before the 202 leaves
MANAGEMENT_AUDIENCES = frozenset({
    "https://management.azure.com", "https://management.azure.com/",
    "https://management.core.windows.net", "https://management.core.windows.net/",
})
MAX_RECORD_SETS = 10000
MAX_RECORDS_PER_SET = 20
PROVIDER = "Microsoft.Network"
ZONES = "dnszones"

# ARM property name holding each record type's records, and whether it is a list or a single object.
_RECORDS_KEY: dict[str, str] = {
    "A": "ARecords", "CAA": "caaRecords", "CNAME": "CNAMERecord", "NS": "NSRecords", "SOA": "SOARecord",
    "TXT": "TXTRecords",
}
_ALL_RECORD_KEYS = (
    *_RECORDS_KEY.values(), "AAAARecords", "MXRecords", "PTRRecords", "SRVRecords",
)
_SINGLE = {"CNAME", "SOA"}
_IN = dns.rdataclass.IN


class Authorizer(Protocol):
    def allowed(self, app_id: str, action: str, scope: str) -> bool: ...


class BadRequest(Exception):
    """Body content Azure DNS rejects with 400 BadRequest."""


# -- ARM <-> dnspython ---------------------------------------------------------------------------------------------


def _name(text: Any, field: str) -> dns.name.Name:
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(f"{field} must be a non-empty domain name")
    try:
        return dns.name.from_text(text.strip())
    except dns.exception.DNSException as exc:
        raise BadRequest(f"{field} {text!r} is not a valid domain name: {exc}") from exc


def _int(value: Any, field: str, low: int = 0, high: int = 2**32 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{field} must be an integer from {low} to {high}")
    return value


def _txt_strings(value: Any) -> list[bytes]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRequest("each TXT record needs 'value': a non-empty list of strings")
    out: list[bytes] = []
    for v in value:
        raw = v.encode("utf-8")
        if len(raw) > 1024:
            raise BadRequest("a TXT string may be at most 1024 characters")
        # DNS strings hold 255 octets; Azure DNS splits longer ones into several strings of the same record.
        out.extend([raw[i:i + 255] for i in range(0, len(raw), 255)] if raw else [b""])
    return out


def _record_to_rdata(type_: str, item: Any, current: RecordSet | None) -> dns.rdata.Rdata:
    if not isinstance(item, dict):
        raise BadRequest(f"each {type_} record must be a JSON object")
    try:
        if type_ == "A":
            return A(_IN, dns.rdatatype.A, str(item.get("ipv4Address", "")))
        if type_ == "TXT":
            return TXT(_IN, dns.rdatatype.TXT, _txt_strings(item.get("value")))
        if type_ == "CNAME":
            return CNAME(_IN, dns.rdatatype.CNAME, _name(item.get("cname"), "CNAMERecord.cname"))
        if type_ == "CAA":
            tag, value = item.get("tag"), item.get("value")
            if not isinstance(tag, str) or not isinstance(value, str):
                raise BadRequest("each CAA record needs string 'tag' and 'value'")
            return CAA(_IN, dns.rdatatype.CAA, _int(item.get("flags", 0), "caaRecords.flags", 0, 255),
                       tag.encode(), value.encode())
        if type_ == "NS":
            return NS(_IN, dns.rdatatype.NS, _name(item.get("nsdname"), "NSRecords.nsdname"))
        if type_ == "SOA":
            if current is None:
                raise BadRequest("the SOA record set cannot be created")
            old = current.records[0]
            assert isinstance(old, SOA)
            # Azure keeps the SOA host (its own name server) whatever the caller sends.
            return SOA(
                _IN, dns.rdatatype.SOA, old.mname,
                _name(item["email"], "SOARecord.email") if "email" in item else old.rname,
                _int(item.get("serialNumber", old.serial), "SOARecord.serialNumber"),
                _int(item.get("refreshTime", old.refresh), "SOARecord.refreshTime"),
                _int(item.get("retryTime", old.retry), "SOARecord.retryTime"),
                _int(item.get("expireTime", old.expire), "SOARecord.expireTime"),
                _int(item.get("minimumTTL", old.minimum), "SOARecord.minimumTTL"),
            )
    except (ValueError, dns.exception.DNSException) as exc:  # e.g. a bad IPv4 address or CAA tag
        raise BadRequest(f"invalid {type_} record {json.dumps(item)}: {exc}") from exc
    raise BadRequest(f"record type {type_} is not supported")


def _rdata_to_record(rdata: dns.rdata.Rdata) -> dict[str, Any]:
    if isinstance(rdata, A):
        return {"ipv4Address": rdata.address}
    if isinstance(rdata, TXT):
        return {"value": [s.decode("utf-8", "replace") for s in rdata.strings]}
    if isinstance(rdata, CNAME):
        return {"cname": rdata.target.to_text(omit_final_dot=True)}
    if isinstance(rdata, CAA):
        return {"flags": rdata.flags, "tag": rdata.tag.decode(), "value": rdata.value.decode()}
    if isinstance(rdata, NS):
        return {"nsdname": rdata.target.to_text()}
    if isinstance(rdata, SOA):
        return {
            "host": rdata.mname.to_text(), "email": rdata.rname.to_text(omit_final_dot=True),
            "serialNumber": rdata.serial, "refreshTime": rdata.refresh, "retryTime": rdata.retry,
            "expireTime": rdata.expire, "minimumTTL": rdata.minimum,
        }
    raise TypeError(f"unexpected rdata {rdata!r}")


def zone_id(subscription_id: str, resource_group: str, zone: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/{PROVIDER}/{ZONES}/{zone}"


def record_set_id(subscription_id: str, resource_group: str, zone: str, type_: str, name: str) -> str:
    return f"{zone_id(subscription_id, resource_group, zone)}/{type_.upper()}/{name}"


def zone_json(zone: Zone, subscription_id: str | None = None, resource_group: str | None = None) -> dict[str, Any]:
    return {
        "id": zone_id(subscription_id or zone.subscription_id, resource_group or zone.resource_group, zone.name),
        "name": zone.name,
        "type": f"{PROVIDER}/{ZONES}",
        "etag": zone.etag,
        "location": "global",
        "tags": dict(zone.tags),
        "properties": {
            "maxNumberOfRecordSets": MAX_RECORD_SETS,
            "maxNumberOfRecordsPerRecordSet": MAX_RECORDS_PER_SET,
            "numberOfRecordSets": len(zone.record_sets),
            "nameServers": zone.name_servers,
            "zoneType": "Public",
        },
    }


def record_set_json(zone: Zone, rs: RecordSet, subscription_id: str, resource_group: str) -> dict[str, Any]:
    records = [_rdata_to_record(r) for r in rs.records]
    properties: dict[str, Any] = {
        "metadata": dict(rs.metadata),
        "TTL": rs.ttl,
        "fqdn": zone.absolute_name(rs.name).to_text(),
        "provisioningState": "Succeeded",
        "targetResource": {},
    }
    if rs.type in _SINGLE:
        if records:
            properties[_RECORDS_KEY[rs.type]] = records[0]
    else:
        properties[_RECORDS_KEY[rs.type]] = records
    return {
        "id": record_set_id(subscription_id, resource_group, zone.name, rs.type, rs.name),
        "name": rs.name,
        "type": f"{PROVIDER}/{ZONES}/{rs.type}",
        "etag": rs.etag,
        "properties": properties,
    }


# -- error shapes --------------------------------------------------------------------------------------------------


def _arm_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response.of_json(status, {"error": {"code": code, "message": message}}, headers)


def _rp_error(status: int, code: str, message: str) -> Response:
    return Response.of_json(status, {"code": code, "message": message})


def _unsupported_api_version(version: str) -> Response:
    return _arm_error(
        400, "NoRegisteredProviderFound",
        f"No registered resource provider found for location 'global' and API version '{version}' for type "
        f"'{ZONES}'. The supported api-versions are '{', '.join(sorted(API_VERSIONS))}'. "
        "The supported locations are ', global'.",
    )


def _operation_path(path: str) -> tuple[str, str] | None:
    """(kind, id) of .../providers/Microsoft.Network/dnsOperationStatuses|dnsOperationResults/{id}, else None."""
    parts = [p for p in path.split("/") if p]
    lower = [p.lower() for p in parts]
    if (len(parts) == 8 and lower[0] == "subscriptions" and lower[2] == "resourcegroups"
            and lower[4:6] == ["providers", "microsoft.network"]
            and lower[6] in (OPERATION_STATUSES.lower(), OPERATION_RESULTS.lower())):
        return lower[6], parts[7]
    return None


def _zone_precondition(zone: Zone | None, name: str, if_match: str | None, if_none_match: str | None) -> Response | None:
    """412 as Azure DNS answers it when If-None-Match: * meets an existing zone or an If-Match etag does not match."""
    if if_none_match is not None and if_none_match.strip() == "*" and zone is not None:
        return _rp_error(412, "PreconditionFailed", f"The Zone {name} exists already and hence cannot be created again.")
    if if_match is not None:
        wanted = if_match.strip()
        if zone is None or (wanted != "*" and wanted.strip('"') != zone.etag):
            return _rp_error(412, "PreconditionFailed",
                             f"The Zone {name} has been modified (etag mismatch)." if zone is not None else
                             f"The Zone {name} does not exist.")
    return None


class _Route:
    """The parts of a DNS ARM path: /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Network/dnsZones/..."""

    def __init__(self, subscription_id: str, resource_group: str | None, zone: str | None,
                 collection: str | None, name: str | None) -> None:
        self.subscription_id, self.resource_group, self.zone = subscription_id, resource_group, zone
        self.collection, self.name = collection, name  # collection: a record type, "recordsets" or "all"

    @classmethod
    def parse(cls, path: str) -> "_Route | None":
        parts = [p for p in path.split("/") if p]
        lower = [p.lower() for p in parts]
        if len(parts) == 5 and lower[0] == "subscriptions" and lower[2:] == ["providers", "microsoft.network", ZONES]:
            return cls(parts[1], None, None, None, None)
        if len(parts) < 7 or lower[0] != "subscriptions" or lower[2] != "resourcegroups":
            return None
        if lower[4:7] != ["providers", "microsoft.network", ZONES] or len(parts) > 10:
            return None
        padded = parts + [None] * (10 - len(parts))  # type: ignore[list-item]
        return cls(parts[1], parts[3], padded[7], padded[8], padded[9])

    @property
    def provider_scope(self) -> str:
        base = f"/subscriptions/{self.subscription_id}"
        if self.resource_group:
            base += f"/resourceGroups/{self.resource_group}"
        return f"{base}/providers/{PROVIDER}"


class ArmDns:
    """Handles management.azure.com requests for DNS zones and record sets, and the /admin/zones API."""

    def __init__(self, store: ZoneStore, authorizer: Authorizer) -> None:
        self.store = store
        self.authorizer = authorizer
        self._operations: dict[str, str] = {}  # long-running operation id -> the app that started it
        self._operations_lock = threading.Lock()

    # -- ARM -------------------------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        principal = request.principal
        if principal is None:
            return _arm_error(
                401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.",
                {"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common", '
                                     'error="invalid_token", error_description="The authentication failed because '
                                     "of missing 'Authorization' header.\""},
            )
        if principal.audience not in MANAGEMENT_AUDIENCES:
            return _arm_error(
                401, "InvalidAuthenticationTokenAudience",
                f"The access token has been obtained for wrong audience or resource '{principal.audience}'. It "
                "should exactly match with one of the allowed audiences 'https://management.core.windows.net/',"
                "'https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.",
            )
        version = request.query.get("api-version")
        if not version:
            return _arm_error(400, "MissingApiVersionParameter",
                              "The api-version query parameter (?api-version=) is required for all requests.")
        if version not in API_VERSIONS:
            return _unsupported_api_version(version)
        operation = _operation_path(request.path)
        if operation is not None:
            return self._operation(request, *operation)
        route = _Route.parse(request.path)
        if route is None:
            return _arm_error(404, "InvalidResourceType",
                              f"The resource type could not be found in the namespace '{PROVIDER}' for api version "
                              f"'{version}'.")
        method = request.method.upper()
        if route.zone is None:
            return self._zone_list(request, route) if method == "GET" else self._method_not_allowed(method)
        if route.collection is None:
            return self._zone(request, route, method)
        if route.name is None:
            return self._record_set_list(request, route) if method == "GET" else self._method_not_allowed(method)
        return self._record_set(request, route, method)

    def _deny(self, app_id: str, action: str, scope: str) -> Response | None:
        if self.authorizer.allowed(app_id, action, scope):
            return None
        return _arm_error(
            403, "AuthorizationFailed",
            f"The client '{app_id}' with object id '{app_id}' does not have authorization to perform action "
            f"'{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please "
            "refresh your credentials.",
            {"x-ms-failure-cause": "gateway"},
        )

    @staticmethod
    def _method_not_allowed(method: str) -> Response:
        return _arm_error(405, "MethodNotAllowed", f"The requested resource does not support http method '{method}'.")

    def _missing_parent(self, route: _Route) -> Response | None:
        assert route.resource_group is not None and route.zone is not None
        if not self.store.resource_group_exists(route.subscription_id, route.resource_group):
            return _arm_error(404, "ResourceGroupNotFound", f"Resource group '{route.resource_group}' could not be found.")
        if self.store.get_zone(route.subscription_id, route.resource_group, route.zone) is None:
            return _arm_error(404, "ParentResourceNotFound",
                              "Can not perform requested operation on nested resource. "
                              f"Parent resource '{route.zone}' not found.")
        return None

    def _zone_list(self, request: Request, route: _Route) -> Response:
        app_id = request.principal.app_id  # type: ignore[union-attr]
        denied = self._deny(app_id, f"{PROVIDER}/{ZONES}/read", route.provider_scope)
        if denied:
            return denied
        if route.resource_group and not self.store.resource_group_exists(route.subscription_id, route.resource_group):
            return _arm_error(404, "ResourceGroupNotFound", f"Resource group '{route.resource_group}' could not be found.")
        zones = self.store.list_zones(route.subscription_id, route.resource_group)
        return self._page(request, [zone_json(z) for z in zones])

    def _zone(self, request: Request, route: _Route, method: str) -> Response:
        assert route.resource_group is not None and route.zone is not None
        app_id = request.principal.app_id  # type: ignore[union-attr]
        action = {"GET": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}.get(method)
        if action is None:
            return self._method_not_allowed(method)
        scope = zone_id(route.subscription_id, route.resource_group, route.zone)
        denied = self._deny(app_id, f"{PROVIDER}/{ZONES}/{action}", scope)
        if denied:
            return denied
        if not self.store.resource_group_exists(route.subscription_id, route.resource_group):
            return _arm_error(404, "ResourceGroupNotFound", f"Resource group '{route.resource_group}' could not be found.")
        zone = self.store.get_zone(route.subscription_id, route.resource_group, route.zone)
        precondition = _zone_precondition(zone, route.zone, request.headers.get("if-match"),
                                          request.headers.get("if-none-match") if method == "PUT" else None)
        if precondition is not None:
            return precondition
        if method == "DELETE":
            # A long-running operation in Azure: 202 with where to follow it (the SDK's poller does), 204 when
            # there was nothing to delete. The emulator deletes at once; the operation reads Succeeded.
            if not self.store.delete_zone(route.subscription_id, route.resource_group, route.zone):
                return Response(204)
            return self._accepted(request, route)
        if method == "GET":
            if zone is None:
                return _arm_error(404, "ResourceNotFound",
                                  f"The Resource '{PROVIDER}/{ZONES}/{route.zone}' under resource group "
                                  f"'{route.resource_group}' was not found. For more details please go to "
                                  "https://aka.ms/ARMResourceNotFoundFix")
            return Response.of_json(200, zone_json(zone, route.subscription_id, route.resource_group),
                                    {"ETag": zone.etag})
        body = self._json_body(request)
        if isinstance(body, Response):
            return body
        tags = body.get("tags") or {}
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            return _rp_error(400, "BadRequest", "'tags' must be an object of string values")
        if method == "PUT" and zone is None:
            try:
                zone = self.store.create_zone(route.subscription_id, route.resource_group, route.zone, tags=tags)
            except ZoneExists as exc:  # the name is served from another resource group or subscription
                return _rp_error(409, "Conflict", str(exc))
            except InvalidRecordSet as exc:
                return _rp_error(400, "BadRequest", str(exc))
            return Response.of_json(201, zone_json(zone), {"ETag": zone.etag})
        if zone is None:
            return _arm_error(404, "ResourceNotFound", f"The Resource '{PROVIDER}/{ZONES}/{route.zone}' under resource "
                                                       f"group '{route.resource_group}' was not found.")
        # Only tags are writable on a public zone the emulator serves (no private-zone networks here).
        zone = self.store.set_zone_tags(zone.key, tags if "tags" in body else zone.tags)
        return Response.of_json(200, zone_json(zone, route.subscription_id, route.resource_group), {"ETag": zone.etag})

    def _accepted(self, request: Request, route: _Route) -> Response:
        operation = f"delzone{uuid.uuid4().hex}"
        with self._operations_lock:
            self._operations[operation] = request.principal.app_id  # type: ignore[union-attr]
        base = (f"https://{request.host}/subscriptions/{route.subscription_id}/resourceGroups/{route.resource_group}"
                f"/providers/{PROVIDER}")
        query = urlencode({"api-version": request.query.get("api-version", "")})
        return Response(202, b"", {
            "Azure-AsyncOperation": f"{base}/{OPERATION_STATUSES}/{operation}?{query}",
            "Location": f"{base}/{OPERATION_RESULTS}/{operation}?{query}",
            "Retry-After": RETRY_AFTER_S,
        })

    def _operation(self, request: Request, kind: str, operation: str) -> Response:
        with self._operations_lock:
            owner = self._operations.get(operation)
        if request.method.upper() != "GET":
            return self._method_not_allowed(request.method.upper())
        if owner is None or owner != request.principal.app_id:  # type: ignore[union-attr]
            return _arm_error(404, "NotFound", f"The operation '{operation}' was not found.")
        if kind == OPERATION_RESULTS.lower():
            return Response(204)
        return Response.of_json(200, {"status": "Succeeded"})

    def _record_set_list(self, request: Request, route: _Route) -> Response:
        assert route.resource_group is not None and route.zone is not None and route.collection is not None
        app_id = request.principal.app_id  # type: ignore[union-attr]
        collection = route.collection.lower()
        if collection in ("recordsets", "all"):
            type_, action = None, f"{PROVIDER}/{ZONES}/{collection}/read"
        else:
            type_ = route.collection.upper()
            if type_ not in _RECORDS_KEY:
                return self._unsupported_type(route.collection)
            action = f"{PROVIDER}/{ZONES}/{type_}/read"
        scope = f"{zone_id(route.subscription_id, route.resource_group, route.zone)}/{type_ or collection}"
        denied = self._deny(app_id, action, scope) or self._missing_parent(route)
        if denied:
            return denied
        zone = self.store.get_zone(route.subscription_id, route.resource_group, route.zone)
        if zone is None:  # deleted since the check above
            return self._missing_parent(route) or self._record_not_found(route)
        sets = self.store.list_record_sets(zone.key, type_, request.query.get("$recordsetnamesuffix"))
        return self._page(request, [record_set_json(zone, rs, route.subscription_id, route.resource_group)
                                    for rs in sets])

    def _record_set(self, request: Request, route: _Route, method: str) -> Response:
        assert route.resource_group and route.zone and route.collection and route.name is not None
        app_id = request.principal.app_id  # type: ignore[union-attr]
        type_ = route.collection.upper()
        if type_ not in _RECORDS_KEY:
            return self._unsupported_type(route.collection)
        action = {"GET": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}.get(method)
        if action is None:
            return self._method_not_allowed(method)
        sub, rg = route.subscription_id, route.resource_group
        scope = record_set_id(sub, rg, route.zone, type_, route.name)
        denied = self._deny(app_id, f"{PROVIDER}/{ZONES}/{type_}/{action}", scope) or self._missing_parent(route)
        if denied:
            return denied
        key = ZoneKey.of(sub, rg, route.zone)
        try:
            if method == "GET":
                rs = self.store.get_record_set(key, route.name, type_)
                if rs is None:
                    return self._record_not_found(route)
                return self._record_set_response(200, key, rs, sub, rg)
            if method == "DELETE":
                deleted = self.store.delete_record_set(key, route.name, type_, if_match=request.headers.get("if-match"))
                return Response(200 if deleted else 204)
            body = self._json_body(request)
            if isinstance(body, Response):
                return body
            current = self.store.get_record_set(key, route.name, type_)
            if method == "PATCH" and current is None:
                return self._record_not_found(route)
            ttl, records, metadata = self._parse_record_set(type_, body, current, merge=method == "PATCH")
            rs, created = self.store.put_record_set(
                key, route.name, type_, ttl=ttl, records=records, metadata=metadata,
                if_match=request.headers.get("if-match"),
                if_none_match=request.headers.get("if-none-match") if method == "PUT" else None,
            )
            return self._record_set_response(201 if created else 200, key, rs, sub, rg)
        except PreconditionFailed as exc:
            return _rp_error(412, "PreconditionFailed", f"The Record set {route.name}: {exc}.")
        except (BadRequest, InvalidRecordSet) as exc:
            return _rp_error(400, "BadRequest", str(exc))
        except ZoneNotFound:
            return self._missing_parent(route) or self._record_not_found(route)

    def _record_set_response(self, status: int, key: ZoneKey, rs: RecordSet, sub: str, rg: str) -> Response:
        zone = self.store.get_zone(key.subscription_id, key.resource_group, key.name)
        assert zone is not None
        return Response.of_json(status, record_set_json(zone, rs, sub, rg), {"ETag": rs.etag})

    @staticmethod
    def _record_not_found(route: _Route) -> Response:
        return _rp_error(404, "NotFound", f"The resource record '{route.name}' does not exist in resource group "
                                          f"'{route.resource_group}' of subscription '{route.subscription_id}'.")

    @staticmethod
    def _unsupported_type(collection: str) -> Response:
        return _rp_error(400, "BadRequest", f"The record type '{collection}' is not supported by the emulator; "
                                            f"supported: {', '.join(sorted(_RECORDS_KEY))}.")

    @staticmethod
    def _json_body(request: Request) -> dict[str, Any] | Response:
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            return _arm_error(400, "InvalidRequestContent",
                              f"The request content was invalid and could not be deserialized: '{exc}'.")
        if not isinstance(body, dict):
            return _arm_error(400, "InvalidRequestContent",
                              "The request content was invalid and could not be deserialized: "
                              "a JSON object was expected.")
        return body

    @staticmethod
    def _parse_record_set(
        type_: str, body: dict[str, Any], current: RecordSet | None, *, merge: bool
    ) -> tuple[int, list[dns.rdata.Rdata], dict[str, str]]:
        props = body.get("properties", {})
        if props is None:
            props = {}
        if not isinstance(props, dict):
            raise BadRequest("'properties' must be a JSON object")
        for key in _ALL_RECORD_KEYS:
            if key != _RECORDS_KEY[type_] and props.get(key):
                raise BadRequest(f"A record set of type {type_} cannot contain {key}.")

        if "TTL" in props and props["TTL"] is not None:
            ttl = _int(props["TTL"], "TTL", 0, 2147483647)
        else:
            ttl = current.ttl if (merge or type_ == "SOA") and current else 3600

        metadata_in = props.get("metadata")
        if metadata_in is None:
            metadata = dict(current.metadata) if merge and current else {}
        elif isinstance(metadata_in, dict) and all(isinstance(v, str) for v in metadata_in.values()):
            metadata = {str(k): v for k, v in metadata_in.items()}
        else:
            raise BadRequest("'metadata' must be an object of string values")

        raw = props.get(_RECORDS_KEY[type_])
        if raw is None:
            records = list(current.records) if (merge or type_ == "SOA") and current else []
        elif type_ in _SINGLE:
            records = [_record_to_rdata(type_, raw, current)]
        elif isinstance(raw, list):
            records = [_record_to_rdata(type_, item, current) for item in raw]
        else:
            raise BadRequest(f"'{_RECORDS_KEY[type_]}' must be a list")
        if len(records) > MAX_RECORDS_PER_SET:
            raise BadRequest(f"a record set may hold at most {MAX_RECORDS_PER_SET} records")
        if type_ == "TXT":
            # A record set is a set: the same TXT value twice is one record, as in DNS.
            records = list(dict.fromkeys(records))
        return ttl, records, metadata

    @staticmethod
    def _page(request: Request, items: list[dict[str, Any]]) -> Response:
        """ARM paging: $top limits a page; nextLink carries on (the SDK follows it)."""
        try:
            top = int(request.query["$top"]) if "$top" in request.query else None
            skip = int(request.query.get("$skipToken", "0"))
        except ValueError:
            return _arm_error(400, "InvalidParameter", "$top and $skipToken must be integers.")
        end = len(items) if top is None or top <= 0 else skip + top
        payload: dict[str, Any] = {"value": items[skip:end]}
        if end < len(items):
            query = {k: v for k, v in request.query.items() if k != "$skipToken"} | {"$skipToken": str(end)}
            payload["nextLink"] = f"https://{request.host}{request.path}?{urlencode(query)}"
        return Response.of_json(200, payload)

    # -- admin API ------------------------------------------------------------------------------------------------

    def handle_admin(self, request: Request) -> Response:
        """/admin/zones: GET (list), POST {subscriptionId, resourceGroup, name, tags?};
        /admin/zones/{name}: GET (zone with its record sets), DELETE."""
        parts = [p for p in request.path.split("/") if p]
        if parts[:2] != ["admin", "zones"] or len(parts) > 3:
            return _admin_error(404, "NotFound", f"no admin resource at {request.path}")
        method = request.method.upper()
        if len(parts) == 2:
            if method == "GET":
                return Response.of_json(200, {"value": [_admin_zone(z) for z in self.store.list_zones()]})
            if method == "POST":
                return self._admin_create(request)
            return _admin_error(405, "MethodNotAllowed", f"{method} is not allowed on /admin/zones")
        zone = self.store.zone_by_name(parts[2])
        if zone is None:
            return _admin_error(404, "ZoneNotFound", f"no zone named {parts[2]}")
        if method == "GET":
            detail = _admin_zone(zone)
            detail["recordSets"] = [record_set_json(zone, rs, zone.subscription_id, zone.resource_group)
                                    for rs in self.store.list_record_sets(zone.key)]
            return Response.of_json(200, detail)
        if method == "DELETE":
            self.store.delete_zone(zone.subscription_id, zone.resource_group, zone.name)
            return Response(204)
        return _admin_error(405, "MethodNotAllowed", f"{method} is not allowed on /admin/zones/{{name}}")

    def _admin_create(self, request: Request) -> Response:
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            return _admin_error(400, "InvalidJson", f"the body is not JSON: {exc}")
        if not isinstance(body, dict):
            return _admin_error(400, "InvalidJson", "the body must be a JSON object")
        fields: dict[str, Callable[[Any], bool]] = {
            "subscriptionId": lambda v: isinstance(v, str) and bool(v.strip()) and "/" not in v,
            "resourceGroup": lambda v: isinstance(v, str) and bool(v.strip()) and "/" not in v,
            "name": lambda v: isinstance(v, str) and bool(v.strip()) and "/" not in v,
        }
        for field, ok in fields.items():
            if not ok(body.get(field)):
                return _admin_error(400, "InvalidField", f"'{field}' must be a non-empty string without '/'")
        tags = body.get("tags") or {}
        if not isinstance(tags, dict):
            return _admin_error(400, "InvalidField", "'tags' must be an object")
        try:
            zone = self.store.create_zone(body["subscriptionId"], body["resourceGroup"], body["name"], tags=tags)
        except ZoneExists as exc:
            return _admin_error(409, "ZoneExists", str(exc))
        except InvalidRecordSet as exc:
            return _admin_error(400, "InvalidField", f"'name': {exc}")
        return Response.of_json(201, _admin_zone(zone))


def _admin_error(status: int, code: str, message: str) -> Response:
    return Response.of_json(status, {"error": {"code": code, "message": message}})


def _admin_zone(zone: Zone) -> dict[str, Any]:
    return {
        "id": zone_id(zone.subscription_id, zone.resource_group, zone.name),
        "subscriptionId": zone.subscription_id,
        "resourceGroup": zone.resource_group,
        "name": zone.name,
        "nameServers": zone.name_servers,
        "numberOfRecordSets": len(zone.record_sets),
    }

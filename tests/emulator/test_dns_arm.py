"""The Azure DNS ARM handler and the zones admin API, driven with emulator Request objects."""
from __future__ import annotations

import json
from typing import Any

import dns.message
import dns.query
import pytest

from emulator.arm_dns import ArmDns
from emulator.authz import Authorizer
from emulator.dns_server import DnsServer
from emulator.dns_store import ZoneStore
from emulator.wire import Principal, Request, Response

SUB, RG, ZONE = "00000000-0000-0000-0000-0000000000aa", "rg-dns", "example.com"
BASE = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/dnsZones/{ZONE}"
ZONE_ID = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/dnszones/{ZONE}"
APP = "11111111-2222-3333-4444-555555555555"
MGMT = Principal(APP, "tenant", "https://management.azure.com")


class AllowAll:
    def allowed(self, app_id: str, action: str, scope: str) -> bool:
        return True


@pytest.fixture()
def store() -> ZoneStore:
    s = ZoneStore()
    s.create_zone(SUB, RG, ZONE)
    return s


@pytest.fixture()
def arm(store: ZoneStore) -> ArmDns:
    return ArmDns(store, AllowAll())


def call(arm: ArmDns, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
         query: dict[str, str] | None = None, principal: Principal | None = MGMT, raw: bytes | None = None) -> Response:
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    return arm.handle(Request(method, "management.azure.com", path, {"api-version": "2018-05-01", **(query or {})},
                              {k.lower(): v for k, v in (headers or {}).items()}, payload, principal))


def js(response: Response) -> Any:
    return json.loads(response.body)


TXT_BODY = {"properties": {"TTL": 60, "TXTRecords": [{"value": ["tok-1"]}, {"value": ["tok-2"]}],
                           "metadata": {"createdBy": "keyvault-acme"}}}


def test_zone_get_has_name_servers_and_counts(arm: ArmDns) -> None:
    r = call(arm, "GET", BASE)
    assert r.status == 200
    body = js(r)
    assert body["id"] == ZONE_ID and body["type"] == "Microsoft.Network/dnszones" and body["location"] == "global"
    assert body["properties"]["nameServers"][0] == "ns1-01.azure-dns.emulator."
    assert body["properties"]["numberOfRecordSets"] == 2
    call(arm, "PUT", f"{BASE}/TXT/_acme-challenge", TXT_BODY)
    assert js(call(arm, "GET", BASE))["properties"]["numberOfRecordSets"] == 3


def test_txt_put_creates_then_replaces_with_new_etag(arm: ArmDns) -> None:
    created = call(arm, "PUT", f"{BASE}/TXT/_acme-challenge.www", TXT_BODY)
    assert created.status == 201
    body = js(created)
    assert body["id"] == f"{ZONE_ID}/TXT/_acme-challenge.www"
    assert body["name"] == "_acme-challenge.www" and body["type"] == "Microsoft.Network/dnszones/TXT"
    assert body["properties"]["fqdn"] == "_acme-challenge.www.example.com."
    assert body["properties"]["provisioningState"] == "Succeeded"
    assert body["properties"]["TTL"] == 60 and body["properties"]["metadata"] == {"createdBy": "keyvault-acme"}
    assert body["properties"]["TXTRecords"] == [{"value": ["tok-1"]}, {"value": ["tok-2"]}]
    assert created.headers["ETag"] == body["etag"]

    replaced = call(arm, "PUT", f"{BASE}/TXT/_acme-challenge.www", {"properties": {"TTL": 30, "TXTRecords": []}})
    assert replaced.status == 200 and js(replaced)["etag"] != body["etag"]
    assert js(replaced)["properties"]["TXTRecords"] == [] and js(replaced)["properties"]["metadata"] == {}

    got = call(arm, "GET", f"{BASE}/txt/_ACME-challenge.www")  # ARM paths and DNS names are case-insensitive
    assert got.status == 200 and js(got)["etag"] == js(replaced)["etag"]


def test_if_match_and_if_none_match_give_412(arm: ArmDns) -> None:
    path = f"{BASE}/TXT/_acme-challenge"
    first = call(arm, "PUT", path, TXT_BODY, headers={"If-None-Match": "*"})
    assert first.status == 201
    again = call(arm, "PUT", path, TXT_BODY, headers={"If-None-Match": "*"})
    assert again.status == 412 and js(again)["code"] == "PreconditionFailed"
    stale = call(arm, "PUT", path, TXT_BODY, headers={"If-Match": "00000000-0000-0000-0000-000000000000"})
    assert stale.status == 412
    etag = js(first)["etag"]
    ok = call(arm, "PUT", path, TXT_BODY, headers={"If-Match": etag})
    assert ok.status == 200
    assert call(arm, "DELETE", path, headers={"If-Match": etag}).status == 412  # etag moved on
    assert call(arm, "DELETE", path, headers={"If-Match": js(ok)["etag"]}).status == 200
    assert call(arm, "DELETE", path).status == 204  # already gone


def test_patch_merges_into_the_existing_record_set(arm: ArmDns) -> None:
    path = f"{BASE}/TXT/merge"
    call(arm, "PUT", path, TXT_BODY)
    patched = call(arm, "PATCH", path, {"properties": {"TTL": 120}})
    assert patched.status == 200
    props = js(patched)["properties"]
    assert props["TTL"] == 120 and len(props["TXTRecords"]) == 2 and props["metadata"]
    assert call(arm, "PATCH", f"{BASE}/TXT/absent", {"properties": {"TTL": 1}}).status == 404


def test_cname_caa_a_and_soa_shapes(arm: ArmDns) -> None:
    cname = call(arm, "PUT", f"{BASE}/CNAME/_acme-challenge.app",
                 {"properties": {"TTL": 60, "CNAMERecord": {"cname": "_acme-challenge.app.validation.example.org"}}})
    assert cname.status == 201
    assert js(cname)["properties"]["CNAMERecord"] == {"cname": "_acme-challenge.app.validation.example.org"}
    caa = call(arm, "PUT", f"{BASE}/CAA/@", {"properties": {"TTL": 300, "caaRecords": [
        {"flags": 0, "tag": "issue", "value": "letsencrypt.org"}]}})
    assert js(caa)["properties"]["fqdn"] == "example.com." and js(caa)["id"] == f"{ZONE_ID}/CAA/@"
    a = call(arm, "PUT", f"{BASE}/A/www", {"properties": {"TTL": 300, "ARecords": [{"ipv4Address": "192.0.2.1"}]}})
    assert js(a)["properties"]["ARecords"] == [{"ipv4Address": "192.0.2.1"}]
    soa = js(call(arm, "GET", f"{BASE}/SOA/@"))["properties"]["SOARecord"]
    assert soa["host"] == "ns1-01.azure-dns.emulator." and soa["minimumTTL"] == 300
    assert call(arm, "PUT", f"{BASE}/A/bad", {"properties": {"ARecords": [{"ipv4Address": "999.1.1.1"}]}}).status == 400
    assert call(arm, "PUT", f"{BASE}/TXT/mixed", {"properties": {"ARecords": [{"ipv4Address": "192.0.2.1"}]}}).status == 400
    assert call(arm, "PUT", f"{BASE}/TXT/www", TXT_BODY).status == 201  # TXT next to A is fine
    conflict = call(arm, "PUT", f"{BASE}/CNAME/www", {"properties": {"CNAMERecord": {"cname": "x.example.org"}}})
    assert conflict.status == 400 and js(conflict)["code"] == "BadRequest"


def test_lists_by_type_and_all_with_paging(arm: ArmDns) -> None:
    for i in range(3):
        call(arm, "PUT", f"{BASE}/TXT/rec{i}", TXT_BODY)
    txt = js(call(arm, "GET", f"{BASE}/TXT"))
    assert [r["name"] for r in txt["value"]] == ["rec0", "rec1", "rec2"] and "nextLink" not in txt
    everything = js(call(arm, "GET", f"{BASE}/recordsets"))["value"]
    assert {(r["name"], r["type"].rsplit("/", 1)[1]) for r in everything} >= {("@", "SOA"), ("@", "NS"), ("rec1", "TXT")}
    assert len(js(call(arm, "GET", f"{BASE}/all"))["value"]) == 5
    page = js(call(arm, "GET", f"{BASE}/TXT", query={"$top": "2"}))
    assert len(page["value"]) == 2 and "%24skipToken=2" in page["nextLink"]
    rest = js(call(arm, "GET", f"{BASE}/TXT", query={"$top": "2", "$skipToken": "2"}))
    assert [r["name"] for r in rest["value"]] == ["rec2"] and "nextLink" not in rest
    suffix = js(call(arm, "GET", f"{BASE}/TXT", query={"$recordsetnamesuffix": "rec1"}))
    assert [r["name"] for r in suffix["value"]] == ["rec1"]


def test_not_found_shapes(arm: ArmDns) -> None:
    missing = call(arm, "GET", f"{BASE}/TXT/nothing")
    assert missing.status == 404 and js(missing) == {
        "code": "NotFound",
        "message": f"The resource record 'nothing' does not exist in resource group '{RG}' of subscription '{SUB}'."}
    no_zone = call(arm, "PUT", f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/dnsZones/"
                               "example.org/TXT/x", TXT_BODY)
    assert no_zone.status == 404 and js(no_zone)["error"]["code"] == "ParentResourceNotFound"
    zone_get = call(arm, "GET", f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/dnsZones/nope.com")
    assert zone_get.status == 404 and js(zone_get)["error"]["code"] == "ResourceNotFound"
    no_group = call(arm, "GET", f"/subscriptions/{SUB}/resourceGroups/rg-missing/providers/Microsoft.Network/"
                                f"dnsZones/{ZONE}/TXT/x")
    assert no_group.status == 404 and js(no_group)["error"]["code"] == "ResourceGroupNotFound"


def test_bad_requests(arm: ArmDns) -> None:
    malformed = call(arm, "PUT", f"{BASE}/TXT/x", raw=b"{not json")
    assert malformed.status == 400 and js(malformed)["error"]["code"] == "InvalidRequestContent"
    assert call(arm, "PUT", f"{BASE}/TXT/x", raw=b"[1, 2]").status == 400
    assert call(arm, "PUT", f"{BASE}/TXT/x", {"properties": {"TTL": "sixty"}}).status == 400
    assert call(arm, "PUT", f"{BASE}/TXT/x", {"properties": {"TXTRecords": [{"value": "not-a-list"}]}}).status == 400
    no_version = arm.handle(Request("GET", "management.azure.com", BASE, {}, {}, b"", MGMT))
    assert no_version.status == 400 and js(no_version)["error"]["code"] == "MissingApiVersionParameter"
    bad_version = call(arm, "GET", BASE, query={"api-version": "2099-01-01"})
    assert bad_version.status == 400 and js(bad_version)["error"]["code"] == "NoRegisteredProviderFound"
    assert call(arm, "GET", f"{BASE}/MX/x").status == 400
    assert call(arm, "POST", f"{BASE}/TXT/x", TXT_BODY).status == 405
    anonymous = call(arm, "GET", BASE, principal=None)
    assert anonymous.status == 401 and "WWW-Authenticate" in anonymous.headers
    vault_token = call(arm, "GET", BASE, principal=Principal(APP, "tenant", "https://vault.azure.net"))
    assert vault_token.status == 401 and js(vault_token)["error"]["code"] == "InvalidAuthenticationTokenAudience"


def test_real_authorizer_scopes_a_role_to_one_record_set(store: ZoneStore) -> None:
    authz = Authorizer()
    authz.define_role("TXT challenger", actions=["Microsoft.Network/dnsZones/TXT/*"])
    authz.assign(APP, "TXT challenger", f"{ZONE_ID}/TXT/_acme-challenge.www")
    arm = ArmDns(store, authz)

    allowed = call(arm, "PUT", f"{BASE}/TXT/_acme-challenge.www", TXT_BODY)
    assert allowed.status == 201
    denied = call(arm, "PUT", f"{BASE}/TXT/_acme-challenge.api", TXT_BODY)
    assert denied.status == 403 and denied.headers.get("x-ms-failure-cause") == "gateway"
    assert js(denied) == {"error": {"code": "AuthorizationFailed", "message": (
        f"The client '{APP}' with object id '{APP}' does not have authorization to perform action "
        f"'Microsoft.Network/dnszones/TXT/write' over scope '{ZONE_ID}/TXT/_acme-challenge.api' or the scope is "
        "invalid. If access was recently granted, please refresh your credentials.")}}
    assert store.get_record_set(store.list_zones()[0].key, "_acme-challenge.api", "TXT") is None
    assert call(arm, "GET", BASE).status == 403  # no zone read at record-set scope
    assert call(arm, "GET", f"{BASE}/TXT/_acme-challenge.www").status == 200
    # Authorization comes before existence, as in ARM: no probing for zones one cannot read.
    other_zone = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/dnsZones/hidden.test"
    assert call(arm, "GET", other_zone).status == 403

    authz.assign(APP, "DNS Zone Contributor", ZONE_ID)
    assert call(arm, "GET", BASE).status == 200
    assert call(arm, "DELETE", f"{BASE}/TXT/_acme-challenge.www").status == 200

    reader = "99999999-0000-0000-0000-000000000000"
    authz.assign(reader, "Reader", f"/subscriptions/{SUB}")
    as_reader = Principal(reader, "tenant", "https://management.azure.com/")
    assert call(arm, "GET", f"{BASE}/TXT", principal=as_reader).status == 200
    assert call(arm, "PUT", f"{BASE}/TXT/x", TXT_BODY, principal=as_reader).status == 403


def test_arm_writes_are_served_by_dns_at_once(arm: ArmDns, store: ZoneStore) -> None:
    with DnsServer(store) as server:
        call(arm, "PUT", f"{BASE}/TXT/_acme-challenge.now", TXT_BODY)
        answer = dns.query.udp(dns.message.make_query("_acme-challenge.now.example.com", "TXT"), "127.0.0.1",
                               port=server.port, timeout=5).answer
        assert {r.to_text() for r in answer[0]} == {'"tok-1"', '"tok-2"'}


def admin(arm: ArmDns, method: str, path: str, body: Any = None) -> Response:
    return arm.handle_admin(Request(method, "emulator", path, {}, {}, json.dumps(body).encode() if body else b""))


def test_admin_zones_create_list_get_delete(arm: ArmDns) -> None:
    created = admin(arm, "POST", "/admin/zones", {"subscriptionId": "sub-2", "resourceGroup": "rg-2",
                                                  "name": "Contoso.test"})
    assert created.status == 201 and js(created)["name"] == "contoso.test"
    assert js(created)["id"].endswith("/resourceGroups/rg-2/providers/Microsoft.Network/dnszones/contoso.test")
    assert admin(arm, "POST", "/admin/zones", {"subscriptionId": "s", "resourceGroup": "r",
                                               "name": "contoso.test"}).status == 409
    assert admin(arm, "POST", "/admin/zones", {"subscriptionId": "s", "name": "x.test"}).status == 400
    assert admin(arm, "POST", "/admin/zones", {"subscriptionId": "s", "resourceGroup": "r/../x",
                                               "name": "x.test"}).status == 400
    assert arm.handle_admin(Request("POST", "emulator", "/admin/zones", {}, {}, b"{oops")).status == 400
    assert [z["name"] for z in js(admin(arm, "GET", "/admin/zones"))["value"]] == ["contoso.test", "example.com"]
    detail = js(admin(arm, "GET", "/admin/zones/contoso.test"))
    assert {rs["type"] for rs in detail["recordSets"]} == {"Microsoft.Network/dnszones/SOA",
                                                           "Microsoft.Network/dnszones/NS"}
    assert admin(arm, "DELETE", "/admin/zones/contoso.test").status == 204
    assert admin(arm, "GET", "/admin/zones/contoso.test").status == 404


def test_zone_put_creates_in_a_known_group_and_updates_tags(arm: ArmDns) -> None:
    path = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/dnsZones/new.test"
    created = call(arm, "PUT", path, {"location": "global", "tags": {"env": "dev"}})
    assert created.status == 201 and js(created)["tags"] == {"env": "dev"}
    updated = call(arm, "PATCH", path, {"tags": {"env": "prod"}})
    assert updated.status == 200 and js(updated)["tags"] == {"env": "prod"}
    assert js(updated)["etag"] != js(created)["etag"]
    assert call(arm, "GET", f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/dnsZones").status == 200
    listed = js(call(arm, "GET", f"/subscriptions/{SUB}/providers/Microsoft.Network/dnszones"))["value"]
    assert sorted(z["name"] for z in listed) == ["example.com", "new.test"]
    elsewhere = f"/subscriptions/{SUB}/resourceGroups/rg-unknown/providers/Microsoft.Network/dnsZones/other.test"
    assert js(call(arm, "PUT", elsewhere, {"location": "global"}))["error"]["code"] == "ResourceGroupNotFound"
    assert call(arm, "DELETE", path).status == 202  # a long-running operation, done at once here
    assert call(arm, "GET", path).status == 404

"""Azure DNS end to end: the unmodified azure-mgmt-dns client, a real Entra ID token and the HTTPS proxy.

Clients get only HTTPS_PROXY / NO_PROXY / REQUESTS_CA_BUNDLE (the `azure_env` fixture) and keep the real
management.azure.com URLs; the emulator's authoritative DNS server must show every write at once.
"""
from __future__ import annotations

import uuid

import dns.message
import dns.query
import dns.rcode
import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.mgmt.dns import DnsManagementClient
from azure.mgmt.dns.models import RecordSet, TxtRecord

from emulator.server import Emulator

RG = "rg-proxy-dns"
MGMT = "https://management.azure.com"


@pytest.fixture
def zone(emu: Emulator) -> dict:
    """A zone of its own per test, in its own subscription."""
    created = emu.admin.add_zone(f"z{uuid.uuid4().hex[:10]}.test", str(uuid.uuid4()), RG)
    yield created
    emu.admin.delete_zone(created["name"])


def client_for(emu: Emulator, zone: dict, role: str, scope: str) -> DnsManagementClient:
    app = emu.admin.add_client(name="dns-writer", roles=[(role, scope)])
    credential = ClientSecretCredential(app["tenant_id"], app["client_id"], app["secret"])
    return DnsManagementClient(credential, zone["subscriptionId"], retry_total=0)


def ask_txt(emu: Emulator, fqdn: str) -> dns.message.Message:
    host, port = emu.dns_address  # type: ignore[misc]
    return dns.query.udp(dns.message.make_query(fqdn, "TXT"), host, port=port, timeout=5)


def test_sdk_record_set_lifecycle_through_the_proxy(azure_env: Emulator, zone: dict) -> None:
    emu, name = azure_env, zone["name"]
    with client_for(emu, zone, "DNS Zone Contributor", zone["id"]) as client:
        got_zone = client.zones.get(RG, name)
        assert got_zone.name_servers == zone["nameServers"] and got_zone.number_of_record_sets == 2

        body = RecordSet(ttl=60, txt_records=[TxtRecord(value=["token-1"])])
        created = client.record_sets.create_or_update(RG, name, "_acme-challenge", "TXT", body, if_none_match="*")
        assert created.fqdn == f"_acme-challenge.{name}." and created.etag
        assert {r.to_text() for r in ask_txt(emu, f"_acme-challenge.{name}").answer[0]} == {'"token-1"'}

        with pytest.raises(HttpResponseError) as conflict:
            client.record_sets.create_or_update(RG, name, "_acme-challenge", "TXT", body, if_none_match="*")
        assert conflict.value.status_code == 412

        body.txt_records = [TxtRecord(value=["token-1"]), TxtRecord(value=["token-2"])]
        updated = client.record_sets.create_or_update(RG, name, "_acme-challenge", "TXT", body,
                                                      if_match=created.etag)
        assert updated.etag != created.etag
        answer = ask_txt(emu, f"_acme-challenge.{name}").answer[0]
        assert {r.to_text() for r in answer} == {'"token-1"', '"token-2"'}

        assert [rs.name for rs in client.record_sets.list_by_type(RG, name, "TXT")] == ["_acme-challenge"]
        client.record_sets.delete(RG, name, "_acme-challenge", "TXT", if_match=updated.etag)
        with pytest.raises(ResourceNotFoundError):
            client.record_sets.get(RG, name, "_acme-challenge", "TXT")
        assert ask_txt(emu, f"_acme-challenge.{name}").rcode() == dns.rcode.NXDOMAIN


def test_record_set_scoped_role_writes_only_its_record_set(azure_env: Emulator, zone: dict) -> None:
    name = zone["name"]
    mine = f"{zone['id']}/TXT/_acme-challenge.www"
    with client_for(azure_env, zone, "DNS Zone Contributor", mine) as client:
        body = RecordSet(ttl=60, txt_records=[TxtRecord(value=["v"])])
        client.record_sets.create_or_update(RG, name, "_acme-challenge.www", "TXT", body)
        with pytest.raises(HttpResponseError) as denied:
            client.record_sets.create_or_update(RG, name, "_acme-challenge.api", "TXT", body)
        assert denied.value.status_code == 403 and denied.value.error.code == "AuthorizationFailed"
        assert f"over scope '{zone['id']}/TXT/_acme-challenge.api'" in denied.value.error.message


def test_raw_http_412_and_malformed_json(azure_env: Emulator, zone: dict, raw: requests.Session) -> None:
    app = azure_env.admin.add_client(name="raw-dns", roles=[("DNS Zone Contributor", zone["id"])])
    headers = {"Authorization": "Bearer " + azure_env.admin.issue_token(app["client_id"], MGMT)}
    url = (f"https://management.azure.com/subscriptions/{zone['subscriptionId']}/resourceGroups/{RG}"
           f"/providers/Microsoft.Network/dnsZones/{zone['name']}/TXT/_acme-challenge")
    params = {"api-version": "2018-05-01"}
    body = {"properties": {"TTL": 60, "TXTRecords": [{"value": ["x"]}]}}

    created = raw.put(url, params=params, json=body, headers=headers, timeout=10)
    assert created.status_code == 201 and created.headers["ETag"] == created.json()["etag"]
    stale = raw.put(url, params=params, json=body, timeout=10,
                    headers={**headers, "If-Match": "00000000-0000-0000-0000-000000000000"})
    assert stale.status_code == 412 and stale.json()["code"] == "PreconditionFailed"
    exists = raw.put(url, params=params, json=body, headers={**headers, "If-None-Match": "*"}, timeout=10)
    assert exists.status_code == 412
    malformed = raw.put(url, params=params, data=b"{nope", headers=headers, timeout=10)
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "InvalidRequestContent"
    unauthenticated = raw.get(url, params=params, timeout=10)
    assert unauthenticated.status_code == 401
    assert raw.get(url, params=params, headers=headers, timeout=10).json()["etag"] == created.json()["etag"]

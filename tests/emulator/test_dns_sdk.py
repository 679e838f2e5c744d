"""The official azure-mgmt-dns client against the ARM DNS handler, with the HTTP proxy and Entra ID taken out.

A requests adapter hands each SDK request to `ArmDns.handle` in-process, so these tests pin what the SDK itself
needs from the handler (status codes, body shapes, etag headers, error mapping). The same client through the real
proxy, with real tokens, is in test_dns_proxy.py.
"""
from __future__ import annotations

import io
import time
from typing import Any, Iterator
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.mgmt.dns import DnsManagementClient
from azure.mgmt.dns.models import CaaRecord, CnameRecord, RecordSet, TxtRecord
from requests.structures import CaseInsensitiveDict

from emulator.arm_dns import ArmDns
from emulator.authz import Authorizer
from emulator.dns_store import ZoneStore
from emulator.wire import Principal, Request

SUB, RG, ZONE = "00000000-0000-0000-0000-0000000000bb", "rg-dns", "example.com"
APP = "app-dns-writer"


class _HandlerAdapter(requests.adapters.BaseAdapter):
    """Serves requests from an emulator handler; the bearer token is taken as the caller's app id."""

    def __init__(self, arm: ArmDns) -> None:
        super().__init__()
        self.arm = arm

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        url = urlsplit(request.url or "")
        token = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        body = request.body.encode() if isinstance(request.body, str) else (request.body or b"")
        answer = self.arm.handle(Request(
            str(request.method), url.hostname or "", unquote(url.path), dict(parse_qsl(url.query)),
            {k.lower(): v for k, v in request.headers.items()}, body,
            Principal(token, "tenant", "https://management.azure.com") if token else None,
        ))
        response = requests.Response()
        response.status_code, response._content = answer.status, answer.body
        response.headers = CaseInsensitiveDict(answer.headers)
        response.url, response.request, response.encoding = request.url, request, "utf-8"
        response.raw = urllib3.HTTPResponse(io.BytesIO(answer.body), answer.headers, answer.status,
                                            preload_content=False)
        return response

    def close(self) -> None:
        pass


class _AppToken:
    def __init__(self, app_id: str) -> None:
        self.app_id = app_id

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        assert scopes == ("https://management.azure.com/.default",)
        return AccessToken(self.app_id, int(time.time()) + 3600)


@pytest.fixture()
def store() -> ZoneStore:
    s = ZoneStore()
    s.create_zone(SUB, RG, ZONE)
    return s


@pytest.fixture()
def authz() -> Authorizer:
    a = Authorizer()
    a.assign(APP, "DNS Zone Contributor", f"/subscriptions/{SUB}/resourceGroups/{RG}")
    return a


@pytest.fixture()
def client(store: ZoneStore, authz: Authorizer) -> Iterator[DnsManagementClient]:
    session = requests.Session()
    session.mount("https://", _HandlerAdapter(ArmDns(store, authz)))
    with DnsManagementClient(_AppToken(APP), SUB, transport=RequestsTransport(session=session),
                             retry_total=0) as dns_client:
        yield dns_client


def test_zone_get(client: DnsManagementClient) -> None:
    zone = client.zones.get(RG, ZONE)
    assert zone.name == ZONE and zone.name_servers and zone.number_of_record_sets == 2
    assert zone.id.endswith(f"/providers/Microsoft.Network/dnszones/{ZONE}")
    assert [z.name for z in client.zones.list_by_resource_group(RG)] == [ZONE]
    with pytest.raises(ResourceNotFoundError):
        client.zones.get(RG, "absent.test")


def test_txt_lifecycle_with_etags(client: DnsManagementClient) -> None:
    params = RecordSet(ttl=60, txt_records=[TxtRecord(value=["token-a"]), TxtRecord(value=["token-b"])],
                       metadata={"owner": "keyvault-acme"})
    created = client.record_sets.create_or_update(RG, ZONE, "_acme-challenge.www", "TXT", params, if_none_match="*")
    assert created.fqdn == "_acme-challenge.www.example.com." and created.provisioning_state == "Succeeded"
    assert sorted(v for r in created.txt_records for v in r.value) == ["token-a", "token-b"]
    assert created.etag and created.metadata == {"owner": "keyvault-acme"}

    with pytest.raises(HttpResponseError) as conflict:
        client.record_sets.create_or_update(RG, ZONE, "_acme-challenge.www", "TXT", params, if_none_match="*")
    assert conflict.value.status_code == 412 and conflict.value.error.code == "PreconditionFailed"

    params.txt_records = [TxtRecord(value=["token-c"])]
    updated = client.record_sets.create_or_update(RG, ZONE, "_acme-challenge.www", "TXT", params,
                                                  if_match=created.etag)
    assert updated.etag != created.etag and updated.txt_records[0].value == ["token-c"]
    with pytest.raises(HttpResponseError) as stale:
        client.record_sets.create_or_update(RG, ZONE, "_acme-challenge.www", "TXT", params, if_match=created.etag)
    assert stale.value.status_code == 412

    got = client.record_sets.get(RG, ZONE, "_acme-challenge.www", "TXT")
    assert got.etag == updated.etag and got.ttl == 60
    listed = [rs.name for rs in client.record_sets.list_by_type(RG, ZONE, "TXT")]
    assert listed == ["_acme-challenge.www"]
    all_sets = {(rs.name, rs.type.rsplit("/", 1)[1]) for rs in client.record_sets.list_all_by_dns_zone(RG, ZONE)}
    assert all_sets == {("@", "SOA"), ("@", "NS"), ("_acme-challenge.www", "TXT")}

    client.record_sets.delete(RG, ZONE, "_acme-challenge.www", "TXT", if_match=updated.etag)
    with pytest.raises(ResourceNotFoundError):
        client.record_sets.get(RG, ZONE, "_acme-challenge.www", "TXT")
    client.record_sets.delete(RG, ZONE, "_acme-challenge.www", "TXT")  # deleting what is gone is not an error


def test_paging_follows_next_link(client: DnsManagementClient) -> None:
    for i in range(5):
        client.record_sets.create_or_update(RG, ZONE, f"r{i}", "TXT", RecordSet(ttl=60, txt_records=[
            TxtRecord(value=[str(i)])]))
    assert [rs.name for rs in client.record_sets.list_by_type(RG, ZONE, "TXT", top=2)] == [f"r{i}" for i in range(5)]


def test_cname_and_caa(client: DnsManagementClient) -> None:
    cname = client.record_sets.create_or_update(RG, ZONE, "_acme-challenge.app", "CNAME", RecordSet(
        ttl=60, cname_record=CnameRecord(cname="_acme-challenge.app.validation.example.org")))
    assert cname.cname_record.cname == "_acme-challenge.app.validation.example.org"
    caa = client.record_sets.create_or_update(RG, ZONE, "@", "CAA", RecordSet(
        ttl=300, caa_records=[CaaRecord(flags=0, tag="issue", value="letsencrypt.org")]))
    assert caa.caa_records[0].value == "letsencrypt.org" and caa.fqdn == "example.com."


def test_denied_write_surfaces_as_authorization_failed(client: DnsManagementClient, authz: Authorizer) -> None:
    for assignment in authz.assignments(APP):
        authz.unassign(assignment.id)
    authz.assign(APP, "Reader", f"/subscriptions/{SUB}")
    assert client.zones.get(RG, ZONE).name == ZONE
    with pytest.raises(HttpResponseError) as denied:
        client.record_sets.create_or_update(RG, ZONE, "x", "TXT", RecordSet(ttl=60, txt_records=[
            TxtRecord(value=["v"])]))
    assert denied.value.status_code == 403 and denied.value.error.code == "AuthorizationFailed"

"""More of the emulator's answers measured against real Azure: ARM DNS api-versions, zone preconditions, zone
deletion as a long-running operation the SDK's poller follows, ARM request ids, a completed certificate operation,
keys' hsmPlatform, Entra's client-credentials scopes, and the admin URL the CLI prints."""
from __future__ import annotations

import base64
import uuid

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential
from azure.keyvault.certificates import CertificateClient, CertificatePolicy
from azure.keyvault.keys import KeyClient
from azure.mgmt.dns import DnsManagementClient

from emulator.admin_client import AdminClient
from emulator.entra import LOGIN_HOST

from .helpers import API, LocalCA, bearer

MGMT = "https://management.azure.com"
ARM_AUDIENCE = "https://management.azure.com"
RG = "rg-fidelity"


@pytest.fixture
def zone(emu):
    created = emu.admin.add_zone(f"f{uuid.uuid4().hex[:10]}.test", str(uuid.uuid4()), RG)
    yield created
    if any(z["name"] == created["name"] for z in emu.admin.call("GET", "/admin/zones")["value"]):
        emu.admin.delete_zone(created["name"])


@pytest.fixture
def arm(raw, emu, root_app):
    auth = bearer(emu, root_app["client_id"], ARM_AUDIENCE)

    def call(method, path, body=None, version="2018-05-01", headers=None):
        return raw.request(method, MGMT + path, params={"api-version": version}, json=body,
                           headers={**auth, **(headers or {})})
    return call


def test_the_dotnet_and_powershell_api_version_is_served(arm, zone):
    got = arm("GET", zone["id"], version="2023-07-01-preview")
    assert got.status_code == 200, got.text
    assert got.json()["name"] == zone["name"]


def test_zone_put_preconditions_are_412(arm, zone):
    exists = arm("PUT", zone["id"], {"location": "global"}, headers={"If-None-Match": "*"})
    assert exists.status_code == 412 and exists.json()["code"] == "PreconditionFailed", exists.text
    assert zone["name"] in exists.json()["message"]
    stale = arm("PUT", zone["id"], {"location": "global"}, headers={"If-Match": '"not-the-etag"'})
    assert stale.status_code == 412
    etag = arm("GET", zone["id"]).json()["etag"]
    assert arm("PUT", zone["id"], {"location": "global", "tags": {"a": "b"}}, headers={"If-Match": etag}).status_code == 200
    fresh = zone["id"].rsplit("/", 1)[0] + f"/n{uuid.uuid4().hex[:8]}.test"
    assert arm("PUT", fresh, {"location": "global"}, headers={"If-None-Match": "*"}).status_code == 201
    assert arm("DELETE", fresh).status_code == 202


def test_zone_delete_is_a_long_running_operation(arm, zone):
    deleted = arm("DELETE", zone["id"])
    assert deleted.status_code == 202, deleted.text
    assert {"Azure-AsyncOperation", "Location", "Retry-After"} <= set(deleted.headers)
    auth = {"Authorization": deleted.request.headers["Authorization"]}
    status = requests.get(deleted.headers["Azure-AsyncOperation"], headers=auth, timeout=10)
    assert status.status_code == 200 and status.json()["status"] == "Succeeded"
    assert requests.get(deleted.headers["Location"], headers=auth, timeout=10).status_code == 204
    assert arm("GET", zone["id"]).status_code == 404
    assert arm("DELETE", zone["id"]).status_code == 204  # nothing left to delete


def test_the_sdks_zone_delete_poller_completes(azure_env, emu, zone):
    app = emu.admin.add_client(name="zone-owner", roles=[("DNS Zone Contributor", zone["id"])])
    credential = ClientSecretCredential(app["tenant_id"], app["client_id"], app["secret"])
    with DnsManagementClient(credential, zone["subscriptionId"], retry_total=0) as client:
        poller = client.zones.begin_delete(RG, zone["name"])
        poller.result(timeout=30)
        assert poller.done() and poller.status().lower() == "succeeded"
    assert zone["name"] not in [z["name"] for z in emu.admin.call("GET", "/admin/zones")["value"]]


def test_arm_answers_carry_a_request_id(arm, zone):
    for response in (arm("GET", zone["id"]), arm("GET", zone["id"] + "-missing"), arm("GET", zone["id"], version="1999-01-01")):
        assert response.headers.get("x-ms-request-id"), response.status_code
        assert response.headers.get("x-ms-correlation-request-id")


def test_a_completed_certificate_keeps_its_pending_operation(raw, emu, root_app, vault_url):
    auth = bearer(emu, root_app["client_id"])

    def kv(method, path, body=None):
        return raw.request(method, vault_url + path, params=API, headers=auth, json=body)

    policy = {"policy": {"x509_props": {"subject": "CN=done.example", "sans": {"dns_names": ["done.example"]}},
                         "issuer": {"name": "Unknown"}}}
    created = kv("POST", "certificates/Done/create", policy).json()
    chain = LocalCA().chain_der(base64.b64decode(created["csr"]))
    merged = kv("POST", "certificates/Done/pending/merge", {"x5c": [base64.b64encode(c).decode() for c in chain]})
    assert merged.status_code == 201 and merged.json()["pending"]["id"].endswith("/certificates/Done/pending")
    operation = kv("GET", "certificates/Done/pending")
    assert operation.status_code == 200, operation.text
    assert operation.json()["status"] == "completed"
    assert operation.json()["target"] == vault_url.rstrip("/") + "/certificates/Done"
    assert "csr" in operation.json() and "status_details" not in operation.json()
    assert kv("GET", "certificates/Done/").json()["pending"]["id"].endswith("/certificates/Done/pending")
    assert kv("DELETE", "certificates/Done/pending").status_code == 200
    assert kv("GET", "certificates/Done/pending").status_code == 404
    assert "pending" not in kv("GET", "certificates/Done/").json()
    # A new version starts a new operation over the completed one.
    assert kv("POST", "certificates/Done/create", policy).json()["status"] == "inProgress"


def test_the_sdk_reads_a_completed_operation(credential, vault_url):
    client = CertificateClient(vault_url, credential)
    client.begin_create_certificate("SelfDone", CertificatePolicy.get_default()).result()
    operation = client.get_certificate_operation("SelfDone")
    assert operation.status == "completed" and operation.target.endswith("/certificates/SelfDone")


def test_keys_carry_hsm_platform(credential, vault_url):
    key = KeyClient(vault_url, credential).create_ec_key("plain")
    assert key.properties.hsm_platform == "0"


def test_client_credentials_take_only_a_default_scope(azure_env, root_app):
    credential = ClientSecretCredential(root_app["tenant_id"], root_app["client_id"], root_app["secret"])
    assert credential.get_token("https://vault.azure.net/.default").token
    with pytest.raises(ClientAuthenticationError, match="AADSTS1002012"):
        credential.get_token("https://vault.azure.net/user_impersonation")
    answer = requests.post(f"https://{LOGIN_HOST}/{root_app['tenant_id']}/oauth2/v2.0/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": root_app["client_id"], "client_secret": root_app["secret"],
        "scope": "https://management.azure.com/user_impersonation"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_scope"


def test_the_admin_url_the_cli_prints_works_with_admin_client(emu):
    admin_url = emu.proxy_url + "/admin"  # what `python -m emulator` prints as admin_url
    assert AdminClient(admin_url).health() == AdminClient(emu.proxy_url).health()
    assert requests.get(admin_url + "/health", timeout=10, proxies={"http": "", "https": ""}).status_code == 200


def test_a_name_with_a_trailing_newline_is_refused_as_key_vault_does(raw, emu, root_app, vault_url):
    auth = bearer(emu, root_app["client_id"])
    answer = raw.put(vault_url + "secrets/name%0A", params=API, headers=auth, json={"value": "v"})
    assert answer.status_code == 400 and "invalid name" in answer.json()["error"]["message"]
    assert raw.put(vault_url + "secrets/name", params=API, headers=auth, json={"value": "v"}).status_code == 200

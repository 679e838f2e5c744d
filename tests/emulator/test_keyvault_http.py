"""Raw HTTP through the proxy: the error paths the SDKs hide (401, 403, 409, 412, 429) and bad requests."""
from __future__ import annotations

import base64
import http.client
import json
import ssl
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from emulator.entra import DEFAULT_TENANT

from .helpers import API, LocalCA, bearer

CHALLENGE = (f'Bearer authorization="https://login.microsoftonline.com/{DEFAULT_TENANT}", '
             'resource="https://vault.azure.net"')
POLICY = {"policy": {"issuer": {"name": "Unknown"}, "x509_props": {"subject": "CN=raw.example"},
                     "key_props": {"kty": "EC", "crv": "P-256"}}}


def _create(raw, vault_url, auth, name="raw", body=POLICY):
    return raw.post(f"{vault_url}certificates/{name}/create", params=API, json=body, headers=auth)


@pytest.mark.parametrize("body", [b"", b"{not json", json.dumps(POLICY).encode()], ids=["empty", "malformed", "valid"])
def test_unauthenticated_requests_get_the_challenge_before_any_validation(raw, emu, root_app, vault_url, body):
    response = raw.post(f"{vault_url}certificates/raw/create", params=API, data=body)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert response.json()["error"]["code"] == "Unauthorized"
    # Nothing was created by the rejected request.
    got = raw.get(f"{vault_url}certificates/raw/pending", params=API, headers=bearer(emu, root_app["client_id"]))
    assert got.status_code == 404 and got.json()["error"]["code"] == "PendingCertificateNotFound"


@pytest.mark.parametrize("audience,lifetime", [("https://management.azure.com", 3600), ("https://vault.azure.net", -60)],
                         ids=["wrong-audience", "expired"])
def test_bad_tokens_get_the_challenge(raw, emu, root_app, vault_url, audience, lifetime):
    response = _create(raw, vault_url, bearer(emu, root_app["client_id"], audience, lifetime))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == CHALLENGE


def test_a_forged_token_gets_the_challenge(raw, vault_url, emu, root_app):
    header, payload, _ = bearer(emu, root_app["client_id"])["Authorization"][7:].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["appid"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = _create(raw, vault_url, {"Authorization": f"Bearer {header}.{forged}.{_}"})
    assert response.status_code == 401


def test_create_while_pending_conflicts(raw, emu, root_app, vault_url):
    auth = bearer(emu, root_app["client_id"])
    first = _create(raw, vault_url, auth)
    assert first.status_code == 202
    assert first.headers["Retry-After"] == "10"
    assert first.headers["Location"].startswith(f"{vault_url}certificates/raw/pending?api-version=2025-07-01")
    second = _create(raw, vault_url, auth)
    assert second.status_code == 409 and second.json()["error"]["code"] == "Conflict"


@pytest.mark.parametrize("encode", [
    lambda der: base64.b64encode(der).decode(),
    lambda der: base64.b64encode(base64.b64encode(der)).decode(),
    lambda der: base64.b64encode(der).decode().join(["-----BEGIN CERTIFICATE-----\n", "\n-----END CERTIFICATE-----\n"]),
], ids=["base64-der", "base64-of-base64", "pem"])
def test_merge_accepts_each_encoding_clients_send(raw, emu, root_app, vault_url, encode):
    auth = bearer(emu, root_app["client_id"])
    csr = base64.b64decode(_create(raw, vault_url, auth).json()["csr"])
    chain = LocalCA().chain_der(csr)
    response = raw.post(f"{vault_url}certificates/raw/pending/merge", params=API, headers=auth,
                        json={"x5c": [encode(der) for der in chain]})
    assert response.status_code == 201, response.text
    assert base64.b64decode(response.json()["cer"]) == chain[0]


def test_merge_of_pem_bundle_in_one_entry(raw, emu, root_app, vault_url):
    auth = bearer(emu, root_app["client_id"])
    csr = base64.b64decode(_create(raw, vault_url, auth).json()["csr"])
    ca = LocalCA()
    pem = ca.sign(csr).public_bytes(serialization.Encoding.PEM) + ca.cert.public_bytes(serialization.Encoding.PEM)
    response = raw.post(f"{vault_url}certificates/raw/pending/merge", params=API, headers=auth,
                        json={"x5c": [pem.decode()]})
    assert response.status_code == 201, response.text


def test_concurrent_creates_of_one_certificate_yield_one_operation(azure_env, emu, root_app, vault_url):
    auth = bearer(emu, root_app["client_id"])
    body = {"policy": {"issuer": {"name": "Unknown"}, "x509_props": {"subject": "CN=race"},
                       "key_props": {"kty": "RSA", "key_size": 3072}}}

    def create(_: int) -> int:
        with requests.Session() as session:
            return session.post(f"{vault_url}certificates/race/create", params=API, json=body, headers=auth).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(create, range(4)))
    assert statuses == [202, 409, 409, 409]


def test_one_tls_tunnel_carries_many_requests(emu, root_app, vault_url):
    host = vault_url.split("//")[1].rstrip("/")
    context = ssl.create_default_context(cafile=emu.ca_bundle_path)
    conn = http.client.HTTPSConnection("127.0.0.1", emu.proxy_port, context=context, timeout=10)
    conn.set_tunnel(host, 443)
    headers = bearer(emu, root_app["client_id"])
    try:
        statuses, closing = [], []
        for _ in range(5):
            conn.request("GET", "/certificates/?api-version=2025-07-01", headers=headers)
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
            closing.append(response.will_close)
    finally:
        conn.close()
    assert statuses == [200] * 5
    assert closing == [False] * 5  # keep-alive: one CONNECT and one TLS handshake serve them all

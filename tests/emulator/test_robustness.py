"""Faults on demand, bad requests, persistence across restarts and the `python -m emulator` process."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import requests
from azure.identity import ClientSecretCredential
from azure.keyvault.certificates import CertificateClient, CertificatePolicy

from emulator.admin_client import AdminError
from emulator.proxy import MAX_BODY
from emulator.server import Emulator

from .helpers import API, LocalCA, bearer

POLICY = {"policy": {"issuer": {"name": "Unknown"}, "x509_props": {"subject": "CN=f.example"}}}


@pytest.fixture
def auth(emu, root_app):
    return bearer(emu, root_app["client_id"])


@pytest.fixture(autouse=True)
def _no_faults_left(emu):
    yield
    emu.admin.clear_faults()


def _vault_host(vault_url: str) -> str:
    return vault_url.split("//")[1].rstrip("/")


def test_throttling_answers_429_with_retry_after_for_n_calls(raw, emu, auth, vault_url):
    emu.admin.add_fault(host=_vault_host(vault_url), path="/certificates/*", status=429, retry_after=7, count=2)
    for _ in range(2):
        response = raw.get(f"{vault_url}certificates/x/", params=API, headers=auth)
        assert response.status_code == 429 and response.headers["Retry-After"] == "7"
        assert response.json()["error"]["code"] == "Throttled"
    assert raw.get(f"{vault_url}certificates/x/", params=API, headers=auth).status_code == 404
    assert emu.admin.faults() == []


def test_the_sdk_rides_out_a_throttle_and_a_server_error(credential, emu, vault_url):
    emu.admin.add_fault(host=_vault_host(vault_url), method="POST", status=429, retry_after=0, count=1)
    emu.admin.add_fault(host=_vault_host(vault_url), method="POST", status=503, retry_after=0, count=1)
    certs = CertificateClient(vault_url, credential)
    assert certs.begin_create_certificate("f", CertificatePolicy(issuer_name="Unknown", subject="CN=f")).result()
    assert emu.admin.faults() == []


@pytest.mark.parametrize("status,code", [(500, "InternalServerError"), (503, "ServiceUnavailable")])
def test_server_errors_on_one_path_only(raw, emu, auth, vault_url, status, code):
    emu.admin.add_fault(path="*/pending/merge", status=status)
    merge = raw.post(f"{vault_url}certificates/f/pending/merge", params=API, headers=auth, json={"x5c": ["x"]})
    assert merge.status_code == status and merge.json()["error"]["code"] == code
    assert raw.post(f"{vault_url}certificates/f/create", params=API, headers=auth, json=POLICY).status_code == 202


def test_latency_delays_then_serves(raw, emu, auth, vault_url):
    emu.admin.add_fault("latency", host=_vault_host(vault_url), latency_ms=50, count=1)
    assert raw.get(f"{vault_url}certificates/x/", params=API, headers=auth).status_code == 404
    assert emu.admin.faults() == []


def test_read_only_failover_rejects_writes_but_serves_reads(raw, emu, auth, vault_url):
    assert raw.post(f"{vault_url}certificates/ro/create", params=API, headers=auth, json=POLICY).status_code == 202
    emu.admin.add_fault("readonly", host="*.vault.azure.net")
    write = raw.post(f"{vault_url}certificates/other/create", params=API, headers=auth, json=POLICY)
    assert write.status_code == 503 and write.json()["error"] == {
        "code": "ServiceUnavailable",
        "message": 'Operation "CertificateCreate" is unavailable: the service is currently in a read-only state.'}
    assert raw.get(f"{vault_url}certificates/ro/pending", params=API, headers=auth).status_code == 200
    emu.admin.clear_faults()
    assert raw.post(f"{vault_url}certificates/other/create", params=API, headers=auth, json=POLICY).status_code == 202


@pytest.mark.parametrize("method,path,name", [
    ("PUT", "/secrets/s", "SecretSet"),
    ("POST", "/certificates/c/create", "CertificateCreate"),
    ("POST", "/certificates/c/pending/merge", "CertificatePendingMerge"),
    ("PATCH", "/certificates/c/0123", "CertificateUpdate"),
    ("DELETE", "/secrets/s", "SecretDelete"),
    ("DELETE", "/deletedsecrets/s", "SecretPurge"),
    ("POST", "/deletedsecrets/s/recover", "SecretRecover"),
])
def test_writes_are_named_as_key_vault_names_them(method, path, name):
    from emulator.faults import operation_name
    from emulator.wire import Request

    assert operation_name(Request(method, "v.vault.azure.net", path, {}, {})) == name


@pytest.mark.parametrize("method,path,kwargs,status,code", [
    ("GET", "certificates/unknown/", {}, 404, "CertificateNotFound"),
    ("GET", "certificates/unknown/0123456789abcdef0123456789abcdef", {}, 404, "CertificateNotFound"),
    ("GET", "keys/unknown/", {}, 404, "KeyNotFound"),
    ("GET", "secrets/unknown/", {}, 404, "SecretNotFound"),
    ("GET", "deletedcertificates/unknown", {}, 404, "CertificateNotFound"),
    ("POST", "certificates/x/pending/merge", {"json": {"x5c": ["AA=="]}}, 404, "PendingCertificateNotFound"),
    ("POST", "certificates/x/create", {"data": b"{not json"}, 400, "BadParameter"),
    ("POST", "certificates/x/create", {"json": []}, 400, "BadParameter"),
    ("POST", "certificates/x/create", {"json": {"policy": {"x509_props": {"subject": "CN=x"}}}}, 400, "BadParameter"),
    ("POST", "certificates/x/create", {"json": {"policy": {"issuer": {"name": "Unknown"}, "key_props": {
        "kty": "RSA", "key_size": 1024}, "x509_props": {"subject": "CN=x"}}}}, 400, "BadParameter"),
    ("POST", "certificates/x/create", {"data": json.dumps(POLICY), "headers": {"Content-Type": "text/plain"}},
     415, "UnsupportedMediaType"),
    ("GET", "certificates/..%2F..%2Fsecrets%2Fx/", {}, 400, "BadParameter"),
    ("GET", "certificates/x%2F..%2F..%2Fsecrets%2Fx", {}, 400, "BadParameter"),
    ("GET", "certificates/../secrets/x/", {}, 400, "BadParameter"),
    ("GET", "certificates/bad_name/", {}, 400, "BadParameter"),
    ("GET", "certificates/x/not-a-version", {}, 400, "BadParameter"),
    ("GET", "nothing/here", {}, 404, "NotFound"),
    ("POST", "certificates/x/create", {"data": b"x" * (MAX_BODY + 1)}, 413, "RequestEntityTooLarge"),
])
def test_bad_requests_get_azures_errors_and_the_emulator_keeps_serving(raw, emu, auth, vault_url,
                                                                       method, path, kwargs, status, code):
    headers = {**auth, **kwargs.pop("headers", {})}
    url = f"{vault_url}{path}"
    if ".." in path:  # requests would normalise the dots away; send them as written
        req = requests.Request(method, url, params=API, headers=headers, **kwargs).prepare()
        req.url = url + "?api-version=" + API["api-version"]
        response = raw.send(req, **raw.merge_environment_settings(req.url, {}, None, None, None))
    else:
        response = raw.request(method, url, params=API, headers=headers, **kwargs)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert raw.get(f"{vault_url}certificates/", params=API, headers=auth).status_code == 200


def test_missing_api_version(raw, auth, vault_url):
    response = raw.get(f"{vault_url}certificates/x/", headers=auth)
    assert response.status_code == 400 and response.json()["error"]["code"] == "BadParameter"


def test_hosts_outside_azure_are_refused_by_the_proxy(emu):
    with socket.create_connection(("127.0.0.1", emu.proxy_port), timeout=5) as sock:
        sock.sendall(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 403")


def test_state_survives_a_restart(tmp_path, monkeypatch):
    state = tmp_path / "state"
    ca = LocalCA()
    with Emulator(state_dir=state) as first:
        for key, value in first.environ().items():
            monkeypatch.setenv(key, value)
        app = first.admin.add_root_client(client_id="persisted-app", secret="s3cret")
        first.admin.register_vault("persisted", "sub-1", "rg-1")
        certs = CertificateClient("https://persisted.vault.azure.net/", ClientSecretCredential(
            app["tenant_id"], app["client_id"], app["secret"]))
        certs.begin_create_certificate("c", CertificatePolicy(issuer_name="Unknown", subject="CN=c")).result()
        csr = certs.get_certificate_operation("c").csr
        bundle = first.ca_bundle_path
        port = first.proxy_port

    with Emulator(state_dir=state, proxy_port=port) as second:
        assert second.ca_bundle_path == bundle  # clients keep trusting the same CA
        certs = CertificateClient("https://persisted.vault.azure.net/", ClientSecretCredential(
            app["tenant_id"], "persisted-app", "s3cret"))
        merged = certs.merge_certificate("c", ca.chain_der(csr))  # the pending key survived
        assert certs.get_certificate("c").cer == merged.cer
        assert second.admin.register_vault("persisted", "sub-1", "rg-1")["id"].endswith("/vaults/persisted")


def test_python_dash_m_emulator_runs_until_sigterm(tmp_path):
    ca_out = tmp_path / "ca.pem"
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "--state-dir", str(tmp_path / "s"),
                             "--ca-bundle-out", str(ca_out)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        where = json.loads(proc.stdout.readline())
        assert ca_out.read_text().startswith("-----BEGIN CERTIFICATE-----")
        health = requests.get(where["admin_url"] + "/health", proxies={"http": "", "https": ""}, timeout=5)
        assert health.json()["ok"] is True and where["dns_address"][1] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert (tmp_path / "s" / "state.json").exists()


def test_admin_api_errors_are_explicit(emu):
    with pytest.raises(AdminError) as unknown_role:
        emu.admin.assign_role("someone", "No Such Role", "/")
    assert unknown_role.value.status == 400 and "No Such Role" in str(unknown_role.value)
    with pytest.raises(AdminError) as bad_kind:
        emu.admin.add_fault("earthquake")
    assert bad_kind.value.status == 400
    with pytest.raises(AdminError) as missing:
        emu.admin.call("GET", "/admin/nothing")
    assert missing.value.status == 404
    assert emu.admin.health()["ok"] is True

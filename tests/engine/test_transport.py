"""The engine's HTTP session: proxy and CA settings resolved once per origin, CA bundles loaded once, TLS intact."""

import contextlib
import http.server
import socket
import ssl
import threading
import warnings

import pytest
import requests

from emulator.tls import TestCA
from keyvault_acme.transport import Adapter, Session, new_session, verifying_context

PROXY = "http://proxy.corp.example:3128"


@pytest.fixture
def env(monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY",
                "all_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,.internal.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp/ca.pem")
    return monkeypatch


def settings(session, url, verify=True, proxies=None):
    return session.merge_environment_settings(url, proxies or {}, None, verify, None)


def test_answers_what_requests_would(env):
    ours, theirs = Session(), requests.Session()
    for url in ("https://vault.vault.azure.net/certificates/a", "https://127.0.0.1:14000/dir",
                "https://ca.internal.example/dir", "http://plain.example/"):
        assert settings(ours, url) == settings(theirs, url), url


def test_no_proxy_still_applies_per_origin(env):
    session = Session()
    assert settings(session, "https://acme.example/dir")["proxies"]["https"] == PROXY
    assert "https" not in settings(session, "https://ca.internal.example/dir")["proxies"]
    assert settings(session, "https://acme.example/order/1")["proxies"]["https"] == PROXY


def test_the_environment_is_read_once_per_origin(env):
    session = Session()
    first = settings(session, "https://acme.example/dir")
    env.setenv("HTTPS_PROXY", "http://other.example:8080")
    env.setenv("REQUESTS_CA_BUNDLE", "/elsewhere.pem")
    again = settings(session, "https://acme.example/order/2")
    assert again == first and again["verify"] == "/etc/corp/ca.pem"
    # A new origin (or a new process) sees the environment as it is now.
    other = settings(session, "https://other-ca.example/dir")
    assert other["proxies"]["https"] == "http://other.example:8080" and other["verify"] == "/elsewhere.pem"


def test_explicit_arguments_are_part_of_the_answer(env):
    session = Session()
    assert settings(session, "https://acme.example/dir")["verify"] == "/etc/corp/ca.pem"
    assert settings(session, "https://acme.example/dir", verify=False)["verify"] is False
    explicit = {"https": "http://explicit.example:1"}
    assert settings(session, "https://acme.example/dir", proxies=explicit)["proxies"]["https"] == explicit["https"]


def test_callers_may_change_what_they_get(env):
    session = Session()
    settings(session, "https://acme.example/dir")["proxies"].clear()
    assert settings(session, "https://acme.example/dir")["proxies"]["https"] == PROXY


def test_new_session_keeps_nodelay_through_proxies():
    session = new_session(pool_maxsize=3)
    adapter = session.get_adapter("https://vault.vault.azure.net/")
    assert isinstance(adapter, Adapter) and adapter._pool_maxsize == 3
    manager = adapter.proxy_manager_for(PROXY)
    assert (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) in manager.connection_pool_kw["socket_options"]


# -- TLS: one verifying context per CA bundle, and verification intact --------------------------------------
@pytest.fixture
def no_proxy_env(monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
                "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)


@contextlib.contextmanager
def https_server(tmp_path, served_as: str):
    """An HTTPS server on loopback presenting a certificate for ``served_as``; yields (url, CA bundle path)."""
    ca = TestCA(tmp_path / "ca")

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    server.socket = ca.context_for(served_as).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/", str(ca.bundle_path)
    finally:
        server.shutdown()
        server.server_close()


def test_a_ca_bundle_is_loaded_once_and_still_verifies(tmp_path, no_proxy_env, monkeypatch):
    loads = []
    load = ssl.SSLContext.load_verify_locations

    def counted(self, cafile=None, *args, **kwargs):
        loads.append(cafile)
        return load(self, cafile, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    with https_server(tmp_path, "127.0.0.1") as (url, bundle):
        verifying_context.cache_clear()
        for _ in range(2):  # two sessions, two connections
            with new_session() as session:
                assert session.get(url, verify=bundle, timeout=5).text == "ok"
        assert verifying_context.cache_info().misses == 1
        # Parsed once per process: not again into the shared context at each new connection.
        assert loads.count(bundle) == 1


def test_a_certificate_for_another_host_is_refused(tmp_path, no_proxy_env):
    with https_server(tmp_path, "other.example") as (url, bundle), new_session() as session:
        with pytest.raises(requests.exceptions.SSLError):
            session.get(url, verify=bundle, timeout=5)


def test_a_certificate_from_another_ca_is_refused(tmp_path, no_proxy_env):
    other = TestCA(tmp_path / "other-ca")
    with https_server(tmp_path, "127.0.0.1") as (url, _), new_session() as session:
        with pytest.raises(requests.exceptions.SSLError):
            session.get(url, verify=str(other.bundle_path), timeout=5)


def test_verify_false_still_means_no_verification(tmp_path, no_proxy_env):
    with https_server(tmp_path, "other.example") as (url, _), new_session() as session, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning: the point of this test
        assert session.get(url, verify=False, timeout=5).text == "ok"

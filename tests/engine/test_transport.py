"""The engine's HTTP session: the environment's proxy and CA settings, resolved once per origin."""

import socket

import pytest
import requests

from keyvault_acme.transport import ProxyNoDelayAdapter, Session, new_session

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
    assert isinstance(adapter, ProxyNoDelayAdapter) and adapter._pool_maxsize == 3
    manager = adapter.proxy_manager_for(PROXY)
    assert (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) in manager.connection_pool_kw["socket_options"]

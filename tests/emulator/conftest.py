"""Fixtures for the emulator's own tests: one emulator per session, the proxy environment per test.

The environment is set per test (monkeypatch), not per session, so other suites that point
REQUESTS_CA_BUNDLE elsewhere are never disturbed.
"""
from __future__ import annotations

import uuid
from typing import Iterator

import pytest
import requests
from azure.identity import ClientSecretCredential

from emulator.server import Emulator


@pytest.fixture(scope="session")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def azure_env(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    for key in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "HTTP_PROXY", "http_proxy",
                "https_proxy", "no_proxy", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in emu.environ().items():
        monkeypatch.setenv(key, value)
    return emu


@pytest.fixture(scope="session")
def root_app(emu: Emulator) -> dict:
    """An app allowed everything: for tests that are not about authorization."""
    return emu.admin.add_root_client(name="root")


@pytest.fixture
def credential(azure_env: Emulator, root_app: dict) -> ClientSecretCredential:
    return ClientSecretCredential(root_app["tenant_id"], root_app["client_id"], root_app["secret"])


@pytest.fixture
def vault_url() -> str:
    """A fresh vault per test (vaults exist on first use), so tests never see each other's objects."""
    return f"https://t{uuid.uuid4().hex[:12]}.vault.azure.net/"


@pytest.fixture
def raw(azure_env: Emulator) -> requests.Session:
    """A plain HTTP client through the proxy, for the error paths the SDKs hide."""
    session = requests.Session()
    session.headers["Content-Type"] = "application/json"
    return session

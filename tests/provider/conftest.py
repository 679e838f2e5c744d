"""Fixtures for the provider tests: the serialised provider as a program registers it, and provider hosts."""
from __future__ import annotations

import pytest

from providers import Certificate
from tests.provider.host import ProviderHost
from tests.provider.programs import run_program

ZONE_ID = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/dns-rg"
           "/providers/Microsoft.Network/dnszones/example.com")
INPUTS = {"vault_url": "https://kv-web-dev.vault.azure.net/", "name": "www", "dns_names": ["www.example.com"],
          "zones": [{"resource_id": ZONE_ID}]}


@pytest.fixture(scope="session")
def serialized_provider() -> str:
    """``__provider`` exactly as a program registers it (and the engine, not accepting secrets, sends it)."""
    [registered] = run_program(lambda: Certificate("web", **INPUTS))
    return registered.plain_inputs()["__provider"]


@pytest.fixture(scope="session")
def offline_host(tmp_path_factory):
    """A provider host with no Azure, CA or DNS: enough for check and diff."""
    with ProviderHost(tmp_path_factory.mktemp("offline-host")) as host:
        host.configure({})
        yield host

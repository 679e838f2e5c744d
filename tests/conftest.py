"""Session-wide real services: the Azure emulator, BIND 9 and Pebble start once per test session and
always stop. BIND forwards the emulator's Azure DNS zones (``dns_forwards``), so one Pebble resolving
through BIND validates names in both DNS worlds; ``ca_bundle`` trusts Pebble's and the emulator's CAs.
"""
from __future__ import annotations

import pytest

from tests import services


@pytest.fixture(scope="session")
def emulator():
    """The Azure emulator (Key Vault, Azure DNS, Entra ID behind an HTTPS proxy), once per session."""
    with services.emulator_server() as emu:
        yield emu


@pytest.fixture(scope="session")
def dns_forwards(emulator) -> dict[str, tuple[str, int]]:
    """Zones BIND forwards to another DNS world (the emulator's Azure DNS), so Pebble sees them."""
    return {zone: emulator.dns_address for zone in (*services.AZURE_ZONES, services.CLOUDFLARE_ZONE)}


@pytest.fixture(scope="session")
def bind(dns_forwards):
    with services.bind_server(forward_zones=dns_forwards) as server:
        yield server


@pytest.fixture(scope="session")
def pebble(bind):
    with services.pebble_server(bind) as server:
        yield server


@pytest.fixture(scope="session")
def pebble_24(bind):
    """Debian 12's own Pebble 2.4 (no ARI, no profiles, no User-Agent rule): proves clean degradation.
    Its TLS certificate comes from the same per-process CA as every Pebble's, so ``ca_bundle`` trusts it."""
    from emulator.pebble import PEBBLE_24_BINARY

    with services.pebble_server(bind, binary=PEBBLE_24_BINARY) as server:
        yield server


@pytest.fixture(scope="session")
def extra_ca_paths(pebble, emulator) -> list[str]:
    """TLS CAs of the local services that HTTPS clients must trust."""
    return [pebble.tls_ca_pem_path, emulator.ca_bundle_path]


@pytest.fixture(scope="session")
def ca_bundle(tmp_path_factory, extra_ca_paths) -> str:
    return services.write_ca_bundle(tmp_path_factory.mktemp("ca") / "bundle.pem", extra_ca_paths)


@pytest.fixture(scope="session")
def loopback_env(ca_bundle):
    """Point every HTTPS client at the combined CA bundle and keep loopback off proxies, for the session."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in services.loopback_env(ca_bundle).items():
            mp.setenv(key, value)
        yield

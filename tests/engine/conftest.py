"""The engine against the whole local world: Azure (the emulator), real Pebble and real BIND 9.

The environment is exactly what production sees, nothing more: HTTPS_PROXY (the emulator), NO_PROXY
(Pebble and BIND on loopback), REQUESTS_CA_BUNDLE (public roots + emulator CA + Pebble's TLS CA) and
the AZURE_* variables of an app registered with the emulator. It is set per test (monkeypatch), so
other suites are not disturbed; the engine itself is shared by the module (its token and account
caches are what production reuses too).
"""
from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from keyvault_acme.lifecycle import Engine
from keyvault_acme.model import (
    AcmeAccount,
    AzureDnsZone,
    CertificateSpec,
    KeySpec,
    Rfc2136Zone,
    SecretRef,
)
from tests import services

AZURE_ZONE = "azure.test"
OTHER_SUB_ZONE = "other-sub.test"


@pytest.fixture(scope="session")
def azure_app(emulator) -> dict[str, Any]:
    return emulator.admin.add_root_client(name="engine-tests")


@pytest.fixture
def azure_env(emulator, pebble, bind, ca_bundle, azure_app, monkeypatch) -> Any:
    for key in ("HTTP_PROXY", "http_proxy", "https_proxy", "no_proxy", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", emulator.proxy_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)
    monkeypatch.setenv("AZURE_TENANT_ID", azure_app["tenant_id"])
    monkeypatch.setenv("AZURE_CLIENT_ID", azure_app["client_id"])
    monkeypatch.setenv("AZURE_CLIENT_SECRET", azure_app["secret"])
    return emulator


@pytest.fixture(scope="session")
def credential(azure_app) -> ClientSecretCredential:
    return ClientSecretCredential(azure_app["tenant_id"], azure_app["client_id"], azure_app["secret"])


@pytest.fixture(scope="module")
def engine(credential) -> Iterator[Engine]:
    yield Engine(credential)


@pytest.fixture(scope="module")
def vault_url() -> str:
    """One vault per module (vaults exist on first use in the emulator); names are unique per test."""
    return f"https://e{uuid.uuid4().hex[:12]}.vault.azure.net"


@dataclass
class World:
    """Builds specs for the local world: Azure DNS zones (two subscriptions) and BIND's zone via RFC 2136."""

    vault_url: str
    directory_url: str
    bind: Any
    emulator: Any
    tsig_ref: SecretRef

    def azure_zones(self) -> tuple[AzureDnsZone, ...]:
        return tuple(AzureDnsZone(services.azure_zone_id(z)) for z in services.AZURE_ZONES)

    def rfc2136_zones(self) -> tuple[Rfc2136Zone, ...]:
        return tuple(Rfc2136Zone(zone=z, server=self.bind.server, tsig_key_name=self.bind.tsig_key_name,
                                 tsig_secret=self.tsig_ref) for z in services.BIND_ZONES)

    def spec(self, names, *, zones: str = "azure", key: KeySpec = KeySpec(), name: str | None = None,
             **kwargs) -> CertificateSpec:
        chosen = {"azure": self.azure_zones(), "rfc2136": self.rfc2136_zones(),
                  "both": self.azure_zones() + self.rfc2136_zones()}[zones]
        # Azure zones are checked on the emulator's authoritative server (its nameServers are not resolvable
        # here); BIND zones on BIND, which also forwards the Azure zones: one resolver answers for both.
        resolvers = (f"{self.emulator.dns_address[0]}:{self.emulator.dns_address[1]}",) if zones == "azure" \
            else (self.bind.server,)
        kwargs.setdefault("resolvers", resolvers)
        kwargs.setdefault("propagation_timeout_s", 20.0)
        return CertificateSpec(vault_url=self.vault_url, name=name or f"c-{uuid.uuid4().hex[:10]}",
                               dns_names=tuple(names), zones=chosen,
                               acme=AcmeAccount(directory_url=self.directory_url), key=key, **kwargs)


@contextlib.contextmanager
def faults(emulator, *specs: dict) -> Iterator[list[dict]]:
    """The emulator's faults ``specs`` (``add_fault`` keywords) while the block runs; those not used up by then
    are removed."""
    made = [emulator.admin.add_fault(**spec) for spec in specs]
    try:
        yield made
    finally:
        live = {f["id"] for f in emulator.admin.faults()}
        for fault in made:
            if fault["id"] in live:
                emulator.admin.remove_fault(fault["id"])


def forbid_value_reads(emulator, secret: str):
    """403 (not retried: a read fails the call at once) on every GET of ``secret``'s value, latest or versioned;
    listing its versions' properties (``/versions``, no values) stays allowed."""
    return faults(emulator, *({"status": 403, "host": "*.vault.azure.net", "path": path, "method": "GET"}
                              for path in (f"/secrets/{secret}", f"/secrets/{secret}/", f"/secrets/{secret}/[!v]*")))


def unique(zone: str, label: str = "www") -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}.{zone}"


@pytest.fixture(scope="module")
def tsig_ref_store() -> dict[str, SecretRef]:
    return {}


@pytest.fixture
def world(azure_env, credential, vault_url, pebble, bind, tsig_ref_store) -> World:
    if vault_url not in tsig_ref_store:
        # The TSIG secret lives in Key Vault; the spec holds only a reference to it.
        client = SecretClient(vault_url, credential)
        secret = client.set_secret("bind-tsig", bind.tsig_secret_b64)
        tsig_ref_store[vault_url] = SecretRef(f"{vault_url}/secrets/bind-tsig")
        assert secret.value == bind.tsig_secret_b64
    return World(vault_url, pebble.directory_url, bind, azure_env, tsig_ref_store[vault_url])


@pytest.fixture
def orders_made(monkeypatch) -> list:
    """Every order an ACME client of this process creates during the test, to see what is left at the CA."""
    from keyvault_acme.acme_client import AcmeClient

    made: list = []
    new_order = AcmeClient.new_order

    def recording(self, *args, **kwargs):
        made.append(new_order(self, *args, **kwargs))
        return made[-1]

    monkeypatch.setattr(AcmeClient, "new_order", recording)
    return made


def authorization_states(engine, spec, order) -> list[str]:
    """The CA's status of each of ``order``'s authorizations, read with the spec's own account."""
    import time as _time

    account = engine.wiring.account(spec, engine.wiring.vault(spec.vault_url), _time.monotonic() + 30)
    return [account._get(url, "read", _time.monotonic() + 30).json()["status"] for url in order.authorizations]

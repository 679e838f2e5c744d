"""Fixtures for the provider tests: the serialised provider as a program registers it, and provider hosts."""
from __future__ import annotations

import pytest

from keyvault_acme_pulumi.providers import Certificate
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


# -- the live world: Pebble (short-lived certificates), BIND 9 (RFC 2136 zone), the Azure emulator ---------

# Pebble's certificates live this long, and renewal is due with this fraction left: half their life, far beyond
# any test, so "up, then up changes nothing" holds however slow the machine. The renewal test alone asks for
# renewal RENEW_AFTER_S seconds after issue (DUE_SOON_FRACTION), to see "not due" and then "due" in real time.
VALIDITY_S = 600
FRACTION_REMAINING = 0.5
RENEW_AFTER_S = 10
DUE_SOON_FRACTION = 1 - RENEW_AFTER_S / VALIDITY_S


@pytest.fixture(scope="module")
def short_pebble(bind):
    from emulator.pebble import Pebble

    with Pebble(dns_server=bind.address, validity_s=VALIDITY_S) as pebble:
        yield pebble


@pytest.fixture(scope="module")
def live(tmp_path_factory, bind, short_pebble, emulator):
    """Everything a provider host needs for real work, plus the test's own view of the same world."""
    from azure.identity import ClientSecretCredential
    from azure.keyvault.secrets import SecretClient

    from tests import services
    from tests.provider.world import World

    directory = tmp_path_factory.mktemp("live")
    bundle = services.write_ca_bundle(directory / "bundle.pem", [short_pebble.tls_ca_pem_path,
                                                                 emulator.ca_bundle_path])
    app = emulator.admin.add_root_client(name="pulumi-deployer")
    env = {**emulator.environ(bundle), "SSL_CERT_FILE": bundle, "AZURE_TENANT_ID": app["tenant_id"],
           "AZURE_CLIENT_ID": app["client_id"], "AZURE_CLIENT_SECRET": app["secret"]}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        credential = ClientSecretCredential(app["tenant_id"], app["client_id"], app["secret"])
        world = World(bind=bind, pebble=short_pebble, emulator=emulator, credential=credential,
                      secrets={"client": app["secret"], "tsig": bind.tsig_secret_b64}, app_id=app["client_id"])
        for vault in world.vaults:
            SecretClient(vault, credential).set_secret("tsig", bind.tsig_secret_b64)
        with ProviderHost(directory / "host", env=env) as host:
            host.configure({"keyvault-acme:environment": "test"})
            world.host = host
            yield world

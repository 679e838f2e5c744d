"""A stack file for the CLI tests, pointing at the local world: the emulator (Key Vault, Azure DNS), real
BIND 9 and a Pebble of this module whose certificates live VALIDITY_S seconds, so renewal comes due in
real time. The CLI gets only what production gets: a stack file and the environment."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from tests import services

VALIDITY_S = 600
ZONE = "azure.test"


@pytest.fixture(scope="module")
def short_pebble(bind):
    from emulator.pebble import Pebble

    with Pebble(dns_server=bind.address, validity_s=VALIDITY_S) as pebble:
        yield pebble


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, emulator, short_pebble):
    """HTTPS_PROXY, NO_PROXY, the CA bundle and an app's AZURE_* variables, for this module."""
    bundle = services.write_ca_bundle(tmp_path_factory.mktemp("cli-ca") / "bundle.pem",
                                      [short_pebble.tls_ca_pem_path, emulator.ca_bundle_path])
    app = emulator.admin.add_root_client(name="cli-tests")
    env = {**emulator.environ(bundle), "SSL_CERT_FILE": bundle, "AZURE_TENANT_ID": app["tenant_id"],
           "AZURE_CLIENT_ID": app["client_id"], "AZURE_CLIENT_SECRET": app["secret"]}
    with pytest.MonkeyPatch.context() as mp:
        for key in ("HTTP_PROXY", "http_proxy", "https_proxy", "no_proxy", "CURL_CA_BUNDLE"):
            mp.delenv(key, raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        yield env


def write_stack(path: Path, *, vault: str, directory_url: str, resolver: str,
                certificates: list[dict]) -> Path:
    """A workload stack file like stacks/Pulumi.*.yaml, for the local world."""
    ns = "keyvault-acme"
    document = {"config": {
        f"{ns}:workload": "clitest", f"{ns}:environment": "test", f"{ns}:location": "westeurope",
        f"{ns}:subscription_id": services.AZURE_ZONES[ZONE], f"{ns}:tenant_id": "00000000-0000-0000-0000-00000000a2ce",
        f"{ns}:vault": {"name": vault}, f"{ns}:monitoring": {"enabled": False}, f"{ns}:grant_roles": False,
        f"{ns}:zones": [{"resource_id": services.azure_zone_id(ZONE)}],
        f"{ns}:allowlist": {"suffixes": [ZONE]},
        f"{ns}:acme": {"directory_url": directory_url},
        f"{ns}:certificates": [{"resolvers": [resolver], "propagation_timeout_s": 20, **c} for c in certificates],
    }}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory, cli_env, emulator, short_pebble):
    """Three certificates: one due soon after issue, one due late, one left for `renew --due` to issue."""
    label = uuid.uuid4().hex[:8]
    host, port = emulator.dns_address
    path = write_stack(
        tmp_path_factory.mktemp("stack") / "Pulumi.clitest-test.yaml",
        vault=f"kvcli{label}", directory_url=short_pebble.directory_url, resolver=f"{host}:{port}",
        certificates=[
            # Due 3 s after issue; the other after 540 s: no test run comes near it, so only the first is due.
            {"name": "early", "dns_names": [f"early-{label}.{ZONE}", f"alt-{label}.{ZONE}"],
             "renewal": {"fraction_remaining": 0.995}},
            {"name": "late", "dns_names": [f"*.late-{label}.{ZONE}"], "key": {"kty": "RSA", "size": 2048},
             "renewal": {"fraction_remaining": 0.1}},
            {"name": "unissued", "dns_names": [f"unissued-{label}.{ZONE}"]},
        ])
    return path

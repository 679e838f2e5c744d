"""What the CA sees on the wire, through a recording proxy in front of Pebble 2.10 (tests/recording_proxy.py)."""
from __future__ import annotations

import importlib.metadata

import josepy as jose
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from keyvault_acme.acme_client import AcmeClient
from keyvault_acme.dns.challenges import DnsSolver
from keyvault_acme.dns.rfc2136 import Rfc2136Provider
from tests.engine.test_acme_issuance import make_csr
from tests.recording_proxy import RecordingProxy
from tests.services import BIND_ZONE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def solver(bind):
    return DnsSolver({BIND_ZONE: Rfc2136Provider(BIND_ZONE, bind.server, bind.tsig_key_name, bind.tsig_secret_b64)})


@pytest.fixture
def proxy(pebble, loopback_env):
    with RecordingProxy(pebble) as recording:
        yield recording


def test_every_acme_request_names_keyvault_acme_and_its_version(proxy, solver):
    client = AcmeClient(proxy.directory_url, jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1())), timeout=30)
    names = ["agent.rfc2136.test"]
    chain = client.obtain_chain(make_csr(names), names, solver)
    client.renewal_info(chain.leaf_pem)
    client.revoke(chain.leaf_pem, "superseded")
    agents = {s.headers.get("User-Agent") for s in proxy.seen}
    assert agents == {f"keyvault-acme/{importlib.metadata.version('keyvault-acme')}"}
    # Every kind of request went through the proxy: directory, nonce, account, order, ARI, revocation.
    for fragment in ("/dir", "/nonce-plz", "/sign-me-up", "/order-plz", "/renewalInfo/", "/revoke-cert"):
        assert proxy.requests_to(fragment), fragment

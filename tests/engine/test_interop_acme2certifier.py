"""Interop with a second, independent ACME server: acme2certifier (PyPI), run by emulator/acme2certifier.py.

Real DNS-01 validation through BIND (which forwards the emulator's Azure zones), ARI from acme2certifier's own
renewalInfo (its windows and Retry-After, not Pebble's), and external account binding with its JSON EAB handler.
"""
from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from azure.keyvault.secrets import SecretClient
from cryptography import x509

from emulator.acme2certifier import Acme2Certifier
from keyvault_acme.errors import AcmeError, PreflightError
from keyvault_acme.model import SecretRef
from keyvault_acme.renewal import ari_from_tags
from tests.engine.conftest import AZURE_ZONE, unique

pytestmark = pytest.mark.integration

EAB_KID, EAB_HMAC = "kid-a2c", "V2VsbCwgdGhpcyBpcyBhIHRlc3QgaG1hYyBrZXkgZm9yIGFjbWUyY2VydGlmaWVy"


@pytest.fixture(scope="module")
def a2c(bind):
    with Acme2Certifier(dns_server=bind.address) as server:
        yield server


@pytest.fixture(scope="module")
def a2c_eab(bind):
    with Acme2Certifier(dns_server=bind.address, eab_keys={EAB_KID: EAB_HMAC}) as server:
        yield server


def at(world, url: str, names, **acme):
    spec = world.spec(names)
    # acme2certifier wants a contact on every account.
    return replace(spec, acme=replace(spec.acme, directory_url=url, contact=("ops@azure.test",), **acme))


def test_ari_from_acme2certifier_decides_and_a_renewal_replaces_the_version(world, engine, a2c):
    spec = at(world, a2c.directory_url, [unique(AZURE_ZONE)])
    facts = engine.issue(spec)
    leaf = x509.load_pem_x509_certificates(facts.pem_chain.encode())[0]
    assert leaf.issuer.rfc4514_string() == "CN=acme2certifier test CA"
    decision = engine.decide(spec, facts)
    assert (decision.reissue, decision.decided_by) == (False, "ari")
    cached = ari_from_tags(engine.inspect(spec.vault_url, spec.name).tags)
    # acme2certifier's own window (inside the 90-day lifetime) and its Retry-After (a day).
    assert leaf.not_valid_before_utc < cached.start < cached.end <= leaf.not_valid_after_utc
    assert cached.start <= decision.renew_at <= cached.end
    assert timedelta(hours=23) < cached.next_check - datetime.now(timezone.utc) <= timedelta(days=1)
    renewed = engine.renew(spec)
    assert renewed.serial != facts.serial
    assert engine.decide(spec, renewed).decided_by == "ari"


def test_external_account_binding_with_acme2certifier(world, engine, credential, a2c_eab):
    assert a2c_eab.directory()["meta"].get("externalAccountRequired") is True
    secrets = SecretClient(world.vault_url, credential)
    secrets.set_secret("a2c-eab-hmac", EAB_HMAC)
    eab = dict(eab_kid=EAB_KID, eab_hmac=SecretRef(f"{world.vault_url}/secrets/a2c-eab-hmac"))

    # Without a binding: refused before any order, naming what to set and the key secret it created.
    without = at(world, a2c_eab.directory_url, [unique(AZURE_ZONE)],
                 account_key_secret=f"a2c-acct-{uuid.uuid4().hex[:6]}")
    with pytest.raises(PreflightError, match="requires external account binding; set acme.eab_kid") as missing:
        engine.issue(without)
    assert f"secrets/{without.acme.account_key_secret} was created for this registration" in str(missing.value)

    # A wrong HMAC: the CA refuses the binding itself.
    secrets.set_secret("a2c-eab-wrong", "d3JvbmcgaG1hYyBrZXkgZm9yIHRoaXMga2lkIGF0IGFsbCwgc29ycnk")
    wrong = at(world, a2c_eab.directory_url, [unique(AZURE_ZONE)], eab_kid=EAB_KID,
               eab_hmac=SecretRef(f"{world.vault_url}/secrets/a2c-eab-wrong"),
               account_key_secret=f"a2c-acct-{uuid.uuid4().hex[:6]}")
    with pytest.raises(AcmeError) as refused:
        engine.issue(wrong)
    # ...and the account key secret that failed registration created is named, to delete.
    assert f"{world.vault_url}/secrets/{wrong.acme.account_key_secret} was created for this registration" \
        in str(refused.value)

    # With the binding: registered and issued.
    bound = at(world, a2c_eab.directory_url, [unique(AZURE_ZONE)], account_key_secret="a2c-bound", **eab)
    facts = engine.issue(bound)
    assert engine.inspect(bound.vault_url, bound.name).serial == facts.serial

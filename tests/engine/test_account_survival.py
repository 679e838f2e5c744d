"""The ACME account survives the CA: a long-lived engine (the provider host) whose account the CA forgot
registers again once and goes on; a registration that fails says what to do about the key it created."""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import replace

import pytest
from azure.keyvault.secrets import SecretClient

from keyvault_acme.account import key_to_secret, new_account_key
from keyvault_acme.acme_client import AcmeClient
from keyvault_acme.errors import AccountNotBound, PreflightError
from keyvault_acme.lifecycle import Engine
from keyvault_acme.model import SecretRef
from tests import services
from tests.engine.conftest import AZURE_ZONE, unique
from tests.recording_proxy import RecordingProxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def resettable_pebble(bind):
    """A Pebble of this module only: the test restarts it."""
    with services.pebble_server(bind) as pebble:
        yield pebble


@pytest.fixture(scope="module")
def eab_pebble(bind):
    """A CA that requires external account binding."""
    with services.pebble_server(bind, eab_keys={"kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"},
                                eab_required=True) as pebble:
        yield pebble


def test_a_long_lived_engine_registers_again_when_the_ca_forgot_its_account(world, credential,
                                                                             resettable_pebble, caplog):
    engine = Engine(credential)  # one engine for the whole test, as the provider host keeps one
    spec = replace(world.spec([unique(AZURE_ZONE)]),
                   acme=replace(world.spec(["x." + AZURE_ZONE]).acme, directory_url=resettable_pebble.directory_url))
    before = engine.issue(spec)
    resettable_pebble.restart()  # the CA forgets every account (a CA reset)
    with caplog.at_level(logging.WARNING, logger="keyvault_acme.acme"):
        after = engine.renew(spec)
    assert after.serial != before.serial and resettable_pebble.cert_status(after.serial) == "Valid"
    forgot = [r.getMessage() for r in caplog.records if "no longer knows ACME account" in r.getMessage()]
    assert len(forgot) == 1  # registered again once, then the renewal went on
    # The re-registered account keeps working for the next certificate without another registration.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="keyvault_acme.acme"):
        engine.issue(replace(spec, name=f"c-{uuid.uuid4().hex[:10]}", dns_names=(unique(AZURE_ZONE),)))
    assert not [r for r in caplog.records if "registered ACME account" in r.getMessage()
                or "no longer knows" in r.getMessage()]


def test_a_failed_registration_says_which_new_key_secret_to_delete(world, engine, credential, eab_pebble):
    secret = f"acct-{uuid.uuid4().hex[:8]}"
    spec = world.spec([unique(AZURE_ZONE)])
    spec = replace(spec, acme=replace(spec.acme, directory_url=eab_pebble.directory_url, account_key_secret=secret))
    with pytest.raises(PreflightError) as failure:
        engine.issue(spec)
    message = str(failure.value)
    assert "requires external account binding" in message
    assert f"{world.vault_url}/secrets/{secret}" in message and "delete" in message
    # The secret named is the one the failed registration created (and nothing else was made).
    assert SecretClient(world.vault_url, credential).get_secret(secret).value
    assert engine.inspect(spec.vault_url, spec.name) is None


def test_an_account_that_exists_without_binding_says_so_and_how_to_fix_it(world, engine, credential, pebble):
    """EAB configured, but the key's account was registered before, without binding (e.g. before the CA began
    requiring it). Pebble cannot hold such an account while it requires EAB, so the recording proxy answers the
    order as such a CA does (403 unauthorized); everything else is Pebble's."""
    key = new_account_key()
    unbound = AcmeClient(pebble.directory_url, key, timeout=30).account_url()  # registered without binding
    secret = f"acct-{uuid.uuid4().hex[:8]}"
    secrets = SecretClient(world.vault_url, credential)
    secrets.set_secret(secret, key_to_secret(key), content_type="application/jwk+json",
                       tags={"managed-by": "keyvault-acme", "purpose": "acme-account-key"})
    secrets.set_secret("eab-hmac", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W")
    problem = json.dumps({"type": "urn:ietf:params:acme:error:unauthorized", "status": 403,
                          "detail": "account is not bound to an external account"}).encode()
    with RecordingProxy(pebble, fail=lambda method, path: (403, {"Content-Type": "application/problem+json"},
                                                            problem) if path.startswith("/order-plz") else None) as ca:
        spec = world.spec([unique(AZURE_ZONE)])
        spec = replace(spec, acme=replace(spec.acme, directory_url=ca.directory_url, account_key_secret=secret,
                                          eab_kid="kid-1", eab_hmac=SecretRef(f"{world.vault_url}/secrets/eab-hmac")))
        with pytest.raises(AccountNotBound) as failure:
            engine.issue(spec)
    message = str(failure.value)
    assert unbound.split("/")[-1] in message and "already existed at the CA for this key" in message
    assert "a new acme.account_key_secret name" in message and "acme.account_key.name" in message
    assert "challenge" not in message and "challenge" not in failure.value.hint

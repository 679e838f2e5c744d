"""HSM-protected certificate keys (``key.kty`` RSA-HSM / EC-HSM): issued in a premium vault, refused clearly by a
standard one with nothing left behind. Against the emulator (which keeps vault SKUs) and real Pebble."""
from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.keys import KeyClient, KeyType

from keyvault_acme import keyvault as kv
from keyvault_acme.errors import HsmNotAvailable
from keyvault_acme.model import KeySpec
from tests.engine.conftest import AZURE_ZONE, World, authorization_states, unique

pytestmark = pytest.mark.integration


def vault_of_sku(world: World, sku: str) -> World:
    name = f"h{uuid.uuid4().hex[:12]}"
    world.emulator.admin.register_vault(name, sku=sku)
    return World(f"https://{name}.vault.azure.net", world.directory_url, world.bind, world.emulator, world.tsig_ref)


@pytest.mark.parametrize("key", [KeySpec("EC-HSM"), KeySpec("RSA-HSM", 2048)], ids=["EC-HSM", "RSA-HSM"])
def test_premium_vault_issues_a_certificate_whose_key_is_an_hsm_key(world, engine, pebble, credential, key):
    premium = vault_of_sku(world, "premium")
    spec = premium.spec([unique(AZURE_ZONE)], key=key)
    facts = engine.issue(spec)
    assert pebble.cert_status(facts.serial) == "Valid"
    kv_key = KeyClient(spec.vault_url, credential).get_key(spec.name, facts.version)
    assert kv_key.key_type == KeyType(key.kty)
    assert facts.tags["acme-key"] == f"{key.label} HSM"
    # The same spec again adopts the version: the HSM protection recorded in its tags still fits.
    assert engine.issue(spec).version == facts.version


def test_standard_vault_refuses_hsm_keys_clearly_and_nothing_is_left(world, engine, credential, orders_made):
    standard = vault_of_sku(world, "standard")
    spec = standard.spec([unique(AZURE_ZONE)], key=KeySpec("EC-HSM"))
    with pytest.raises(HsmNotAvailable) as err:
        engine.issue(spec)
    text = str(err.value)
    assert "Hardware key operation not allowed on standard vault" in text  # Key Vault's words
    assert "premium vault" in text and "key.kty" in text  # and ours: what to change
    client = CertificateClient(spec.vault_url, credential)
    assert [p.name for p in client.list_properties_of_certificates()] == []
    # Nor at the CA: the order was made before Key Vault refused, and its authorization is deactivated rather
    # than left pending for a week (the CA counts pending authorizations against the account).
    [order] = orders_made
    assert authorization_states(engine, spec, order) == ["deactivated"]


def test_emulator_keys_follow_the_vault_sku(world, credential):
    premium, standard = vault_of_sku(world, "premium"), vault_of_sku(world, "standard")
    made = KeyClient(premium.vault_url, credential).create_ec_key("k", hardware_protected=True)
    assert made.key_type == KeyType.ec_hsm
    with pytest.raises(HttpResponseError) as err:
        KeyClient(standard.vault_url, credential).create_rsa_key("k", hardware_protected=True)
    assert err.value.status_code == 400 and "Hardware key operation not allowed" in str(err.value)
    assert kv.map_error(err.value, "create key").__class__ is HsmNotAvailable

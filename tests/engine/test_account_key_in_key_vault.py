"""The ACME account key as a non-exportable Key Vault key (``acme.account_key: {kind: key}``): Key Vault signs every
JWS in place, so no private key is in our process; a secret-held account moves to it by key rollover (keyChange).
Against the emulator's Key Vault sign operation and real Pebble."""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace

import josepy as jose
import pytest
from acme import jws
from azure.keyvault.keys import KeyClient, KeyType
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.keyvault.secrets import SecretClient
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from emulator import kvcrypto
from keyvault_acme.account import KeyVaultES256, key_from_secret, key_vault_account_key
from keyvault_acme.acme_client import AcmeClient
from keyvault_acme.errors import AccountKeyRefused, SpecError
from keyvault_acme.keyvault import public_key_from_jwk
from keyvault_acme.lifecycle import Engine
from tests.engine.conftest import AZURE_ZONE, unique

pytestmark = pytest.mark.integration


def der(raw: bytes) -> bytes:
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


def key_spec(world, **kwargs):
    spec = world.spec([unique(AZURE_ZONE)], **kwargs)
    name = f"acct-{uuid.uuid4().hex[:8]}"
    return replace(spec, acme=replace(spec.acme, account_key_kind="key", account_key_name=name))


def test_emulator_sign_answers_es256_as_key_vault_does_raw_r_and_s():
    # Key Vault's ES256 is the JWS form (RFC 7518 3.4): r||s, 32 bytes each, not DER.
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(b"signing input").digest()
    raw = kvcrypto.sign_digest(key, "ES256", digest)
    assert len(raw) == 64
    key.public_key().verify(der(raw), digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    assert jose.ES256.verify(key.public_key(), b"signing input", raw)


def test_sdk_signs_through_the_emulator_and_the_signature_verifies_locally(world, credential):
    made = KeyClient(world.vault_url, credential).create_ec_key(f"k-{uuid.uuid4().hex[:8]}", curve="P-256")
    digest = hashlib.sha256(b"payload").digest()
    result = CryptographyClient(made, credential).sign(SignatureAlgorithm.es256, digest)
    assert len(result.signature) == 64
    public_key_from_jwk(made.key).verify(der(result.signature), digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_adapter_makes_acme_jws_that_verify_with_the_public_key_only(world, engine):
    vault = engine.wiring.vault(world.vault_url)
    account = key_vault_account_key(vault, f"acct-{uuid.uuid4().hex[:8]}")
    assert isinstance(account.alg, KeyVaultES256)
    assert "d" not in account.jwk.to_partial_json()  # only the public half is in our process
    signed = jws.JWS.sign(b'{"hello": 1}', key=account.jwk, alg=account.alg, nonce=b"n0nce", url="https://ca/x")
    assert signed.signature.combined.alg.name == "ES256"
    assert signed.verify(account.jwk)
    assert not jws.JWS.sign(b"{}", key=account.jwk, alg=account.alg, nonce=b"n", url="u").verify(
        jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()).public_key()))


def test_issuance_with_a_key_vault_account_key_leaves_no_account_secret(world, engine, pebble, credential):
    spec = key_spec(world)
    vault_step = next(r for r in engine.check(spec) if r.step == "vault")
    assert vault_step.ok and f"key {spec.acme.account_key_name} (Key Vault signs) will be created" in vault_step.detail
    facts = engine.issue(spec)
    assert pebble.cert_status(facts.serial) == "Valid"
    assert f"key {spec.acme.account_key_name} (Key Vault signs) exists" in next(
        r for r in engine.check(spec) if r.step == "vault").detail
    # No secret was written for the account; the key exists, EC P-256, not exportable, sign/verify only.
    names = [p.name for p in SecretClient(spec.vault_url, credential).list_properties_of_secrets()]
    assert spec.acme.account_key_secret not in names
    key = KeyClient(spec.vault_url, credential).get_key(spec.acme.account_key_name)
    assert (key.key_type, key.key.crv) == (KeyType.ec, "P-256")
    assert sorted(str(getattr(o, "value", o)) for o in key.key_operations) == ["sign", "verify"]
    assert key.properties.exportable in (None, False)
    client = engine.wiring.account(spec, engine.wiring.vault(spec.vault_url), 1e12)
    assert isinstance(client._key.key._wrapped, ec.EllipticCurvePublicKey)  # public only
    # The account at the CA is the Key Vault key's: a lookup signed by Key Vault finds the same URL.
    again = AcmeClient(spec.acme.directory_url, client._key, alg=client._net.alg)
    assert again.find_account() == client.account_url()
    # Renewal and revocation sign through Key Vault too.
    renewed = engine.renew(spec)
    assert engine.revoke(spec, "superseded").revoked_reason == "superseded"
    assert pebble.cert_status(renewed.serial) == "Revoked"


def test_a_certificate_key_is_refused_as_account_key(world, engine):
    spec = world.spec([unique(AZURE_ZONE)])
    engine.issue(spec)
    other = key_spec(world)
    other = replace(other, acme=replace(other.acme, account_key_name=spec.name))
    with pytest.raises(AccountKeyRefused) as err:
        engine.issue(other)
    assert "belongs to the certificate" in str(err.value)
    with pytest.raises(SpecError) as err:
        engine.check_spec(replace(other, name=spec.name))
    assert err.value.field == "acme.account_key.name"


def test_rollover_moves_a_secret_account_to_the_key_and_keeps_its_url(world, credential, pebble):
    engine = Engine(credential)  # a fresh engine: its own account cache
    secret_spec = world.spec([unique(AZURE_ZONE)])
    secret_spec = replace(secret_spec, acme=replace(secret_spec.acme, account_key_secret=f"s-{uuid.uuid4().hex[:8]}"))
    engine.issue(secret_spec)
    vault = engine.wiring.vault(secret_spec.vault_url)
    old_key = key_from_secret(SecretClient(secret_spec.vault_url, credential)
                              .get_secret(secret_spec.acme.account_key_secret).value)
    url = AcmeClient(secret_spec.acme.directory_url, old_key).find_account()
    assert url

    spec = replace(secret_spec, acme=replace(secret_spec.acme, account_key_kind="key",
                                             account_key_name=f"acct-{uuid.uuid4().hex[:8]}"))
    assert engine.move_account_to_key(spec) == url
    # The CA now knows the account by the Key Vault key only.
    new = key_vault_account_key(vault, spec.acme.account_key_name)
    assert AcmeClient(spec.acme.directory_url, new.jwk, alg=new.alg).find_account() == url
    assert AcmeClient(spec.acme.directory_url, old_key).find_account() is None
    # Idempotent, and issuance (by a new engine too) uses the same account, signed by Key Vault.
    assert engine.move_account_to_key(spec) == url
    fresh = Engine(credential)
    facts = fresh.renew(spec)
    assert pebble.cert_status(facts.serial) == "Valid"
    assert fresh.wiring.account(spec, fresh.wiring.vault(spec.vault_url), 1e12).account_url() == url


def test_rollover_without_a_secret_account_says_there_is_nothing_to_move(world, engine):
    spec = key_spec(world)
    spec = replace(spec, acme=replace(spec.acme, account_key_secret=f"none-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(Exception) as err:
        engine.move_account_to_key(spec)
    assert "nothing to migrate" in str(err.value)
    with pytest.raises(SpecError):
        engine.move_account_to_key(world.spec([unique(AZURE_ZONE)]))

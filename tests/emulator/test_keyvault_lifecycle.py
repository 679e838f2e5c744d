"""Certificate lifecycle, keys and secrets through the official SDK clients."""
from __future__ import annotations

import hashlib

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.certificates import CertificateClient, CertificatePolicy, KeyType
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.keyvault.secrets import SecretClient
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from .helpers import LocalCA


def _issue(certs: CertificateClient, name: str, ca: LocalCA, **policy):
    certs.begin_create_certificate(
        name, CertificatePolicy(issuer_name="Unknown", subject=f"CN={name}.example", **policy)).result()
    return certs.merge_certificate(name, ca.chain_der(certs.get_certificate_operation(name).csr))


def test_versions_properties_and_policy(credential, vault_url):
    certs, ca = CertificateClient(vault_url, credential), LocalCA()
    first, second = _issue(certs, "c", ca), _issue(certs, "c", ca)
    versions = {p.version for p in certs.list_properties_of_certificate_versions("c")}
    assert versions == {first.properties.version, second.properties.version}
    assert [p.name for p in certs.list_properties_of_certificates()] == ["c"]

    updated = certs.update_certificate_properties("c", first.properties.version, enabled=False,
                                                  tags={"managed-by": "keyvault-acme"})
    assert updated.properties.enabled is False and updated.properties.tags == {"managed-by": "keyvault-acme"}
    assert certs.get_certificate_version("c", first.properties.version).properties.tags == {"managed-by": "keyvault-acme"}
    assert certs.get_certificate("c").properties.enabled is True  # the current version is untouched

    policy = certs.get_certificate_policy("c")
    assert (policy.issuer_name, policy.subject, policy.key_type) == ("Unknown", "CN=c.example", KeyType.rsa)
    certs.update_certificate_policy("c", CertificatePolicy(issuer_name="Unknown", subject="CN=c.example",
                                                           san_dns_names=["c.example", "www.c.example"]))
    assert certs.get_certificate_policy("c").san_dns_names == ["c.example", "www.c.example"]


def test_soft_delete_recover_purge(credential, vault_url):
    certs, secrets, ca = CertificateClient(vault_url, credential), SecretClient(vault_url, credential), LocalCA()
    issued = _issue(certs, "d", ca)

    deleted = certs.begin_delete_certificate("d").result()
    assert deleted.recovery_id == f"{vault_url}deletedcertificates/d" and deleted.deleted_on is not None
    assert certs.get_deleted_certificate("d").properties.version == issued.properties.version
    assert [d.name for d in certs.list_deleted_certificates()] == ["d"]
    with pytest.raises(ResourceNotFoundError):
        certs.get_certificate("d")
    with pytest.raises(ResourceNotFoundError):
        secrets.get_secret("d")  # the certificate's secret went with it
    with pytest.raises(ResourceExistsError) as conflict:
        certs.begin_create_certificate("d", CertificatePolicy(issuer_name="Unknown", subject="CN=d.example"))
    assert conflict.value.status_code == 409
    assert "ObjectIsDeletedButRecoverable" in str(conflict.value)

    recovered = certs.begin_recover_deleted_certificate("d").result()
    assert recovered.properties.version == issued.properties.version
    assert certs.get_certificate("d").cer == issued.cer

    certs.begin_delete_certificate("d").result()
    certs.purge_deleted_certificate("d")
    with pytest.raises(ResourceNotFoundError):
        certs.get_deleted_certificate("d")
    certs.begin_create_certificate("d", CertificatePolicy(issuer_name="Unknown", subject="CN=d.example")).result()


@pytest.mark.parametrize("kind,alg", [("ec256", SignatureAlgorithm.es256), ("ec384", SignatureAlgorithm.es384),
                                      ("rsa", SignatureAlgorithm.rs256)])
def test_keys_sign_without_revealing_the_private_key(credential, vault_url, kind, alg):
    keys = KeyClient(vault_url, credential)
    if kind == "rsa":
        key = keys.create_rsa_key("acct", size=2048)
    else:
        key = keys.create_ec_key("acct", curve={"ec256": "P-256", "ec384": "P-384"}[kind])
    assert key.key.d is None and getattr(key.key, "p", None) is None  # public parts only
    assert keys.get_key("acct").key.kid == key.id

    hash_alg = hashes.SHA384() if kind == "ec384" else hashes.SHA256()
    digest = hashlib.new(hash_alg.name, b"to be signed").digest()
    signature = CryptographyClient(key, credential).sign(alg, digest).signature

    public = _public_key(key.key)
    if kind == "rsa":
        public.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hash_alg))
    else:
        half = len(signature) // 2
        der = utils.encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
        public.verify(der, digest, ec.ECDSA(utils.Prehashed(hash_alg)))
        with pytest.raises(InvalidSignature):
            public.verify(der, hashlib.new(hash_alg.name, b"something else").digest(), ec.ECDSA(utils.Prehashed(hash_alg)))


def _public_key(jwk):
    if jwk.kty in ("RSA", "RSA-HSM"):
        return rsa.RSAPublicNumbers(int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big")).public_key()
    curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}[jwk.crv]
    return ec.EllipticCurvePublicNumbers(int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"), curve).public_key()


def test_sign_with_the_wrong_algorithm_is_a_bad_parameter(credential, vault_url):
    key = KeyClient(vault_url, credential).create_ec_key("k", curve="P-256")
    with pytest.raises(HttpResponseError) as caught:
        CryptographyClient(key.id, credential).sign(SignatureAlgorithm.es384, b"\0" * 48)
    assert caught.value.status_code == 400


def test_plain_secrets_set_get_versions(credential, vault_url):
    secrets = SecretClient(vault_url, credential)
    first = secrets.set_secret("acme-account-key", "v1", content_type="application/json", tags={"a": "b"})
    second = secrets.set_secret("acme-account-key", "v2")
    assert secrets.get_secret("acme-account-key").value == "v2"
    assert secrets.get_secret("acme-account-key", first.properties.version).value == "v1"
    assert first.properties.content_type == "application/json" and first.properties.tags == {"a": "b"}
    assert {p.version for p in secrets.list_properties_of_secret_versions("acme-account-key")} == {
        first.properties.version, second.properties.version}
    with pytest.raises(ResourceNotFoundError):
        secrets.get_secret("never-set")

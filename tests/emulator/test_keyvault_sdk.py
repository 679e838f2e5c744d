"""The official Azure SDK clients, unmodified, against the emulator through HTTPS_PROXY + REQUESTS_CA_BUNDLE."""
from __future__ import annotations

import base64

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential, DefaultAzureCredential, EnvironmentCredential
from azure.keyvault.certificates import CertificateClient, CertificatePolicy, KeyCurveName, KeyType
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from .helpers import API, LocalCA, bearer

PEM = "application/x-pem-file"


def _public(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("make", [
    lambda app: ClientSecretCredential(app["tenant_id"], app["client_id"], app["secret"]),
    lambda app: EnvironmentCredential(),
    lambda app: DefaultAzureCredential(),
], ids=["ClientSecretCredential", "EnvironmentCredential", "DefaultAzureCredential"])
def test_credentials_get_tokens_that_name_the_app_and_audience(azure_env, root_app, monkeypatch, make):
    monkeypatch.setenv("AZURE_TENANT_ID", root_app["tenant_id"])
    monkeypatch.setenv("AZURE_CLIENT_ID", root_app["client_id"])
    monkeypatch.setenv("AZURE_CLIENT_SECRET", root_app["secret"])
    token = make(root_app).get_token("https://vault.azure.net/.default").token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["appid"], claims["tid"], claims["aud"]) == (
        root_app["client_id"], root_app["tenant_id"], "https://vault.azure.net")


def test_a_wrong_secret_gets_no_token(azure_env, root_app):
    credential = ClientSecretCredential(root_app["tenant_id"], root_app["client_id"], "not-the-secret")
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        credential.get_token("https://vault.azure.net/.default")


POLICIES = {
    "rsa2048": dict(key_type=KeyType.rsa, key_size=2048),
    "rsa3072": dict(key_type=KeyType.rsa, key_size=3072),
    "rsa4096": dict(key_type=KeyType.rsa, key_size=4096),
    "p256": dict(key_type=KeyType.ec, key_curve_name=KeyCurveName.p_256),
    "p384": dict(key_type=KeyType.ec, key_curve_name=KeyCurveName.p_384),
}


@pytest.mark.parametrize("key", POLICIES, ids=list(POLICIES))
def test_issue_unknown_merge_and_export(credential, vault_url, key):
    certs, secrets, ca = CertificateClient(vault_url, credential), SecretClient(vault_url, credential), LocalCA()
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=www.example.com",
                               san_dns_names=["www.example.com", "example.com"], exportable=True, **POLICIES[key])

    operation = certs.begin_create_certificate("web", policy).result()
    assert operation.status == "inProgress" and operation.issuer_name == "Unknown"
    csr = x509.load_der_x509_csr(certs.get_certificate_operation("web").csr)
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=www.example.com"
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["www.example.com", "example.com"]
    if "key_size" in POLICIES[key]:
        assert isinstance(csr.public_key(), rsa.RSAPublicKey) and csr.public_key().key_size == POLICIES[key]["key_size"]
    else:
        assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey)
        assert csr.public_key().curve.name == {"p256": "secp256r1", "p384": "secp384r1"}[key]

    merged = certs.merge_certificate("web", ca.chain_der(certs.get_certificate_operation("web").csr))
    leaf = x509.load_der_x509_certificate(merged.cer)
    assert _public(leaf.public_key()) == _public(csr.public_key())
    assert merged.properties.enabled is True

    latest = certs.get_certificate("web")
    assert latest.properties.version == merged.properties.version
    assert certs.get_certificate_version("web", merged.properties.version).cer == merged.cer

    pfx = secrets.get_secret("web", merged.properties.version)
    assert pfx.properties.content_type == "application/x-pkcs12"
    private_key, certificate, extra = pkcs12.load_key_and_certificates(base64.b64decode(pfx.value), None)
    assert certificate is not None and certificate.public_bytes(serialization.Encoding.DER) == merged.cer
    assert private_key is not None and _public(private_key.public_key()) == _public(leaf.public_key())
    assert [c.subject for c in extra] == [ca.cert.subject]

    pem = secrets.get_secret("web", merged.properties.version, out_content_type=PEM)
    assert pem.properties.content_type == PEM
    pem_key = serialization.load_pem_private_key(pem.value.encode(), None)
    assert _public(pem_key.public_key()) == _public(leaf.public_key())
    assert x509.load_pem_x509_certificates(pem.value.encode())[0] == leaf


def test_non_exportable_secret_carries_no_private_key(credential, vault_url):
    certs, secrets, ca = CertificateClient(vault_url, credential), SecretClient(vault_url, credential), LocalCA()
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=locked.example", key_type=KeyType.ec,
                               key_curve_name=KeyCurveName.p_256, exportable=False)
    certs.begin_create_certificate("locked", policy).result()
    merged = certs.merge_certificate("locked", ca.chain_der(certs.get_certificate_operation("locked").csr))

    pfx = secrets.get_secret("locked")
    key, certificate, extra = pkcs12.load_key_and_certificates(base64.b64decode(pfx.value), None)
    assert key is None
    carried = [c.public_bytes(serialization.Encoding.DER) for c in [certificate, *extra] if c is not None]
    assert merged.cer in carried
    pem = secrets.get_secret("locked", out_content_type=PEM).value
    assert "PRIVATE KEY" not in pem and "BEGIN CERTIFICATE" in pem


def test_a_certificates_secret_and_its_versions_are_listed_as_managed(credential, vault_url):
    """What keyvault-acme relies on to never read a certificate's secret: its properties say ``managed``."""
    certs, secrets = CertificateClient(vault_url, credential), SecretClient(vault_url, credential)
    certs.begin_create_certificate("listed", CertificatePolicy.get_default()).result()
    secrets.set_secret("plain", "v")
    versions = list(secrets.list_properties_of_secret_versions("listed"))
    assert versions and all(p.managed for p in versions)
    assert [p.managed for p in secrets.list_properties_of_secret_versions("plain")] == [None]
    assert {p.name: p.managed for p in secrets.list_properties_of_secrets()}["listed"] is True


def test_merge_rejects_a_certificate_for_another_key(credential, vault_url):
    certs, ca = CertificateClient(vault_url, credential), LocalCA()
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=a.example")
    certs.begin_create_certificate("a", policy).result()
    certs.begin_create_certificate("b", policy).result()
    other = ca.chain_der(certs.get_certificate_operation("b").csr)

    with pytest.raises(HttpResponseError) as caught:
        certs.merge_certificate("a", other)
    assert caught.value.status_code == 400 and caught.value.error.code == "BadParameter"
    assert certs.get_certificate_operation("a").status == "inProgress"  # still mergeable


def test_pending_operation_cancel_and_delete(credential, vault_url):
    certs = CertificateClient(vault_url, credential)
    certs.begin_create_certificate("p", CertificatePolicy(issuer_name="Unknown", subject="CN=p.example")).result()

    cancelled = certs.cancel_certificate_operation("p")
    assert cancelled.cancellation_requested is True
    assert certs.get_certificate_operation("p").status == "cancelled"
    deleted = certs.delete_certificate_operation("p")
    assert deleted.id == f"{vault_url}certificates/p/pending"
    with pytest.raises(ResourceNotFoundError):
        certs.get_certificate_operation("p")
    # As in Key Vault, the version that never completed stays behind, disabled and without a certificate.
    leftover = certs.get_certificate("p")
    assert leftover.properties.enabled is False and leftover.cer is None


def test_renewal_keeps_serving_the_current_version_until_merge(credential, vault_url):
    certs, ca = CertificateClient(vault_url, credential), LocalCA()
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=r.example")
    certs.begin_create_certificate("r", policy).result()
    first = certs.merge_certificate("r", ca.chain_der(certs.get_certificate_operation("r").csr))

    certs.begin_create_certificate("r", policy).result()
    assert certs.get_certificate("r").properties.version == first.properties.version
    second = certs.merge_certificate("r", ca.chain_der(certs.get_certificate_operation("r").csr))
    assert second.properties.version != first.properties.version
    assert certs.get_certificate("r").properties.version == second.properties.version
    assert x509.load_der_x509_certificate(second.cer).public_key() != x509.load_der_x509_certificate(first.cer).public_key()


def test_lists_come_in_pages_of_25_that_the_sdk_follows(azure_env, credential, vault_url, raw, emu, root_app):
    client = SecretClient(vault_url, credential)
    created = [client.set_secret("many", f"v{i}").properties.version for i in range(60)]
    pages = [list(page) for page in client.list_properties_of_secret_versions("many").by_page()]
    assert [len(p) for p in pages] == [25, 25, 10]
    listed = [p.version for page in pages for p in page]
    assert sorted(listed) == sorted(created)
    assert listed != created, "versions are listed in a stable order that is not the order of creation"
    small = list(client.list_properties_of_secret_versions("many", max_page_size=7).by_page())
    assert len(small) == 9 and sum(len(list(p)) for p in small) == 60
    too_many = raw.get(f"{vault_url}secrets/many/versions", params={**API, "maxresults": "26"},
                       headers=bearer(emu, root_app["client_id"]))
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "BadParameter"

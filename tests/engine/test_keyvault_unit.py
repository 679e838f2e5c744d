"""Pure parts of the Key Vault adapter: policy, facts helpers, error mapping and retry classification."""
from __future__ import annotations

import datetime as dt
import hashlib
from types import SimpleNamespace

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.keyvault.certificates import KeyCurveName, KeyType
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from keyvault_acme import keyvault as kv
from keyvault_acme.errors import (
    CertificateDeletedButRecoverable,
    KeyVaultError,
    KeyVaultForbidden,
    KeyVaultReadOnly,
)
from keyvault_acme.model import KeySpec


def _http_error(status: int, code: str = "", message: str = "boom", headers: dict | None = None) -> HttpResponseError:
    response = SimpleNamespace(status_code=status, headers=headers or {}, reason="x", text=lambda: "",
                               content_type="application/json")
    err = HttpResponseError(message=message, response=response)
    err.status_code = status
    err.error = SimpleNamespace(code=code, message=message)
    return err


def _self_signed(key, names=("a.example.test", "b.example.test")) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(0x1234ABCD).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))


def test_policy_asks_key_vault_for_the_spec_key_and_names_with_issuer_unknown():
    rsa_policy = kv.policy_for(KeySpec("RSA", 3072, exportable=True), ["x.example.test", "*.example.test"])
    assert rsa_policy.issuer_name == "Unknown"
    assert (rsa_policy.key_type, rsa_policy.key_size, rsa_policy.exportable) == (KeyType.rsa, 3072, True)
    assert rsa_policy.san_dns_names == ["x.example.test", "*.example.test"]
    assert rsa_policy.content_type == "application/x-pem-file"
    assert rsa_policy.reuse_key is False
    ec_policy = kv.policy_for(KeySpec("EC", curve="P-384"), ["y.example.test"])
    assert (ec_policy.key_type, ec_policy.key_curve_name, ec_policy.exportable) == (KeyType.ec, KeyCurveName.p_384, False)


def test_hsm_keys_ask_key_vault_for_hsm_key_types():
    rsa_policy = kv.policy_for(KeySpec("RSA-HSM", 2048), ["x.example.test"])
    assert (rsa_policy.key_type, rsa_policy.key_size, rsa_policy.exportable) == (KeyType.rsa_hsm, 2048, False)
    ec_policy = kv.policy_for(KeySpec("EC-HSM"), ["y.example.test"])
    assert (ec_policy.key_type, ec_policy.key_curve_name) == (KeyType.ec_hsm, KeyCurveName.p_256)


def test_subject_uses_a_name_that_fits_a_common_name():
    long_name = ("a" * 60) + ".example.test"
    policy = kv.policy_for(KeySpec(), [long_name, "short.example.test"])
    assert policy.subject == "CN=short.example.test"


def test_thumbprint_serial_names_and_key_label_come_from_the_der():
    key = ec.generate_private_key(ec.SECP384R1())
    cert = _self_signed(key)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert kv.thumbprint(der) == hashlib.sha1(der).hexdigest().upper()
    assert kv.dns_names_of(cert) == ("a.example.test", "b.example.test")
    assert kv.public_key_label(cert.public_key()) == "EC P-384" == KeySpec("EC", curve="P-384").label
    assert kv.public_key_label(rsa.generate_private_key(65537, 2048).public_key()) == KeySpec("RSA", 2048).label


def test_public_key_from_key_vault_jwk_round_trips_rsa_and_ec():
    rsa_pub = rsa.generate_private_key(65537, 2048).public_key()
    n = rsa_pub.public_numbers()
    jwk = SimpleNamespace(kty="RSA-HSM", n=n.n.to_bytes(256, "big"), e=n.e.to_bytes(3, "big"))
    assert kv.same_public_key(kv.public_key_from_jwk(jwk), rsa_pub)
    ec_pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    e = ec_pub.public_numbers()
    jwk = SimpleNamespace(kty="EC", crv="P-256", x=e.x.to_bytes(32, "big"), y=e.y.to_bytes(32, "big"))
    assert kv.same_public_key(kv.public_key_from_jwk(jwk), ec_pub)
    assert not kv.same_public_key(kv.public_key_from_jwk(jwk), ec.generate_private_key(ec.SECP256R1()).public_key())


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_throttling_and_server_errors_are_retried(status):
    assert kv.retry_verdict(_http_error(status)) is True


def test_retry_after_is_honoured():
    assert kv.retry_verdict(_http_error(429, headers={"Retry-After": "7"})) == 7.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
def test_client_errors_are_not_retried(status):
    assert kv.retry_verdict(_http_error(status)) is False


def test_connection_errors_are_retried():
    assert kv.retry_verdict(ServiceRequestError("connection reset")) is True


def test_error_mapping_names_the_operation_and_gives_typed_errors():
    forbidden = kv.map_error(_http_error(403, "Forbidden", "Caller is not authorized"), "create certificate 'www'")
    assert isinstance(forbidden, KeyVaultForbidden) and "create certificate 'www'" in str(forbidden)
    assert "role" in str(forbidden)
    deleted = kv.map_error(_http_error(409, "ObjectIsDeletedButRecoverable", "deleted"), "create certificate 'www'")
    assert isinstance(deleted, CertificateDeletedButRecoverable)
    assert "recover" in str(deleted) and "purge" in str(deleted)
    throttled = kv.map_error(_http_error(429, "Throttled"), "get certificate")
    assert type(throttled) is KeyVaultError and throttled.retryable and throttled.status == 429


def test_read_only_failover_is_a_clear_retryable_error_and_not_retried_in_a_tight_loop():
    # Key Vault's words, as reported from the field during a failover.
    err = _http_error(503, "ServiceUnavailable",
                      'Operation "SecretSet" is unavailable: the service is currently in a read-only state.')
    assert kv.retry_verdict(err) is False
    mapped = kv.map_error(err, "merge certificate 'www'")
    assert isinstance(mapped, KeyVaultReadOnly) and mapped.retryable
    assert "failover" in str(mapped)


def test_names_key_ignores_case_order_duplicates_and_trailing_dots():
    assert kv.names_key(["B.example.test.", "a.example.test", "b.example.test"]) == ("a.example.test", "b.example.test")


@pytest.mark.parametrize("error", [_http_error(408), _http_error(429, headers={"Retry-After": "7"}), _http_error(503),
                                   _http_error(403), _http_error(412), ServiceRequestError("connection reset")],
                         ids=["408", "429", "503", "403", "412", "connection"])
def test_key_vault_and_azure_dns_retry_the_same_errors(error):
    """One rule for every Azure call: Azure DNS retried neither 408 nor a reset connection before."""
    from keyvault_acme.dns import azure

    assert azure._verdict(error) == kv.retry_verdict(error)


def test_a_vault_that_drops_connections_is_given_up_within_half_a_minute():
    """Connections that time out (SYNs dropped: here a listener whose backlog is full) cost the connect timeout
    per attempt; the unreachable window must count that wait, not start at the first failure."""
    import socket
    import time

    from keyvault_acme.errors import KeyVaultUnreachable

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)

    class NoToken:
        def get_token(self, *args, **kwargs):
            raise AssertionError("the request never reaches the vault, so no token is asked for")

    vault = kv.KeyVault(f"https://127.0.0.1:{port}", NoToken(), client_kwargs=kv.sdk_client_kwargs())
    started = time.monotonic()
    try:
        with pytest.raises(KeyVaultUnreachable, match="timed out"):
            vault.certificate("x", chain=False)
    finally:
        for s in (*fillers, listener):
            s.close()
    assert time.monotonic() - started < kv.UNREACHABLE_S + 1

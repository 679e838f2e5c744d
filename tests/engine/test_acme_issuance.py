"""Issuance against real Pebble validating DNS-01 through real BIND 9 (RFC 2136 + TSIG).

The CSR is made locally with a throw-away test key (the product takes Key Vault's CSR instead).
"""
import contextlib
import threading
from datetime import datetime, timezone

import josepy as jose
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import PolicyBuilder, Store

from keyvault_acme.acme_client import AcmeClient, IssuedChain
from keyvault_acme.dns.challenges import DnsSolver
from keyvault_acme.dns.rfc2136 import Rfc2136Provider
from keyvault_acme.errors import AcmeError, AcmeUnauthorized, PropagationTimeout, SpecError
from tests.services import BIND_ZONE, DELEGATION_ZONE


def make_csr(names, key=None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="session")
def account_key():
    return jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture(scope="session")
def acme(pebble, loopback_env, account_key):
    return AcmeClient(pebble.directory_url, account_key, contact=["ops@rfc2136.test"], timeout=30)


@pytest.fixture(scope="session")
def solver(bind):
    return DnsSolver({z: Rfc2136Provider(z, bind.server, bind.tsig_key_name, bind.tsig_secret_b64)
                      for z in (BIND_ZONE, DELEGATION_ZONE)})


def verify(chain: IssuedChain, pebble, names):
    root = x509.load_pem_x509_certificate(pebble.root_pem().encode())
    leaf = x509.load_pem_x509_certificate(chain.leaf_pem.encode())
    intermediates = [x509.load_pem_x509_certificate(p.encode()) for p in chain.intermediates_pem]
    verifier = PolicyBuilder().store(Store([root])).time(datetime.now(timezone.utc)).build_server_verifier(
        x509.DNSName(names[0].removeprefix("*.") if not names[0].startswith("*.") else "x." + names[0][2:]))
    path = verifier.verify(leaf, intermediates)
    assert path[-1] == root
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sorted(san) == sorted(names)
    return leaf


@pytest.fixture(scope="session")
def acme_24(pebble_24, loopback_env, account_key):
    """A client of Debian 12's Pebble 2.4, a CA without ARI and profiles."""
    return AcmeClient(pebble_24.directory_url, account_key, contact=["ops@rfc2136.test"], timeout=30)


def test_directory_metadata_degrades_cleanly_without_ari_and_profiles(acme_24):
    info = acme_24.directory
    assert info.url.endswith("/dir")
    assert info.renewal_info is None and dict(info.profiles) == {}
    assert info.caa_identities == ()
    assert info.terms_of_service


def test_renewal_window_is_none_without_ari(acme_24, solver):
    names = ["ari.rfc2136.test"]
    chain = acme_24.obtain_chain(make_csr(names), names, solver)
    assert acme_24.renewal_info(chain.leaf_pem) is None


def test_the_current_pebble_offers_ari_and_profiles(acme):
    info = acme.directory
    assert info.renewal_info and info.renewal_info.endswith("/renewalInfo")
    assert set(info.profiles) == {"default"}
    assert info.caa_identities == ("pebble.letsencrypt.org",)


def test_renewal_window_from_ari(acme, solver):
    names = ["ari2.rfc2136.test"]
    leaf = x509.load_pem_x509_certificate(acme.obtain_chain(make_csr(names), names, solver).leaf_pem.encode())
    answer = acme.renewal_info(leaf)
    assert answer is not None
    start, end = answer.window
    # Pebble's own window: around two thirds of the lifetime, inside it.
    assert leaf.not_valid_before_utc < start < end <= leaf.not_valid_after_utc


def test_an_order_created_before_a_crash_is_resumed(acme, solver, pebble):
    names = ["resume.rfc2136.test"]
    order = acme.new_order(names)  # ...then the process died; its URL was persisted
    chain = acme.obtain_chain(make_csr(names), names, solver, resume_url=order.url)
    assert chain.order_url == order.url
    verify(chain, pebble, names)


def test_account_is_registered_once_and_found_again_by_key(acme, pebble, account_key):
    url = acme.account_url()
    assert url.startswith("https://127.0.0.1")
    again = AcmeClient(pebble.directory_url, account_key)  # same key, new client: onlyReturnExisting finds it
    assert again.account_url() == url


@pytest.mark.parametrize("names", [
    ["single.rfc2136.test"],
    ["multi.rfc2136.test", "www.multi.rfc2136.test", "api.delegated.test"],
    ["*.wild.rfc2136.test", "wild.rfc2136.test"],
], ids=["single", "multi-zone", "wildcard+apex"])
def test_issue_and_verify_chain_against_pebble_root(acme, solver, pebble, bind, names):
    chain = acme.obtain_chain(make_csr(names), names, solver)
    verify(chain, pebble, names)
    assert chain.intermediates_pem and "PRIVATE" not in chain.fullchain_pem
    for n in names:  # cleaned up after success
        assert bind.txt_values("_acme-challenge." + n.removeprefix("*.")) == set()


def test_rsa_csr_and_hundred_names(acme, solver, pebble):
    names = [f"n{i}.hundred.rfc2136.test" for i in range(100)]
    chain = acme.obtain_chain(make_csr(names, rsa.generate_private_key(65537, 2048)), names, solver)
    verify(chain, pebble, names)


def test_cname_delegated_name(acme, solver, pebble, bind):
    bind.set_record("_acme-challenge.delegate.rfc2136.test", "CNAME", "_acme-challenge.delegate.delegated.test.")
    try:
        chain = acme.obtain_chain(make_csr(["delegate.rfc2136.test"]), ["delegate.rfc2136.test"], solver)
        verify(chain, pebble, ["delegate.rfc2136.test"])
    finally:
        bind.delete_record("_acme-challenge.delegate.rfc2136.test", "CNAME")


def test_revoke_with_reason_is_reported_by_pebble(acme, solver, pebble):
    names = ["revoke.rfc2136.test"]
    leaf = x509.load_pem_x509_certificate(acme.obtain_chain(make_csr(names), names, solver).leaf_pem.encode())
    serial = f"{leaf.serial_number:x}"
    assert pebble.cert_status(serial) == "Valid"
    assert acme.revoke(leaf, "keyCompromise") is True
    details = pebble.cert_status_details(serial)
    assert details["Status"] == "Revoked"
    assert acme.revoke(leaf, "keyCompromise") is False  # already revoked: idempotent
    with pytest.raises(SpecError, match="reason"):
        acme.revoke(leaf, "because")


def test_failed_validation_is_a_typed_error_and_records_are_cleaned_up(acme, pebble, bind):
    # A provider that writes a wrong value: the CA must refuse, we must still clean up.
    class Liar(Rfc2136Provider):
        def present(self, fqdn, value, **kw):
            super().present(fqdn, "not-the-right-value", **kw)

        def cleanup(self, fqdn, value, **kw):
            super().cleanup(fqdn, "not-the-right-value", **kw)

    liar = DnsSolver({BIND_ZONE: Liar(BIND_ZONE, bind.server, bind.tsig_key_name, bind.tsig_secret_b64)},
                     propagation_timeout=0.01)
    names = ["liar.rfc2136.test"]
    # Propagation checks our expected value, so it times out first: nothing is ever answered wrongly.
    with pytest.raises(PropagationTimeout):
        acme.obtain_chain(make_csr(names), names, liar)
    assert bind.txt_values("_acme-challenge.liar.rfc2136.test") == set()


def test_a_validation_the_ca_fails_is_a_typed_error_naming_the_name(acme, solver, bind):
    class Vanishing(DnsSolver):
        """Records are live when propagation is checked, then vanish before the CA looks."""

        @contextlib.contextmanager
        def published(self, challenges, **kw):
            with super().published(challenges, **kw) as placements:
                for p in placements:
                    bind.delete_record(p.record, "TXT")
                yield placements

    names = ["vanish.rfc2136.test"]
    with pytest.raises(AcmeUnauthorized) as e:
        acme.obtain_chain(make_csr(names), names, Vanishing(solver.providers))
    assert e.value.identifier == "vanish.rfc2136.test"
    assert "TXT" in e.value.detail  # the CA's own words


def test_ca_problem_documents_become_typed_errors_with_the_cas_words(acme):
    with pytest.raises(AcmeError) as e:
        acme.new_order(["x_y.rfc2136.test"])
    assert e.value.problem_type.endswith(":malformed")
    assert "illegal character" in str(e.value)


def test_bad_nonces_are_retried(bind, loopback_env, solver, account_key, caplog):
    # A Pebble rejecting half of all good nonces: every step must still get through.
    from tests.services import pebble_server

    with pebble_server(bind, nonce_reject_percent=50) as flaky:
        client = AcmeClient(flaky.directory_url, account_key, timeout=30)
        names = ["nonce.rfc2136.test", "www.nonce.rfc2136.test"]
        with caplog.at_level("DEBUG", logger="keyvault_acme.acme"):
            chain = client.obtain_chain(make_csr(names), names, solver)
        verify(chain, flaky, names)
    assert any("badNonce" in r.getMessage() for r in caplog.records)


def test_concurrent_orders_share_one_account(acme, solver, pebble):
    results, failures = [], []

    def issue(i):
        names = [f"c{i}.rfc2136.test"]
        try:
            results.append(verify(acme.obtain_chain(make_csr(names), names, solver), pebble, names))
        except Exception as e:  # noqa: BLE001
            failures.append(e)

    threads = [threading.Thread(target=issue, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures and len(results) == 8

"""A CA or a tag that lies: revocation only at CAs the spec configures, https for every ACME request, and the
CA's chain checked (key, names, signatures, size) before anything is stored.

The liars are loopback servers (:mod:`tests.engine.fake_ca`): a fake ACME endpoint that records what reaches it,
and a proxy in front of the real Pebble that rewrites only the certificate download.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keyvault_acme.account import new_account_key
from keyvault_acme.acme_client import AcmeClient
from keyvault_acme.config import acme_from_dict
from keyvault_acme.errors import ChainMismatch, InsecureUrl, ResponseTooLarge, SpecError, UntrustedDirectory
from keyvault_acme.lifecycle import Engine
from keyvault_acme.model import AcmeAccount
from keyvault_acme.renewal import TAG_DIRECTORY
from tests.engine.conftest import AZURE_ZONE, unique
from tests.engine.fake_ca import LoopbackServer, LyingProxy, Seen, server_context

pytestmark = pytest.mark.integration


def _pebble_tls(pebble):
    """Pebble's own HTTPS certificate (127.0.0.1, trusted by the tests' CA bundle) for the fake servers."""
    folder = Path(pebble.tls_ca_pem_path).parent
    return server_context(str(folder / "tls-cert.pem"), str(folder / "tls-key.pem"))


def _recording_ca(pebble=None, *, tls=True):
    def answer(seen: Seen):
        return 200, {"Content-Type": "application/json", "Replay-Nonce": "bm9uY2U"}, b"{}"
    return LoopbackServer(answer, _pebble_tls(pebble) if tls else None)


# -- 6: revocation goes only to configured CAs ----------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_a_tag_naming_another_ca_is_refused_and_nothing_reaches_it(world, engine, pebble, scheme, credential):
    spec = world.spec([unique(AZURE_ZONE)])
    issued = engine.issue(spec)
    vault = engine.wiring.vault(spec.vault_url)
    with _recording_ca(pebble, tls=scheme == "https") as fake:
        lie = f"{fake.base_url}/directory"
        vault.update(spec.name, issued.version, tags={**issued.tags, TAG_DIRECTORY: lie})
        with pytest.raises(UntrustedDirectory) as caught:
            engine.revoke(spec, "keyCompromise")
        with pytest.raises(UntrustedDirectory):
            engine.revoke_all(spec)
        # Nor do renewal decisions ask it for renewal info (preview, status and refresh would, every run).
        tagged = engine.inspect(spec.vault_url, spec.name)
        lookup = Engine(credential).renewal_info(spec, tagged)
        assert lookup.info is None and "not configure" in lookup.note
        Engine(credential).decide(spec, tagged)
        assert fake.seen == []
    message = str(caught.value)
    assert lie in message and spec.acme.directory_url in message and "acme.previous_directories" in message
    assert pebble.cert_status(issued.serial) == "Valid"
    after = engine.inspect(spec.vault_url, spec.name)
    assert after.enabled and not after.revoked_reason


def test_a_previous_ca_is_trusted_only_when_configured(world, engine, pebble):
    spec = world.spec([unique(AZURE_ZONE)])
    issued = engine.issue(spec)
    moved = replace(spec, acme=replace(spec.acme, directory_url="https://127.0.0.1:1/other-ca"))
    with pytest.raises(UntrustedDirectory, match="https://127.0.0.1:1/other-ca"):
        engine.revoke_all(moved)
    assert pebble.cert_status(issued.serial) == "Valid"
    remembered = replace(moved, acme=replace(moved.acme, previous_directories=(spec.acme.directory_url,)))
    assert engine.revoke_all(remembered, "superseded") == [issued.serial]
    assert pebble.cert_status(issued.serial) == "Revoked"


def test_previous_directories_must_be_https():
    assert acme_from_dict({"previous_directories": ["https://ca.example/dir"]}).previous_directories == (
        "https://ca.example/dir",)
    with pytest.raises(SpecError, match=r"acme.previous_directories\[0\]: 'http://ca.example/dir' is not an https"):
        acme_from_dict({"previous_directories": ["http://ca.example/dir"]})
    with pytest.raises(SpecError, match="previous_directories"):
        AcmeAccount(previous_directories=("ftp://x",))


# -- 7: every ACME request is https --------------------------------------------------------------------------
def test_a_redirect_to_http_is_refused_before_anything_is_sent(pebble, loopback_env):
    with LoopbackServer(lambda seen: (200, {}, b"{}")) as cleartext:
        target = f"{cleartext.base_url}/directory"
        with LoopbackServer(lambda seen: (302, {"Location": target}, b""), _pebble_tls(pebble)) as ca:
            with pytest.raises(InsecureUrl, match=f"{target}.*must use https"):
                AcmeClient(f"{ca.base_url}/directory", new_account_key()).read_directory()
            assert len(ca.seen) == 1
        assert cleartext.seen == []


def test_a_redirect_to_https_is_followed(pebble, loopback_env):
    target = pebble.directory_url
    with LoopbackServer(lambda seen: (301, {"Location": target}, b""), _pebble_tls(pebble)) as ca:
        info = AcmeClient(f"{ca.base_url}/directory", new_account_key()).read_directory()
    assert info.url.startswith("https://127.0.0.1")


def test_a_directory_listing_http_urls_is_refused_before_anything_is_sent(pebble, loopback_env):
    with LoopbackServer(lambda seen: (200, {"Replay-Nonce": "bm9uY2U"}, b"{}")) as cleartext:
        def directory(seen: Seen):
            body = {"newNonce": f"{cleartext.base_url}/nonce", "newAccount": f"{cleartext.base_url}/acct",
                    "newOrder": f"{cleartext.base_url}/order", "revokeCert": f"{cleartext.base_url}/revoke"}
            return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

        with LoopbackServer(directory, _pebble_tls(pebble)) as ca:
            client = AcmeClient(f"{ca.base_url}/directory", new_account_key())
            with pytest.raises(InsecureUrl, match=f"{cleartext.base_url}/nonce.*lists it as newNonce"):
                client.account_url()
        assert cleartext.seen == []


def test_an_http_directory_url_is_refused_without_a_request(loopback_env):
    with LoopbackServer(lambda seen: (200, {}, b"{}")) as cleartext:
        with pytest.raises(InsecureUrl, match="the ACME directory URL"):
            AcmeClient(f"{cleartext.base_url}/directory", new_account_key()).read_directory()
        assert cleartext.seen == []


# -- 8: the CA's chain is checked before anything is stored -----------------------------------------------------
def _resigned(cert: x509.Certificate, *, key=None, names=None, signer=None) -> x509.Certificate:
    """``cert`` again, optionally with another public key or names, signed by ``signer`` (a fresh key)."""
    signer = signer or ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName(n) for n in names]) if names else \
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
            .public_key(key or cert.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(san, critical=False).sign(signer, hashes.SHA256()))


def _pem(certs) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _other_key(certs):
    return _pem([_resigned(certs[0], key=ec.generate_private_key(ec.SECP256R1()).public_key()), *certs[1:]])


def _other_names(certs):
    return _pem([_resigned(certs[0], names=["evil.example"]), *certs[1:]])


def _bad_signature(certs):
    return _pem([_resigned(certs[0]), *certs[1:]])


def _leaf_only(certs):
    return _pem(certs[:1])


def _huge(certs):
    return _pem(certs) + b"#" * (2 << 20)


@pytest.fixture
def lying_ca(world, pebble):
    """A function making a spec whose CA is a proxy in front of Pebble that rewrites the certificate download."""
    made = []

    def make(rewrite_chain):
        def rewrite(seen: Seen, status: int, body: bytes) -> bytes:
            if status == 200 and "/certZ/" in seen.path:
                return rewrite_chain(x509.load_pem_x509_certificates(body))
            return body
        upstream = urlsplit(pebble.directory_url)
        proxy = LyingProxy((upstream.hostname, upstream.port), pebble.tls_ca_pem_path, _pebble_tls(pebble), rewrite)
        made.append(proxy.__enter__())
        return replace(world.spec([unique(AZURE_ZONE)]),
                       acme=AcmeAccount(directory_url=f"{proxy.base_url}{upstream.path}"))

    yield make
    for proxy in made:
        proxy.__exit__(None, None, None)


@pytest.mark.parametrize("lie, error, words", [
    (_other_key, ChainMismatch, "another public key"),
    (_other_names, ChainMismatch, "evil.example"),
    (_bad_signature, ChainMismatch, "does not verify"),
    (_leaf_only, ChainMismatch, "1 certificate"),
    (_huge, ResponseTooLarge, "longer than"),
])
def test_a_chain_that_is_not_what_was_asked_for_is_never_stored(lying_ca, engine, lie, error, words):
    spec = lying_ca(lie)
    with pytest.raises(error, match=words):
        engine.issue(spec)
    vault = engine.wiring.vault(spec.vault_url)
    assert vault.pending(spec.name) is None  # discarded, with the key Key Vault made for it
    assert engine.inspect(spec.vault_url, spec.name) is None
    assert vault.secret_versions(f"{spec.name}-chain") == []


def test_the_proxy_passes_an_honest_chain(lying_ca, engine):
    spec = lying_ca(_pem)
    assert engine.issue(spec).names == spec.dns_names

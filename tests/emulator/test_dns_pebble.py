"""Pebble resolves DNS-01 challenges straight from the emulator's DNS server (`pebble -dnsserver`), no BIND between.

Go's resolver is stricter than dnspython's (AA, EDNS, lame-referral checks), so this is the proof that a real
CA's validation authority accepts our answers, including a TXT record set with several values.
"""
from __future__ import annotations

import datetime as dt
from typing import Iterator

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import josepy as jose
import pytest
from acme import challenges, client, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from emulator.dns_server import DnsServer
from emulator.dns_store import ZoneKey, ZoneStore
from emulator.pebble import Pebble

ZONE = ZoneKey.of("sub-pebble", "rg-pebble", "pebble-dns.test")


@pytest.fixture(scope="module")
def store() -> ZoneStore:
    s = ZoneStore()
    s.create_zone("sub-pebble", "rg-pebble", "pebble-dns.test")
    return s


@pytest.fixture(scope="module")
def pebble(store: ZoneStore) -> Iterator[Pebble]:
    with DnsServer(store) as server, Pebble(dns_server=("127.0.0.1", server.port), nonce_reject_percent=0) as ca:
        yield ca


def test_pebble_validates_dns01_against_the_emulator(store: ZoneStore, pebble: Pebble,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    account_key = jose.JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    net = client.ClientNetwork(account_key, user_agent="emulator-dns-test", verify_ssl=pebble.tls_ca_pem_path)  # type: ignore[arg-type]
    acme = client.ClientV2(client.ClientV2.get_directory(pebble.directory_url, net), net)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))

    names = ["www.pebble-dns.test", "api.pebble-dns.test"]
    cert_key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(cert_key, hashes.SHA256()))
    order = acme.new_order(csr.public_bytes(serialization.Encoding.PEM))

    for authz in order.authorizations:
        chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
        response, validation = chall.response_and_validation(account_key)
        label = authz.body.identifier.value.split(".")[0]
        # A stale value next to the right one: the CA must find its token among several.
        values = ['"stale-token-from-an-earlier-attempt"', f'"{validation}"']
        store.put_record_set(ZONE, f"_acme-challenge.{label}", "TXT", ttl=60, records=[
            dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, v) for v in values])
        acme.answer_challenge(chall, response)

    deadline = dt.datetime.now() + dt.timedelta(seconds=60)
    final = acme.poll_and_finalize(order, deadline)
    leaf = x509.load_pem_x509_certificates(final.fullchain_pem.encode())[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sorted(sans) == sorted(names)

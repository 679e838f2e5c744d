"""The emulator's authoritative DNS server, queried with dnspython over UDP and TCP like Pebble and the engine do."""
from __future__ import annotations

from typing import Callable, Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from emulator.dns_server import DnsServer
from emulator.dns_store import ZoneKey, ZoneStore

Query = Callable[..., dns.message.Message]
ZONE = ZoneKey.of("sub-1", "rg-1", "example.com")
CHILD = ZoneKey.of("sub-2", "rg-2", "child.example.com")


def rd(type_: str, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(type_), text)


@pytest.fixture(scope="module")
def store() -> ZoneStore:
    s = ZoneStore()
    s.create_zone("sub-1", "rg-1", "example.com")
    s.create_zone("sub-2", "rg-2", "child.example.com")  # a zone nested in another one, in another subscription
    s.create_zone("sub-1", "rg-1", "example.org")
    s.put_record_set(ZONE, "_acme-challenge.www", "TXT", ttl=60,
                     records=[rd("TXT", '"token-one"'), rd("TXT", '"token-two"'), rd("TXT", '"part1" "part2"')])
    s.put_record_set(ZONE, "www", "A", ttl=300, records=[rd("A", "192.0.2.10")])
    s.put_record_set(ZONE, "alias", "CNAME", ttl=300, records=[rd("CNAME", "www.example.com.")])
    s.put_record_set(ZONE, "cross", "CNAME", ttl=300, records=[rd("CNAME", "api.child.example.com.")])
    s.put_record_set(ZONE, "outside", "CNAME", ttl=300, records=[rd("CNAME", "somewhere.invalid.")])
    s.put_record_set(ZONE, "_acme-challenge.delegated", "CNAME", ttl=300,
                     records=[rd("CNAME", "_acme-challenge.delegated.example.org.")])
    s.put_record_set(ZONE, "@", "CAA", ttl=300, records=[rd("CAA", '0 issue "letsencrypt.org"'),
                                                          rd("CAA", '0 iodef "mailto:sec@example.com"')])
    s.put_record_set(ZONE, "empty", "TXT", ttl=60, records=[])
    s.put_record_set(ZONE, "sub", "NS", ttl=3600, records=[rd("NS", "ns.elsewhere.invalid.")])
    s.put_record_set(CHILD, "api", "A", ttl=60, records=[rd("A", "192.0.2.20")])
    return s


@pytest.fixture(scope="module")
def server(store: ZoneStore) -> Iterator[DnsServer]:
    with DnsServer(store) as srv:
        yield srv


@pytest.fixture(params=["udp", "tcp"])
def query(request: pytest.FixtureRequest, server: DnsServer) -> Query:
    send = dns.query.udp if request.param == "udp" else dns.query.tcp

    def ask(name: str, type_: str, **kwargs: object) -> dns.message.Message:
        return send(dns.message.make_query(name, type_, **kwargs), "127.0.0.1", port=server.port, timeout=5)

    return ask


def texts(rrset: dns.rrset.RRset) -> set[str]:
    return {r.to_text() for r in rrset}


def soa_in_authority(response: dns.message.Message, zone: str) -> bool:
    return any(r.rdtype == dns.rdatatype.SOA and r.name.to_text() == zone for r in response.authority)


def test_txt_answers_every_value_authoritatively(query: Query) -> None:
    response = query("_acme-challenge.www.example.com", "TXT")
    assert response.rcode() == dns.rcode.NOERROR and response.flags & dns.flags.AA
    (rrset,) = response.answer
    assert rrset.ttl == 60
    assert texts(rrset) == {'"token-one"', '"token-two"', '"part1" "part2"'}


def test_caa_and_apex_soa_ns(query: Query) -> None:
    caa = query("example.com", "CAA").answer[0]
    assert texts(caa) == {'0 issue "letsencrypt.org"', '0 iodef "mailto:sec@example.com"'}
    ns = query("example.com", "NS")
    assert ns.flags & dns.flags.AA and len(ns.answer[0]) == 4
    soa = query("EXAMPLE.com", "SOA").answer[0]
    assert soa[0].mname.to_text() == "ns1-01.azure-dns.emulator."


def test_nxdomain_vs_nodata(query: Query) -> None:
    nx = query("missing.example.com", "TXT")
    assert nx.rcode() == dns.rcode.NXDOMAIN and not nx.answer and soa_in_authority(nx, "example.com.")

    nodata = query("www.example.com", "TXT")  # the name holds an A record set only
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and soa_in_authority(nodata, "example.com.")
    assert nodata.authority[0].ttl == 300  # min(SOA TTL, SOA minimum), RFC 2308

    ent = query("www.example.com", "A")  # sanity: the same name answers A
    assert texts(ent.answer[0]) == {"192.0.2.10"}
    empty_non_terminal = query("_acme-challenge.www.example.com", "A")
    assert empty_non_terminal.rcode() == dns.rcode.NOERROR and not empty_non_terminal.answer
    above = query("www.example.com", "CAA")
    assert above.rcode() == dns.rcode.NOERROR  # www exists: it owns an A record set

    empty_set = query("empty.example.com", "TXT")  # a record set with no records: the name exists, no data
    assert empty_set.rcode() == dns.rcode.NOERROR and not empty_set.answer and soa_in_authority(empty_set, "example.com.")


def test_cname_is_chased_within_and_across_served_zones(query: Query) -> None:
    same_zone = query("alias.example.com", "A")
    assert [r.rdtype for r in same_zone.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert texts(same_zone.answer[1]) == {"192.0.2.10"}

    cross_zone = query("cross.example.com", "A")
    assert texts(cross_zone.answer[-1]) == {"192.0.2.20"}

    dangling = query("_acme-challenge.delegated.example.com", "TXT")  # target zone served, name absent
    assert dangling.rcode() == dns.rcode.NXDOMAIN and dangling.answer[0].rdtype == dns.rdatatype.CNAME
    assert soa_in_authority(dangling, "example.org.")

    outside = query("outside.example.com", "TXT")  # target outside every zone: CNAME only, the client follows
    assert outside.rcode() == dns.rcode.NOERROR and [r.rdtype for r in outside.answer] == [dns.rdatatype.CNAME]

    asked_for_cname = query("alias.example.com", "CNAME")
    assert [r.rdtype for r in asked_for_cname.answer] == [dns.rdatatype.CNAME]


def test_most_specific_zone_answers_and_delegations_refer(query: Query) -> None:
    child = query("child.example.com", "SOA")
    assert child.answer[0].name.to_text() == "child.example.com." and child.flags & dns.flags.AA
    referral = query("host.sub.example.com", "A")
    assert not referral.flags & dns.flags.AA and not referral.answer
    assert referral.authority[0].rdtype == dns.rdatatype.NS


def test_names_outside_every_zone_are_refused(query: Query) -> None:
    response = query("example.net", "A")
    assert response.rcode() == dns.rcode.REFUSED and not response.flags & dns.flags.AA


def test_names_above_the_zones_exist_without_records(query: Query) -> None:
    """A CAA check climbs to the top-level domain: ``com`` above ``example.com`` answers, with nothing there."""
    for qname in ("com", "org."):
        response = query(qname, "CAA")
        assert response.rcode() == dns.rcode.NOERROR and not response.answer and not response.flags & dns.flags.AA


def test_writes_are_served_at_once(store: ZoneStore, server: DnsServer) -> None:
    name = "_acme-challenge.fresh.example.com"

    def ask() -> dns.message.Message:
        return dns.query.udp(dns.message.make_query(name, "TXT"), "127.0.0.1", port=server.port, timeout=5)

    assert ask().rcode() == dns.rcode.NXDOMAIN
    store.put_record_set(ZONE, "_acme-challenge.fresh", "TXT", ttl=60, records=[rd("TXT", '"new"')])
    assert texts(ask().answer[0]) == {'"new"'}
    store.delete_record_set(ZONE, "_acme-challenge.fresh", "TXT")
    assert ask().rcode() == dns.rcode.NXDOMAIN


def test_large_answers_truncate_over_udp_and_complete_over_tcp(store: ZoneStore, server: DnsServer) -> None:
    store.put_record_set(ZONE, "big", "TXT", ttl=60, records=[rd("TXT", f'"{i:03d}{"x" * 200}"') for i in range(20)])
    q = dns.message.make_query("big.example.com", "TXT")  # no EDNS: 512-octet limit
    udp = dns.query.udp(q, "127.0.0.1", port=server.port, timeout=5, ignore_trailing=True)
    assert udp.flags & dns.flags.TC
    tcp = dns.query.tcp(q, "127.0.0.1", port=server.port, timeout=5)
    assert len(tcp.answer[0]) == 20


def test_garbage_gets_formerr_and_the_server_keeps_serving(server: DnsServer) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"\x12\x34garbage-that-is-not-dns", ("127.0.0.1", server.port))
        reply = dns.message.from_wire(sock.recv(512))
    assert reply.id == 0x1234 and reply.rcode() == dns.rcode.FORMERR
    ok = dns.query.udp(dns.message.make_query("example.com", "SOA"), "127.0.0.1", port=server.port, timeout=5)
    assert ok.rcode() == dns.rcode.NOERROR


def test_wildcard_record_sets_answer_for_names_that_do_not_exist(store: ZoneStore, server: DnsServer) -> None:
    store.put_record_set(ZONE, "*.apps", "A", ttl=60, records=[rd("A", "192.0.2.99")])
    store.put_record_set(ZONE, "real.apps", "TXT", ttl=60, records=[rd("TXT", '"x"')])

    def ask(name: str, type_: str) -> dns.message.Message:
        return dns.query.udp(dns.message.make_query(name, type_), "127.0.0.1", port=server.port, timeout=5)

    synthesized = ask("anything.apps.example.com", "A")
    assert synthesized.answer[0].name.to_text() == "anything.apps.example.com."
    assert texts(synthesized.answer[0]) == {"192.0.2.99"}
    assert ask("deep.anything.apps.example.com", "A").answer  # the closest encloser is still apps
    wildcard_nodata = ask("anything.apps.example.com", "TXT")
    assert wildcard_nodata.rcode() == dns.rcode.NOERROR and not wildcard_nodata.answer
    existing = ask("real.apps.example.com", "A")  # a name that exists is never covered by the wildcard
    assert existing.rcode() == dns.rcode.NOERROR and not existing.answer
    assert ask("other.example.com", "A").rcode() == dns.rcode.NXDOMAIN  # no wildcard above it

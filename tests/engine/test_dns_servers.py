"""Configured DNS servers given by host name (``resolvers``, an RFC 2136 zone's ``server``) reach dnspython as
addresses: against the real BIND 9 as ``localhost:PORT``, and as a clear error when a name does not resolve."""
from __future__ import annotations

import socket
from dataclasses import replace

import dns.query
import pytest

from keyvault_acme.dns.base import Challenge
from keyvault_acme.dns.challenges import DnsSolver
from keyvault_acme.dns.propagation import by_server, ns_names, resolver_servers
from keyvault_acme.dns.rfc2136 import Rfc2136Provider
from keyvault_acme.dns.servers import server_addresses
from keyvault_acme.errors import DnsError
from tests.engine.conftest import unique
from tests.services import BIND_ZONE

# An IPv6 address this host cannot reach: the kernel refuses at once (no such interface), nothing leaves loopback.
UNREACHABLE_V6 = "fe80::1%99"


def fake_names(monkeypatch, names: dict[str, list[str]]) -> list[str]:
    """Answer getaddrinfo for ``names`` here (other names as usual); returns the names asked for. A name mapped
    to no addresses fails as an unknown name does, without asking any DNS server off this machine."""
    real, asked = socket.getaddrinfo, []

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in names:
            return real(host, port, *args, **kwargs)
        asked.append(host)
        if not names[host]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_DGRAM, 17, "",
                 (a, port, 0, 0) if ":" in a else (a, port)) for a in names[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


@pytest.mark.parametrize(("configured", "addresses"), [
    ("192.0.2.53", [("192.0.2.53", 53)]),
    ("192.0.2.53:5353", [("192.0.2.53", 5353)]),
    ("2001:db8::53", [("2001:db8::53", 53)]),
    ("[2001:db8::53]:5353", [("2001:db8::53", 5353)]),
    ("[2001:db8::53]", [("2001:db8::53", 53)]),
])
def test_ip_addresses_are_their_own_address_and_never_looked_up(configured, addresses, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail(f"looked up {a}"))
    assert server_addresses(configured, "resolvers[0]") == addresses


def test_a_host_name_gives_every_address_once_with_its_port(monkeypatch):
    asked = fake_names(monkeypatch, {"ns1.corp.test": ["192.0.2.1", "2001:db8::1", "192.0.2.1"]})
    assert server_addresses("ns1.corp.test:5353", "resolvers[0]") == [("192.0.2.1", 5353), ("2001:db8::1", 5353)]
    assert server_addresses("ns1.corp.test", "resolvers[0]") == [("192.0.2.1", 53), ("2001:db8::1", 53)]
    assert asked == ["ns1.corp.test", "ns1.corp.test"]


def test_localhost_resolves_on_this_machine():
    addresses = server_addresses("localhost:5353", "resolvers[0]")
    assert ("127.0.0.1", 5353) in addresses and len(set(addresses)) == len(addresses)


def test_a_name_that_does_not_resolve_is_a_dns_error_naming_the_entry_and_the_fix(monkeypatch):
    # The system resolver would ask its DNS server (off this machine) about .invalid: answered here instead.
    fake_names(monkeypatch, {"ns1.example.invalid": []})
    with pytest.raises(DnsError) as e:
        resolver_servers(["127.0.0.1", "ns1.example.invalid:53"])
    message = str(e.value)
    assert "resolvers[1]" in message and "ns1.example.invalid:53" in message
    assert "does not resolve" in message and "IP address" in message


def test_an_rfc2136_server_that_does_not_resolve_names_the_zone_before_anything_is_sent(bind, monkeypatch):
    fake_names(monkeypatch, {"primary.example.invalid": []})
    p = Rfc2136Provider(BIND_ZONE, "primary.example.invalid:53", bind.tsig_key_name, bind.tsig_secret_b64)
    for call in (p.check_writable, lambda: p.present(f"_acme-challenge.x.{BIND_ZONE}", "v")):
        with pytest.raises(DnsError, match=f"zones\\[\\].server of zone {BIND_ZONE} 'primary.example.invalid:53'"):
            call()


def test_localhost_as_rfc2136_server_writes_checks_and_answers_for_the_zone(bind):
    p = Rfc2136Provider(BIND_ZONE, f"localhost:{bind.port}", bind.tsig_key_name, bind.tsig_secret_b64)
    assert p.check_writable() > 0
    assert (bind.host, bind.port) in p.authoritative_servers(BIND_ZONE)[f"localhost:{bind.port}"]
    record = f"_acme-challenge.by-name.{BIND_ZONE}"
    p.present(record, "by-name")
    try:
        assert bind.txt_values(record) == {"by-name"}
    finally:
        p.cleanup(record, "by-name")
    assert bind.txt_values(record) == set()


def test_rfc2136_updates_try_the_next_address_when_one_does_not_answer(bind, monkeypatch):
    fake_names(monkeypatch, {"dual.primary.test": [UNREACHABLE_V6, bind.host]})
    real_send, sent_to = dns.query.udp_with_fallback, []
    monkeypatch.setattr(dns.query, "udp_with_fallback",
                        lambda q, where, **kw: sent_to.append(where) or real_send(q, where, **kw))
    p = Rfc2136Provider(BIND_ZONE, f"dual.primary.test:{bind.port}", bind.tsig_key_name, bind.tsig_secret_b64,
                        timeout=2)
    assert p.check_writable() > 0
    record = f"_acme-challenge.dual-primary.{BIND_ZONE}"
    p.present(record, "v")
    try:
        assert bind.txt_values(record) == {"v"}
    finally:
        p.cleanup(record, "v")
    assert bind.txt_values(record) == set()
    # The SOA query, the no-op update, add, remove: each tried v6 first.
    assert sent_to == [UNREACHABLE_V6, bind.host] * 4


def test_localhost_as_resolver_checks_propagation_and_delegation(bind):
    resolver = f"localhost:{bind.port}"
    s = DnsSolver({BIND_ZONE: Rfc2136Provider(BIND_ZONE, bind.server, bind.tsig_key_name, bind.tsig_secret_b64)},
                  resolvers=[resolver], propagation_timeout=10)
    servers = s.servers(BIND_ZONE)
    assert {n.host for n in servers} >= {"127.0.0.1"} and {n.server for n in servers} == {resolver}
    name = unique(BIND_ZONE, "resolver-by-name")
    with s.published([Challenge(name, "v")]) as [placement]:
        assert bind.txt_values(placement.record) == {"v"}
    assert bind.txt_values(placement.record) == set()
    # One resolver named once, however many addresses it has; its NS set is BIND's.
    [(who, addresses)] = by_server(resolver_servers([resolver])).items()
    assert who == resolver and ns_names(BIND_ZONE, addresses)


def test_engine_check_accepts_host_names_for_the_server_and_the_resolvers(world, engine):
    spec = world.spec([unique(BIND_ZONE)], zones="rfc2136", resolvers=(f"localhost:{world.bind.port}",))
    spec = replace(spec, zones=tuple(replace(z, server=f"localhost:{world.bind.port}") for z in spec.zones))
    results = engine.check(spec)
    assert [r for r in results if not r.ok] == []
    assert {"zones writable", "NS delegation", "CAA"} <= {r.step for r in results}

"""DNS-01 plumbing against a real BIND 9: RFC 2136 writes, propagation checks, CNAME delegation, clean-up."""
import pytest

from emulator.process import free_dns_port
from keyvault_acme.dns.base import Challenge, DnsProvider
from keyvault_acme.dns.challenges import DnsSolver
from keyvault_acme.dns.propagation import Expectation, Nameserver, wait_for_propagation
from keyvault_acme.dns.rfc2136 import Rfc2136Provider
from keyvault_acme.errors import DnsError, PropagationTimeout
from tests.services import BIND_ZONE, DELEGATION_ZONE


def provider(bind, zone=BIND_ZONE, secret=None, **kw) -> Rfc2136Provider:
    return Rfc2136Provider(zone, bind.server, bind.tsig_key_name, secret or bind.tsig_secret_b64, **kw)


def solver(bind, **kw) -> DnsSolver:
    return DnsSolver({z: provider(bind, z) for z in (BIND_ZONE, DELEGATION_ZONE)}, **kw)


def test_provider_satisfies_the_protocol(bind):
    assert isinstance(provider(bind), DnsProvider)


def test_values_share_one_record_set_and_cleanup_removes_only_its_own(bind):
    p, name = provider(bind), f"_acme-challenge.share.{BIND_ZONE}"
    p.present(name, "value-one")
    p.present(name, "value-two")
    assert bind.txt_values(name) == {"value-one", "value-two"}
    p.cleanup(name, "value-one")
    assert bind.txt_values(name) == {"value-two"}
    p.cleanup(name, "value-two")
    p.cleanup(name, "value-two")  # already gone is fine
    assert bind.txt_values(name) == set()


def test_wrong_tsig_secret_is_a_clear_error_without_the_secret(bind):
    wrong = "c2VjcmV0LXRoYXQtaXMtd3Jvbmctc2VjcmV0LXRoYXQtaXM="
    with pytest.raises(DnsError, match="TSIG") as e:
        provider(bind, secret=wrong).present(f"_acme-challenge.x.{BIND_ZONE}", "v")
    assert wrong not in str(e.value) and bind.tsig_secret_b64 not in str(e.value)


def test_txt_only_key_cannot_write_other_types(bind):
    # Least privilege: the product's key may only write TXT (the update-policy grants nothing else).
    import dns.query
    import dns.update
    p = provider(bind)
    update = p._update()
    update.add(f"evil.{BIND_ZONE}.", 60, "A", "192.0.2.1")
    assert dns.query.tcp(update, bind.host, port=bind.port, timeout=5).rcode() == dns.rcode.REFUSED


def test_name_outside_the_zone_is_refused_before_sending(bind):
    with pytest.raises(DnsError, match="not in the zone"):
        provider(bind).present("_acme-challenge.www.elsewhere.test", "v")


def test_propagation_waits_for_every_server_and_names_the_missing_one(bind):
    record = f"_acme-challenge.prop.{BIND_ZONE}"
    p = provider(bind)
    p.present(record, "live")
    try:
        wait_for_propagation([Expectation(record, "live", (Nameserver(bind.host, bind.port),))], timeout=5)
        silent = Nameserver("127.0.0.1", free_dns_port())
        with pytest.raises(PropagationTimeout) as e:
            wait_for_propagation([Expectation(record, "live", (Nameserver(bind.host, bind.port), silent))],
                                 timeout=0.3)
        assert str(silent) in str(e.value) and record in str(e.value)
        with pytest.raises(PropagationTimeout, match="served live"):
            wait_for_propagation([Expectation(record, "other", (Nameserver(bind.host, bind.port),))], timeout=0.2)
    finally:
        p.cleanup(record, "live")


# An IPv6 address this host cannot reach, as on a runner without IPv6: the kernel answers "network is
# unreachable" at once (a link-local address on an interface that does not exist), nothing leaves loopback.
UNREACHABLE_V6 = ("fe80::1%99", 53)


class _DualStackNameserver:
    """BIND's RFC 2136 provider, but its hint names one name server with an unreachable IPv6 address and a
    working IPv4 one, as Azure DNS's name servers look from a runner without IPv6."""

    def __init__(self, inner: Rfc2136Provider, bind) -> None:
        self._inner, self._bind = inner, bind
        self.propagation_timeout = inner.propagation_timeout

    def present(self, fqdn, value, **kw):
        self._inner.present(fqdn, value, **kw)

    def cleanup(self, fqdn, value, **kw):
        self._inner.cleanup(fqdn, value, **kw)

    def authoritative_servers(self, zone):
        return {"ns1-dual.example": [UNREACHABLE_V6, (self._bind.host, self._bind.port)]}


def test_a_name_server_serves_when_any_of_its_addresses_does(bind):
    record = f"_acme-challenge.dual.{BIND_ZONE}"
    p = provider(bind)
    p.present(record, "live")
    try:
        dual = (Nameserver(*UNREACHABLE_V6, name="ns1"), Nameserver(bind.host, bind.port, name="ns1"))
        wait_for_propagation([Expectation(record, "live", dual)], timeout=3)
        # Every name server still needs one address that answers: one reachable only over IPv6 is not served.
        v6_only = Nameserver(*UNREACHABLE_V6, name="ns2")
        with pytest.raises(PropagationTimeout, match="ns2 did not serve") as e:
            wait_for_propagation([Expectation(record, "live", (*dual, v6_only))], timeout=0.3)
        assert "ns1" not in str(e.value)
    finally:
        p.cleanup(record, "live")


def test_without_resolvers_the_solver_checks_each_name_server_over_any_address(bind):
    """No resolvers: the provider's name servers decide, and an unreachable IPv6 address does not stall it."""
    s = DnsSolver({BIND_ZONE: _DualStackNameserver(provider(bind), bind)}, propagation_timeout=3)
    assert [str(n) for n in s.servers(BIND_ZONE)] == ["fe80::1%99:53", f"{bind.host}:{bind.port}"]
    with s.published([Challenge("dual-stack.rfc2136.test", "v")]):
        assert bind.txt_values("_acme-challenge.dual-stack.rfc2136.test") == {"v"}
    assert bind.txt_values("_acme-challenge.dual-stack.rfc2136.test") == set()


def test_solver_publishes_waits_and_cleans_up_after_success(bind):
    s = solver(bind)
    challenges = [Challenge("ok.rfc2136.test", "v1"), Challenge("*.ok.rfc2136.test", "v2")]
    with s.published(challenges) as placements:
        assert {p.record for p in placements} == {"_acme-challenge.ok.rfc2136.test"}
        assert bind.txt_values("_acme-challenge.ok.rfc2136.test") == {"v1", "v2"}
    assert bind.txt_values("_acme-challenge.ok.rfc2136.test") == set()


def test_solver_cleans_up_after_a_failure(bind):
    s = solver(bind)
    with pytest.raises(RuntimeError, match="CA said no"):
        with s.published([Challenge("fail.rfc2136.test", "v")]):
            assert bind.txt_values("_acme-challenge.fail.rfc2136.test") == {"v"}
            raise RuntimeError("CA said no")
    assert bind.txt_values("_acme-challenge.fail.rfc2136.test") == set()


def test_solver_cleans_up_when_propagation_times_out(bind):
    s = solver(bind, resolvers=[bind.server, f"127.0.0.1:{free_dns_port()}"], propagation_timeout=0.2)
    with pytest.raises(PropagationTimeout):
        with s.published([Challenge("slow.rfc2136.test", "v")]):
            pass
    assert bind.txt_values("_acme-challenge.slow.rfc2136.test") == set()


def test_cname_delegation_writes_where_the_cname_points(bind):
    origin, target = "_acme-challenge.cname.rfc2136.test", f"cname-rfc2136.{DELEGATION_ZONE}"
    bind.set_record(origin, "CNAME", target + ".")
    try:
        with solver(bind).published([Challenge("cname.rfc2136.test", "v")]) as placements:
            assert (placements[0].record, placements[0].zone) == (target, DELEGATION_ZONE)
            assert bind.txt_values(target) == {"v"}
        assert bind.txt_values(target) == set()
    finally:
        bind.delete_record(origin, "CNAME")


def test_cname_into_an_unconfigured_zone_is_a_clear_error(bind):
    origin = "_acme-challenge.away.rfc2136.test"
    bind.set_record(origin, "CNAME", "_acme-challenge.somewhere.example.")
    try:
        with pytest.raises(DnsError, match="no configured zone"):
            with solver(bind).published([Challenge("away.rfc2136.test", "v")]):
                pass
    finally:
        bind.delete_record(origin, "CNAME")


@pytest.fixture
def silent_resolver():
    """A loopback UDP socket that receives queries and never answers (a resolver behind a dead firewall)."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_a_resolver_that_does_not_answer_is_a_dns_error_naming_server_and_name(bind, silent_resolver):
    s = solver(bind, resolvers=[silent_resolver])
    with pytest.raises(DnsError) as e:
        with s.published([Challenge("quiet.rfc2136.test", "v")]):
            pass
    assert silent_resolver in str(e.value) and "_acme-challenge.quiet.rfc2136.test" in str(e.value)
    assert "Timeout" in str(e.value)
    assert bind.txt_values("_acme-challenge.quiet.rfc2136.test") == set()  # nothing was written


def test_a_refusing_resolver_is_a_dns_error_naming_server_and_name(bind):
    port = free_dns_port()  # nothing listens there: the query is refused at once
    with pytest.raises(DnsError) as e:
        solver(bind, resolvers=[f"127.0.0.1:{port}"]).place([Challenge("closed.rfc2136.test", "v")])
    assert f"127.0.0.1:{port}" in str(e.value) and "_acme-challenge.closed.rfc2136.test" in str(e.value)


def test_the_cname_lookup_moves_on_to_the_next_resolver(bind, silent_resolver):
    origin, target = "_acme-challenge.next.rfc2136.test", f"next-rfc2136.{DELEGATION_ZONE}"
    bind.set_record(origin, "CNAME", target + ".")
    try:
        [placement] = solver(bind, resolvers=[silent_resolver, bind.server]).place([Challenge("next.rfc2136.test", "v")])
        assert (placement.record, placement.zone) == (target, DELEGATION_ZONE)
    finally:
        bind.delete_record(origin, "CNAME")

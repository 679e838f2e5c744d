import dns.resolver
import pytest

from keyvault_acme.errors import CaaForbidsCa, PreflightError, SpecError
from keyvault_acme.model import CertificateSpec, Rfc2136Zone, SecretRef
from keyvault_acme.preflight import CaaRecord, caa_lookup, caa_verdict, check_caa, check_spec, relevant_caa

LE = ["letsencrypt.org"]


def zone(name):
    return Rfc2136Zone(zone=name, server="127.0.0.1:5353", tsig_key_name="k",
                       tsig_secret=SecretRef("https://kv.vault.azure.net/secrets/tsig"))


def spec(names, zones=("example.com",)):
    return CertificateSpec(vault_url="https://kv.vault.azure.net", name="c", dns_names=tuple(names),
                           zones=tuple(zone(z) for z in zones))


# -- offline ---------------------------------------------------------------------------------------------
def test_check_spec_returns_normalised_names():
    assert check_spec(spec(["WWW.example.com", "*.example.com"])) == ("www.example.com", "*.example.com")


@pytest.mark.parametrize("names, zones, field, words", [
    (["www.example.org"], ("example.com",), "dns_names", "no configured zone"),
    ([f"n{i}.example.com" for i in range(101)], ("example.com",), "dns_names", "101 names"),
    (["www.example.com"], (), "zones", "no DNS zone"),
    (["www.example.com"], ("example.com", "Example.com."), "zones", "configured twice"),
    (["a.*.example.com"], ("example.com",), "dns_names", "leftmost"),
])
def test_check_spec_rejects(names, zones, field, words):
    with pytest.raises(SpecError) as e:
        check_spec(spec(names, zones))
    assert e.value.field == field and words in str(e.value) and e.value.fix


# -- CAA decision (pure) ---------------------------------------------------------------------------------
def caa(*records):
    return [CaaRecord(f, t, v) for f, t, v in records]


@pytest.mark.parametrize("name, records, allowed", [
    ("www.example.com", [], True),
    ("www.example.com", caa((0, "iodef", "mailto:sec@example.com")), True),
    ("www.example.com", caa((0, "issue", "letsencrypt.org")), True),
    ("www.example.com", caa((0, "issue", "LetsEncrypt.org; validationmethods=dns-01")), True),
    ("www.example.com", caa((0, "issue", "other-ca.example")), False),
    ("www.example.com", caa((0, "issue", ";")), False),
    ("www.example.com", caa((0, "issue", "other-ca.example"), (0, "issue", "letsencrypt.org")), True),
    ("www.example.com", caa((0, "issuewild", "other-ca.example"), (0, "issue", "letsencrypt.org")), True),
    ("*.example.com", caa((0, "issuewild", "other-ca.example"), (0, "issue", "letsencrypt.org")), False),
    ("*.example.com", caa((0, "issuewild", "letsencrypt.org"), (0, "issue", ";")), True),
    ("*.example.com", caa((0, "issue", "letsencrypt.org")), True),
    ("*.example.com", caa((0, "issue", ";")), False),
    ("www.example.com", caa((128, "future-tag", "x"), (0, "issue", "letsencrypt.org")), False),
    ("www.example.com", caa((0, "future-tag", "x"), (0, "issue", "letsencrypt.org")), True),
])
def test_caa_verdict(name, records, allowed):
    assert (caa_verdict(name, records, LE) is None) == allowed


def test_without_ca_identities_only_a_total_ban_is_reported():
    assert caa_verdict("www.example.com", caa((0, "issue", "other-ca.example")), []) is None
    assert caa_verdict("www.example.com", caa((0, "issue", ";")), []) is not None


def test_tree_climbing_finds_the_closest_rrset_and_strips_the_wildcard():
    asked = []
    data = {"example.com": caa((0, "issue", "letsencrypt.org")), "sub.example.com": caa((0, "issue", ";"))}

    def lookup(name):
        asked.append(name)
        return data.get(name, [])

    assert relevant_caa("a.b.example.com", lookup)[0] == "example.com"
    assert asked == ["a.b.example.com", "b.example.com", "example.com"]
    assert relevant_caa("*.sub.example.com", lookup)[0] == "sub.example.com"
    assert relevant_caa("www.example.org", lookup) == (None, ())


def test_a_lookup_nobody_answered_is_not_taken_for_no_caa():
    with pytest.raises(PreflightError, match="CAA for www.example.com could not be checked.*set resolvers"):
        check_caa(["www.example.com"], LE, lambda name: None)


def test_a_failing_or_silent_server_is_skipped_for_the_next(bind):
    """SERVFAIL, REFUSED or silence from one server is no answer: the next server is asked; if none
    answers, the lookup could not tell (None), never "no CAA" ([])."""
    import socketserver
    import threading

    import dns.message
    import dns.rcode

    from emulator.process import free_dns_port
    from keyvault_acme.dns.propagation import Nameserver
    from keyvault_acme.preflight import first_answer

    class Refuse(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            response = dns.message.make_response(dns.message.from_wire(data))
            response.set_rcode(self.server.rcode)
            sock.sendto(response.to_wire(), self.client_address)

    servers = []
    for rcode in (dns.rcode.SERVFAIL, dns.rcode.REFUSED):
        server = socketserver.UDPServer(("127.0.0.1", 0), Refuse)
        server.rcode = rcode
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        failing = [Nameserver("127.0.0.1", s.server_address[1]) for s in servers]
        silent = Nameserver("127.0.0.1", free_dns_port())
        bind.set_record("skip.rfc2136.test", "CAA", '0 issue "other-ca.example"')
        try:
            answered = first_answer("skip.rfc2136.test", [*failing, silent, Nameserver(bind.host, bind.port)])
            assert answered is not None
            records, keep_s = answered
            assert [(r.tag, r.value) for r in records] == [("issue", "other-ca.example")] and keep_s > 0
        finally:
            bind.delete_record("skip.rfc2136.test", "CAA")
        assert first_answer("skip.rfc2136.test", [*failing, silent]) is None
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_check_caa_names_the_name_owner_and_fix():
    data = {"example.com": caa((0, "issue", "other-ca.example"))}
    with pytest.raises(CaaForbidsCa) as e:
        check_caa(["ok.example.org", "www.example.com"], LE, lambda n: data.get(n, []))
    text = str(e.value)
    assert "www.example.com" in text and "CAA at example.com" in text and '0 issue "letsencrypt.org"' in text


# -- against BIND 9 ---------------------------------------------------------------------------------------
def test_caa_from_the_authoritative_server_with_tree_climbing(bind):
    from keyvault_acme.dns.challenges import DnsSolver
    from keyvault_acme.dns.rfc2136 import Rfc2136Provider

    solver = DnsSolver({"rfc2136.test": Rfc2136Provider("rfc2136.test", bind.server, bind.tsig_key_name,
                                                        bind.tsig_secret_b64)})
    above = dns.resolver.Resolver(configure=False)  # names above the zone: BIND's own root, loopback only
    above.nameservers, above.port = [bind.host], bind.port
    lookup = caa_lookup(solver, above)
    check_caa(["free.caa.rfc2136.test"], ["pebble.letsencrypt.org"], lookup)  # no CAA anywhere: allowed
    bind.set_record("caa.rfc2136.test", "CAA", '0 issue "other-ca.example"')
    try:
        with pytest.raises(CaaForbidsCa, match="CAA at caa.rfc2136.test"):
            check_caa(["www.deep.caa.rfc2136.test"], ["pebble.letsencrypt.org"], lookup)
        check_caa(["www.deep.caa.rfc2136.test"], ["other-ca.example"], lookup)
        bind.set_record("caa.rfc2136.test", "CAA", '0 issue ";"')
        with pytest.raises(CaaForbidsCa, match="lets no CA issue"):
            check_caa(["*.caa.rfc2136.test"], [], lookup)  # Pebble 2.4 lists no identities: a total ban still shows
    finally:
        bind.delete_record("caa.rfc2136.test", "CAA")


# -- the CAA cache -----------------------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def response(text):
    import dns.message

    return dns.message.from_text(text)


POSITIVE = """id 1
opcode QUERY
rcode NOERROR
flags QR AA
;QUESTION
example.com. IN CAA
;ANSWER
example.com. 3600 IN CAA 0 issue "letsencrypt.org"
;AUTHORITY
"""
NO_DATA = """id 1
opcode QUERY
rcode NOERROR
flags QR AA
;QUESTION
www.example.com. IN CAA
;ANSWER
;AUTHORITY
example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 1 60 60 3600 30
"""
CNAME_THEN_NXDOMAIN = """id 1
opcode QUERY
rcode NXDOMAIN
flags QR AA
;QUESTION
alias.example.com. IN CAA
;ANSWER
alias.example.com. 20 IN CNAME gone.example.com.
;AUTHORITY
example.com. 3600 IN SOA ns1.example.com. hostmaster.example.com. 1 60 60 3600 300
"""
NXDOMAIN_WITHOUT_SOA = """id 1
opcode QUERY
rcode NXDOMAIN
flags QR
;QUESTION
test. IN CAA
;ANSWER
;AUTHORITY
"""


@pytest.mark.parametrize("text, ttl", [
    (POSITIVE, 3600),  # the RRset's TTL
    (NO_DATA, 30),  # RFC 2308: the lower of the SOA's TTL and its minimum field
    (CNAME_THEN_NXDOMAIN, 20),  # no longer than any record on the way
    (NXDOMAIN_WITHOUT_SOA, 0),  # nothing says how long "none" holds: not kept
])
def test_answer_ttl(text, ttl):
    from keyvault_acme.preflight import answer_ttl

    assert answer_ttl(response(text)) == ttl


def test_cache_keeps_answers_for_their_ttl_capped():
    from keyvault_acme.preflight import CaaCache

    clock = Clock()
    cache = CaaCache(max_ttl=300, clock=clock)
    cache.put("example.com", caa((0, "issue", "letsencrypt.org")), 3600)
    cache.put("www.example.com", [], 30)
    cache.put("test", [], 0)
    assert cache.get("www.example.com") == () and cache.get("test") is None
    clock.now += 30
    assert cache.get("www.example.com") is None, "a negative answer expires with its SOA's negative TTL"
    assert cache.get("example.com")[0].value == "letsencrypt.org"
    clock.now += 270
    assert cache.get("example.com") is None, "no answer is kept beyond max_ttl"


def test_cache_forgets_expired_answers_when_it_grows():
    from keyvault_acme.preflight import CaaCache

    clock = Clock()
    cache = CaaCache(max_entries=3, clock=clock)
    cache.put("a.example", [], 10)
    cache.put("b.example", [], 100)
    clock.now += 20  # a.example has expired
    cache.put("c.example", [], 100)
    cache.put("d.example", [], 100)  # full: the expired entry goes, the live ones stay
    assert len(cache._answers) == 3 and "a.example" not in cache._answers
    assert cache.get("b.example") == ()


def test_cached_lookup_against_bind(bind):
    from keyvault_acme.dns.challenges import DnsSolver
    from keyvault_acme.dns.rfc2136 import Rfc2136Provider
    from keyvault_acme.preflight import CaaCache

    solver = DnsSolver({"rfc2136.test": Rfc2136Provider("rfc2136.test", bind.server, bind.tsig_key_name,
                                                        bind.tsig_secret_b64)})
    clock = Clock()
    cached = caa_lookup(solver, cache=CaaCache(clock=clock))
    owner = "cached.caa.rfc2136.test"
    assert cached(owner) == ()  # NXDOMAIN, kept for the zone's negative TTL (30 s)
    bind.set_record(owner, "CAA", '0 issue "other-ca.example"', ttl=60)
    try:
        assert cached(owner) == (), "within the negative TTL the kept answer stands, as it does at a CA"
        assert [r.value for r in caa_lookup(solver)(owner)] == ["other-ca.example"]
        clock.now += 31
        assert [r.value for r in cached(owner)] == ["other-ca.example"]
    finally:
        bind.delete_record(owner, "CAA")

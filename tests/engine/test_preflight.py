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
    import dns.message
    import dns.rcode
    import socketserver
    import threading

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
            assert [(r.tag, r.value) for r in answered] == [("issue", "other-ca.example")]
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

import pytest

from keyvault_acme.errors import SpecError
from keyvault_acme.names import MAX_NAMES, challenge_name, normalize_name, normalize_names, zone_for


@pytest.mark.parametrize("given, normal", [
    ("WWW.Example.COM.", "www.example.com"),
    ("  api.example.com ", "api.example.com"),
    ("*.Example.com", "*.example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("a-b.c-d.example", "a-b.c-d.example"),
])
def test_normal_form(given, normal):
    assert normalize_name(given) == normal


@pytest.mark.parametrize("bad, words", [
    ("", "not a DNS name"),
    ("localhost", "single label"),
    ("*.com", "at least two labels"),
    ("*", "not the whole leftmost label"),
    ("a.*.example.com", "not the whole leftmost label"),
    ("*a.example.com", "not the whole leftmost label"),
    ("**.example.com", "not the whole leftmost label"),
    ("a..example.com", "empty label"),
    ("-a.example.com", "letters, digits"),
    ("a-.example.com", "letters, digits"),
    ("under_score.example.com", "letters, digits"),
    ("x" * 64 + ".example.com", "longer than 63"),
    (".".join(["abcdefghi"] * 26) + ".com", "longer than 253"),
    ("192.0.2.1", "IP address"),
    ("2001:db8::1", "IP address"),
    ("host.123", "all-numeric"),
    ("xn--zz.example", "invalid punycode"),
])
def test_rejections_name_the_name_and_fix(bad, words):
    with pytest.raises(SpecError) as e:
        normalize_name(bad)
    assert words in str(e.value)
    assert e.value.field == "dns_names"
    assert e.value.fix


def test_duplicates_after_normalisation_are_rejected():
    with pytest.raises(SpecError, match="listed twice"):
        normalize_names(["www.example.com", "WWW.example.com."])


def test_name_and_its_wildcard_are_distinct():
    assert normalize_names(["example.com", "*.example.com"]) == ("example.com", "*.example.com")


def test_at_most_100_names():
    names = [f"n{i}.example.com" for i in range(MAX_NAMES)]
    assert len(normalize_names(names)) == MAX_NAMES
    with pytest.raises(SpecError, match="101 names") as e:
        normalize_names(names + ["one-more.example.com"])
    assert "split" in e.value.fix


def test_empty_and_string_lists_are_rejected():
    with pytest.raises(SpecError, match="empty"):
        normalize_names([])
    with pytest.raises(SpecError, match="one string"):
        normalize_names("www.example.com")


def test_zone_for_picks_the_longest_suffix():
    zones = ["example.com", "dev.example.com", "example.org"]
    assert zone_for("a.dev.example.com", zones) == "dev.example.com"
    assert zone_for("dev.example.com", zones) == "dev.example.com"
    assert zone_for("*.dev.example.com", zones) == "dev.example.com"
    assert zone_for("www.example.com", zones) == "example.com"
    assert zone_for("_acme-challenge.www.example.org", zones) == "example.org"


def test_zone_for_does_not_match_on_partial_labels():
    with pytest.raises(SpecError, match="no configured zone") as e:
        zone_for("www.badexample.com", ["example.com"])
    assert "example.com" in str(e.value) and "add the DNS zone" in str(e.value)


def test_challenge_name_strips_the_wildcard():
    assert challenge_name("*.example.com") == "_acme-challenge.example.com"
    assert challenge_name("www.example.com") == "_acme-challenge.www.example.com"

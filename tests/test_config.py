"""The one parser from plain data to CertificateSpec: errors name the field and the fix."""
import pytest

from keyvault_acme.config import certificate_spec_from_dict, spec_to_dict
from keyvault_acme.errors import SpecError
from keyvault_acme.model import AzureDnsZone, KeySpec, Rfc2136Zone, SecretRef

ZONE_ID = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/dns-rg"
           "/providers/Microsoft.Network/dnszones/example.com")
BASE = {"name": "www", "vault_url": "https://kv-web-dev.vault.azure.net/", "dns_names": ["www.example.com"],
        "zones": [{"resource_id": ZONE_ID}]}


def test_round_trip_keeps_every_field():
    spec = certificate_spec_from_dict({
        **BASE,
        "zones": [{"resource_id": ZONE_ID},
                  {"zone": "corp.example", "server": "127.0.0.1:5353", "tsig_key_name": "acme",
                   "tsig_secret": "https://kv-web-dev.vault.azure.net/secrets/tsig"}],
        "acme": {"directory_url": "https://ca.example/dir", "contact": ["ops@example.com"], "eab_kid": "kid",
                 "eab_hmac": "https://kv-web-dev.vault.azure.net/secrets/eab"},
        "key": {"kty": "rsa", "size": 3072.0, "exportable": True},
        "profile": "tlsserver", "preferred_chain": "ISRG Root X1",
        "renewal": {"fraction_remaining": 0.5}, "tags": {"team": "web"}, "resolvers": ["127.0.0.1:53"],
    })
    assert spec.vault_url == "https://kv-web-dev.vault.azure.net"
    assert spec.key == KeySpec("RSA", 3072, None, True)  # Pulumi's floats become ints
    assert isinstance(spec.zones[1], Rfc2136Zone) and spec.zones[1].tsig_secret.name == "tsig"
    assert certificate_spec_from_dict(spec_to_dict(spec)) == spec


def test_defaults_fill_what_the_entry_leaves_out():
    spec = certificate_spec_from_dict({"name": "api", "dns_names": ["api.example.com"]},
                                      defaults={"vault_url": BASE["vault_url"], "zones": BASE["zones"]})
    assert spec.zones == (AzureDnsZone(ZONE_ID),)
    assert spec.key == KeySpec("EC", None, "P-256", False)


@pytest.mark.parametrize("change, field", [
    ({"name": ""}, "name"),
    ({"dns_names": "www.example.com"}, "dns_names"),
    ({"vault_url": "http://kv.vault.azure.net"}, "vault_url"),
    ({"key": {"kty": "DSA"}}, "key.kty"),
    ({"key": {"kty": "RSA", "size": 1024}}, "key.size"),
    ({"key": {"kty": "EC", "curve": "P-521"}}, "key.curve"),
    ({"zones": [{"resource_id": "/subscriptions/x/dnszones/a"}]}, "zones[0].resource_id"),
    ({"zones": [{"zone": "corp", "server": "10.0.0.1", "tsig_key_name": "k", "tsig_secret": "c2VjcmV0"}]},
     "zones[0].tsig_secret"),
    ({"renewal": {"days_before_expiry": 30, "fraction_remaining": 0.3}}, "renewal"),
    ({"renewal": {"fraction_remaining": 2}}, "renewal.fraction_remaining"),
    ({"acme": {"directory_url": "http://ca"}}, "acme.directory_url"),
    ({"acme": {"eab_kid": "kid"}}, "acme.eab_hmac"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_input_names_the_field_and_a_fix(change, field):
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict({**BASE, **change})
    assert err.value.field == field
    assert err.value.fix, "every error says what to do"


def test_a_secret_value_is_refused_where_a_reference_belongs():
    with pytest.raises(SpecError, match="never put a secret value"):
        SecretRef("c2VjcmV0LXZhbHVl")


# ------------------------------------------------------------------------------------------ strict values


@pytest.mark.parametrize("given, exportable", [
    (False, False), (True, True), ("false", False), ("False", False), ("true", True), ("TRUE", True), (None, False),
])
def test_exportable_reads_quoted_booleans_as_written(given, exportable):
    # YAML `exportable: "false"` and Pulumi config hand a string; bool("false") would export the private key.
    spec = certificate_spec_from_dict({**BASE, "key": {"exportable": given}})
    assert spec.key.exportable is exportable


@pytest.mark.parametrize("given", ["no", "0", "yes", 1, 0, "", []])
def test_exportable_refuses_anything_but_true_or_false(given):
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict({**BASE, "key": {"exportable": given}})
    assert err.value.field == "key.exportable"


def test_one_boolean_parser_serves_both_modules():
    from keyvault_acme import config
    from keyvault_acme_stack import workload

    assert workload.boolean is config.boolean
    assert not {"_bool", "_mapping", "_list"} & set(vars(workload))


@pytest.mark.parametrize("part, data, field, accepted", [
    ("key", {"curv": "P-384"}, "key.curv", "kty, size, curve, exportable"),
    ("renewal", {"days": 30}, "renewal.days", "days_before_expiry, fraction_remaining"),
    ("acme", {"directory": "https://ca.example/dir"}, "acme.directory",
     "directory_url, account_key_secret, account_key, contact, eab_kid, eab_hmac, previous_directories"),
])
def test_unknown_settings_are_named_with_the_accepted_ones(part, data, field, accepted):
    # `key: {curv: P-384}` used to give a P-256 key without a word.
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict({**BASE, part: data})
    assert err.value.field == field
    assert "unknown setting" in err.value.problem
    assert err.value.fix == f"use only {accepted}"


def test_every_unknown_setting_is_named():
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict({**BASE, "key": {"kty": "EC", "curv": "P-384", "sise": 1}})
    assert "curv" in str(err.value) and "sise" in str(err.value)


@pytest.mark.parametrize("resolver", ["127.0.0.1", "127.0.0.1:5353", "[::1]:53", "::1", "2001:db8::53",
                                      "ns1.example.com", "ns1-01.azure-dns.com.:53"])
def test_resolvers_accept_host_or_host_and_port(resolver):
    assert certificate_spec_from_dict({**BASE, "resolvers": [resolver]}).resolvers == (resolver,)


@pytest.mark.parametrize("resolver", ["127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:dns", "999.1.1.1", "bad host",
                                      "[::1", "[127.0.0.1]:53", "::zz", "", "-ns.example.com", "[::1]53"])
def test_resolvers_refuse_what_no_server_is(resolver):
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict({**BASE, "resolvers": ["127.0.0.1", resolver]})
    assert err.value.field == "resolvers[1]"
    assert "host:port" in err.value.fix


@pytest.mark.parametrize("timeout", [0, -1, "0", float("nan"), float("inf")])
def test_propagation_timeout_must_be_positive(timeout):
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict({**BASE, "propagation_timeout_s": timeout})
    assert err.value.field == "propagation_timeout_s"


RFC2136 = {"zone": "corp.example", "server": "10.0.0.53", "tsig_key_name": "acme",
           "tsig_secret": "https://kv-web-dev.vault.azure.net/secrets/tsig"}


@pytest.mark.parametrize("algorithm, parsed", [
    (None, "hmac-sha256"), ("hmac-sha512", "hmac-sha512"), ("HMAC-SHA384", "hmac-sha384"), ("hmac-sha1.", "hmac-sha1"),
    ("hmac-sha224", "hmac-sha224"),
])
def test_tsig_algorithms_dnspython_signs_with(algorithm, parsed):
    spec = certificate_spec_from_dict({**BASE, "zones": [{**RFC2136, "tsig_algorithm": algorithm}]})
    assert spec.zones[0].tsig_algorithm == parsed


@pytest.mark.parametrize("zone, field", [
    ({**RFC2136, "tsig_algorithm": "hmac-md5"}, "zones[0].tsig_algorithm"),
    ({**RFC2136, "tsig_algorithm": "sha256"}, "zones[0].tsig_algorithm"),
    ({**RFC2136, "server": "10.0.0.53:99999"}, "zones[0].server"),
    ({**RFC2136, "server": "dns server"}, "zones[0].server"),
])
def test_rfc2136_server_and_algorithm_are_checked(zone, field):
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict({**BASE, "zones": [zone]})
    assert err.value.field == field


@pytest.mark.parametrize("contact, problem", [
    ("mailto:ops@example.com", "starts with mailto:"),
    ("ops", "not an e-mail address"),
    ("ops@localhost", "not an e-mail address"),
])
def test_acme_contacts_are_bare_email_addresses(contact, problem):
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict({**BASE, "acme": {"contact": ["ok@example.com", contact]}})
    assert err.value.field == "acme.contact[1]"
    assert problem in err.value.problem


# ------------------------------------------------------------------------------------------ no secret in errors

PASTED = "c2VjcmV0LXRzaWcta2V5LXZhbHVlLTEyMzQ1Njc4OTA="  # what a TSIG secret or EAB HMAC looks like


@pytest.mark.parametrize("data, field", [
    ({"zones": [{**RFC2136, "tsig_secret": PASTED}]}, "zones[0].tsig_secret"),
    ({"zones": [{**RFC2136, "tsig_secret": f"https://kv.vault.azure.net/keys/{PASTED}"}]}, "zones[0].tsig_secret"),
    ({"acme": {"eab_kid": "kid", "eab_hmac": PASTED}}, "acme.eab_hmac"),
    ({"acme": {"eab_kid": "kid", "eab_hmac": [PASTED]}}, "acme.eab_hmac"),
    ({"acme": {"account_key_secret": f"-----BEGIN EC PRIVATE KEY-----\n{PASTED}"}}, "acme.account_key_secret"),
])
def test_a_pasted_secret_is_never_echoed(data, field):
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict({**BASE, **data})
    assert err.value.field == field
    for text in (str(err.value), err.value.problem, err.value.fix, repr(err.value)):
        assert PASTED not in text and PASTED[:12] not in text
    assert "character" in err.value.problem or "a list" in err.value.problem  # its shape, not its value


def test_secret_ref_says_the_shape_instead_of_the_value():
    with pytest.raises(SpecError) as err:
        SecretRef(PASTED)
    assert PASTED not in str(err.value)
    assert f"a {len(PASTED)}-character string that is not an https:// URL" in err.value.problem


@pytest.mark.parametrize("key, parsed", [
    ({"kty": "rsa-hsm", "size": 3072}, KeySpec("RSA-HSM", 3072)),
    ({"kty": "EC-HSM", "curve": "P-384"}, KeySpec("EC-HSM", curve="P-384")),
    ({"kty": "ec-hsm"}, KeySpec("EC-HSM", curve="P-256")),
])
def test_hsm_key_types_parse_and_round_trip(key, parsed):
    spec = certificate_spec_from_dict({**BASE, "key": key})
    assert spec.key == parsed and spec.key.hsm
    assert spec.key.family == parsed.kty.removesuffix("-HSM")
    assert certificate_spec_from_dict(spec_to_dict(spec)) == spec


@pytest.mark.parametrize("key, field, words", [
    ({"kty": "RSA-HSM", "exportable": True}, "key.exportable", "never leaves the HSM"),
    ({"kty": "EC-HSM", "size": 2048}, "key.size", "RSA-HSM"),
    ({"kty": "RSA-HSM", "curve": "P-256"}, "key.curve", "EC-HSM"),
    ({"kty": "OCT-HSM"}, "key.kty", "premium vault"),
])
def test_bad_hsm_keys_name_the_field(key, field, words):
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict({**BASE, "key": key})
    assert err.value.field == field and words in str(err.value)


def test_account_key_kind_key_parses_round_trips_and_stays_out_of_default_inputs():
    spec = certificate_spec_from_dict({**BASE, "acme": {"account_key": {"kind": "key", "name": "acct-key"}}})
    assert (spec.acme.account_key_kind, spec.acme.account_key_name) == ("key", "acct-key")
    assert certificate_spec_from_dict(spec_to_dict(spec)) == spec
    default = certificate_spec_from_dict({**BASE, "acme": {"account_key": {"kind": "key"}}})
    assert default.acme.account_key_name == "acme-account-key"
    # The secret-held key stays the default, and its inputs are exactly what they were before this setting.
    plain = certificate_spec_from_dict(BASE)
    assert plain.acme.account_key_kind == "secret" and "account_key" not in spec_to_dict(plain)["acme"]


@pytest.mark.parametrize("account_key, field", [
    ({"kind": "hsm"}, "acme.account_key.kind"),
    ({"kind": "secret", "name": "k"}, "acme.account_key.name"),
    ({"kind": "key", "name": "bad name"}, "acme.account_key.name"),
    ({"kind": "key", "curve": "P-384"}, "acme.account_key.curve"),
    ("key", "acme.account_key"),
])
def test_bad_account_key_settings_name_the_field(account_key, field):
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict({**BASE, "acme": {"account_key": account_key}})
    assert err.value.field == field and err.value.fix

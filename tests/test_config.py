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

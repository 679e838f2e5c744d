"""Cloudflare DNS, the third provider behind the contract: Cloudflare's official SDK against the emulator's
stand-in of its API (api.cloudflare.com through the proxy), the records served by the emulator's DNS server,
and a real issuance from Pebble through it. No module of the engine outside dns/ names it (test_dns_registry.py)."""
from __future__ import annotations

import time
import uuid

import dns.message
import dns.query
import pytest
from azure.keyvault.secrets import SecretClient

from keyvault_acme.config import certificate_spec_from_dict, spec_to_dict
from keyvault_acme.dns.base import ChecksWritable, DnsProvider, KnowsDelegation
from keyvault_acme.dns.cloudflare import CloudflareProvider
from keyvault_acme.errors import DnsError, DnsForbidden, SpecError
from keyvault_acme.model import AcmeAccount, CertificateSpec, CloudflareZone, SecretRef
from tests.services import CLOUDFLARE_ZONE

pytestmark = pytest.mark.integration


def served(emulator, fqdn: str) -> set[str]:
    host, port = emulator.dns_address
    response = dns.query.udp(dns.message.make_query(fqdn, "TXT"), host, port=port, timeout=5)
    return {b"".join(rd.strings).decode() for rrset in response.answer for rd in rrset}


def deadline() -> float:
    return time.monotonic() + 30


def test_present_and_cleanup_through_the_sdk(azure_env):
    token = azure_env.admin.add_cloudflare_token([CLOUDFLARE_ZONE])
    provider = CloudflareProvider(CLOUDFLARE_ZONE, token)
    assert isinstance(provider, DnsProvider) and isinstance(provider, ChecksWritable) and isinstance(provider, KnowsDelegation)
    fqdn = f"_acme-challenge.www-{uuid.uuid4().hex[:8]}.{CLOUDFLARE_ZONE}"
    provider.present(fqdn, "one", deadline=deadline())
    provider.present(fqdn, "two", deadline=deadline())
    provider.present(fqdn, "two", deadline=deadline())  # a retried present adds nothing
    assert served(azure_env, fqdn) == {"one", "two"}
    records = [r for r in azure_env.admin.call("GET", "/admin/cloudflare/records")["value"] if r["name"] == fqdn]
    assert sorted(r["content"] for r in records) == ["one", "two"] and {r["ttl"] for r in records} == {60}
    provider.cleanup(fqdn, "one", deadline=deadline())  # only its own value goes
    assert served(azure_env, fqdn) == {"two"}
    provider.cleanup(fqdn, "two", deadline=deadline())
    provider.cleanup(fqdn, "two", deadline=deadline())  # already gone: no error
    assert served(azure_env, fqdn) == set()
    names, source = provider.delegation(CLOUDFLARE_ZONE, deadline=deadline())
    assert names and source.startswith("Cloudflare")


def test_a_token_without_dns_edit_is_refused_with_403_naming_the_permission(azure_env):
    token = azure_env.admin.add_cloudflare_token([CLOUDFLARE_ZONE], dns_edit=False)
    provider = CloudflareProvider(CLOUDFLARE_ZONE, token)
    fqdn = f"_acme-challenge.ro-{uuid.uuid4().hex[:8]}.{CLOUDFLARE_ZONE}"
    with pytest.raises(DnsForbidden, match=r"403.*10000.*DNS:Edit"):
        provider.present(fqdn, "x", deadline=deadline())
    assert served(azure_env, fqdn) == set()
    # It reads the zone, which is all `check` can ask without writing.
    assert provider.writable(CLOUDFLARE_ZONE, [fqdn], deadline=deadline()).ok


def test_a_token_for_another_zone_does_not_find_this_one(azure_env):
    token = azure_env.admin.add_cloudflare_token(["elsewhere.test"])
    finding = CloudflareProvider(CLOUDFLARE_ZONE, token).writable(CLOUDFLARE_ZONE, [], deadline=deadline())
    assert not finding.ok and "Zone:Read" in finding.fix
    with pytest.raises(DnsError, match="no zone cloudflare.test this API token may read"):
        CloudflareProvider(CLOUDFLARE_ZONE, token).present(f"_acme-challenge.x.{CLOUDFLARE_ZONE}", "v", deadline=deadline())
    with pytest.raises(DnsForbidden, match=r"does not accept the API token \(401"):
        CloudflareProvider(CLOUDFLARE_ZONE, "not-a-token").present(f"_acme-challenge.x.{CLOUDFLARE_ZONE}", "v",
                                                                    deadline=deadline())


def test_the_zone_type_parses_and_round_trips():
    data = {"vault_url": "https://kv.vault.azure.net", "name": "c", "dns_names": ["www.cloudflare.test"],
            "zones": [{"type": "cloudflare", "zone": "Cloudflare.test.",
                       "api_token_secret": "https://kv.vault.azure.net/secrets/cf-token"}]}
    spec = certificate_spec_from_dict(data)
    assert spec.zones == (CloudflareZone("cloudflare.test", SecretRef("https://kv.vault.azure.net/secrets/cf-token")),)
    assert certificate_spec_from_dict(spec_to_dict(spec)) == spec
    for zone, field in (({"type": "cloudflare", "zone": "x.test"}, "zones[0].api_token_secret"),
                        ({"type": "cloudflare", "zone": "x.test", "api_token_secret": "s", "server": "a"}, "zones[0].server"),
                        ({"type": "route53", "zone": "x.test"}, "zones[0].type")):
        with pytest.raises(SpecError) as err:
            certificate_spec_from_dict({**data, "zones": [zone]})
        assert err.value.field == field


def test_issue_and_check_through_cloudflare(world, engine, pebble, credential, azure_env):
    token = azure_env.admin.add_cloudflare_token([CLOUDFLARE_ZONE])
    SecretClient(world.vault_url, credential).set_secret("cf-token", token)
    host, port = azure_env.dns_address
    spec = CertificateSpec(vault_url=world.vault_url, name=f"cf-{uuid.uuid4().hex[:8]}",
                           dns_names=(f"www-{uuid.uuid4().hex[:8]}.{CLOUDFLARE_ZONE}",),
                           zones=(CloudflareZone(CLOUDFLARE_ZONE, SecretRef(f"{world.vault_url}/secrets/cf-token")),),
                           acme=AcmeAccount(directory_url=world.directory_url), resolvers=(f"{host}:{port}",),
                           propagation_timeout_s=20.0)
    results = {r.step: r for r in engine.check(spec)}
    assert results["zones writable"].ok and "finds Cloudflare zone" in results["zones writable"].detail
    assert results["NS delegation"].ok, results["NS delegation"]
    facts = engine.issue(spec)
    assert facts.names == spec.dns_names
    assert pebble.cert_status(facts.serial) == "Valid"
    # Every challenge record was removed again.
    assert not [r for r in azure_env.admin.call("GET", "/admin/cloudflare/records")["value"]
                if r["name"].endswith(spec.dns_names[0])]

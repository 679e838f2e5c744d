"""The workload config parser and the name allowlist: pure, so tested directly."""
from __future__ import annotations

import copy

import pytest

from keyvault_acme.errors import NameNotAuthorized, SpecError
from keyvault_acme.model import AzureDnsZone, Rfc2136Zone
from keyvault_acme_stack.authorization import Allowlist, allowlist_from_dict, check_names, unauthorized
from keyvault_acme_stack.workload import load_stack_file, parse_workload_config, stack_config_values

from .harness import STACKS

SUB = "11111111-1111-1111-1111-111111111111"
TENANT = "22222222-2222-2222-2222-222222222222"


SUBNET = f"/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet-a/subnets/pe"
PRIVATE_ZONE = f"/subscriptions/{SUB}/resourceGroups/rg-hub/providers/Microsoft.Network/privateDnsZones/privatelink.vaultcore.azure.net"


def base(**extra):
    values = {
        "workload": "shop", "environment": "dev", "location": "westeurope", "subscription_id": SUB, "tenant_id": TENANT,
        "zones": [{"name": "shop.example.com"}], "allowlist": {"suffixes": ["shop.example.com"]},
        "certificates": [{"name": "www", "dns_names": ["www.shop.example.com"]}],
    }
    values.update(extra)
    return values


# ------------------------------------------------------------------------------------------ allowlist


@pytest.mark.parametrize("name, rule", [
    ("shop.example.com", "suffix shop.example.com"),
    ("www.shop.example.com", "suffix shop.example.com"),
    ("*.shop.example.com", "suffix shop.example.com"),
    ("WWW.Shop.Example.COM.", "suffix shop.example.com"),
    ("api.example.net", "name api.example.net"),
    ("badshop.example.com", None),
    ("www.api.example.net", None),
    ("example.com", None),
])
def test_allowlist_rules(name, rule):
    allow = Allowlist(suffixes=(".shop.example.com",), names=("api.example.net",))
    assert allow.rule_for(name) == rule


def test_refusal_names_the_dns_name_and_the_rules():
    allow = allowlist_from_dict({"suffixes": ["shop.example.com"], "names": ["api.example.net"]})
    assert unauthorized(["www.shop.example.com", "evil.example.org"], allow) == ["evil.example.org"]
    with pytest.raises(NameNotAuthorized) as e:
        check_names(["www.shop.example.com", "evil.example.org"], allow, owner="workload shop")
    assert e.value.field == "dns_names"
    assert "evil.example.org is not allowed for workload shop" in str(e.value)
    assert "suffixes shop.example.com; names api.example.net" in str(e.value)


def test_an_empty_allowlist_allows_nothing():
    with pytest.raises(NameNotAuthorized):
        check_names(["www.example.com"], Allowlist())


@pytest.mark.parametrize("data, field", [
    ({"suffix": ["a.com"]}, "allowlist.suffix"),
    ({"suffixes": "a.com"}, "allowlist.suffixes"),
    ({"names": [1]}, "allowlist.names"),
    ("a.com", "allowlist"),
])
def test_malformed_allowlists_are_named(data, field):
    with pytest.raises(SpecError) as e:
        allowlist_from_dict(data)
    assert e.value.field == field


# ------------------------------------------------------------------------------------------ parser


def test_example_stacks_parse():
    dev = load_stack_file(STACKS / "Pulumi.shop-dev.yaml")
    prod = load_stack_file(STACKS / "Pulumi.shop-prod.yaml")
    assert (dev.production, prod.production) == (False, True)
    assert (dev.vault.purge_protection, prod.vault.purge_protection) == (False, True)
    assert prod.vault.public_network_access == "Disabled" and dev.vault.public_network_access == "Enabled"
    assert prod.zones[0].subscription_id == "55555555-5555-5555-5555-555555555555" and not prod.zones[0].create
    assert dev.zones[0].create and dev.zones[0].resource_id.startswith(f"/subscriptions/{dev.subscription_id}/resourceGroups/rg-shop-dev/")


def test_defaults_and_certificate_workload_defaults():
    cfg = parse_workload_config(base(acme={"contact": ["ops@example.com"]}, tags={"cost-center": "42"}))
    assert cfg.resource_group.name == "rg-shop-dev" and not cfg.resource_group.existing
    assert cfg.vault.name == "kv-shop-dev" and cfg.vault.url == "https://kv-shop-dev.vault.azure.net"
    assert cfg.issuer.name == "id-shop-dev-issuer" and not cfg.issuer.existing
    assert cfg.monitoring.enabled and cfg.grant_roles and not cfg.alerting.enabled
    (cert,) = cfg.certificates
    assert cert.spec.vault_url == cfg.vault.url
    assert cert.spec.zones == (AzureDnsZone(cfg.zones[0].resource_id),)
    assert cert.spec.acme.contact == ("ops@example.com",)
    assert dict(cert.spec.tags) == {"workload": "shop", "environment": "dev", "managed-by": "pulumi-keyvault-acme",
                                    "cost-center": "42"}
    assert (cert.revoke_on_delete, cert.revoke_reason, cert.purge_on_delete) == (True, "cessationOfOperation", False)
    assert [rs.fqdn for rs in cert.challenge_record_sets] == ["_acme-challenge.www.shop.example.com"]


def test_names_map_to_the_longest_zone_and_rfc2136_zones_get_no_record_set():
    cfg = parse_workload_config(base(
        zones=[{"name": "example.com"}, {"name": "shop.example.com"},
               {"zone": "lab.example.com", "server": "127.0.0.1:5353", "tsig_key_name": "k",
                "tsig_secret": "https://kv-shop-dev.vault.azure.net/secrets/tsig"}],
        allowlist={"suffixes": ["example.com"]},
        certificates=[{"name": "c", "dns_names": ["*.shop.example.com", "a.b.example.com", "x.lab.example.com"]}]))
    assert isinstance(cfg.rfc2136_zones[0], Rfc2136Zone)
    assert [(rs.zone.name, rs.relative_name) for rs in cfg.certificates[0].challenge_record_sets] == [
        ("shop.example.com", "_acme-challenge"), ("example.com", "_acme-challenge.a.b")]


def test_existing_resources_by_id():
    cfg = parse_workload_config(base(
        resource_group={"resource_id": f"/subscriptions/{SUB}/resourceGroups/rg-team"},
        vault={"resource_id": f"/subscriptions/{SUB}/resourceGroups/rg-team/providers/Microsoft.KeyVault/vaults/kv-team"},
        issuer={"principal_id": "33333333-3333-3333-3333-333333333333", "client_id": "44444444-4444-4444-4444-444444444444"},
        tenant_id=None))
    assert cfg.resource_group.existing and cfg.resource_group.name == "rg-team"
    assert cfg.vault.existing and cfg.vault.url == "https://kv-team.vault.azure.net" and cfg.tenant_id is None
    assert cfg.issuer.existing and cfg.issuer.client_id == "44444444-4444-4444-4444-444444444444"
    assert cfg.zones[0].resource_group == "rg-team"


def test_a_certificate_overrides_some_acme_settings_and_keeps_the_workloads_others():
    cfg = parse_workload_config(base(
        acme={"directory_url": "https://ca.example/dir", "contact": ["ops@example.com"]},
        certificates=[{"name": "www", "dns_names": ["www.shop.example.com"]},
                      {"name": "api", "dns_names": ["api.shop.example.com"],
                       "acme": {"directory_url": "https://other-ca.example/dir"}}]))
    www, api = (c.spec.acme for c in cfg.certificates)
    assert www.directory_url == "https://ca.example/dir" and www.contact == ("ops@example.com",)
    assert api.directory_url == "https://other-ca.example/dir" and api.contact == ("ops@example.com",)


def test_hsm_keys_are_accepted_in_a_premium_vault_and_an_existing_vault_of_undeclared_sku():
    hsm = [{"name": "www", "dns_names": ["www.shop.example.com"], "key": {"kty": "EC-HSM"}}]
    cfg = parse_workload_config(base(vault={"sku": "premium"}, certificates=hsm))
    assert cfg.certificates[0].spec.key.kty == "EC-HSM" and cfg.vault.sku == "premium"
    existing = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-old"
    # Undeclared: Key Vault itself decides (a standard vault refuses at create: see tests/engine/test_hsm_keys.py).
    cfg = parse_workload_config(base(vault={"resource_id": existing}, certificates=hsm))
    assert cfg.vault.sku is None and cfg.certificates[0].spec.key.hsm


def test_private_endpoint_subnet_gives_the_vnet_and_an_optional_existing_private_dns_zone():
    cfg = parse_workload_config(base(vault={"private_endpoint_subnet_id": SUBNET}))
    assert cfg.vault.private_endpoint_vnet_id == SUBNET.rsplit("/subnets/", 1)[0]
    assert cfg.vault.public_network_access == "Disabled" and cfg.vault.private_dns_zone_id is None
    cfg = parse_workload_config(base(vault={"private_endpoint_subnet_id": SUBNET, "private_dns_zone_id": PRIVATE_ZONE}))
    assert cfg.vault.private_dns_zone_id == PRIVATE_ZONE
    assert parse_workload_config(base()).vault.private_endpoint_vnet_id is None


@pytest.mark.parametrize("change, field, words", [
    ({"workload": "Shop_1"}, "workload", "not a workload name"),
    ({"environment": None}, "environment", "is required"),
    ({"subscription_id": "x"}, "subscription_id", "not a GUID"),
    ({"tenant_id": None}, "tenant_id", "is required"),
    ({"surprise": 1}, "keyvault-acme:surprise", "unknown config key"),
    ({"vault": {"name": "kv_bad"}}, "vault.name", "not a valid Key Vault name"),
    ({"vault": {"sku": "gold"}}, "vault.sku", "not a Key Vault SKU"),
    ({"certificates": [{"name": "www", "dns_names": ["www.shop.example.com"], "key": {"kty": "EC-HSM"}}]},
     "certificates[0].key.kty", "EC-HSM keys need a premium vault, and the vault kv-shop-dev is standard"),
    ({"vault": {"resource_id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-old",
                "sku": "standard"},
      "certificates": [{"name": "www", "dns_names": ["www.shop.example.com"], "key": {"kty": "RSA-HSM"}}]},
     "certificates[0].key.kty", "RSA-HSM keys need a premium vault"),
    ({"vault": {"soft_delete_retention_days": 3}}, "vault.soft_delete_retention_days", "out of range"),
    ({"vault": {"private_endpoint_subnet_id": "/subscriptions/x/vnet"}}, "vault.private_endpoint_subnet_id", "not a subnet id"),
    ({"vault": {"private_endpoint_subnet_id": "/subnets/pe"}}, "vault.private_endpoint_subnet_id", "not a subnet id"),
    ({"vault": {"private_dns_zone_id": PRIVATE_ZONE}}, "vault.private_dns_zone_id", "needs vault.private_endpoint_subnet_id"),
    ({"vault": {"private_endpoint_subnet_id": SUBNET, "private_dns_zone_id": f"/subscriptions/{SUB}/resourceGroups/rg"}},
     "vault.private_dns_zone_id", "not a private DNS zone id"),
    ({"vault": {"private_endpoint_subnet_id": SUBNET,
                "private_dns_zone_id": PRIVATE_ZONE.replace("privatelink.vaultcore.azure.net", "privatelink.blob.core.windows.net")}},
     "vault.private_dns_zone_id", "does not serve Key Vault private endpoints"),
    ({"environment": "prod", "alerts": {"emails": ["a@example.com"]}, "vault": {"purge_protection": False}},
     "vault.purge_protection", "must be true in a production environment"),
    ({"environment": "prod"}, "alerts", "no receiver in a production environment"),
    ({"environment": "prod", "production": False}, "production", "cannot be false"),
    ({"zones": [{"name": "shop.example.com"}, {"name": "shop.example.com"}]}, "zones", "listed twice"),
    ({"zones": [{"name": "shop.example.com", "challenge_scope": "everywhere"}]}, "zones[0].challenge_scope", "not a scope"),
    ({"zones": [{"resource_id": "/subscriptions/x/dnszones/a"}]}, "zones[0].resource_id", "not an Azure DNS zone"),
    ({"consumers": [{"name": "app", "principal_id": "nope"}]}, "consumers[0].principal_id", "not a GUID"),
    ({"alerts": {"emails": ["not-an-address"]}}, "alerts.emails[0].address", "not an e-mail address"),
    ({"alerts": {"webhooks": [{"name": "t", "uri": "http://x"}]}}, "alerts.webhooks[0].uri", "not an https URL"),
    ({"allowlist": {}}, "allowlist", "is empty"),
    ({"certificates": [{"name": "www", "dns_names": ["www.other.org"]}]}, "certificates[0].dns_names", "www.other.org is not allowed"),
    ({"certificates": [{"name": "www", "dns_names": ["www.shop.example.com"], "vault_url": "https://x.vault.azure.net"}]},
     "certificates[0].vault_url", "set by the workload"),
    ({"certificates": [{"name": "www", "dns_names": ["www.shop.example.com"], "key": {"kty": "RSA", "size": 1024}}]},
     "certificates[0].key.size", "not supported"),
    ({"certificates": [{"name": "www", "dns_names": ["www.shop.example.com"], "revoke_reason": "bored"}]},
     "certificates[0].revoke_reason", "not a revocation reason"),
    ({"certificates": [{"name": "a", "dns_names": ["a.shop.example.com"]}, {"name": "A", "dns_names": ["b.shop.example.com"]}]},
     "certificates", "two certificates are named a"),
    ({"allowlist": {"suffixes": ["example.com"]}, "certificates": [{"name": "a", "dns_names": ["a.example.com"]}]},
     "certificates[0].dns_names", "is in no configured zone"),
    ({"acme": {"directory_url": "http://ca"}}, "acme.directory_url", "not an https URL"),
    ({"certificates": [{"name": "www", "dns_names": ["www.shop.example.com"],
                        "zones": [{"resource_id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/dnszones/shop.example.com"}]}]},
     "certificates[0].zones", "set by the workload"),
    ({"certificates": [{"name": "www", "dns_names": ["www.shop.example.com"], "acme": {"directory": "https://ca"}}]},
     "certificates[0].acme.directory", "unknown setting"),
    ({"zones": [{"zone": "lab.example.com", "server": "127.0.0.1", "tsig_key_name": "k", "tsig_key": "x",
                 "tsig_secret": "https://kv-shop-dev.vault.azure.net/secrets/tsig"}]}, "zones[0].tsig_key", "unknown setting"),
    ({"tags": {"secure": "v1:abc"}}, "keyvault-acme:tags", "is a secret"),
])
def test_errors_name_the_field_and_the_fix(change, field, words):
    values = base()
    for k, v in change.items():
        if v is None:
            values.pop(k, None)
        else:
            values[k] = copy.deepcopy(v)
    with pytest.raises(SpecError) as e:
        parse_workload_config(values)
    assert e.value.field == field, str(e.value)
    assert words in e.value.problem
    assert e.value.fix


def test_stack_file_reading_strips_our_namespace_only(tmp_path):
    assert stack_config_values({"config": {"azure-native:location": "x", "keyvault-acme:workload": "shop"}}) == {"workload": "shop"}
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text("config: [unclosed\n")
    with pytest.raises(SpecError) as e:
        load_stack_file(bad)
    assert "not valid YAML" in e.value.problem
    with pytest.raises(SpecError):
        load_stack_file(tmp_path / "Pulumi.missing.yaml")


def test_a_quoted_false_in_a_stack_file_keeps_the_key_unexportable():
    values = base(certificates=[{"name": "www", "dns_names": ["www.shop.example.com"],
                                 "key": {"kty": "EC", "exportable": "false"}, "revoke_on_delete": "false"}])
    (cert,) = parse_workload_config(values).certificates
    assert cert.spec.key.exportable is False and cert.revoke_on_delete is False
    assert cert.inputs()["key"]["exportable"] is False  # what the provider receives


def test_a_typo_in_a_certificates_key_settings_is_named():
    values = base(certificates=[{"name": "www", "dns_names": ["www.shop.example.com"], "key": {"curv": "P-384"}}])
    with pytest.raises(SpecError) as e:
        parse_workload_config(values)
    assert e.value.field == "certificates[0].key.curv" and "kty, size, curve, exportable" in e.value.fix


@pytest.mark.parametrize("change, field", [
    ({"zones": [{"name": "shop.example.com"}, {"zone": "lab.example.com", "server": "10.0.0.53", "tsig_key_name": "k",
                                               "tsig_secret": "c2VjcmV0LXRzaWcta2V5LXZhbHVl"}]}, "zones[1].tsig_secret"),
    ({"acme": {"eab_kid": "kid", "eab_hmac": "c2VjcmV0LXRzaWcta2V5LXZhbHVl"}}, "acme.eab_hmac"),
    ({"alerts": {"webhooks": [{"name": "teams", "uri": "http://hooks.example.com/c2VjcmV0LXRzaWcta2V5LXZhbHVl"}]}},
     "alerts.webhooks[0].uri"),
])
def test_secret_bearing_values_are_not_echoed_in_workload_errors(change, field):
    with pytest.raises(SpecError) as e:
        parse_workload_config(base(**change))
    assert e.value.field == field
    assert "c2VjcmV0" not in str(e.value)


@pytest.mark.parametrize("change", [
    {"vault": {"purge_protection": True}},
    {"environment": "prod", "alerts": {"emails": ["oncall@example.com"]}},  # production: purge protection by default
])
def test_purge_on_delete_is_refused_where_purge_protection_forbids_every_purge(change):
    values = base(**change, certificates=[{"name": "www", "dns_names": ["www.shop.example.com"], "purge_on_delete": True}])
    with pytest.raises(SpecError) as e:
        parse_workload_config(values)
    assert e.value.field == "certificates[0].purge_on_delete"
    assert "vault.purge_protection" in e.value.problem and "purge_on_delete" in e.value.fix


def test_purge_on_delete_is_fine_without_purge_protection():
    values = base(certificates=[{"name": "www", "dns_names": ["www.shop.example.com"], "purge_on_delete": "true"}])
    assert parse_workload_config(values).certificates[0].purge_on_delete is True


def test_a_cloudflare_zone_in_a_stack_file():
    token = "https://kv-shop-dev.vault.azure.net/secrets/cloudflare-dns-token"
    cfg = parse_workload_config(base(
        zones=[{"name": "shop.example.com"}, {"type": "cloudflare", "zone": "web.example.net", "api_token_secret": token}],
        allowlist={"suffixes": ["shop.example.com", "web.example.net"]},
        certificates=[{"name": "www", "dns_names": ["www.shop.example.com", "www.web.example.net"]}]))
    from keyvault_acme.model import CloudflareZone, SecretRef

    [cert] = cfg.certificates
    assert CloudflareZone("web.example.net", SecretRef(token)) in cert.spec.zones
    # No Azure role and no record set to create for it: the API token is the permission.
    assert [rs.zone.name for rs in cert.challenge_record_sets] == ["shop.example.com"]
    with pytest.raises(SpecError) as err:
        parse_workload_config(base(zones=[{"type": "cloudflare", "zone": "web.example.net", "api_token_secret": token,
                                           "challenge_scope": "zone"}]))
    assert err.value.field == "zones[0].challenge_scope"

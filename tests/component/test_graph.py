"""The resource graph CertificateWorkload registers for the example dev and prod stacks (under set_mocks)."""
from __future__ import annotations

import dataclasses

import pytest
from pulumi.runtime import rpc

from keyvault_acme.errors import NameNotAuthorized
from keyvault_acme_pulumi.components import CertificateWorkload
from keyvault_acme_pulumi.components.workload import (
    ACTIONABLE_EVENTS,
    INFORMATIONAL_EVENTS,
    KEY_VAULT_CERTIFICATES_OFFICER,
    KEY_VAULT_SECRETS_OFFICER,
    KEY_VAULT_SECRETS_USER,
    RENEWAL_GRACE_HOURS,
    latest_grant,
    overdue_renewal_query,
)
from keyvault_acme_stack.authorization import Allowlist
from keyvault_acme_stack.workload import load_stack_file

from . import harness, rules
from .harness import STACKS

T = "azure-native:"
CERT = "pulumi-python:dynamic/keyvault_acme:Certificate"
TAGGED = {f"{T}resources:ResourceGroup", f"{T}keyvault:Vault", f"{T}dns:Zone", f"{T}managedidentity:UserAssignedIdentity",
          f"{T}operationalinsights:Workspace", f"{T}monitor:ActionGroup", f"{T}eventgrid:SystemTopic",
          f"{T}monitor:ScheduledQueryRule", f"{T}network:PrivateEndpoint", f"{T}privatedns:PrivateZone",
          f"{T}privatedns:VirtualNetworkLink"}


def deploy(stack: str, cfg=None) -> tuple[harness.Run, object]:
    cfg = cfg or load_stack_file(STACKS / f"Pulumi.{stack}.yaml")
    run = harness.run(lambda: CertificateWorkload(cfg.stack_name, cfg).outputs, stack=stack, config={},
                      subscription_id=cfg.subscription_id)
    return run, cfg


@pytest.fixture(scope="module")
def dev():
    return deploy("shop-dev")


@pytest.fixture(scope="module")
def prod():
    return deploy("shop-prod")


def role_id(cfg, guid: str) -> str:
    return f"/subscriptions/{cfg.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


# ------------------------------------------------------------------------------------------ types, names, tags


def test_dev_registers_exactly_the_workload_resources(dev):
    run, _ = dev
    assert sorted((r.type, r.name) for r in run.registered) == sorted([
        ("keyvault-acme:index:CertificateWorkload", "shop-dev"),
        (f"{T}resources:ResourceGroup", "shop-dev-rg"),
        (f"{T}operationalinsights:Workspace", "shop-dev-logs"),
        (f"{T}keyvault:Vault", "shop-dev-vault"),
        (f"{T}monitor:DiagnosticSetting", "shop-dev-vault-diagnostics"),
        (f"{T}dns:Zone", "shop-dev-zone-dev.shop.example.com"),
        (f"{T}dns:RecordSet", "shop-dev-challenge-_acme-challenge.www.dev.shop.example.com"),
        (f"{T}dns:RecordSet", "shop-dev-challenge-_acme-challenge.dev.shop.example.com"),
        (f"{T}managedidentity:UserAssignedIdentity", "shop-dev-issuer"),
        (f"{T}authorization:RoleDefinition", "shop-dev-dns-txt-role-11111111-1111-1111-1111-111111111111"),
        (f"{T}authorization:RoleDefinition", "shop-dev-dns-zone-read-role-11111111-1111-1111-1111-111111111111"),
        (f"{T}authorization:RoleAssignment", "shop-dev-issuer-dns-read-dev.shop.example.com"),
        (f"{T}authorization:RoleAssignment", "shop-dev-issuer-certificates-officer"),
        (f"{T}authorization:RoleAssignment", "shop-dev-issuer-secret-acme-account-key"),
        (f"{T}authorization:RoleAssignment", "shop-dev-issuer-secret-www-dev-chain"),
        (f"{T}authorization:RoleAssignment", "shop-dev-issuer-secret-wildcard-dev-chain"),
        (f"{T}authorization:RoleAssignment", "shop-dev-issuer-dns-dev.shop.example.com-_acme-challenge.www"),
        (f"{T}authorization:RoleAssignment", "shop-dev-issuer-dns-dev.shop.example.com-_acme-challenge"),
        (f"{T}authorization:RoleAssignment", "shop-dev-consumer-app-secret-www-dev"),
        (f"{T}authorization:RoleAssignment", "shop-dev-consumer-app-secret-wildcard-dev"),
        (f"{T}monitor:ActionGroup", "shop-dev-alerts"),
        (f"{T}eventgrid:SystemTopic", "shop-dev-vault-events"),
        (f"{T}eventgrid:SystemTopicEventSubscription", "shop-dev-vault-events-expired"),
        (f"{T}eventgrid:SystemTopicEventSubscription", "shop-dev-vault-events-info"),
        (f"{T}monitor:ScheduledQueryRule", "shop-dev-renewal-failed"),
        (f"{T}monitor:ScheduledQueryRule", "shop-dev-renewal-overdue"),
        (CERT, "shop-dev-cert-www-dev"),
        (CERT, "shop-dev-cert-wildcard-dev"),
    ])


@pytest.mark.parametrize("which", ["dev", "prod"])
def test_every_resource_is_a_tagged_child_of_the_component(which, request):
    run, cfg = request.getfixturevalue(which)
    component = run.one("keyvault-acme:index:CertificateWorkload")
    for r in run.registered:
        if r is component or r.type == "pulumi:providers:azure-native":
            continue
        assert r.parent == component.urn, r.name
        if r.type in TAGGED:
            assert r.inputs["tags"] == {"workload": "shop", "environment": cfg.environment,
                                        "managed-by": "pulumi-keyvault-acme"}, r.name


def test_azure_names_follow_the_workload_and_environment(dev, prod):
    run, _ = dev
    assert run.one(f"{T}resources:ResourceGroup").inputs["resourceGroupName"] == "rg-shop-dev"
    assert run.one(f"{T}keyvault:Vault").inputs["vaultName"] == "kv-shop-dev"
    assert run.one(f"{T}managedidentity:UserAssignedIdentity").inputs["resourceName"] == "id-shop-dev-issuer"
    run, _ = prod
    assert run.one(f"{T}keyvault:Vault").inputs["vaultName"] == "kv-shop-prod-weu"  # override from the stack file
    assert not run.of_type(f"{T}operationalinsights:Workspace")  # prod uses the platform's workspace


# ------------------------------------------------------------------------------------------ Key Vault


def test_dev_vault_is_rbac_soft_delete_public_without_purge_protection(dev):
    run, cfg = dev
    props = run.one(f"{T}keyvault:Vault").inputs["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert props["softDeleteRetentionInDays"] == 7
    assert "enablePurgeProtection" not in props
    assert props["publicNetworkAccess"] == "Enabled"
    assert props["tenantId"] == cfg.tenant_id
    assert props["sku"] == {"family": "A", "name": "standard"}
    for private in ("network:PrivateEndpoint", "network:PrivateDnsZoneGroup", "privatedns:PrivateZone",
                    "privatedns:VirtualNetworkLink"):
        assert not run.of_type(f"{T}{private}")


def test_prod_vault_has_purge_protection_and_only_a_private_endpoint(prod):
    run, cfg = prod
    vault = run.one(f"{T}keyvault:Vault")
    props = vault.inputs["properties"]
    assert props["enableRbacAuthorization"] is True and props["enableSoftDelete"] is True
    assert props["enablePurgeProtection"] is True
    assert props["softDeleteRetentionInDays"] == 90
    assert props["publicNetworkAccess"] == "Disabled"
    assert props["networkAcls"] == {"defaultAction": "Deny", "bypass": "AzureServices"}
    assert props["sku"]["name"] == "premium"
    pe = run.one(f"{T}network:PrivateEndpoint")
    assert pe.inputs["subnet"]["id"] == cfg.vault.private_endpoint_subnet_id
    (conn,) = pe.inputs["privateLinkServiceConnections"]
    assert conn["privateLinkServiceId"] == vault.id and conn["groupIds"] == ["vault"]


def test_prod_private_endpoint_is_published_in_a_private_dns_zone_linked_to_its_vnet(prod):
    # Without the zone group, clients in the VNet resolve the vault's public address, which refuses them.
    run, cfg = prod
    pe = run.one(f"{T}network:PrivateEndpoint")
    zone = run.one(f"{T}privatedns:PrivateZone")
    assert zone.inputs["privateZoneName"] == "privatelink.vaultcore.azure.net"
    assert zone.inputs["resourceGroupName"] == "rg-shop-prod" and zone.inputs["location"] == "global"
    link = run.one(f"{T}privatedns:VirtualNetworkLink")
    assert link.inputs["privateZoneName"] == "privatelink.vaultcore.azure.net"
    assert link.inputs["virtualNetwork"] == {"id": "/subscriptions/44444444-4444-4444-4444-444444444444/resourceGroups/"
                                                   "rg-network/providers/Microsoft.Network/virtualNetworks/vnet-prod"}
    assert link.inputs["registrationEnabled"] is False
    group = run.one(f"{T}network:PrivateDnsZoneGroup")
    assert group.inputs["privateEndpointName"] == pe.state["name"] == "pe-kv-shop-prod-weu"
    assert group.inputs["resourceGroupName"] == pe.inputs["resourceGroupName"]
    (config,) = group.inputs["privateDnsZoneConfigs"]
    assert config["privateDnsZoneId"] == zone.id
    assert link.urn in group.dependencies  # the record is only useful once the VNet resolves through the zone


def test_an_existing_private_dns_zone_is_used_and_nothing_is_created_or_linked():
    hub_zone = ("/subscriptions/55555555-5555-5555-5555-555555555555/resourceGroups/rg-hub-dns/providers/"
                "Microsoft.Network/privateDnsZones/privatelink.vaultcore.azure.net")
    cfg = load_stack_file(STACKS / "Pulumi.shop-prod.yaml")
    run, _ = deploy("shop-prod", dataclasses.replace(cfg, vault=dataclasses.replace(cfg.vault, private_dns_zone_id=hub_zone)))
    assert not run.of_type(f"{T}privatedns:PrivateZone") and not run.of_type(f"{T}privatedns:VirtualNetworkLink")
    group = run.one(f"{T}network:PrivateDnsZoneGroup")
    assert group.inputs["privateEndpointName"] == run.one(f"{T}network:PrivateEndpoint").state["name"]
    assert [c["privateDnsZoneId"] for c in group.inputs["privateDnsZoneConfigs"]] == [hub_zone]


@pytest.mark.parametrize("which", ["dev", "prod"])
def test_vault_audit_logs_go_to_the_workspace(which, request):
    run, cfg = request.getfixturevalue(which)
    vault = run.one(f"{T}keyvault:Vault")
    diag = run.one(f"{T}monitor:DiagnosticSetting")
    assert diag.inputs["resourceUri"] == vault.id
    workspace = cfg.monitoring.workspace_id or run.one(f"{T}operationalinsights:Workspace").id
    assert diag.inputs["workspaceId"] == workspace
    assert diag.inputs["logs"] == [{"categoryGroup": "audit", "enabled": True}]


# ------------------------------------------------------------------------------------------ roles


def _issuer_principal(run, cfg) -> str:
    if cfg.issuer.existing:
        return cfg.issuer.principal_id
    return run.one(f"{T}managedidentity:UserAssignedIdentity").state["principalId"]


def _rule_args(run, cfg) -> dict:
    return {"vault_id": run.one(f"{T}keyvault:Vault").id, "issuer": _issuer_principal(run, cfg),
            "consumers": {c.principal_id for c in cfg.consumers}, "certificates": {c.name for c in cfg.certificates}}


def _assignments(run) -> set[tuple[str, str, str]]:
    return {(a.inputs["principalId"], a.inputs["roleDefinitionId"], a.inputs["scope"])
            for a in run.of_type(f"{T}authorization:RoleAssignment")}


def test_dev_assignments_are_exactly_the_least_privilege_set(dev):
    run, cfg = dev
    vault = run.one(f"{T}keyvault:Vault").id
    issuer = _issuer_principal(run, cfg)
    roles = {r.inputs["roleName"]: r for r in run.of_type(f"{T}authorization:RoleDefinition")}
    dns_role = roles["ACME DNS-01 TXT writer (shop-dev)"].id
    zone_reader = roles["ACME DNS zone reader (shop-dev)"].id
    zone = run.one(f"{T}dns:Zone").id
    record_sets = {r.inputs["relativeRecordSetName"]: r.id for r in run.of_type(f"{T}dns:RecordSet")}
    assert set(record_sets) == {"_acme-challenge", "_acme-challenge.www"}
    assert _assignments(run) == {
        (issuer, role_id(cfg, KEY_VAULT_CERTIFICATES_OFFICER), vault),
        (issuer, role_id(cfg, KEY_VAULT_SECRETS_OFFICER), f"{vault}/secrets/acme-account-key"),
        (issuer, role_id(cfg, KEY_VAULT_SECRETS_OFFICER), f"{vault}/secrets/www-dev-chain"),
        (issuer, role_id(cfg, KEY_VAULT_SECRETS_OFFICER), f"{vault}/secrets/wildcard-dev-chain"),
        (issuer, dns_role, record_sets["_acme-challenge"]),
        (issuer, dns_role, record_sets["_acme-challenge.www"]),
        (issuer, zone_reader, zone),  # a record-set assignment does not cover the zone the engine reads
        # The consumer reads each certificate's own secret, never the vault's other secrets (the ACME account key).
        ("33333333-3333-3333-3333-333333333333", role_id(cfg, KEY_VAULT_SECRETS_USER), f"{vault}/secrets/www-dev"),
        ("33333333-3333-3333-3333-333333333333", role_id(cfg, KEY_VAULT_SECRETS_USER), f"{vault}/secrets/wildcard-dev"),
    }
    rules.check_least_privilege(run, **_rule_args(run, cfg))


def test_prod_assignments_pass_the_rules_with_dns_in_the_dns_teams_subscription(prod):
    run, cfg = prod
    vault = run.one(f"{T}keyvault:Vault").id
    rules.check_least_privilege(run, **_rule_args(run, cfg))
    consumers = {(a.inputs["principalId"], a.inputs["scope"]) for a in run.of_type(f"{T}authorization:RoleAssignment")
                 if rules.role_guid(a.inputs["roleDefinitionId"]) == KEY_VAULT_SECRETS_USER}
    assert consumers == {(p, f"{vault}/secrets/{name}") for p in ("66666666-6666-6666-6666-666666666666",
                                                                "77777777-7777-7777-7777-777777777777")
                         for name in ("www", "api")}
    # The zone lives in subscription 5555...: its record sets, the custom role and its assignments go through a
    # provider bound to that subscription, and the role is assignable only in the zone's resource group.
    dns_team = "55555555-5555-5555-5555-555555555555"
    provider = run.one("pulumi:providers:azure-native")
    assert provider.inputs["subscriptionId"] == dns_team
    roles = {r.inputs["roleName"]: r for r in run.of_type(f"{T}authorization:RoleDefinition")}
    role = roles[f"ACME DNS-01 TXT writer (shop-prod, {dns_team})"]
    reader = roles[f"ACME DNS zone reader (shop-prod, {dns_team})"]
    for r in (role, reader):
        assert r.inputs["scope"] == f"/subscriptions/{dns_team}" and r.provider.startswith(provider.urn)
        assert r.inputs["assignableScopes"] == [f"/subscriptions/{dns_team}/resourceGroups/rg-dns"]
    assert role.inputs["permissions"] == [{"actions": ["Microsoft.Network/dnszones/TXT/*", "Microsoft.Network/dnszones/read"]}]
    assert reader.inputs["permissions"] == [{"actions": ["Microsoft.Network/dnszones/read"]}]
    (read,) = [a for a in run.of_type(f"{T}authorization:RoleAssignment") if a.inputs["roleDefinitionId"] == reader.id]
    assert read.inputs["scope"] == cfg.zones[0].resource_id
    record_sets = run.of_type(f"{T}dns:RecordSet")
    assert sorted(r.inputs["relativeRecordSetName"] for r in record_sets) == [
        "_acme-challenge", "_acme-challenge.api", "_acme-challenge.www"]
    for r in record_sets:
        assert r.provider.startswith(provider.urn) and r.inputs["zoneName"] == "shop.example.com"
        assert r.inputs["resourceGroupName"] == "rg-dns" and r.inputs["recordType"] == "TXT"
        assert r.inputs["txtRecords"] == [] and r.inputs["ttl"] == 60
    dns_scopes = {a.inputs["scope"] for a in run.of_type(f"{T}authorization:RoleAssignment")
                  if a.inputs["roleDefinitionId"] == role.id}
    assert dns_scopes == {r.id for r in record_sets}


def test_zone_scope_on_request_assigns_the_dns_role_on_the_zone_and_creates_no_record_sets():
    cfg = load_stack_file(STACKS / "Pulumi.shop-prod.yaml")
    zone = dataclasses.replace(cfg.zones[0], challenge_scope="zone")
    certs = tuple(dataclasses.replace(c, challenge_record_sets=tuple(dataclasses.replace(rs, zone=zone)
                                                                     for rs in c.challenge_record_sets))
                  for c in cfg.certificates)
    run, cfg = deploy("shop-prod", dataclasses.replace(cfg, zones=(zone,), certificates=certs))
    assert not run.of_type(f"{T}dns:RecordSet")
    role = run.one(f"{T}authorization:RoleDefinition")  # the TXT writer only: it reads the zone it is on
    (dns_assignment,) = [a for a in run.of_type(f"{T}authorization:RoleAssignment") if a.inputs["roleDefinitionId"] == role.id]
    assert dns_assignment.inputs["scope"] == zone.resource_id
    rules.check_least_privilege(run, **_rule_args(run, cfg), zone_scoped={zone.resource_id.lower()})


@pytest.mark.parametrize("broaden", ["contributor-on-group", "owner-on-vault", "secrets-user-on-subscription",
                                     "secrets-user-on-vault", "secrets-user-on-account-key", "secrets-user-on-a-chain",
                                     "dns-role-on-zone", "officer-for-consumer", "custom-role-wider",
                                     "zone-reader-on-group", "dns-role-for-consumer", "secrets-officer-on-vault",
                                     "secrets-officer-on-a-certificate"])
def test_the_rules_check_fails_on_any_broader_assignment(dev, broaden):
    run, cfg = dev
    vault = run.one(f"{T}keyvault:Vault").id
    registered = [dataclasses.replace(r, inputs=dict(r.inputs)) for r in run.registered]
    assignments = [r for r in registered if r.type == f"{T}authorization:RoleAssignment"]
    officer = next(a for a in assignments if a.name.endswith("certificates-officer"))
    consumer = next(a for a in assignments if a.name.endswith("consumer-app-secret-www-dev"))
    dns = next(a for a in assignments if "-dns-" in a.name and "-dns-read-" not in a.name)
    read = next(a for a in assignments if "-dns-read-" in a.name)
    secret = next(a for a in assignments if a.name.endswith("-secret-acme-account-key"))
    if broaden == "contributor-on-group":
        officer.inputs.update(roleDefinitionId=role_id(cfg, rules.CONTRIBUTOR), scope=vault.split("/providers/")[0])
    elif broaden == "owner-on-vault":
        officer.inputs["roleDefinitionId"] = role_id(cfg, rules.OWNER)
    elif broaden == "secrets-user-on-subscription":
        consumer.inputs["scope"] = f"/subscriptions/{cfg.subscription_id}"
    elif broaden == "secrets-user-on-vault":  # what the component granted before: the account key included
        consumer.inputs["scope"] = vault
    elif broaden == "secrets-user-on-account-key":
        consumer.inputs["scope"] = f"{vault}/secrets/acme-account-key"
    elif broaden == "secrets-user-on-a-chain":
        consumer.inputs["scope"] = f"{vault}/secrets/www-dev-chain"
    elif broaden == "dns-role-on-zone":
        dns.inputs["scope"] = dns.inputs["scope"].split("/TXT/")[0]
    elif broaden == "officer-for-consumer":
        officer.inputs["principalId"] = consumer.inputs["principalId"]
    elif broaden == "secrets-officer-on-vault":
        secret.inputs["scope"] = vault
    elif broaden == "secrets-officer-on-a-certificate":
        secret.inputs["scope"] = f"{vault}/secrets/www-dev"  # the certificate's own secret: not the engine's
    elif broaden == "zone-reader-on-group":
        read.inputs["scope"] = read.inputs["scope"].split("/providers/")[0]
    elif broaden == "dns-role-for-consumer":
        dns.inputs["principalId"] = consumer.inputs["principalId"]
    elif broaden == "custom-role-wider":
        role = next(r for r in registered if r.type == f"{T}authorization:RoleDefinition"
                    and "TXT writer" in r.inputs["roleName"])
        role.inputs["permissions"] = [{"actions": ["Microsoft.Network/dnszones/*"]}]
    with pytest.raises(rules.TooBroad):
        rules.check_least_privilege(harness.Run(registered, None), **_rule_args(run, cfg))


# ------------------------------------------------------------------------------------------ certificates


def test_each_certificate_depends_on_exactly_the_assignments_it_needs(dev):
    run, cfg = dev
    by_name = {a.name: a.urn for a in run.of_type(f"{T}authorization:RoleAssignment")}
    vault_roles = {by_name["shop-dev-issuer-certificates-officer"], by_name["shop-dev-issuer-secret-acme-account-key"]}
    apex = by_name["shop-dev-issuer-dns-dev.shop.example.com-_acme-challenge"]
    www = by_name["shop-dev-issuer-dns-dev.shop.example.com-_acme-challenge.www"]
    consumer = by_name["shop-dev-consumer-app-secret-www-dev"]
    zone_read = by_name["shop-dev-issuer-dns-read-dev.shop.example.com"]
    certs = {c.name: c for c in run.of_type(CERT)}
    www_deps = set(certs["shop-dev-cert-www-dev"].dependencies)
    wildcard_deps = set(certs["shop-dev-cert-wildcard-dev"].dependencies)
    www_chain, wildcard_chain = by_name["shop-dev-issuer-secret-www-dev-chain"], by_name["shop-dev-issuer-secret-wildcard-dev-chain"]
    assert vault_roles | {apex, www, zone_read, www_chain} <= www_deps
    assert vault_roles | {apex, zone_read, wildcard_chain} <= wildcard_deps  # *.dev... is validated at _acme-challenge
    assert www not in wildcard_deps and consumer not in www_deps | wildcard_deps
    assert wildcard_chain not in www_deps and www_chain not in wildcard_deps


def test_each_certificate_is_told_when_its_last_grant_was_made(dev):
    # A first deployment issues right after granting; Azure applies grants within minutes, so the
    # certificate gets the latest createdOn of the assignments it needs, and waits out a 403 until then.
    run, _ = dev
    assignments = {a.urn: a for a in run.of_type(f"{T}authorization:RoleAssignment")}
    certs = run.of_type(CERT)
    assert certs
    for cert in certs:
        made = [assignments[urn].state["createdOn"] for urn in cert.dependencies if urn in assignments]
        assert made and cert.inputs["access_granted_at"] == max(made)


def test_latest_grant_compares_times_not_text():
    assert latest_grant([]) is None and latest_grant([None, ""]) is None  # not known (yet)
    assert latest_grant(["2026-11-26T10:00:00+01:00", "2026-11-26T09:30:00.1234567Z", None]) == \
        "2026-11-26T09:30:00.1234567Z"  # 10:00+01:00 is 09:00 UTC


def test_certificate_inputs_are_the_shared_dict_shape_with_workload_defaults(dev):
    run, cfg = dev
    cert = next(c for c in run.of_type(CERT) if c.name == "shop-dev-cert-wildcard-dev")
    expected = next(c for c in cfg.certificates if c.name == "wildcard-dev").inputs()
    inputs = {k: v for k, v in cert.inputs.items() if k in expected}
    assert inputs == expected
    assert inputs["vault_url"] == "https://kv-shop-dev.vault.azure.net"
    assert inputs["zones"] == [{"resource_id": cfg.zones[0].resource_id}]
    assert inputs["acme"]["directory_url"] == "https://acme-staging-v02.api.letsencrypt.org/directory"
    assert inputs["purge_on_delete"] is True and inputs["revoke_on_delete"] is True
    assert inputs["tags"]["workload"] == "shop"


def test_a_name_outside_the_allowlist_fails_before_anything_is_registered():
    cfg = load_stack_file(STACKS / "Pulumi.shop-dev.yaml")
    narrowed = dataclasses.replace(cfg, allowlist=Allowlist(names=("www.dev.shop.example.com",)))
    with pytest.raises(NameNotAuthorized) as e:
        deploy("shop-dev", narrowed)
    assert "dev.shop.example.com is not allowed" in str(e.value)
    assert "names www.dev.shop.example.com" in str(e.value)


# ------------------------------------------------------------------------------------------ alerts, outputs


@pytest.mark.parametrize("which", ["dev", "prod"])
def test_what_pages_is_expiry_failure_and_overdue_renewal_and_near_expiry_pages_nobody(which, request):
    run, cfg = request.getfixturevalue(which)
    vault = run.one(f"{T}keyvault:Vault").id
    group = run.one(f"{T}monitor:ActionGroup")
    assert [e["emailAddress"] for e in group.inputs["emailReceivers"]] == [e.address for e in cfg.alerting.emails]
    hooks = group.inputs.get("webhookReceivers", [])
    if cfg.alerting.webhooks:  # webhook URLs carry their token: the receivers are a secret in state
        assert rpc.is_rpc_secret(hooks)
    assert [w["serviceUri"] for w in rpc.unwrap_rpc_secret(hooks)] == [w.uri for w in cfg.alerting.webhooks]
    topic = run.one(f"{T}eventgrid:SystemTopic")
    assert topic.inputs["source"] == vault and topic.inputs["topicType"] == "Microsoft.KeyVault.vaults"
    paged, recorded = set(), set()
    for sub in run.of_type(f"{T}eventgrid:SystemTopicEventSubscription"):
        assert sub.inputs["systemTopicName"] == topic.state["name"]
        destination = sub.inputs["destination"]
        assert destination["endpointType"] == "MonitorAlert"
        events = set(sub.inputs["filter"]["includedEventTypes"])
        if destination.get("actionGroups"):
            assert destination["actionGroups"] == [group.id] and destination["severity"] == "Sev1"
            paged |= events
        else:
            assert destination["severity"] == "Sev4"  # in Azure Monitor's alert list, nobody notified
            recorded |= events
    assert paged == set(ACTIONABLE_EVENTS) == {"Microsoft.KeyVault.CertificateExpired"}
    # NearExpiry fires when a certificate becomes due (or earlier): it is no sign that anything failed.
    assert recorded == set(INFORMATIONAL_EVENTS) == {"Microsoft.KeyVault.CertificateNearExpiry",
                                                     "Microsoft.KeyVault.CertificateNewVersionCreated"}
    rules_by_name = {r.name: r for r in run.of_type(f"{T}monitor:ScheduledQueryRule")}
    assert set(rules_by_name) == {f"{cfg.stack_name}-renewal-failed", f"{cfg.stack_name}-renewal-overdue"}
    workspace = cfg.monitoring.workspace_id or run.one(f"{T}operationalinsights:Workspace").id
    for rule in rules_by_name.values():
        assert rule.inputs["scopes"] == [workspace] and rule.inputs["severity"] == 1
        assert rule.inputs["actions"]["actionGroups"] == [group.id]
        (condition,) = rule.inputs["criteria"]["allOf"]
        assert condition["operator"] == "GreaterThan" and condition["threshold"] == 0
    (failed,) = rules_by_name[f"{cfg.stack_name}-renewal-failed"].inputs["criteria"]["allOf"]
    assert "MICROSOFT.KEYVAULT" in failed["query"]
    # A failure at the CA or in DNS shows in Key Vault only as the engine discarding its pending operation;
    # a 404 on reading a certificate that is not issued yet is no failure.
    assert 'OperationName == "CertificatePendingDelete"' in failed["query"]
    assert "not(toint(httpStatusCode_d) == 404" in failed["query"]
    # The overdue rule carries each certificate's renew_after output (the mock's) and the grace.
    (overdue,) = rules_by_name[f"{cfg.stack_name}-renewal-overdue"].inputs["criteria"]["allOf"]
    for cert in cfg.certificates:
        assert f'"{cert.name}", datetime(2027-01-30T00:00:00Z)' in overdue["query"]
    assert f"| where now() > renew_after + {RENEWAL_GRACE_HOURS}h" in overdue["query"]
    assert overdue["query"] == overdue_renewal_query({c.name: "2027-01-30T00:00:00+00:00" for c in cfg.certificates})


def test_a_renewal_moves_the_overdue_alerts_date_and_only_that_certificates():
    before = overdue_renewal_query({"www": "2027-01-30T00:00:00+00:00", "api": "2027-01-10T00:00:00+00:00"})
    after = overdue_renewal_query({"www": "2027-03-01T00:00:00+00:00", "api": "2027-01-10T00:00:00+00:00"})
    assert '"www", datetime(2027-01-30T00:00:00Z)' in before and '"www", datetime(2027-03-01T00:00:00Z)' in after
    assert '"api", datetime(2027-01-10T00:00:00Z)' in before and '"api", datetime(2027-01-10T00:00:00Z)' in after


@pytest.mark.parametrize("lifetime_days", [90, 45, 6])
def test_near_expiry_comes_no_later_than_renewal_so_it_cannot_mean_renewal_failed(lifetime_days):
    # Key Vault's CertificateNearExpiry: 30 days before expiry (at issuance when the lifetime is shorter). With
    # the default renewal point (a third of the lifetime left) a 90-day certificate becomes due at that very
    # moment and shorter ones later: NearExpiry fires at or before renew_after, while nothing can have failed
    # yet. Hence informational.
    from datetime import datetime, timedelta, timezone

    from keyvault_acme.renewal import renew_after

    issued = datetime(2027, 1, 1, tzinfo=timezone.utc)
    expires = issued + timedelta(days=lifetime_days)
    near_expiry = max(issued, expires - timedelta(days=30))
    due = renew_after(issued, expires)
    assert near_expiry <= due + timedelta(seconds=1)
    # The overdue alert instead fires RENEWAL_GRACE_HOURS after the due point, with time left to act.
    assert due + timedelta(hours=RENEWAL_GRACE_HOURS) < expires - timedelta(hours=24)


def test_outputs(dev):
    run, cfg = dev
    identity = run.one(f"{T}managedidentity:UserAssignedIdentity")
    assert run.result == {
        "vault_uri": "https://kv-shop-dev.vault.azure.net/",
        "issuer_client_id": identity.state["clientId"],
        "zone_name_servers": {"dev.shop.example.com": ["ns1-01.azure-dns.com.", "ns1-02.azure-dns.com."]},
        "certificates": {
            "www-dev": {"secret_id": "https://kv-shop-dev.vault.azure.net/secrets/www-dev",
                        "renew_after": "2027-01-30T00:00:00+00:00"},
            "wildcard-dev": {"secret_id": "https://kv-shop-dev.vault.azure.net/secrets/wildcard-dev",
                             "renew_after": "2027-01-30T00:00:00+00:00"},
        },
    }

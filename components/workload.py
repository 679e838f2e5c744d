"""Everything one workload needs in one environment to hold ACME certificates in Key Vault.

``CertificateWorkload`` turns a validated :class:`keyvault_acme.workload.WorkloadConfig` into Azure
resources: the vault (RBAC mode, soft delete, purge protection in production, private endpoint,
diagnostics), DNS zones and the ``_acme-challenge`` TXT record sets, the issuer identity, the
least-privilege role assignments, alerting, and one ``Certificate`` per configured certificate.

Roles are the point of this module. Every assignment is built by :func:`role_plan`, a pure function of
the config, so tests (and reviewers) can read the whole grant list without Azure: issuer -> Key Vault
Certificates Officer on this vault and Secrets Officer on the engine's own two secrets (ACME account key,
public chain); DNS -> a custom TXT-only role on each challenge record
set (or zone, when the stack asks); consumers -> Key Vault Secrets User on this vault. Nothing wider.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pulumi
import pulumi_azure_native as azure_native
from pulumi_azure_native import authorization, dns, eventgrid, keyvault, managedidentity, monitor, network
from pulumi_azure_native import operationalinsights, privatedns, resources

from keyvault_acme.authorization import check_names
from keyvault_acme.keyvault import CHAIN_SUFFIX
from keyvault_acme.workload import (
    KEY_VAULT_PRIVATE_DNS_ZONE,
    CertificateConfig,
    ChallengeRecordSet,
    DnsZoneConfig,
    WorkloadConfig,
)

TYPE = "keyvault-acme:index:CertificateWorkload"

# Built-in role definition GUIDs (the same in every Azure tenant).
KEY_VAULT_CERTIFICATES_OFFICER = "a4417e6f-fecd-4de8-b567-7b0420556985"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
BUILTIN_ROLE_NAMES = {
    KEY_VAULT_SECRETS_OFFICER: "Key Vault Secrets Officer",
    KEY_VAULT_CERTIFICATES_OFFICER: "Key Vault Certificates Officer",
    KEY_VAULT_SECRETS_USER: "Key Vault Secrets User",
}
# The custom DNS-01 role: write TXT record sets and read the zone. No other record type, no zone changes.
DNS_TXT_ACTIONS = ("Microsoft.Network/dnszones/TXT/*", "Microsoft.Network/dnszones/read")
# An assignment on a record set does not cover its zone, yet the engine reads the zone (its name servers are
# where propagation is checked). So record-set-scoped writers also get this read-only role on the zone.
DNS_ZONE_READ_ACTIONS = ("Microsoft.Network/dnszones/read",)
CUSTOM_ROLES = {  # key -> (role name prefix, actions)
    "dns-txt": ("ACME DNS-01 TXT writer", DNS_TXT_ACTIONS),
    "dns-zone-read": ("ACME DNS zone reader", DNS_ZONE_READ_ACTIONS),
}

# What Key Vault tells Event Grid about certificates; NearExpiry fires 30 days before expiry by default.
EXPIRY_EVENTS = ("Microsoft.KeyVault.CertificateNearExpiry", "Microsoft.KeyVault.CertificateExpired")
RENEWAL_EVENTS = ("Microsoft.KeyVault.CertificateNewVersionCreated",)

# A renewal that failed leaves failed certificate operations in the vault's audit log (resource-specific
# or AzureDiagnostics mode both land here with the diagnostic setting below).
FAILED_RENEWAL_QUERY = """AzureDiagnostics
| where ResourceProvider == "MICROSOFT.KEYVAULT"
| where OperationName startswith "Certificate"
| where toint(httpStatusCode_d) >= 400 or ResultSignature !in ("OK", "Accepted", "Created", "NoContent")
| summarize failures = count() by Resource, OperationName, bin(TimeGenerated, 15m)"""


@dataclass(frozen=True)
class RoleGrant:
    """One role assignment the workload needs, before Azure ids are known.

    ``scope_kind`` is ``vault``, ``secret``, ``record_set`` or ``zone``; ``target`` is the secret name, record
    set or zone it is on.
    ``role`` is a built-in role GUID or a key of :data:`CUSTOM_ROLES` (defined in the zone's subscription).
    """

    key: str  # stable, unique: also the Pulumi resource name suffix and the seed of the assignment GUID
    principal: str  # "issuer" or "consumer:<name>"
    role: str
    scope_kind: str
    target: ChallengeRecordSet | DnsZoneConfig | str | None = None

    @property
    def role_name(self) -> str:
        return BUILTIN_ROLE_NAMES.get(self.role) or CUSTOM_ROLES[self.role][0]

    @property
    def subscription_id(self) -> str | None:
        """Where a DNS grant's custom role must be defined (the zone's subscription)."""
        if isinstance(self.target, DnsZoneConfig):
            return self.target.subscription_id
        return self.target.zone.subscription_id if isinstance(self.target, ChallengeRecordSet) else None


def role_plan(cfg: WorkloadConfig) -> tuple[RoleGrant, ...]:
    """Every role assignment the workload's config calls for; nothing outside it is ever granted."""
    grants = [
        RoleGrant("issuer-certificates-officer", "issuer", KEY_VAULT_CERTIFICATES_OFFICER, "vault"),
    ]
    # No Key Vault Crypto User: the engine performs no key operation (Key Vault signs nothing for it; the
    # CSR comes with the pending certificate). tests/component/test_least_privilege.py proves the set.
    # The engine keeps two plain secrets of its own: the ACME account key and each certificate's public
    # chain. Secrets Officer on exactly those objects, never on the vault (whose secrets hold certificates).
    for secret in _engine_secrets(cfg):
        grants.append(RoleGrant(f"issuer-secret-{secret}", "issuer", KEY_VAULT_SECRETS_OFFICER, "secret", secret))
    writes_on_zone: dict[str, DnsZoneConfig] = {}
    reads_zone: dict[str, DnsZoneConfig] = {}
    for rs in cfg.challenge_record_sets:
        if rs.zone.challenge_scope == "zone":
            writes_on_zone.setdefault(rs.zone.resource_id, rs.zone)
        else:
            grants.append(RoleGrant(f"issuer-dns-{rs.zone.name}-{rs.relative_name}", "issuer", "dns-txt", "record_set", rs))
            reads_zone.setdefault(rs.zone.resource_id, rs.zone)
    grants += [RoleGrant(f"issuer-dns-read-{z.name}", "issuer", "dns-zone-read", "zone", z) for z in reads_zone.values()]
    grants += [RoleGrant(f"issuer-dns-{z.name}", "issuer", "dns-txt", "zone", z) for z in writes_on_zone.values()]
    for consumer in cfg.consumers:
        grants.append(RoleGrant(f"consumer-{consumer.name}-secrets-user", f"consumer:{consumer.name}",
                                KEY_VAULT_SECRETS_USER, "vault"))
    return tuple(grants)


def _engine_secrets(cfg: WorkloadConfig) -> list[str]:
    names: list[str] = []
    for cert in cfg.certificates:
        for secret in (cert.spec.acme.account_key_secret, f"{cert.name}{CHAIN_SUFFIX}"):
            if secret not in names:
                names.append(secret)
    return names


def grants_for_certificate(grants: Sequence[RoleGrant], cert: CertificateConfig) -> list[RoleGrant]:
    """The grants one certificate's issuance needs: the issuer's vault roles, its secrets, DNS on its record sets."""
    record_sets = cert.challenge_record_sets
    secrets = {cert.spec.acme.account_key_secret, f"{cert.name}{CHAIN_SUFFIX}"}
    zone_ids = {rs.zone.resource_id for rs in record_sets}
    out = []
    for g in grants:
        if g.principal != "issuer":
            continue
        if g.scope_kind == "vault" or (g.scope_kind == "secret" and g.target in secrets) or (
                g.scope_kind == "record_set" and g.target in record_sets) or (
                g.scope_kind == "zone" and g.target.resource_id in zone_ids):
            out.append(g)
    return out


def _certificate_class():
    # Imported late: the component is importable (and its role plan testable) while the provider evolves.
    from providers.certificate import Certificate

    return Certificate


class CertificateWorkload(pulumi.ComponentResource):
    """One workload's vault, DNS, identities, roles, alerts and certificates in one environment."""

    def __init__(self, name: str, config: WorkloadConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        self.config = cfg = config
        # Preview fails here, before anything is registered, when a name is outside the stack's allowlist.
        for cert in cfg.certificates:
            check_names(cert.spec.dns_names, cfg.allowlist, field=f"certificates[{cert.name}].dns_names",
                        owner=f"workload {cfg.workload}")
        self._name = name
        tags = dict(cfg.tags)
        here = pulumi.ResourceOptions(parent=self)

        # ------------------------------------------------------------------ resource group, workspace
        if cfg.resource_group.existing:
            rg_name: pulumi.Input[str] = cfg.resource_group.name
        else:
            rg = resources.ResourceGroup(f"{name}-rg", resource_group_name=cfg.resource_group.name,
                                         location=cfg.location, tags=tags, opts=here)
            rg_name = rg.name
        workspace_id: pulumi.Input[str] | None = None
        if cfg.monitoring.enabled:
            if cfg.monitoring.workspace_id:
                workspace_id = cfg.monitoring.workspace_id
            else:
                workspace = operationalinsights.Workspace(
                    f"{name}-logs", workspace_name=cfg.monitoring.workspace_name, resource_group_name=rg_name,
                    location=cfg.location, sku=operationalinsights.WorkspaceSkuArgs(name="PerGB2018"),
                    retention_in_days=cfg.monitoring.retention_days, tags=tags, opts=here)
                workspace_id = workspace.id

        # ------------------------------------------------------------------ vault
        if cfg.vault.existing:
            vault_id: pulumi.Input[str] = cfg.vault.existing_id
            self.vault_uri: pulumi.Output[str] = pulumi.Output.from_input(cfg.vault.url + "/")
        else:
            private = cfg.vault.private_endpoint_subnet_id is not None
            vault = keyvault.Vault(
                f"{name}-vault", vault_name=cfg.vault.name, resource_group_name=rg_name, location=cfg.location,
                tags=tags,
                properties=keyvault.VaultPropertiesArgs(
                    tenant_id=cfg.tenant_id,
                    sku=keyvault.SkuArgs(family="A", name=cfg.vault.sku),
                    enable_rbac_authorization=True,  # access policies would bypass every assignment below
                    enable_soft_delete=True,
                    soft_delete_retention_in_days=cfg.vault.soft_delete_retention_days,
                    # Azure refuses purge protection "false" once set and ignores it on create: omit it instead.
                    enable_purge_protection=True if cfg.vault.purge_protection else None,
                    public_network_access=cfg.vault.public_network_access,
                    network_acls=keyvault.NetworkRuleSetArgs(default_action="Deny", bypass="AzureServices")
                    if private else None,
                ),
                opts=here)
            vault_id = vault.id
            self.vault_uri = vault.properties.apply(lambda p: p.vault_uri)
        if cfg.vault.private_endpoint_subnet_id:
            self._private_endpoint(vault_id, rg_name, tags)
        if workspace_id is not None:
            monitor.DiagnosticSetting(
                f"{name}-vault-diagnostics", name="keyvault-acme-audit", resource_uri=vault_id,
                workspace_id=workspace_id,
                logs=[monitor.DiagnosticsLogSettingsArgs(category_group="audit", enabled=True)],
                metrics=[monitor.DiagnosticsMetricSettingsArgs(category="AllMetrics", enabled=True)],
                opts=here)

        # ------------------------------------------------------------------ DNS
        providers: dict[str, azure_native.Provider] = {}

        def in_subscription(subscription_id: str, **extra: Any) -> pulumi.ResourceOptions:
            # Zones in other subscriptions (a central DNS team's) are reached through a provider bound there.
            if subscription_id == cfg.subscription_id:
                return pulumi.ResourceOptions(parent=self, **extra)
            if subscription_id not in providers:
                providers[subscription_id] = azure_native.Provider(
                    f"{name}-azure-{subscription_id}", subscription_id=subscription_id, opts=here)
            return pulumi.ResourceOptions(parent=self, provider=providers[subscription_id], **extra)

        zone_resources: dict[str, dns.Zone] = {}
        self.zone_name_servers: dict[str, pulumi.Output[Sequence[str]]] = {}
        for zone in cfg.zones:
            if zone.create:
                z = dns.Zone(f"{name}-zone-{zone.name}", zone_name=zone.name, resource_group_name=rg_name,
                             location="global", zone_type="Public", tags=tags, opts=here)
                zone_resources[zone.resource_id] = z
                self.zone_name_servers[zone.name] = z.name_servers

        # The empty _acme-challenge record sets exist to carry the DNS role assignment (they are its scope);
        # when the stack grants no roles, or grants them on the zone, the engine creates the records itself.
        self.role_grants = role_plan(cfg)
        scoped_record_sets = [g.target for g in self.role_grants if g.scope_kind == "record_set"] if cfg.grant_roles else []
        record_sets: dict[str, dns.RecordSet] = {}
        for rs in scoped_record_sets:
            zone_res = zone_resources.get(rs.zone.resource_id)
            # The engine writes and empties the TXT values; the stack owns only the (empty) record set, which
            # must outlive every challenge because a role assignment hangs on it.
            record_sets[rs.resource_id] = dns.RecordSet(
                f"{name}-challenge-{rs.fqdn}", record_type="TXT", relative_record_set_name=rs.relative_name,
                zone_name=zone_res.name if zone_res else rs.zone.name,
                resource_group_name=rg_name if zone_res else rs.zone.resource_group, ttl=60, txt_records=[],
                metadata={"managed-by": "pulumi-keyvault-acme", "workload": cfg.stack_name},
                opts=in_subscription(rs.zone.subscription_id, ignore_changes=["txtRecords", "txt_records"],
                                     depends_on=[zone_res] if zone_res else None))

        # ------------------------------------------------------------------ identities
        if cfg.issuer.existing:
            issuer_principal: pulumi.Input[str] = cfg.issuer.principal_id
            self.issuer_client_id: pulumi.Output[str] = pulumi.Output.from_input(cfg.issuer.client_id)
        else:
            identity = managedidentity.UserAssignedIdentity(
                f"{name}-issuer", resource_name_=cfg.issuer.name, resource_group_name=rg_name,
                location=cfg.location, tags=tags, opts=here)
            issuer_principal = identity.principal_id
            self.issuer_client_id = identity.client_id

        # ------------------------------------------------------------------ roles
        self.role_assignments: dict[str, authorization.RoleAssignment] = {}
        if cfg.grant_roles:
            custom_roles: dict[tuple[str, str], authorization.RoleDefinition] = {}
            for role, sub in sorted({(g.role, g.subscription_id) for g in self.role_grants if g.role in CUSTOM_ROLES}):
                title, actions = CUSTOM_ROLES[role]
                zones_here = [z for z in cfg.zones if z.subscription_id == sub]
                custom_roles[(role, sub)] = authorization.RoleDefinition(
                    f"{name}-{role}-role-{sub}",
                    role_definition_id=cfg.name_for(f"role/{role}/{sub}"),
                    # Role names are unique per tenant: one stack may define its roles in several subscriptions.
                    role_name=f"{title} ({cfg.stack_name})" if sub == cfg.subscription_id
                    else f"{title} ({cfg.stack_name}, {sub})",
                    description=f"keyvault-acme: {', '.join(actions)}; nothing else.",
                    role_type="CustomRole",
                    scope=f"/subscriptions/{sub}",
                    # Assignable only where the workload's zones live, never subscription-wide.
                    assignable_scopes=sorted({f"/subscriptions/{sub}/resourceGroups/{z.resource_group}" for z in zones_here}),
                    permissions=[authorization.PermissionArgs(actions=list(actions))],
                    opts=in_subscription(sub))
            consumers = {f"consumer:{c.name}": c for c in cfg.consumers}
            for g in self.role_grants:
                if g.role in CUSTOM_ROLES:
                    role_id: pulumi.Input[str] = custom_roles[(g.role, g.subscription_id)].id
                    if g.scope_kind == "record_set":
                        scope: pulumi.Input[str] = record_sets[g.target.resource_id].id
                    else:
                        z = zone_resources.get(g.target.resource_id)
                        scope = z.id if z else g.target.resource_id
                    extra_opts = in_subscription(g.subscription_id)
                else:
                    role_id = f"/subscriptions/{cfg.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{g.role}"
                    scope = vault_id if g.scope_kind == "vault" else pulumi.Output.concat(vault_id, "/secrets/", g.target)
                    extra_opts = here
                if g.principal == "issuer":
                    principal, ptype = issuer_principal, "ServicePrincipal"
                else:
                    c = consumers[g.principal]
                    principal, ptype = c.principal_id, c.principal_type
                self.role_assignments[g.key] = authorization.RoleAssignment(
                    f"{name}-{g.key}", role_assignment_name=cfg.name_for(f"assignment/{g.key}"),
                    principal_id=principal, principal_type=ptype, role_definition_id=role_id, scope=scope,
                    description=f"keyvault-acme {cfg.stack_name}: {g.role_name} for {g.principal}",
                    opts=extra_opts)

        # ------------------------------------------------------------------ alerting
        if cfg.alerting.enabled:
            action_group = monitor.ActionGroup(
                f"{name}-alerts", action_group_name=f"ag-{cfg.stack_name}-certificates",
                group_short_name=f"acme{cfg.workload}"[:12], resource_group_name=rg_name, location="global",
                enabled=True, tags=tags,
                email_receivers=[monitor.MicrosoftCommonEmailReceiverArgs(
                    name=e.name, email_address=e.address, use_common_alert_schema=True) for e in cfg.alerting.emails],
                webhook_receivers=[monitor.WebhookReceiverArgs(
                    name=w.name, service_uri=w.uri, use_common_alert_schema=True) for w in cfg.alerting.webhooks],
                opts=here)
            topic = eventgrid.SystemTopic(
                f"{name}-vault-events", system_topic_name=f"evgt-{cfg.vault.name}", resource_group_name=rg_name,
                location=cfg.location, source=vault_id, topic_type="Microsoft.KeyVault.vaults", tags=tags, opts=here)
            for suffix, events, severity in (("expiry", EXPIRY_EVENTS, "Sev1"), ("renewed", RENEWAL_EVENTS, "Sev4")):
                eventgrid.SystemTopicEventSubscription(
                    f"{name}-vault-events-{suffix}", event_subscription_name=f"certificate-{suffix}",
                    resource_group_name=rg_name, system_topic_name=topic.name,
                    destination=eventgrid.MonitorAlertEventSubscriptionDestinationArgs(
                        endpoint_type="MonitorAlert", action_groups=[action_group.id], severity=severity,
                        description=f"{cfg.stack_name}: Key Vault certificate {suffix}"),
                    filter=eventgrid.EventSubscriptionFilterArgs(included_event_types=list(events)),
                    opts=here)
            if workspace_id is not None:
                monitor.ScheduledQueryRule(
                    f"{name}-renewal-failed", rule_name=f"alert-{cfg.stack_name}-renewal-failed",
                    display_name=f"{cfg.stack_name}: certificate renewal failed",
                    description="Failed Key Vault certificate operations: an issuance or renewal did not complete.",
                    resource_group_name=rg_name, location=cfg.location, kind="LogAlert", enabled=True, severity=1,
                    scopes=[workspace_id], evaluation_frequency="PT15M", window_size="PT1H",
                    criteria=monitor.ScheduledQueryRuleCriteriaArgs(all_of=[monitor.ConditionArgs(
                        query=FAILED_RENEWAL_QUERY, time_aggregation="Count", operator="GreaterThan", threshold=0)]),
                    actions=monitor.ActionsArgs(action_groups=[action_group.id]), tags=tags, opts=here)

        # ------------------------------------------------------------------ certificates
        Certificate = _certificate_class() if cfg.certificates else None
        self.certificates: dict[str, Any] = {}
        for cert in cfg.certificates:
            needs = [self.role_assignments[g.key] for g in grants_for_certificate(self.role_grants, cert)
                     if g.key in self.role_assignments]
            needs += [record_sets[rs.resource_id] for rs in cert.challenge_record_sets if rs.resource_id in record_sets]
            self.certificates[cert.name] = Certificate(
                f"{name}-cert-{cert.name}", **cert.inputs(), opts=pulumi.ResourceOptions(parent=self, depends_on=needs))

        self.outputs: Mapping[str, Any] = {
            "vault_uri": self.vault_uri,
            "issuer_client_id": self.issuer_client_id,
            "zone_name_servers": self.zone_name_servers,
            "certificates": {
                n: {"secret_id": c.secret_id, "renew_after": c.renew_after} for n, c in self.certificates.items()},
        }
        self.register_outputs(dict(self.outputs))

    def _private_endpoint(self, vault_id: pulumi.Input[str], rg_name: pulumi.Input[str], tags: Mapping[str, str]) -> None:
        """The vault's private endpoint, and the private DNS record that makes clients in the VNet use it."""
        name, cfg, here = self._name, self.config, pulumi.ResourceOptions(parent=self)
        endpoint = network.PrivateEndpoint(
            f"{name}-vault-pe", private_endpoint_name=f"pe-{cfg.vault.name}", resource_group_name=rg_name,
            location=cfg.location, subnet=network.SubnetArgs(id=cfg.vault.private_endpoint_subnet_id),
            private_link_service_connections=[network.PrivateLinkServiceConnectionArgs(
                name=f"{cfg.vault.name}-vault", private_link_service_id=vault_id, group_ids=["vault"])],
            tags=tags, opts=here)
        # Without the zone group, <vault>.vault.azure.net still resolves to the public address inside the VNet,
        # which the vault (public network access off) refuses. Hub-and-spoke networks keep one shared zone
        # linked to every VNet (private_dns_zone_id); otherwise the stack creates the zone and links it here.
        zone_id: pulumi.Input[str] | None = cfg.vault.private_dns_zone_id
        depends_on: list[pulumi.Resource] = []
        if zone_id is None:
            zone = privatedns.PrivateZone(
                f"{name}-vault-dns", private_zone_name=KEY_VAULT_PRIVATE_DNS_ZONE, resource_group_name=rg_name,
                location="global", tags=tags, opts=here)
            vnet_id = cfg.vault.private_endpoint_vnet_id
            depends_on.append(privatedns.VirtualNetworkLink(
                f"{name}-vault-dns-link", virtual_network_link_name=f"link-{vnet_id.rsplit('/', 1)[-1]}",
                private_zone_name=zone.name, resource_group_name=rg_name, location="global",
                virtual_network=privatedns.SubResourceArgs(id=vnet_id),
                registration_enabled=False,  # only the endpoint's A record; VMs do not register here
                tags=tags, opts=here))
            zone_id = zone.id
        network.PrivateDnsZoneGroup(
            f"{name}-vault-pe-dns", private_dns_zone_group_name="default", private_endpoint_name=endpoint.name,
            resource_group_name=rg_name,
            private_dns_zone_configs=[network.PrivateDnsZoneConfigArgs(
                name=KEY_VAULT_PRIVATE_DNS_ZONE.replace(".", "-"), private_dns_zone_id=zone_id)],
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on))

"""Everything one workload needs in one environment to hold ACME certificates in Key Vault.

``CertificateWorkload`` turns a validated :class:`keyvault_acme_stack.workload.WorkloadConfig` into Azure
resources: the vault (RBAC mode, soft delete, purge protection in production, private endpoint with its
private DNS record, diagnostics), DNS zones and the ``_acme-challenge`` TXT record sets, the issuer identity, the
least-privilege role assignments, alerting, and one ``Certificate`` per configured certificate.

Roles are the point of this module. Every assignment is built by :func:`role_plan`, a pure function of
the config, so tests (and reviewers) can read the whole grant list without Azure: issuer -> Key Vault
Certificates Officer on this vault and Secrets Officer on the engine's own two secrets (ACME account key,
public chain), or, with ``acme.account_key.kind: key``, read + sign on the account's Key Vault key instead of
the account key secret; DNS -> a custom TXT-only role on each challenge record set (or zone, when the stack asks)
plus zone read; consumers -> Key Vault Secrets User on each certificate's own secret. Nothing wider.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

import pulumi
import pulumi_azure_native as azure_native
from pulumi_azure_native import (
    authorization,
    dns,
    eventgrid,
    keyvault,
    managedidentity,
    monitor,
    network,
    operationalinsights,
    privatedns,
    resources,
)

from keyvault_acme.access import azure_time
from keyvault_acme.errors import SpecError
from keyvault_acme.keyvault import CHAIN_SUFFIX
from keyvault_acme_pulumi.components.args import CertificateWorkloadArgs
from keyvault_acme_stack.authorization import check_names
from keyvault_acme_stack.workload import (
    KEY_VAULT_PRIVATE_DNS_ZONE,
    CertificateConfig,
    ChallengeRecordSet,
    DnsZoneConfig,
    WorkloadConfig,
)

from .renewer import deploy_renewer, renewer_log_query

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
# The ACME account key kept as a Key Vault key (acme.account_key.kind: key): read its public half and have Key
# Vault sign with it. Not Key Vault Crypto User, which also encrypts, decrypts, wraps, unwraps and updates keys.
ACCOUNT_KEY_DATA_ACTIONS = ("Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/sign/action")
CUSTOM_ROLES = {  # key -> (role name prefix, actions)
    "dns-txt": ("ACME DNS-01 TXT writer", DNS_TXT_ACTIONS),
    "dns-zone-read": ("ACME DNS zone reader", DNS_ZONE_READ_ACTIONS),
    "account-key-signer": ("ACME account key signer", ()),
}
CUSTOM_ROLE_DATA_ACTIONS = {"account-key-signer": ACCOUNT_KEY_DATA_ACTIONS}

# What Key Vault tells Event Grid about certificates. CertificateNearExpiry fires 30 days before expiry
# whatever the lifetime: with the default renewal point (a third of the lifetime left) that is exactly when a
# 90-day certificate becomes due, and at or right after issuance for 45- and 6-day ones. It says nothing is
# wrong, so it pages nobody: it and NewVersionCreated are informational (Azure Monitor alerts of severity 4
# with no action group: on record, no notification). What pages is an expired certificate, a failed renewal
# and a certificate not renewed by its renew_after + RENEWAL_GRACE (the two scheduled queries below).
ACTIONABLE_EVENTS = ("Microsoft.KeyVault.CertificateExpired",)
INFORMATIONAL_EVENTS = ("Microsoft.KeyVault.CertificateNearExpiry", "Microsoft.KeyVault.CertificateNewVersionCreated")
# How long past renew_after a certificate may stay unrenewed before someone is paged: two missed runs of the
# 6-hourly schedule. Even a 6-day certificate (due with 2 days left) then leaves 1.5 days to act.
RENEWAL_GRACE_HOURS = 12

# The engine discards the pending operation of every issuance or renewal that fails (CA refused, DNS or
# validation failed, deadline passed), and only then: that DELETE is the one trace in the vault's audit log of
# a failure outside Key Vault. Any other certificate call Key Vault refused counts too, except reading a
# certificate that does not exist yet (every first issuance and `status` of a missing one does that).
# tests/engine/test_lifecycle_safety.py holds the engine to the discard.
FAILED_RENEWAL_QUERY = """AzureDiagnostics
| where ResourceProvider == "MICROSOFT.KEYVAULT" and OperationName startswith "Certificate"
| where OperationName == "CertificatePendingDelete"
    or (toint(httpStatusCode_d) >= 400
        and not(toint(httpStatusCode_d) == 404 and OperationName in ("CertificateGet", "CertificatePendingGet")))
| summarize failures = count() by Resource, OperationName, bin(TimeGenerated, 15m)"""


def overdue_renewal_query(renew_after: Mapping[str, str], grace_hours: int = RENEWAL_GRACE_HOURS,
                          renewed: str | None = None) -> str:
    """A log query with one row per certificate past its ``renew_after`` + grace at evaluation time.

    The dates are the stack's own outputs, written into the rule by each ``pulumi up``: a renewal moves its
    date forward, so the rule fires only when renewals stopped happening, for whatever reason (pipeline
    disabled, identity expired, CA or DNS failing), without reading any log. With an in-Azure renewer,
    renewals happen between deployments: ``renewed`` is a query of (certificate, renew_after) rows the
    renewer logged, and the latest date of either source counts.
    """
    rows = ",\n    ".join(f'"{name}", datetime({_utc(when)})' for name, when in sorted(renew_after.items()) if when)
    deployed = f"datatable(certificate: string, renew_after: datetime) [\n    {rows}\n]\n"
    if renewed is not None:
        indented = renewed.replace("\n", "\n    ")
        deployed = (f"let deployed = {deployed};\nlet renewed = {indented};\nunion deployed, renewed\n"
                    f"| summarize renew_after = max(renew_after) by certificate\n")
    return (f"{deployed}"
            f"| where now() > renew_after + {grace_hours}h\n"
            f"| project certificate, renew_after, overdue_hours = (now() - renew_after) / 1h")


def _utc(when: str) -> str:
    # KQL's datetime() literal: ISO 8601 in UTC with a Z (the provider's output carries an offset).
    return datetime.fromisoformat(when).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class AccountKeyTarget:
    """The Key Vault key an ACME account signs with (``acme.account_key.kind: key``), in the workload's vault."""

    name: str
    subscription_id: str
    resource_group: str


@dataclass(frozen=True)
class VaultScope:
    """The workload's vault as a whole (in its subscription and resource group)."""

    subscription_id: str
    resource_group: str


@dataclass(frozen=True)
class SecretScope:
    """One secret of the workload's vault, by name."""

    name: str
    subscription_id: str
    resource_group: str


# One class per scope a role is assigned at: the vault, a secret, the account's key, an _acme-challenge
# record set, a zone. A reader matches on the class and gets the fields that scope has.
RoleTarget = VaultScope | SecretScope | AccountKeyTarget | ChallengeRecordSet | DnsZoneConfig
SCOPE_KINDS: Mapping[type, str] = {VaultScope: "vault", SecretScope: "secret", AccountKeyTarget: "key",
                                   ChallengeRecordSet: "record_set", DnsZoneConfig: "zone"}


@dataclass(frozen=True)
class RoleGrant:
    """One role assignment the workload needs, before Azure ids are known.

    ``target`` is the scope it is assigned at (:data:`RoleTarget`). ``role`` is a built-in role GUID or a key of
    :data:`CUSTOM_ROLES` (defined in the zone's subscription, or the vault's for the account key).
    """

    key: str  # stable, unique: also the Pulumi resource name suffix and the seed of the assignment GUID
    principal: str  # "issuer" or "consumer:<name>"
    role: str
    target: RoleTarget

    @property
    def scope_kind(self) -> str:
        """``vault``, ``secret``, ``key``, ``record_set`` or ``zone``: the target's class, as a word."""
        return SCOPE_KINDS[type(self.target)]

    @property
    def role_name(self) -> str:
        return BUILTIN_ROLE_NAMES.get(self.role) or CUSTOM_ROLES[self.role][0]

    @property
    def subscription_id(self) -> str:
        """The subscription of the scope, where a custom role for it is defined (the zone's, or the vault's)."""
        if isinstance(self.target, ChallengeRecordSet):
            return self.target.zone.subscription_id
        return self.target.subscription_id


def role_plan(cfg: WorkloadConfig) -> tuple[RoleGrant, ...]:
    """Every role assignment the workload's config calls for; nothing outside it is ever granted."""
    vault_sub, vault_rg = cfg.vault_location
    grants = [
        RoleGrant("issuer-certificates-officer", "issuer", KEY_VAULT_CERTIFICATES_OFFICER, VaultScope(vault_sub, vault_rg)),
    ]
    # No Key Vault Crypto User: the certificates need no key operation (the CSR comes with the pending
    # certificate); only an account key kept as a Key Vault key is signed with, and only it (below).
    # tests/component/test_least_privilege.py proves the set.
    # The engine keeps two plain secrets of its own: the ACME account key and each certificate's public
    # chain. Secrets Officer on exactly those objects, never on the vault (whose secrets hold certificates).
    secrets = dict.fromkeys(secret for cert in cfg.certificates for secret in engine_secrets(cert))  # once, in order
    for secret in secrets:
        grants.append(RoleGrant(f"issuer-secret-{secret}", "issuer", KEY_VAULT_SECRETS_OFFICER,
                                SecretScope(secret, vault_sub, vault_rg)))
    # Secrets the operator keeps for the issuer in the workload's vault, which the engine only reads: an RFC 2136
    # zone's TSIG key and the CA's external account binding key. Secrets User on exactly those secrets.
    for secret in dict.fromkeys(s for cert in cfg.certificates for s in operator_secrets(cert)):
        grants.append(RoleGrant(f"issuer-read-{secret}", "issuer", KEY_VAULT_SECRETS_USER,
                                SecretScope(secret, vault_sub, vault_rg)))
    # An account key kept as a Key Vault key: read and sign on that one key (the stack creates it), no secret.
    for key in dict.fromkeys(k for cert in cfg.certificates for k in account_keys(cfg, cert)):
        grants.append(RoleGrant(f"issuer-key-{key.name}", "issuer", "account-key-signer", key))
    writes_on_zone: dict[str, DnsZoneConfig] = {}
    reads_zone: dict[str, DnsZoneConfig] = {}
    for rs in cfg.challenge_record_sets:
        if rs.zone.challenge_scope == "zone":
            writes_on_zone.setdefault(rs.zone.resource_id, rs.zone)
        else:
            grants.append(RoleGrant(f"issuer-dns-{rs.zone.name}-{rs.relative_name}", "issuer", "dns-txt", rs))
            reads_zone.setdefault(rs.zone.resource_id, rs.zone)
    grants += [RoleGrant(f"issuer-dns-read-{z.name}", "issuer", "dns-zone-read", z) for z in reads_zone.values()]
    grants += [RoleGrant(f"issuer-dns-{z.name}", "issuer", "dns-txt", z) for z in writes_on_zone.values()]
    # Consumers read certificates as secrets, and only those: the vault also holds the ACME account key
    # (whoever reads it acts as the workload's CA account, revocation included), the chain companions and
    # maybe TSIG keys. So Secrets User goes on each certificate-backed secret, never on the vault.
    for consumer in cfg.consumers:
        for cert in cfg.certificates:
            grants.append(RoleGrant(f"consumer-{consumer.name}-secret-{cert.name}", f"consumer:{consumer.name}",
                                    KEY_VAULT_SECRETS_USER,
                                    SecretScope(cert.name, vault_sub, vault_rg)))
    return tuple(grants)


def engine_secrets(cert: CertificateConfig) -> tuple[str, ...]:
    """The plain secrets the engine writes for a certificate: the ACME account key (unless Key Vault keeps it as a
    key) and the public chain."""
    if cert.spec.acme.account_key_kind == "key":
        return (f"{cert.name}{CHAIN_SUFFIX}",)
    return cert.spec.acme.account_key_secret, f"{cert.name}{CHAIN_SUFFIX}"


def operator_secrets(cert: CertificateConfig) -> tuple[str, ...]:
    """The secrets of the workload's vault the issuer reads for a certificate and never writes: each zone's own
    (the TSIG secret of an RFC 2136 zone, the API token of a Cloudflare zone) and the EAB key (``acme.eab_hmac``).
    A secret in another vault gets no grant from the stack: whoever keeps that vault grants Key Vault Secrets User
    on it (README, permissions)."""
    refs = [ref for zone in cert.spec.zones for ref in zone.secrets]
    if cert.spec.acme.eab_hmac is not None:
        refs.append(cert.spec.acme.eab_hmac)
    vault = cert.spec.vault_url.rstrip("/").lower()  # the workload's vault
    return tuple(dict.fromkeys(r.name for r in refs if r.vault_url.rstrip("/").lower() == vault))


def account_keys(cfg: WorkloadConfig, cert: CertificateConfig) -> tuple[AccountKeyTarget, ...]:
    """The Key Vault key the certificate's ACME account signs with, when it is one (``acme.account_key.kind: key``)."""
    if cert.spec.acme.account_key_kind != "key":
        return ()
    sub, rg = cfg.vault_location
    return (AccountKeyTarget(cert.spec.acme.account_key_name, sub, rg),)


def grants_for_certificate(grants: Sequence[RoleGrant], cert: CertificateConfig) -> list[RoleGrant]:
    """The grants one certificate's issuance needs: the issuer's vault roles, its secrets or account key, DNS on its
    record sets."""
    record_sets = cert.challenge_record_sets
    secrets = engine_secrets(cert) + operator_secrets(cert)
    key = cert.spec.acme.account_key_name if cert.spec.acme.account_key_kind == "key" else None
    zone_ids = {rs.zone.resource_id for rs in record_sets}

    def needed(target: RoleTarget) -> bool:
        match target:
            case VaultScope():
                return True
            case SecretScope(name=name):
                return name in secrets
            case AccountKeyTarget(name=name):
                return name == key
            case ChallengeRecordSet():
                return target in record_sets
            case DnsZoneConfig(resource_id=resource_id):
                return resource_id in zone_ids

    return [g for g in grants if g.principal == "issuer" and needed(g.target)]


def latest_grant(created_on: Sequence[str | None]) -> str | None:
    """The latest of role assignments' ``createdOn`` times (ISO 8601, as ARM reports them); None when none is
    known. A certificate issued right after its grants waits until Azure applies them (keyvault_acme.access)."""
    known = [(when, t) for t in created_on if (when := azure_time(t)) is not None]
    return max(known)[1] if known else None


def _persist_records_class():
    from keyvault_acme_pulumi.providers.persist import PersistRecords

    return PersistRecords


def _certificate_class():
    # Imported late: the component is importable (and its role plan testable) while the provider evolves.
    # Through the package namespace, never a top-level ``providers``: this module path is what Pulumi
    # pickles into state with the provider, and what the provider host imports to run it.
    from keyvault_acme_pulumi.providers.certificate import Certificate

    return Certificate


class CertificateWorkload(pulumi.ComponentResource):
    """One workload's vault, DNS, identities, roles, alerts and certificates in one environment.

    ``__init__`` reads as the deployment order; each step is one method that registers one part and
    returns what later parts refer to (ids, names). Resource names are ``<name>-<part>`` and stable:
    renaming one would make Pulumi replace the Azure resource.
    """

    def __init__(self, name: str, args: CertificateWorkloadArgs | WorkloadConfig,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        # Parsed before anything is registered: a bad known value fails the preview with its field and fix.
        if isinstance(args, CertificateWorkloadArgs):
            config, self._late = args.resolve()
        else:
            config, self._late = args, {}
        for i, hook in enumerate(config.alerting.webhooks):
            if hook.encrypted:
                raise SpecError(f"alerts.webhooks[{i}].uri", "is still encrypted (secure:): read from the stack file, "
                                "not from Pulumi", "pass CertificateWorkloadArgs.from_config() (Pulumi decrypts it)")
        super().__init__(TYPE, name, None, opts)
        self.config = cfg = config
        # Preview fails here, before anything is registered, when a name is outside the stack's allowlist.
        for cert in cfg.certificates:
            check_names(cert.spec.dns_names, cfg.allowlist, field=f"certificates[{cert.name}].dns_names",
                        owner=f"workload {cfg.workload}")
        self._name = name
        self._tags = dict(cfg.tags)
        self._providers: dict[str, azure_native.Provider] = {}
        self.role_grants = role_plan(cfg)

        rg_name = self._resource_group()
        workspace_id = self._workspace(rg_name) if cfg.monitoring.enabled else None
        vault_id = self._vault(rg_name)
        subnet_id, vnet_id = cfg.vault.private_endpoint_subnet_id, cfg.vault.private_endpoint_vnet_id
        if subnet_id and vnet_id:
            self._private_endpoint(vault_id, rg_name, subnet_id, vnet_id)
        if workspace_id is not None:
            self._diagnostics(vault_id, workspace_id)
        self.account_keys = self._account_keys(vault_id)
        zones = self._zones(rg_name)
        record_sets = self._challenge_record_sets(rg_name, zones) if cfg.grant_roles else {}
        issuer_principal = self._issuer(rg_name)
        self.role_assignments = self._roles(vault_id, zones, record_sets, issuer_principal) if cfg.grant_roles else {}
        action_group = self._alerting(rg_name, vault_id, workspace_id) if cfg.alerting.enabled else None
        self.persist_record_sets = self._persist_record_sets(rg_name, zones)
        self.certificates = self._certificates(record_sets)
        self.renewer = None
        # The stack parser requires monitoring, and an existing issuer's resource_id, for a renewer.
        if cfg.renewer is not None and workspace_id is not None and self.issuer_id is not None:
            self.renewer = deploy_renewer(name, cfg, rg_name=rg_name, workspace_id=workspace_id,
                                          issuer_id=self.issuer_id, issuer_client_id=self.issuer_client_id,
                                          here=self._here)
        if action_group is not None and workspace_id is not None and self.certificates:
            self._overdue_alert(rg_name, workspace_id, action_group)

        self.outputs: Mapping[str, Any] = {
            "vault_uri": self.vault_uri,
            "issuer_client_id": self.issuer_client_id,
            "zone_name_servers": self.zone_name_servers,
            "certificates": {
                n: {"secret_id": c.secret_id, "renew_after": c.renew_after} for n, c in self.certificates.items()},
        }
        self.register_outputs(dict(self.outputs))

    # ---------------------------------------------------------------------------------------------- options

    def _input(self, value: Any) -> pulumi.Input[Any]:
        """The value a resource gets for a config value: the caller's output where the args held one (checked
        by the parser when known), else the value itself."""
        return self._late.get(value, value) if isinstance(value, str) else value

    def _here(self, **extra: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **extra)

    def _in_subscription(self, subscription_id: str, **extra: Any) -> pulumi.ResourceOptions:
        # Zones in other subscriptions (a central DNS team's) are reached through a provider bound there.
        if subscription_id == self.config.subscription_id:
            return self._here(**extra)
        if subscription_id not in self._providers:
            self._providers[subscription_id] = azure_native.Provider(
                f"{self._name}-azure-{subscription_id}", subscription_id=subscription_id, opts=self._here())
        return self._here(provider=self._providers[subscription_id], **extra)

    # ---------------------------------------------------------------------------------------------- parts

    def _resource_group(self) -> pulumi.Input[str]:
        cfg = self.config
        if cfg.resource_group.existing:
            return cfg.resource_group.name
        return resources.ResourceGroup(
            f"{self._name}-rg", resource_group_name=cfg.resource_group.name, location=cfg.location, tags=self._tags,
            opts=self._here()).name

    def _workspace(self, rg_name: pulumi.Input[str]) -> pulumi.Input[str]:
        monitoring = self.config.monitoring
        if monitoring.workspace_id:
            return monitoring.workspace_id
        return operationalinsights.Workspace(
            f"{self._name}-logs", workspace_name=monitoring.workspace_name, resource_group_name=rg_name,
            location=self.config.location, sku=operationalinsights.WorkspaceSkuArgs(name="PerGB2018"),
            retention_in_days=monitoring.retention_days, tags=self._tags, opts=self._here()).id

    def _vault(self, rg_name: pulumi.Input[str]) -> pulumi.Input[str]:
        """The vault's id; sets ``vault_uri``."""
        cfg = self.config
        if cfg.vault.existing_id is not None:
            self.vault_uri: pulumi.Output[str] = pulumi.Output.from_input(cfg.vault.url + "/")
            return cfg.vault.existing_id
        if cfg.tenant_id is None:  # parse_workload_config requires it for a vault the stack creates
            raise SpecError("tenant_id", "is required for a new vault", "set keyvault-acme:tenant_id")
        private = cfg.vault.private_endpoint_subnet_id is not None
        vault = keyvault.Vault(
            f"{self._name}-vault", vault_name=cfg.vault.name, resource_group_name=rg_name, location=cfg.location,
            tags=self._tags,
            properties=keyvault.VaultPropertiesArgs(
                tenant_id=cfg.tenant_id,
                sku=keyvault.SkuArgs(family="A", name=keyvault.SkuName(cfg.vault.sku or "standard")),
                enable_rbac_authorization=True,  # access policies would bypass every assignment below
                enable_soft_delete=True,
                soft_delete_retention_in_days=cfg.vault.soft_delete_retention_days,
                # Azure refuses purge protection "false" once set and ignores it on create: omit it instead.
                enable_purge_protection=True if cfg.vault.purge_protection else None,
                public_network_access=cfg.vault.public_network_access,
                network_acls=keyvault.NetworkRuleSetArgs(default_action="Deny", bypass="AzureServices")
                if private else None,
            ),
            opts=self._here())
        self.vault_uri = vault.properties.apply(lambda p: p.vault_uri)
        return vault.id

    def _private_endpoint(self, vault_id: pulumi.Input[str], rg_name: pulumi.Input[str], subnet_id: str, vnet_id: str) -> None:
        """The vault's private endpoint in ``subnet_id``, and the private DNS record that makes clients in the VNet
        ``vnet_id`` use it."""
        name, cfg = self._name, self.config
        endpoint = network.PrivateEndpoint(
            f"{name}-vault-pe", private_endpoint_name=f"pe-{cfg.vault.name}", resource_group_name=rg_name,
            location=cfg.location, subnet=network.SubnetArgs(id=subnet_id),
            private_link_service_connections=[network.PrivateLinkServiceConnectionArgs(
                name=f"{cfg.vault.name}-vault", private_link_service_id=vault_id, group_ids=["vault"])],
            tags=self._tags, opts=self._here())
        # Without the zone group, <vault>.vault.azure.net still resolves to the public address inside the VNet,
        # which the vault (public network access off) refuses. Hub-and-spoke networks keep one shared zone
        # linked to every VNet (private_dns_zone_id); otherwise the stack creates the zone and links it here.
        zone_id: pulumi.Input[str] | None = cfg.vault.private_dns_zone_id
        depends_on: list[pulumi.Resource] = []
        if zone_id is None:
            zone = privatedns.PrivateZone(
                f"{name}-vault-dns", private_zone_name=KEY_VAULT_PRIVATE_DNS_ZONE, resource_group_name=rg_name,
                location="global", tags=self._tags, opts=self._here())
            depends_on.append(privatedns.VirtualNetworkLink(
                f"{name}-vault-dns-link", virtual_network_link_name=f"link-{vnet_id.rsplit('/', 1)[-1]}",
                private_zone_name=zone.name, resource_group_name=rg_name, location="global",
                virtual_network=privatedns.SubResourceArgs(id=vnet_id),
                registration_enabled=False,  # only the endpoint's A record; VMs do not register here
                tags=self._tags, opts=self._here()))
            zone_id = zone.id
        network.PrivateDnsZoneGroup(
            f"{name}-vault-pe-dns", private_dns_zone_group_name="default", private_endpoint_name=endpoint.name,
            resource_group_name=rg_name,
            private_dns_zone_configs=[network.PrivateDnsZoneConfigArgs(
                name=KEY_VAULT_PRIVATE_DNS_ZONE.replace(".", "-"), private_dns_zone_id=zone_id)],
            opts=self._here(depends_on=depends_on))

    def _diagnostics(self, vault_id: pulumi.Input[str], workspace_id: pulumi.Input[str]) -> None:
        # The audit log is where a failed renewal shows up (the scheduled query alert reads it).
        monitor.DiagnosticSetting(
            f"{self._name}-vault-diagnostics", name="keyvault-acme-audit", resource_uri=vault_id,
            workspace_id=workspace_id,
            logs=[monitor.DiagnosticsLogSettingsArgs(category_group="audit", enabled=True)],
            metrics=[monitor.DiagnosticsMetricSettingsArgs(category="AllMetrics", enabled=True)],
            opts=self._here())

    def _zones(self, rg_name: pulumi.Input[str]) -> dict[str, dns.Zone]:
        """The zones this stack creates, by resource id; sets ``zone_name_servers`` (to delegate them)."""
        created: dict[str, dns.Zone] = {}
        self.zone_name_servers: dict[str, pulumi.Output[Sequence[str]]] = {}
        for zone in self.config.zones:
            if zone.create:
                z = dns.Zone(f"{self._name}-zone-{zone.name}", zone_name=zone.name, resource_group_name=rg_name,
                             location="global", zone_type=dns.ZoneType.PUBLIC, tags=self._tags, opts=self._here())
                created[zone.resource_id] = z
                self.zone_name_servers[zone.name] = z.name_servers
        return created

    def _challenge_record_sets(self, rg_name: pulumi.Input[str], zones: Mapping[str, dns.Zone]) -> dict[str, dns.RecordSet]:
        """The empty ``_acme-challenge`` TXT record sets that scope the DNS role assignments, by resource id.

        Only where the role is assigned on record sets: with zone scope (or no roles granted) the engine
        creates the records itself. The engine writes and empties the TXT values; the stack owns only the
        record set, which must outlive every challenge because a role assignment hangs on it.
        """
        cfg = self.config
        record_sets: dict[str, dns.RecordSet] = {}
        for rs in (g.target for g in self.role_grants if isinstance(g.target, ChallengeRecordSet)):
            zone = zones.get(rs.zone.resource_id)
            record_sets[rs.resource_id] = dns.RecordSet(
                f"{self._name}-challenge-{rs.fqdn}", record_type="TXT", relative_record_set_name=rs.relative_name,
                zone_name=zone.name if zone else rs.zone.name,
                resource_group_name=rg_name if zone else rs.zone.resource_group, ttl=60, txt_records=[],
                metadata={"managed-by": "pulumi-keyvault-acme", "workload": cfg.stack_name},
                opts=self._in_subscription(rs.zone.subscription_id, ignore_changes=["txtRecords", "txt_records"],
                                           depends_on=[zone] if zone else None))
        return record_sets

    def _issuer(self, rg_name: pulumi.Input[str]) -> pulumi.Input[str]:
        """The issuer's principal id; sets ``issuer_client_id`` (what CI/CD logs in as)."""
        cfg = self.config
        if cfg.issuer.principal_id is not None and cfg.issuer.client_id is not None:  # an existing identity
            self.issuer_client_id: pulumi.Output[str] = pulumi.Output.from_input(self._input(cfg.issuer.client_id))
            self.issuer_id: pulumi.Input[str] | None = cfg.issuer.resource_id
            return self._input(cfg.issuer.principal_id)
        identity = managedidentity.UserAssignedIdentity(
            f"{self._name}-issuer", resource_name_=cfg.issuer.name, resource_group_name=rg_name,
            location=cfg.location, tags=self._tags, opts=self._here())
        self.issuer_client_id = identity.client_id
        self.issuer_id = identity.id
        return identity.principal_id

    def _account_keys(self, vault_id: pulumi.Input[str]) -> dict[str, keyvault.Key]:
        """The Key Vault keys ACME accounts sign with (``acme.account_key.kind: key``): EC P-256, sign/verify only,
        never exportable. Made here (ARM) so the issuer needs only read and sign on each, never create."""
        cfg = self.config
        _, rg = cfg.vault_location
        names = dict.fromkeys(c.spec.acme.account_key_name for c in cfg.certificates
                              if c.spec.acme.account_key_kind == "key")
        # The vault's name through its id: the key waits for a vault the stack creates.
        vault_name = pulumi.Output.from_input(vault_id).apply(lambda i: i.rsplit("/", 1)[-1])
        return {name: keyvault.Key(
            f"{self._name}-account-key-{name}", key_name=name, vault_name=vault_name, resource_group_name=rg,
            properties=keyvault.KeyPropertiesArgs(kty="EC", curve_name="P-256", key_ops=["sign", "verify"]),
            tags={**self._tags, "purpose": "acme-account-key"}, opts=self._here()) for name in names}

    def _custom_roles(self) -> dict[tuple[str, str], authorization.RoleDefinition]:
        """The custom roles the plan uses: the DNS roles in each subscription that holds the workload's zones, the
        account key signer in the vault's."""
        cfg = self.config
        roles: dict[tuple[str, str], authorization.RoleDefinition] = {}
        for role, sub in sorted({(g.role, g.subscription_id) for g in self.role_grants if g.role in CUSTOM_ROLES}):
            title, actions = CUSTOM_ROLES[role]
            data_actions = CUSTOM_ROLE_DATA_ACTIONS.get(role, ())
            if data_actions:  # Key Vault data actions: assignable only in the vault's resource group
                assignable = sorted({f"/subscriptions/{g.target.subscription_id}/resourceGroups/{g.target.resource_group}"
                                     for g in self.role_grants if g.role == role and g.subscription_id == sub
                                     and isinstance(g.target, AccountKeyTarget)})
            else:  # assignable only where the workload's zones live, never subscription-wide
                assignable = sorted({f"/subscriptions/{sub}/resourceGroups/{z.resource_group}"
                                     for z in cfg.zones if z.subscription_id == sub})
            roles[(role, sub)] = authorization.RoleDefinition(
                f"{self._name}-{role}-role-{sub}",
                role_definition_id=cfg.name_for(f"role/{role}/{sub}"),
                # Role names are unique per tenant: one stack may define its roles in several subscriptions.
                role_name=f"{title} ({cfg.stack_name})" if sub == cfg.subscription_id
                else f"{title} ({cfg.stack_name}, {sub})",
                description=f"keyvault-acme: {', '.join((*actions, *data_actions))}; nothing else.",
                role_type="CustomRole",
                scope=f"/subscriptions/{sub}",
                assignable_scopes=assignable,
                permissions=[authorization.PermissionArgs(actions=list(actions), data_actions=list(data_actions))
                             if data_actions else authorization.PermissionArgs(actions=list(actions))],
                opts=self._in_subscription(sub))
        return roles

    def _roles(self, vault_id: pulumi.Input[str], zones: Mapping[str, dns.Zone],
               record_sets: Mapping[str, dns.RecordSet], issuer_principal: pulumi.Input[str],
               ) -> dict[str, authorization.RoleAssignment]:
        """One assignment per grant of :func:`role_plan`, by grant key; nothing else is assigned."""
        cfg = self.config
        custom_roles = self._custom_roles()
        consumers = {f"consumer:{c.name}": c for c in cfg.consumers}
        assignments: dict[str, authorization.RoleAssignment] = {}
        for g in self.role_grants:
            scope: pulumi.Input[str]
            match g.target:
                case VaultScope():
                    scope = vault_id
                case SecretScope(name=name):
                    scope = pulumi.Output.concat(vault_id, "/secrets/", name)
                case AccountKeyTarget(name=name):
                    scope = pulumi.Output.concat(vault_id, "/keys/", name)
                case ChallengeRecordSet(resource_id=resource_id):
                    scope = record_sets[resource_id].id
                case DnsZoneConfig(resource_id=resource_id):
                    zone = zones.get(resource_id)
                    scope = zone.id if zone else resource_id
            if g.role in CUSTOM_ROLES:
                role_id: pulumi.Input[str] = custom_roles[(g.role, g.subscription_id)].id
                opts = self._in_subscription(g.subscription_id)
            else:
                role_id = f"/subscriptions/{cfg.subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{g.role}"
                opts = self._here()
            if g.principal == "issuer":
                principal, ptype = issuer_principal, "ServicePrincipal"
            else:
                consumer = consumers[g.principal]
                principal, ptype = self._input(consumer.principal_id), consumer.principal_type
            assignments[g.key] = authorization.RoleAssignment(
                f"{self._name}-{g.key}", role_assignment_name=cfg.name_for(f"assignment/{g.key}"),
                principal_id=principal, principal_type=ptype, role_definition_id=role_id, scope=scope,
                description=f"keyvault-acme {cfg.stack_name}: {g.role_name} for {g.principal}",
                opts=opts)
        return assignments

    def _alerting(self, rg_name: pulumi.Input[str], vault_id: pulumi.Input[str],
                  workspace_id: pulumi.Input[str] | None) -> monitor.ActionGroup:
        """The Action Group; expired certificates and failed renewals (audit log) page it, vault events that
        mean nothing is wrong (near expiry, new version) are recorded without notification."""
        name, cfg = self._name, self.config
        action_group = monitor.ActionGroup(
            f"{name}-alerts", action_group_name=f"ag-{cfg.stack_name}-certificates",
            group_short_name=f"acme{cfg.workload}"[:12], resource_group_name=rg_name, location="global",
            enabled=True, tags=self._tags,
            email_receivers=[monitor.MicrosoftCommonEmailReceiverArgs(
                name=e.name, email_address=e.address, use_common_alert_schema=True) for e in cfg.alerting.emails],
            # A webhook URL carries its token: secret in state and in every output, however it was passed.
            webhook_receivers=[monitor.WebhookReceiverArgs(
                name=w.name, service_uri=pulumi.Output.secret(self._input(w.uri)), use_common_alert_schema=True)
                for w in cfg.alerting.webhooks],
            opts=self._here())
        topic = eventgrid.SystemTopic(
            f"{name}-vault-events", system_topic_name=f"evgt-{cfg.vault.name}", resource_group_name=rg_name,
            location=cfg.location, source=vault_id, topic_type="Microsoft.KeyVault.vaults", tags=self._tags,
            opts=self._here())
        for suffix, events, severity, groups in (("expired", ACTIONABLE_EVENTS, "Sev1", [action_group.id]),
                                                 ("info", INFORMATIONAL_EVENTS, "Sev4", [])):
            eventgrid.SystemTopicEventSubscription(
                f"{name}-vault-events-{suffix}", event_subscription_name=f"certificate-{suffix}",
                resource_group_name=rg_name, system_topic_name=topic.name,
                destination=eventgrid.MonitorAlertEventSubscriptionDestinationArgs(
                    endpoint_type="MonitorAlert", action_groups=groups, severity=severity,
                    description=f"{cfg.stack_name}: Key Vault certificate {suffix}"),
                filter=eventgrid.EventSubscriptionFilterArgs(included_event_types=list(events)),
                opts=self._here())
        if workspace_id is not None:
            monitor.ScheduledQueryRule(
                f"{name}-renewal-failed", rule_name=f"alert-{cfg.stack_name}-renewal-failed",
                display_name=f"{cfg.stack_name}: certificate renewal failed",
                description="Failed Key Vault certificate operations: an issuance or renewal did not complete.",
                resource_group_name=rg_name, location=cfg.location, kind="LogAlert", enabled=True, severity=1,
                scopes=[workspace_id], evaluation_frequency="PT15M", window_size="PT1H",
                criteria=monitor.ScheduledQueryRuleCriteriaArgs(all_of=[monitor.ConditionArgs(
                    query=FAILED_RENEWAL_QUERY, time_aggregation="Count", operator="GreaterThan", threshold=0)]),
                actions=monitor.ActionsArgs(action_groups=[action_group.id]), tags=self._tags, opts=self._here())
        return action_group

    def _overdue_alert(self, rg_name: pulumi.Input[str], workspace_id: pulumi.Input[str],
                       action_group: monitor.ActionGroup) -> None:
        """Pages when a certificate is still not renewed RENEWAL_GRACE_HOURS after its renew_after."""
        cfg = self.config
        renew_after = pulumi.Output.all(**{n: c.renew_after for n, c in self.certificates.items()})
        renewed = renewer_log_query(cfg.stack_name) if self.renewer is not None else None
        runner = "the renewer job (or the scheduled pulumi up --refresh)" if renewed else "the scheduled pulumi up --refresh"
        monitor.ScheduledQueryRule(
            f"{self._name}-renewal-overdue", rule_name=f"alert-{cfg.stack_name}-renewal-overdue",
            display_name=f"{cfg.stack_name}: certificate not renewed in time",
            description=f"A certificate is more than {RENEWAL_GRACE_HOURS} hours past its renew_after and was not "
                        f"renewed: {runner} is not running or keeps failing.",
            resource_group_name=rg_name, location=cfg.location, kind="LogAlert", enabled=True, severity=1,
            # With a renewer the query reads its logs; a day back covers several runs of any sane schedule.
            scopes=[workspace_id], evaluation_frequency="PT1H", window_size="P1D" if renewed else "PT1H",
            criteria=monitor.ScheduledQueryRuleCriteriaArgs(all_of=[monitor.ConditionArgs(
                query=renew_after.apply(lambda dates: overdue_renewal_query(dates, renewed=renewed)),
                time_aggregation="Count", operator="GreaterThan",
                threshold=0)]),
            actions=monitor.ActionsArgs(action_groups=[action_group.id]), tags=self._tags, opts=self._here())

    def _persist_record_sets(self, rg_name: pulumi.Input[str], zones: Mapping[str, dns.Zone]) -> dict[str, dns.RecordSet]:
        """dns-persist-01: the long-lived ``_validation-persist`` TXT record sets, by resource id, written here with
        ARM (the deployer's rights), so the issuer needs no DNS role. Their values name the CA and the account URL,
        which :class:`PersistRecords` resolves (registering the account on first deployment); when the account
        changes, so do the values, and Pulumi re-writes the record sets."""
        cfg = self.config
        record_sets: dict[str, dns.RecordSet] = {}
        for cert in cfg.certificates:
            if not cert.persist_record_sets:
                continue
            needs = [self.account_keys[cert.spec.acme.account_key_name]] if cert.spec.acme.account_key_kind == "key" \
                else []
            records = _persist_records_class()(f"{self._name}-persist-{cert.name}", cert.inputs(),
                                      opts=self._here(depends_on=needs)).records
            for rs in cert.persist_record_sets:
                if rs.resource_id in record_sets:  # another certificate of the same names and account wrote it
                    continue
                zone = zones.get(rs.zone.resource_id)
                value = records.apply(lambda r, fqdn=rs.fqdn: [r[fqdn][i:i + 255] for i in range(0, len(r[fqdn]), 255)])
                record_sets[rs.resource_id] = dns.RecordSet(
                    f"{self._name}-persist-{rs.fqdn}", record_type="TXT", relative_record_set_name=rs.relative_name,
                    zone_name=zone.name if zone else rs.zone.name,
                    resource_group_name=rg_name if zone else rs.zone.resource_group, ttl=3600,
                    txt_records=[dns.TxtRecordArgs(value=value)],
                    metadata={"managed-by": "pulumi-keyvault-acme", "workload": cfg.stack_name},
                    opts=self._in_subscription(rs.zone.subscription_id, depends_on=[zone] if zone else None))
        return record_sets

    def _certificates(self, record_sets: Mapping[str, dns.RecordSet]) -> dict[str, Any]:
        """One ``Certificate`` per entry, after the assignments and record sets its issuance needs exist."""
        cfg = self.config
        certificates: dict[str, Any] = {}
        for cert in cfg.certificates:
            grants = [self.role_assignments[g.key] for g in grants_for_certificate(self.role_grants, cert)
                      if g.key in self.role_assignments]
            needs: list[pulumi.Resource] = [*grants, *(record_sets[rs.resource_id] for rs in cert.challenge_record_sets
                                                       if rs.resource_id in record_sets)]
            if cert.spec.acme.account_key_kind == "key":
                needs.append(self.account_keys[cert.spec.acme.account_key_name])
            needs += [self.persist_record_sets[rs.resource_id] for rs in cert.persist_record_sets]
            granted_at = pulumi.Output.all(*[a.created_on for a in grants]).apply(latest_grant)
            certificates[cert.name] = _certificate_class()(
                f"{self._name}-cert-{cert.name}", **cert.inputs(), access_granted_at=granted_at,
                opts=self._here(depends_on=needs))
        return certificates

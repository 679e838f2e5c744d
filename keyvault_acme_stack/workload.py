"""The workload's stack config, typed and validated in one place.

A stack (one workload in one environment) is described by the ``keyvault-acme:*`` values of its stack
file. :func:`parse_workload_config` turns those plain values into frozen dataclasses, or raises a
:class:`SpecError` naming the key and the fix before any resource is registered. The Pulumi component,
the CLI and the tests all read stack files through this module, so a key means the same everywhere.

No Pulumi imports: the component hands in ``pulumi.Config`` values as a plain mapping.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from keyvault_acme.config import (
    ACME_SETTINGS,
    acme_from_dict,
    boolean,
    certificate_spec_from_dict,
    email,
    revocation_reason,
    settings,
    spec_to_dict,
    zone_from_dict,
)
from keyvault_acme.dns import registry
from keyvault_acme.errors import SpecError, shown
from keyvault_acme.model import AzureDnsZone, CertificateSpec, Zone, describe_shape
from keyvault_acme.names import challenge_name, normalize_names, zone_for

from . import authorization
from .authorization import Allowlist
from .renewer import SETTINGS as RENEWER_SETTINGS
from .renewer import RenewerConfig, check_renewer_needs, parse_renewer

NAMESPACE = "keyvault-acme"

KEYS = (
    "workload", "environment", "production", "location", "subscription_id", "tenant_id", "resource_group",
    "vault", "monitoring", "zones", "issuer", "consumers", "grant_roles", "alerts", "allowlist", "acme",
    "certificates", "tags", "renewer",
)
PRODUCTION_ENVIRONMENTS = ("prod", "production")
CHALLENGE_SCOPES = ("record_set", "zone")
# The private DNS zone Key Vault's private endpoints register in (Azure public cloud). Without a zone group
# linking the endpoint to it, clients inside the VNet still resolve <vault>.vault.azure.net to the public
# IP, which a vault with public network access off refuses.
KEY_VAULT_PRIVATE_DNS_ZONE = "privatelink.vaultcore.azure.net"
# The settings each structured key accepts; anything else is refused by name (a typo must not silently
# fall back to a default). Certificate entries take the shared dict shape of config.py plus
# CERTIFICATE_RESOURCE_KEYS; the allowlist's settings are authorization.Allowlist's fields.
SETTINGS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "resource_group": ("name", "resource_id"),
    "vault": ("name", "resource_id", "url", "sku", "soft_delete_retention_days", "purge_protection",
              "private_endpoint_subnet_id", "private_dns_zone_id"),
    "monitoring": ("enabled", "workspace_id", "workspace_name", "retention_days"),
    "zones[]": ("name", "resource_id", "challenge_scope", "type", "zone", "server", "tsig_key_name", "tsig_secret",
                "tsig_algorithm", "api_token_secret"),
    "issuer": ("name", "principal_id", "client_id", "resource_id"),
    "consumers[]": ("name", "principal_id", "principal_type"),
    "alerts": ("emails", "webhooks"),
    "alerts.emails[]": ("name", "address"),
    "alerts.webhooks[]": ("name", "uri"),
    "acme": ACME_SETTINGS,
    "renewer": RENEWER_SETTINGS,
})
# Keys of a certificate entry that steer the Pulumi resource, not the certificate itself.
CERTIFICATE_RESOURCE_KEYS = ("revoke_on_delete", "revoke_reason", "purge_on_delete")

_UUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_WORKLOAD = re.compile(r"[a-z][a-z0-9]{1,11}")
_ENVIRONMENT = re.compile(r"[a-z][a-z0-9]{1,7}")
_VAULT_NAME = re.compile(r"[a-zA-Z](?!.*--)[a-zA-Z0-9-]{1,22}[a-zA-Z0-9]")
_CERT_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")
_RG_ID = re.compile(r"/subscriptions/(?P<sub>[0-9a-fA-F-]{36})/resourceGroups/(?P<rg>[^/\s]+)", re.IGNORECASE)
_VAULT_ID = re.compile(
    r"/subscriptions/(?P<sub>[0-9a-fA-F-]{36})/resourceGroups/(?P<rg>[^/\s]+)"
    r"/providers/Microsoft\.KeyVault/vaults/(?P<name>[^/\s]+)", re.IGNORECASE)
_SUBNET_ID = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/\s]+"
    r"/providers/Microsoft\.Network/virtualNetworks/[^/\s]+/subnets/[^/\s]+", re.IGNORECASE)
_PRIVATE_DNS_ZONE_ID = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/\s]+"
    r"/providers/Microsoft\.Network/privateDnsZones/(?P<name>[^/\s]+)", re.IGNORECASE)
_IDENTITY_ID = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/\s]+"
    r"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/[^/\s]+", re.IGNORECASE)
_ARM_ID = re.compile(r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/\s]+/providers/[^/\s]+/.+", re.IGNORECASE)


# Zones outside Azure DNS (RFC 2136, Cloudflare, a plug-in's): the stack grants no Azure role there; the engine
# writes their records with the zone's own credential (``Zone.secrets``: a TSIG key, an API token) from Key Vault.
OtherZone = Zone


# ---------------------------------------------------------------------------------------------- types


@dataclass(frozen=True)
class ResourceGroupConfig:
    name: str
    existing_id: str | None = None  # set: use it, create nothing

    @property
    def existing(self) -> bool:
        return self.existing_id is not None


@dataclass(frozen=True)
class VaultConfig:
    name: str
    url: str
    existing_id: str | None = None
    # A new vault's SKU; for an existing vault, the SKU declared for the HSM-key check (None: not declared).
    sku: str | None = "standard"
    soft_delete_retention_days: int = 90
    purge_protection: bool = False
    private_endpoint_subnet_id: str | None = None
    private_dns_zone_id: str | None = None  # an existing privatelink.vaultcore zone; None: the stack creates one

    @property
    def existing(self) -> bool:
        return self.existing_id is not None

    @property
    def private_endpoint_vnet_id(self) -> str | None:
        """The virtual network of the private endpoint's subnet (a new private DNS zone is linked to it)."""
        if not self.private_endpoint_subnet_id:
            return None
        return re.sub(r"/subnets/[^/]+$", "", self.private_endpoint_subnet_id, flags=re.IGNORECASE)

    @property
    def public_network_access(self) -> str:
        # A private endpoint is only worth having when the public door is shut.
        return "Disabled" if self.private_endpoint_subnet_id else "Enabled"


@dataclass(frozen=True)
class MonitoringConfig:
    enabled: bool = True
    workspace_id: str | None = None  # an existing Log Analytics workspace; None: create one
    workspace_name: str = ""
    retention_days: int = 30


@dataclass(frozen=True)
class DnsZoneConfig:
    """An Azure DNS zone the workload's names live in: created by the stack or existing (any subscription)."""

    name: str
    resource_id: str
    create: bool = False
    challenge_scope: str = "record_set"  # where the DNS role is assigned: each _acme-challenge record set, or the zone

    @property
    def azure(self) -> AzureDnsZone:
        return AzureDnsZone(self.resource_id)

    @property
    def subscription_id(self) -> str:
        return self.azure.subscription_id

    @property
    def resource_group(self) -> str:
        return self.azure.resource_group


@dataclass(frozen=True)
class ChallengeRecordSet:
    """The ``_acme-challenge`` TXT record set one or more names are validated through."""

    zone: DnsZoneConfig
    relative_name: str  # relative to the zone: "_acme-challenge.www" or "_acme-challenge"

    @property
    def fqdn(self) -> str:
        return f"{self.relative_name}.{self.zone.name}"

    @property
    def resource_id(self) -> str:
        return f"{self.zone.resource_id}/TXT/{self.relative_name}"


@dataclass(frozen=True)
class IssuerConfig:
    """The identity that issues, renews and revokes (the one CI/CD or the scheduled job runs as)."""

    name: str
    principal_id: str | None = None  # set: an existing identity, create none
    client_id: str | None = None
    resource_id: str | None = None  # an existing identity's ARM id: what the renewer job runs as

    @property
    def existing(self) -> bool:
        return self.principal_id is not None


@dataclass(frozen=True)
class Consumer:
    """An identity that reads certificates as secrets: an app, Application Gateway, Front Door."""

    name: str
    principal_id: str
    principal_type: str = "ServicePrincipal"


@dataclass(frozen=True)
class EmailReceiver:
    name: str
    address: str


@dataclass(frozen=True)
class WebhookReceiver:
    name: str
    uri: str = field(repr=False)  # carries the webhook's token
    # The stack file holds the URL encrypted (secure:): only Pulumi decrypts it (uri is then ""). The CLI,
    # which deploys no alerts, reads such a stack; the component refuses it unless built from pulumi.Config.
    encrypted: bool = False


@dataclass(frozen=True)
class AlertingConfig:
    emails: tuple[EmailReceiver, ...] = ()
    webhooks: tuple[WebhookReceiver, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.emails or self.webhooks)


@dataclass(frozen=True)
class CertificateConfig:
    spec: CertificateSpec
    revoke_on_delete: bool = True
    revoke_reason: str = "cessationOfOperation"
    purge_on_delete: bool = False
    challenge_record_sets: tuple[ChallengeRecordSet, ...] = ()
    # dns-persist-01: the _validation-persist record sets the stack writes (record set -> its names).
    persist_record_sets: tuple[ChallengeRecordSet, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name

    def inputs(self) -> dict[str, Any]:
        """The provider's inputs: the shared certificate dict shape plus the resource's own switches."""
        return {**spec_to_dict(self.spec), "revoke_on_delete": self.revoke_on_delete,
                "revoke_reason": self.revoke_reason, "purge_on_delete": self.purge_on_delete}


@dataclass(frozen=True)
class WorkloadConfig:
    workload: str
    environment: str
    production: bool
    location: str
    subscription_id: str
    tenant_id: str | None
    resource_group: ResourceGroupConfig
    vault: VaultConfig
    monitoring: MonitoringConfig
    zones: tuple[DnsZoneConfig, ...]
    rfc2136_zones: tuple[OtherZone, ...]  # the zones outside Azure DNS: RFC 2136 and Cloudflare
    issuer: IssuerConfig
    consumers: tuple[Consumer, ...]
    grant_roles: bool
    alerting: AlertingConfig
    allowlist: Allowlist
    certificates: tuple[CertificateConfig, ...]
    tags: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    renewer: RenewerConfig | None = None
    # The keyvault-acme:* values this was parsed from: the renewer job gets them as its stack file.
    values: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))

    @property
    def stack_name(self) -> str:
        return f"{self.workload}-{self.environment}"

    @property
    def vault_location(self) -> tuple[str, str]:
        """(subscription id, resource group) of the vault: the existing vault's, else where the stack makes it."""
        m = _VAULT_ID.fullmatch(self.vault.existing_id or "")
        return (m.group("sub").lower(), m.group("rg")) if m else (self.subscription_id, self.resource_group.name)

    @property
    def challenge_record_sets(self) -> tuple[ChallengeRecordSet, ...]:
        """Every ``_acme-challenge`` record set of every certificate, once, in config order."""
        seen: dict[str, ChallengeRecordSet] = {}
        for cert in self.certificates:
            for rs in cert.challenge_record_sets:
                seen.setdefault(rs.resource_id.lower(), rs)
        return tuple(seen.values())

    def name_for(self, purpose: str) -> str:
        """A deterministic GUID for resources Azure names by GUID (role assignments, role definitions)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"keyvault-acme/{self.subscription_id}/{self.stack_name}/{purpose}"))


# ---------------------------------------------------------------------------------------------- helpers


def listed(value: Any, field: str) -> list[Any]:
    """A YAML list ([] when absent); a lone string or mapping is refused rather than iterated."""
    if value is None:
        return []
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        raise SpecError(field, f"must be a list, got {type(value).__name__}", f"write {field} as a YAML list")
    return list(value)


def _str(value: Any, fld: str, fix: str, *, required: bool = True) -> str | None:
    if value is None or value == "":
        if required:
            raise SpecError(fld, "is required", fix)
        return None
    if isinstance(value, (Mapping, list, tuple)):
        raise SpecError(fld, f"must be a string, got {type(value).__name__}", fix)
    return str(value)


def _int(value: Any, fld: str, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool):  # Python counts true as 1: not what anyone meant
        raise SpecError(fld, f"{value!r} is a boolean, not a number", f"write {fld} as a whole number from {lo} to {hi}")
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        raise SpecError(fld, f"{shown(value)} is not a number", f"write {fld} as a whole number from {lo} to {hi}") from None
    if not lo <= number <= hi or number != float(value):
        raise SpecError(fld, f"{shown(value)} is out of range", f"use a whole number from {lo} to {hi}")
    return number


def _first_duplicate(names: list[str]) -> str | None:
    return next((n for n in sorted(set(names)) if names.count(n) > 1), None)


def _uuid(value: Any, fld: str, what: str) -> str:
    text = _str(value, fld, f"give the {what} (a GUID)")
    assert text is not None
    if not _UUID.fullmatch(text):
        raise SpecError(fld, f"{text!r} is not a GUID", f"give the {what} as xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")
    return text.lower()


# ---------------------------------------------------------------------------------------------- parts


def _resource_group(data: Any, workload: str, environment: str, subscription_id: str) -> ResourceGroupConfig:
    d = settings(data, "resource_group", SETTINGS["resource_group"])
    if d.get("resource_id"):
        rid = str(d["resource_id"])
        m = _RG_ID.fullmatch(rid)
        if not m:
            raise SpecError("resource_group.resource_id", f"{rid!r} is not a resource group id",
                            "use /subscriptions/<id>/resourceGroups/<name>")
        if m.group("sub").lower() != subscription_id:
            raise SpecError("resource_group.resource_id", "is in another subscription than subscription_id",
                            "deploy the stack into the resource group's subscription")
        return ResourceGroupConfig(name=m.group("rg"), existing_id=rid)
    name = _str(d.get("name"), "resource_group.name", "", required=False) or f"rg-{workload}-{environment}"
    return ResourceGroupConfig(name=name)


def _vault_address(d: Mapping[str, Any], workload: str, environment: str) -> tuple[str, str, str | None]:
    """The vault's name, URL and existing resource id: all a certificate needs of it."""
    existing_id = _str(d.get("resource_id"), "vault.resource_id", "", required=False)
    if existing_id:
        m = _VAULT_ID.fullmatch(existing_id)
        if not m:
            raise SpecError("vault.resource_id", f"{existing_id!r} is not a Key Vault resource id",
                            "use /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.KeyVault/vaults/<name>")
        name = m.group("name")
    else:
        name = _str(d.get("name"), "vault.name", "", required=False) or f"kv-{workload}-{environment}"
    if not _VAULT_NAME.fullmatch(name):
        raise SpecError("vault.name", f"{name!r} is not a valid Key Vault name",
                        "use 3-24 letters, digits and single hyphens, starting with a letter")
    url = (_str(d.get("url"), "vault.url", "", required=False) or f"https://{name.lower()}.vault.azure.net").rstrip("/")
    if not url.startswith("https://"):
        raise SpecError("vault.url", f"{url!r} is not an https URL", "use https://<vault>.vault.azure.net")
    return name, url, existing_id


def _vault(data: Any, workload: str, environment: str, production: bool) -> VaultConfig:
    d = settings(data, "vault", SETTINGS["vault"])
    name, url, existing_id = _vault_address(d, workload, environment)
    sku = str(d.get("sku") or ("" if existing_id else "standard")).lower() or None
    if sku not in (None, "standard", "premium"):
        raise SpecError("vault.sku", f"{sku!r} is not a Key Vault SKU", "use standard or premium (HSM-backed keys)")
    purge = boolean(d.get("purge_protection"), "vault.purge_protection", production)
    if production and not purge:
        raise SpecError("vault.purge_protection", "must be true in a production environment",
                        "remove vault.purge_protection or set it to true")
    subnet, dns_zone = _private_endpoint(d)
    return VaultConfig(
        name=name, url=url, existing_id=existing_id, sku=sku,
        soft_delete_retention_days=_int(d.get("soft_delete_retention_days"), "vault.soft_delete_retention_days", 90, 7, 90),
        purge_protection=purge, private_endpoint_subnet_id=subnet, private_dns_zone_id=dns_zone,
    )


def _private_endpoint(d: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The vault's private endpoint subnet and the private DNS zone its address is published in."""
    subnet = _str(d.get("private_endpoint_subnet_id"), "vault.private_endpoint_subnet_id", "", required=False)
    if subnet and not _SUBNET_ID.fullmatch(subnet):
        raise SpecError("vault.private_endpoint_subnet_id", f"{subnet!r} is not a subnet id",
                        "use /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>")
    zone = _str(d.get("private_dns_zone_id"), "vault.private_dns_zone_id", "", required=False)
    if zone is None:
        return subnet, None
    if not subnet:
        raise SpecError("vault.private_dns_zone_id", "needs vault.private_endpoint_subnet_id",
                        "set the private endpoint's subnet too, or remove private_dns_zone_id")
    match = _PRIVATE_DNS_ZONE_ID.fullmatch(zone)
    if not match:
        raise SpecError("vault.private_dns_zone_id", f"{zone!r} is not a private DNS zone id",
                        "use /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Network/privateDnsZones/"
                        + KEY_VAULT_PRIVATE_DNS_ZONE)
    # Sovereign clouds use privatelink.vaultcore.<cloud suffix>; any other zone would never answer for the vault.
    if not match.group("name").lower().startswith("privatelink.vaultcore."):
        raise SpecError("vault.private_dns_zone_id", f"zone {match.group('name')} does not serve Key Vault private endpoints",
                        f"use the {KEY_VAULT_PRIVATE_DNS_ZONE} zone, or omit private_dns_zone_id to create one")
    return subnet, zone


def _monitoring(data: Any, workload: str, environment: str, production: bool) -> MonitoringConfig:
    d = settings(data, "monitoring", SETTINGS["monitoring"])
    enabled = boolean(d.get("enabled"), "monitoring.enabled", True)
    if production and not enabled:
        raise SpecError("monitoring.enabled", "must be true in a production environment",
                        "remove monitoring.enabled; production vaults keep diagnostic logs")
    workspace_id = _str(d.get("workspace_id"), "monitoring.workspace_id", "", required=False)
    if workspace_id and not _ARM_ID.fullmatch(workspace_id):
        raise SpecError("monitoring.workspace_id", f"{workspace_id!r} is not a resource id",
                        "use the Log Analytics workspace's resource id, or omit it to create one")
    return MonitoringConfig(
        enabled=enabled, workspace_id=workspace_id,
        workspace_name=_str(d.get("workspace_name"), "monitoring.workspace_name", "", required=False)
        or f"log-{workload}-{environment}",
        retention_days=_int(d.get("retention_days"), "monitoring.retention_days", 30, 30, 730),
    )


def _zones(data: Any, subscription_id: str, resource_group: str) -> tuple[tuple[DnsZoneConfig, ...], tuple[OtherZone, ...]]:
    zones = [_zone(entry, f"zones[{i}]", subscription_id, resource_group) for i, entry in enumerate(listed(data, "zones"))]
    dupe = _first_duplicate([z.name for z in zones])
    if dupe:
        raise SpecError("zones", f"zone {dupe} is listed twice", "list each zone once")
    return (tuple(z for z in zones if isinstance(z, DnsZoneConfig)),
            tuple(z for z in zones if not isinstance(z, DnsZoneConfig)))


def _zone(entry: Any, fld: str, subscription_id: str, resource_group: str) -> DnsZoneConfig | OtherZone:
    """One zones[] entry: a zone to create (name), an existing Azure DNS zone (resource_id) or an RFC 2136 zone."""
    if not isinstance(entry, Mapping):
        raise SpecError(fld, "must be a mapping", "give name (a new zone), resource_id (existing), zone/server/tsig_* (RFC 2136) "
                        "or type: cloudflare with zone/api_token_secret")
    declared = registry.named(str(entry["type"])) if "type" in entry else None
    if "type" in entry and declared is None:
        zone_from_dict(entry, fld)  # refuses the type, naming the ones there are
    # A plug-in's zone type brings its own settings; zone_from_dict refuses any the type does not declare.
    settings(entry, fld, tuple(dict.fromkeys(SETTINGS["zones[]"] + (declared.settings if declared else ()))))
    scope = str(entry.get("challenge_scope") or "record_set")
    if scope not in CHALLENGE_SCOPES:
        raise SpecError(f"{fld}.challenge_scope", f"{scope!r} is not a scope", "use record_set (default) or zone")
    rest = {k: v for k, v in entry.items() if k != "challenge_scope"}
    if "name" in rest and rest.get("type", "azure") == "azure":
        extra = sorted(set(rest) - {"name"})
        if extra:
            raise SpecError(f"{fld}.{extra[0]}", "does not go with name", "name creates a zone; use resource_id for an existing one")
        name = authorization.normalize(str(rest["name"]), f"{fld}.name")
        rid = f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.Network/dnszones/{name}"
        return DnsZoneConfig(name=name, resource_id=rid, create=True, challenge_scope=scope)
    zone = zone_from_dict(rest, fld)
    if isinstance(zone, AzureDnsZone):
        return DnsZoneConfig(name=zone.name, resource_id=zone.resource_id, challenge_scope=scope)
    if "challenge_scope" in entry:
        raise SpecError(f"{fld}.challenge_scope", "applies to Azure DNS zones only", "remove it from the zone")
    return zone


def _issuer(data: Any, workload: str, environment: str) -> IssuerConfig:
    d = settings(data, "issuer", SETTINGS["issuer"])
    name = _str(d.get("name"), "issuer.name", "", required=False) or f"id-{workload}-{environment}-issuer"
    resource_id = _str(d.get("resource_id"), "issuer.resource_id", "", required=False)
    if resource_id and not _IDENTITY_ID.fullmatch(resource_id):
        raise SpecError("issuer.resource_id", f"{resource_id!r} is not a user-assigned identity's ARM id",
                        "write /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.ManagedIdentity/"
                        "userAssignedIdentities/<name>")
    if d.get("principal_id"):
        return IssuerConfig(name=name, principal_id=_uuid(d["principal_id"], "issuer.principal_id", "identity's object id"),
                            client_id=_uuid(d.get("client_id"), "issuer.client_id", "identity's client id"),
                            resource_id=resource_id)
    if resource_id:
        raise SpecError("issuer.resource_id", "needs issuer.principal_id and issuer.client_id",
                        "give all three ids of an existing identity, or none to create one")
    if d.get("client_id"):
        raise SpecError("issuer.client_id", "needs issuer.principal_id", "give both ids of an existing identity, or neither")
    return IssuerConfig(name=name)


def _consumers(data: Any) -> tuple[Consumer, ...]:
    out: list[Consumer] = []
    for i, entry in enumerate(listed(data, "consumers")):
        fld = f"consumers[{i}]"
        d = settings(entry, fld, SETTINGS["consumers[]"])
        name = _str(d.get("name"), f"{fld}.name", "name the consumer, e.g. appgw")
        ptype = str(d.get("principal_type") or "ServicePrincipal")
        if ptype not in ("ServicePrincipal", "User", "Group"):
            raise SpecError(f"{fld}.principal_type", f"{ptype!r} is not a principal type", "use ServicePrincipal, User or Group")
        out.append(Consumer(name=str(name), principal_id=_uuid(d.get("principal_id"), f"{fld}.principal_id",
                                                                "identity's object (principal) id"), principal_type=ptype))
    if _first_duplicate([c.name for c in out]):
        raise SpecError("consumers", "two consumers share a name", "give each consumer its own name")
    return tuple(out)


def _alerting(data: Any) -> AlertingConfig:
    d = settings(data, "alerts", SETTINGS["alerts"])
    emails: list[EmailReceiver] = []
    for i, e in enumerate(listed(d.get("emails"), "alerts.emails")):
        fld = f"alerts.emails[{i}]"
        if isinstance(e, str):
            e = {"name": e.split("@")[0], "address": e}
        e = settings(e, fld, SETTINGS["alerts.emails[]"])
        address = email(_str(e.get("address"), f"{fld}.address", "give an e-mail address"), f"{fld}.address")
        emails.append(EmailReceiver(name=str(e.get("name") or address.split("@")[0]), address=address))
    hooks: list[WebhookReceiver] = []
    for i, w in enumerate(listed(d.get("webhooks"), "alerts.webhooks")):
        fld = f"alerts.webhooks[{i}]"
        w = settings(w, fld, SETTINGS["alerts.webhooks[]"])
        name = str(_str(w.get("name"), f"{fld}.name", "name the webhook, e.g. teams"))
        if isinstance(w.get("uri"), Mapping) and set(w["uri"]) == {"secure"}:
            hooks.append(WebhookReceiver(name=name, uri="", encrypted=True))
            continue
        uri = str(_str(w.get("uri"), f"{fld}.uri", "give the webhook's https URL"))
        if not uri.startswith("https://"):
            # Webhook URLs often carry their token in the path or query: never echo one.
            raise SpecError(f"{fld}.uri", f"is not an https URL (got {describe_shape(uri)})", "alerts leave Azure over https only")
        hooks.append(WebhookReceiver(name=name, uri=uri))
    return AlertingConfig(emails=tuple(emails), webhooks=tuple(hooks))


def _certificates(data: Any, *, vault_url: str, zones: tuple[DnsZoneConfig | OtherZone, ...], acme: Mapping[str, Any],
                  tags: Mapping[str, str], allowlist: Allowlist, owner: str) -> tuple[CertificateConfig, ...]:
    entries = listed(data, "certificates")
    if entries and allowlist.empty:
        raise SpecError("allowlist", "is empty, so no certificate may be issued",
                        "list the DNS names this workload may hold under allowlist.suffixes / allowlist.names")
    out = tuple(_certificate(entry, f"certificates[{i}]", vault_url=vault_url, zones=zones, acme=acme, tags=tags,
                             allowlist=allowlist, owner=owner) for i, entry in enumerate(entries))
    dupe = _first_duplicate([c.name.lower() for c in out])
    if dupe:
        raise SpecError("certificates", f"two certificates are named {dupe}", "a Key Vault certificate name is used once per vault")
    return out


def _certificate(entry: Any, fld: str, *, vault_url: str, zones: tuple[DnsZoneConfig | OtherZone, ...],
                 acme: Mapping[str, Any], tags: Mapping[str, str], allowlist: Allowlist, owner: str) -> CertificateConfig:
    """One certificates[] entry: the shared certificate shape (config.py) inside the workload's vault and zones."""
    if not isinstance(entry, Mapping):
        raise SpecError(fld, "must be a mapping", "give at least name and dns_names")
    if "vault_url" in entry:
        raise SpecError(f"{fld}.vault_url", "is set by the workload", "remove it; certificates go into the workload's vault")
    # The workload's zones decide the record sets and DNS roles; a certificate's own list would bypass both.
    if "zones" in entry:
        raise SpecError(f"{fld}.zones", "is set by the workload",
                        "remove it and list the zone under keyvault-acme:zones; each name uses the longest zone containing it")
    cert_tags = entry.get("tags") or {}
    if not isinstance(cert_tags, Mapping):
        raise SpecError(f"{fld}.tags", "must be a mapping of strings", "write tags: {team: web}")
    body = {k: v for k, v in entry.items() if k not in CERTIFICATE_RESOURCE_KEYS}
    body.update(
        vault_url=vault_url,
        # A certificate changes some CA settings; the rest stay the workload's.
        acme={**acme, **settings(entry.get("acme"), f"{fld}.acme", SETTINGS["acme"])},
        tags={**tags, **{str(k): str(v) for k, v in cert_tags.items()}},
    )
    try:
        spec = certificate_spec_from_dict(body)
    except SpecError as e:
        raise SpecError(f"{fld}.{e.field}", e.problem, e.fix) from None
    spec = replace(spec, zones=tuple(z.azure if isinstance(z, DnsZoneConfig) else z for z in zones))
    if not _CERT_NAME.fullmatch(spec.name):
        raise SpecError(f"{fld}.name", f"{spec.name!r} is not a Key Vault certificate name", "use letters, digits and hyphens")
    dns_names = normalize_names(spec.dns_names, f"{fld}.dns_names")
    authorization.check_names(dns_names, allowlist, field=f"{fld}.dns_names", owner=owner)
    reason = revocation_reason(entry.get("revoke_reason"), f"{fld}.revoke_reason", "cessationOfOperation")
    return CertificateConfig(
        spec=spec,
        revoke_on_delete=boolean(entry.get("revoke_on_delete"), f"{fld}.revoke_on_delete", True),
        revoke_reason=reason,
        purge_on_delete=boolean(entry.get("purge_on_delete"), f"{fld}.purge_on_delete", False),
        # dns-persist-01 writes no _acme-challenge record (so the stack grants no DNS role for it): the stack
        # writes the long-lived _validation-persist records instead.
        challenge_record_sets=() if spec.challenge == "dns-persist-01" else
        _challenge_record_sets(dns_names, zones, f"{fld}.dns_names"),
        persist_record_sets=_persist_record_sets(dns_names, zones, fld) if spec.challenge == "dns-persist-01" else (),
    )


def _persist_record_sets(dns_names: tuple[str, ...], zones: tuple[DnsZoneConfig | OtherZone, ...],
                         fld: str) -> tuple[ChallengeRecordSet, ...]:
    """The ``_validation-persist`` record sets of a dns-persist-01 certificate, once per base name (a name and its
    wildcard share one), all in Azure DNS zones: the stack writes them with ARM."""
    by_name = {z.name: z for z in zones}
    out: list[ChallengeRecordSet] = []
    for name in dns_names:
        zone = by_name[zone_for(name, by_name, f"{fld}.dns_names")]
        if not isinstance(zone, DnsZoneConfig):
            raise SpecError(f"{fld}.challenge", f"dns-persist-01 records are written by the stack in Azure DNS zones, "
                            f"and {name} is in {zone.name}, which is not one",
                            "use challenge: dns-01 for this certificate, or put the name in an Azure DNS zone")
        fqdn = f"_validation-persist.{name.removeprefix('*.')}"
        rs = ChallengeRecordSet(zone=zone, relative_name=fqdn[: -len(zone.name) - 1])
        if rs not in out:
            out.append(rs)
    return tuple(out)


def _challenge_record_sets(dns_names: tuple[str, ...], zones: tuple[DnsZoneConfig | OtherZone, ...],
                           fld: str) -> tuple[ChallengeRecordSet, ...]:
    """The Azure DNS ``_acme-challenge`` record sets the names are validated through, once each, in name order.

    ``www.example.com`` and ``*.www.example.com`` share one. RFC 2136 and Cloudflare zones have none: the stack grants no
    Azure role there, so the engine creates and deletes its records itself.
    """
    by_name = {z.name: z for z in zones}
    out: list[ChallengeRecordSet] = []
    for name in dns_names:
        zone = by_name[zone_for(name, by_name, fld)]
        if isinstance(zone, DnsZoneConfig):
            fqdn = challenge_name(name)
            rs = ChallengeRecordSet(zone=zone, relative_name=fqdn[: -len(zone.name) - 1])
            if rs not in out:
                out.append(rs)
    return tuple(out)


# ---------------------------------------------------------------------------------------------- entry points


def _check_keys(values: Mapping[str, Any]) -> None:
    if not isinstance(values, Mapping):
        raise SpecError("config", "must be a mapping of keyvault-acme:* keys", "see docs/configuration.md")
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise SpecError(f"{NAMESPACE}:{unknown[0]}", "unknown config key", f"use only {', '.join(KEYS)} (docs/configuration.md)")
    for key, value in values.items():
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            raise SpecError(f"{NAMESPACE}:{key}", "is a secret",
                            "workload config holds no secrets; keep them in Key Vault and refer to them by secret id")


def _workload_environment(values: Mapping[str, Any]) -> tuple[str, str]:
    workload = str(_str(values.get("workload"), "workload", "set keyvault-acme:workload, e.g. shop"))
    if not _WORKLOAD.fullmatch(workload):
        raise SpecError("workload", f"{workload!r} is not a workload name", "use 2-12 lower-case letters and digits, starting with a letter")
    environment = str(_str(values.get("environment"), "environment", "set keyvault-acme:environment, e.g. dev or prod"))
    if not _ENVIRONMENT.fullmatch(environment):
        raise SpecError("environment", f"{environment!r} is not an environment name", "use 2-8 lower-case letters and digits, e.g. dev or prod")
    return workload, environment


def _subscription(values: Mapping[str, Any]) -> str:
    return _uuid(values.get("subscription_id"), "subscription_id", "subscription the stack deploys into")


def _certificate_part(values: Mapping[str, Any], *, workload: str, environment: str, vault_url: str,
                      zones: tuple[DnsZoneConfig | OtherZone, ...]) -> tuple[Allowlist, dict[str, str], tuple[CertificateConfig, ...]]:
    """The allowlist, the workload's tags and the certificates: what the certificates are made of."""
    allowlist = authorization.allowlist_from_dict(values.get("allowlist"))
    acme = settings(values.get("acme"), "acme", SETTINGS["acme"])
    acme_from_dict(acme)  # a bad CA setting is named once, as acme.<key>, not once per certificate
    extra_tags = values.get("tags") or {}
    if not isinstance(extra_tags, Mapping):
        raise SpecError("tags", "must be a mapping of strings", "write keyvault-acme:tags: {cost-center: web}")
    tags = {"workload": workload, "environment": environment, "managed-by": "pulumi-keyvault-acme",
            **{str(k): str(v) for k, v in extra_tags.items()}}
    certificates = _certificates(values.get("certificates"), vault_url=vault_url, zones=zones, acme=acme,
                                 tags=tags, allowlist=allowlist, owner=f"workload {workload}")
    return allowlist, tags, certificates


def parse_workload_config(values: Mapping[str, Any]) -> WorkloadConfig:
    """Parse the ``keyvault-acme:*`` values (prefix stripped) of one stack into a :class:`WorkloadConfig`."""
    _check_keys(values)
    workload, environment = _workload_environment(values)
    production = boolean(values.get("production"), "production", environment in PRODUCTION_ENVIRONMENTS)
    if environment in PRODUCTION_ENVIRONMENTS and not production:
        raise SpecError("production", f"cannot be false for environment {environment!r}", "remove keyvault-acme:production")
    location = str(_str(values.get("location"), "location", "set keyvault-acme:location, e.g. westeurope"))
    subscription_id = _subscription(values)

    rg = _resource_group(values.get("resource_group"), workload, environment, subscription_id)
    vault = _vault(values.get("vault"), workload, environment, production)
    tenant_id = None
    if values.get("tenant_id") or not vault.existing:
        tenant_id = _uuid(values.get("tenant_id"), "tenant_id", "Entra ID tenant the new vault trusts")
    monitoring = _monitoring(values.get("monitoring"), workload, environment, production)
    zones, rfc = _zones(values.get("zones"), subscription_id, rg.name)
    issuer = _issuer(values.get("issuer"), workload, environment)
    consumers = _consumers(values.get("consumers"))
    grant_roles = boolean(values.get("grant_roles"), "grant_roles", True)
    alerting = _alerting(values.get("alerts"))
    if production and not alerting.enabled:
        raise SpecError("alerts", "has no receiver in a production environment",
                        "add alerts.emails or alerts.webhooks so someone hears of expiring certificates")
    allowlist, tags, certificates = _certificate_part(values, workload=workload, environment=environment,
                                                      vault_url=vault.url, zones=(*zones, *rfc))
    renewer = parse_renewer(values.get("renewer"))
    check_renewer_needs(renewer, monitoring_enabled=monitoring.enabled, issuer_existing=issuer.existing,
                        issuer_resource_id=issuer.resource_id)
    for i, cert in enumerate(certificates):
        # Key Vault refuses HSM keys in a standard vault only when the pending version is created; say so now,
        # before any resource of the stack is made.
        if cert.spec.key.hsm and vault.sku == "standard":
            raise SpecError(f"certificates[{i}].key.kty",
                            f"{cert.spec.key.kty} keys need a premium vault, and the vault {vault.name} is standard",
                            "set vault.sku: premium (declare it for an existing premium vault), or use key.kty "
                            f"{cert.spec.key.family}")
        # A purge-protected vault refuses every purge (403) until the retention period ends, so the destroy
        # would fail on every retry; production vaults always have purge protection.
        if cert.purge_on_delete and vault.purge_protection:
            raise SpecError(f"certificates[{i}].purge_on_delete",
                            "cannot succeed with vault.purge_protection (Key Vault refuses every purge with 403)",
                            "remove purge_on_delete (the deleted certificate stays recoverable until the retention "
                            "ends), or turn vault.purge_protection off outside production")
    return WorkloadConfig(
        workload=workload, environment=environment, production=production, location=location,
        subscription_id=subscription_id, tenant_id=tenant_id, resource_group=rg, vault=vault, monitoring=monitoring,
        zones=zones, rfc2136_zones=rfc, issuer=issuer, consumers=consumers, grant_roles=grant_roles,
        alerting=alerting, allowlist=allowlist, certificates=certificates, tags=tags, renewer=renewer,
        values=MappingProxyType(dict(values)),
    )


def parse_certificates(values: Mapping[str, Any]) -> tuple[CertificateConfig, ...]:
    """Only the certificates of one stack's ``keyvault-acme:*`` values, for commands that act on certificates.

    Reads what a certificate is made of (workload and environment for its tags, the vault's URL, the zones,
    the CA settings, the allowlist, the certificate entries) with the same checks as
    :func:`parse_workload_config`; settings only a deployment needs (location, tenant, monitoring, alerts,
    identities, the production rules about them) are neither required nor read, so ``keyvault-acme status``
    works on a stack it could not deploy. Unknown keys are still refused.
    """
    _check_keys(values)
    workload, environment = _workload_environment(values)
    subscription_id = _subscription(values)
    rg = _resource_group(values.get("resource_group"), workload, environment, subscription_id)
    _, vault_url, _ = _vault_address(settings(values.get("vault"), "vault", SETTINGS["vault"]), workload, environment)
    zones, rfc = _zones(values.get("zones"), subscription_id, rg.name)
    return _certificate_part(values, workload=workload, environment=environment, vault_url=vault_url,
                             zones=(*zones, *rfc))[2]


def stack_config_values(document: Mapping[str, Any], where: str = "stack file") -> dict[str, Any]:
    """The ``keyvault-acme:*`` values of a parsed stack file, prefix stripped; other namespaces are ignored."""
    config = (document or {}).get("config") or {}
    if not isinstance(config, Mapping):
        raise SpecError(f"{where}: config", f"must be a mapping of settings, got a {_kind(config)}",
                        "write config: with one keyvault-acme:<key>: <value> line per setting under it")
    prefix = NAMESPACE + ":"
    return {k[len(prefix):]: v for k, v in config.items() if isinstance(k, str) and k.startswith(prefix)}


def _kind(value: Any) -> str:
    """What a YAML value is, in a word: never its contents (which may be huge or secret)."""
    return {str: "string", list: "list", bool: "boolean", int: "number", float: "number"}.get(type(value),
                                                                                          type(value).__name__)


def read_stack_file(path: str | Path) -> dict[str, Any]:
    """The ``keyvault-acme:*`` values of ``stacks/Pulumi.<stack>.yaml``, prefix stripped (not yet checked)."""
    from .stack_yaml import load_yaml  # only the file-reading edge needs YAML

    document = load_yaml(path)
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise SpecError(str(path), f"is not a Pulumi stack file: its top level is a {_kind(document)}, not a mapping",
                        "write it as config: {keyvault-acme:workload: ..., ...}, as stacks/Pulumi.<stack>.yaml are")
    return stack_config_values(document, str(path))


def load_stack_file(path: str | Path) -> WorkloadConfig:
    """Read ``stacks/Pulumi.<stack>.yaml`` and parse its workload config."""
    return parse_workload_config(read_stack_file(path))


def load_stack_certificates(path: str | Path) -> tuple[CertificateConfig, ...]:
    """Read ``stacks/Pulumi.<stack>.yaml`` and parse only its certificates (see :func:`parse_certificates`)."""
    return parse_certificates(read_stack_file(path))

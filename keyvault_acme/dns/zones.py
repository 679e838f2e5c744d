"""The built-in zone types: Azure DNS, RFC 2136 (BIND, PowerDNS, Windows DNS) and Cloudflare.

Each is a :class:`~.registry.ZoneType`, registered on import, as a plug-in's would be: its settings, how they
parse and write back, and how its provider is built. Provider modules are imported inside the factories so
that parsing a spec never loads a DNS SDK.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..config import TSIG_ALGORITHMS, require, secret_ref_from, server_address
from ..errors import SpecError
from ..model import AzureDnsZone, CloudflareZone, Rfc2136Zone
from .base import DnsProvider
from .registry import ProviderContext, ZoneType, register

# -- Azure DNS: a zone by ARM resource id, written with the engine's Azure credential --------------------------


def _azure_zone(data: Mapping[str, Any], field: str) -> AzureDnsZone:
    try:
        return AzureDnsZone(str(require(data, "resource_id", f"{field}.")))
    except SpecError as e:
        raise SpecError(f"{field}.resource_id", e.problem, e.fix) from None


def _azure(zone: AzureDnsZone, context: ProviderContext, deadline: float, propagation_timeout: float) -> DnsProvider:
    from .azure import AzureDnsProvider

    return AzureDnsProvider(zone, context.azure_dns(), deadline=deadline, propagation_timeout=propagation_timeout)


# -- RFC 2136: dynamic updates signed with a TSIG key kept in Key Vault -----------------------------------------


def _rfc2136_zone(data: Mapping[str, Any], field: str) -> Rfc2136Zone:
    algorithm = str(data.get("tsig_algorithm") or "hmac-sha256").lower().rstrip(".")
    if algorithm not in TSIG_ALGORITHMS:
        raise SpecError(f"{field}.tsig_algorithm", f"{data.get('tsig_algorithm')!r} is not a supported TSIG algorithm",
                        f"use one of {', '.join(TSIG_ALGORITHMS)} (as the server's key statement says)")
    return Rfc2136Zone(
        zone=str(require(data, "zone", f"{field}.")),
        server=server_address(require(data, "server", f"{field}."), f"{field}.server"),
        tsig_key_name=str(require(data, "tsig_key_name", f"{field}.")),
        tsig_secret=secret_ref_from(require(data, "tsig_secret", f"{field}."), f"{field}.tsig_secret"),
        tsig_algorithm=algorithm,
    )


def _rfc2136_dict(zone: Rfc2136Zone) -> dict[str, Any]:
    return {"zone": zone.zone, "server": zone.server, "tsig_key_name": zone.tsig_key_name,
            "tsig_secret": zone.tsig_secret.secret_id, "tsig_algorithm": zone.tsig_algorithm}


def _rfc2136(zone: Rfc2136Zone, context: ProviderContext, deadline: float, propagation_timeout: float) -> DnsProvider:
    from .rfc2136 import Rfc2136Provider

    secret = context.secret(zone.tsig_secret, f"zones[{zone.name}].tsig_secret", deadline)
    return Rfc2136Provider.from_zone(zone, secret, propagation_timeout=propagation_timeout)


# -- Cloudflare: its official SDK with an API token kept in Key Vault --------------------------------------------


def _cloudflare_zone(data: Mapping[str, Any], field: str) -> CloudflareZone:
    return CloudflareZone(
        zone=str(require(data, "zone", f"{field}.")).lower().rstrip("."),
        api_token=secret_ref_from(require(data, "api_token_secret", f"{field}."), f"{field}.api_token_secret"))


def _cloudflare(zone: CloudflareZone, context: ProviderContext, deadline: float,
                propagation_timeout: float) -> DnsProvider:
    from .cloudflare import CloudflareProvider

    token = context.secret(zone.api_token, f"zones[{zone.name}].api_token_secret", deadline)
    return CloudflareProvider(zone.name, token, propagation_timeout=propagation_timeout)


register(ZoneType(
    "azure", AzureDnsZone, _azure, _azure_zone, lambda zone: {"resource_id": zone.resource_id},
    settings=("resource_id",), described="an Azure DNS zone (resource_id)", implied_by="resource_id",
    uses_azure_resource_manager=True))
register(ZoneType(
    "rfc2136", Rfc2136Zone, _rfc2136, _rfc2136_zone, _rfc2136_dict,
    settings=("zone", "server", "tsig_key_name", "tsig_secret", "tsig_algorithm"),
    described="an RFC 2136 zone (zone, server, tsig_*)", implied_by="server"))
register(ZoneType(
    "cloudflare", CloudflareZone, _cloudflare, _cloudflare_zone,
    lambda zone: {"zone": zone.zone, "api_token_secret": zone.api_token.secret_id},
    settings=("zone", "api_token_secret"), described="a Cloudflare zone (zone, api_token_secret)"))

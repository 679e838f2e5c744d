"""One registry: which DNS provider serves a zone, by the zone's type.

Each zone type of the spec (:class:`~keyvault_acme.model.AzureDnsZone`, ``Rfc2136Zone``, ``CloudflareZone``)
has one :class:`ZoneType`: its name in configuration and how to build its provider from what the engine's
wiring offers (:class:`ProviderContext`). The engine asks :func:`provider_for` and then only the provider
contract (:mod:`.base`), so adding a provider is a zone class, a provider module and one :func:`register`
call here, with no edit of ``lifecycle.py``, ``checks.py`` or ``wiring.py``. Provider modules are imported
when a zone of theirs is first used: a spec without Cloudflare zones never loads Cloudflare's SDK.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ..model import AzureDnsZone, CloudflareZone, Rfc2136Zone, SecretRef, Zone
from .base import DnsProvider

if TYPE_CHECKING:
    from .azure import AzureDnsClients


class ProviderContext(Protocol):
    """What a provider factory may ask of the engine's wiring."""

    def azure_dns(self) -> "AzureDnsClients": ...

    def secret(self, ref: SecretRef, field: str, deadline: float) -> str:
        """The value of a Key Vault secret the zone refers to (a TSIG key, an API token), cached a while."""
        ...


# (zone, context, deadline, propagation timeout in seconds) -> provider
Factory = Callable[[Any, ProviderContext, float, float], DnsProvider]


@dataclass(frozen=True)
class ZoneType:
    name: str  # the zone's ``type`` in configuration
    zone_class: type
    build: Factory
    uses_azure_resource_manager: bool = False  # its provider needs an ARM token (Engine.check asks for one)


_TYPES: dict[type, ZoneType] = {}


def register(zone_type: ZoneType) -> None:
    _TYPES[zone_type.zone_class] = zone_type


def zone_type(zone: Zone) -> ZoneType:
    try:
        return _TYPES[type(zone)]
    except KeyError:
        raise TypeError(f"no DNS provider is registered for {type(zone).__name__}") from None


def provider_for(zone: Zone, context: ProviderContext, *, deadline: float, propagation_timeout: float) -> DnsProvider:
    """The provider that writes the challenge records of ``zone``."""
    return zone_type(zone).build(zone, context, deadline, propagation_timeout)


# -- the built-in providers ------------------------------------------------------------------------------


def _azure(zone: AzureDnsZone, context: ProviderContext, deadline: float, propagation_timeout: float) -> DnsProvider:
    from .azure import AzureDnsProvider

    return AzureDnsProvider(zone, context.azure_dns(), deadline=deadline, propagation_timeout=propagation_timeout)


def _rfc2136(zone: Rfc2136Zone, context: ProviderContext, deadline: float, propagation_timeout: float) -> DnsProvider:
    from .rfc2136 import Rfc2136Provider

    secret = context.secret(zone.tsig_secret, f"zones[{zone.name}].tsig_secret", deadline)
    return Rfc2136Provider.from_zone(zone, secret, propagation_timeout=propagation_timeout)


def _cloudflare(zone: CloudflareZone, context: ProviderContext, deadline: float,
                propagation_timeout: float) -> DnsProvider:
    from .cloudflare import CloudflareProvider

    token = context.secret(zone.api_token, f"zones[{zone.name}].api_token", deadline)
    return CloudflareProvider(zone.name, token, propagation_timeout=propagation_timeout)


register(ZoneType("azure", AzureDnsZone, _azure, uses_azure_resource_manager=True))
register(ZoneType("rfc2136", Rfc2136Zone, _rfc2136))
register(ZoneType("cloudflare", CloudflareZone, _cloudflare))

"""One registry: the zone types a spec may name, each with how it is written in configuration and which DNS
provider serves it.

A :class:`ZoneType` is everything the engine knows about a kind of zone: its ``type`` in configuration, its
settings and how to parse and write them back (:mod:`keyvault_acme.config` only dispatches here), and how to
build its provider from what the engine's wiring offers (:class:`ProviderContext`). The engine then asks only
the provider contract (:mod:`.base`) and the zone's own ``name`` and ``secrets``. The built-in types live in
:mod:`.zones`; another package adds one with no edit of this one, by an entry point in the
``keyvault_acme.dns_zones`` group whose object is its :class:`ZoneType` (or, in a program, by :func:`register`).
Provider modules load when a zone of theirs is first used: a spec without Cloudflare zones never loads
Cloudflare's SDK, and a process that never parses a zone never looks for plug-ins.
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from ..model import SecretRef, Zone
from .base import DnsProvider

if TYPE_CHECKING:
    from .azure import AzureDnsClients

ENTRY_POINT_GROUP = "keyvault_acme.dns_zones"


class ProviderContext(Protocol):
    """What a provider factory may ask of the engine's wiring."""

    def azure_dns(self) -> "AzureDnsClients": ...

    def secret(self, ref: SecretRef, field: str, deadline: float) -> str:
        """The value of a Key Vault secret the zone refers to (a TSIG key, an API token), cached a while."""
        ...


# (zone, context, deadline, propagation timeout in seconds) -> provider
Factory = Callable[[Any, ProviderContext, float, float], DnsProvider]
# (the zone's settings without ``type``, the field that names the zone, e.g. "zones[0]") -> zone; raises SpecError
Parser = Callable[[Mapping[str, Any], str], Zone]


@dataclass(frozen=True)
class ZoneType:
    """One kind of zone: how configuration writes it and which provider writes its records."""

    name: str  # the zone's ``type`` in configuration
    zone_class: type
    build: Factory
    parse: Parser  # gets only known settings: anything else is refused by name before it is called
    to_dict: Callable[[Any], dict[str, Any]]  # the inverse of parse, without ``type``
    settings: tuple[str, ...]
    described: str  # how errors name it: "an RFC 2136 zone (zone, server, tsig_*)"
    # The setting that says "this type" when ``type`` is absent (zones written before ``type`` existed); such
    # zones are also written back without ``type``, so existing resources' inputs stay the same.
    implied_by: str | None = None
    uses_azure_resource_manager: bool = False  # its provider needs an ARM token (Engine.check asks for one)


_BY_CLASS: dict[type, ZoneType] = {}
_BY_NAME: dict[str, ZoneType] = {}
_loaded = {"builtins": False, "plugins": False}


def register(zone_type: ZoneType) -> None:
    """Make ``zone_type`` known; a second type of the same name or zone class is refused, not replaced."""
    for existing in (_BY_NAME.get(zone_type.name), _BY_CLASS.get(zone_type.zone_class)):
        if existing is not None and existing != zone_type:
            raise ValueError(f"zone type {zone_type.name!r} ({zone_type.zone_class.__name__}) clashes with "
                             f"the registered {existing.name!r} ({existing.zone_class.__name__})")
    _BY_NAME[zone_type.name] = zone_type
    _BY_CLASS[zone_type.zone_class] = zone_type


# Several threads may parse their first specs at once (keyvault_acme.bulk's workers): a thread must not see the
# tables while another is still filling them, so loading happens under a lock and is marked done after it.
_loading = threading.RLock()


def _builtins() -> None:
    if _loaded["builtins"]:
        return
    with _loading:
        if not _loaded["builtins"]:
            importlib.import_module(".zones", __package__)  # registers azure, rfc2136 and cloudflare
            _loaded["builtins"] = True


def _plugins() -> None:
    """Zone types other packages declare; read once, and only when a name is not built in."""
    if _loaded["plugins"]:
        return
    with _loading:
        if _loaded["plugins"]:
            return
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            found = entry.load()
            if not isinstance(found, ZoneType):
                raise TypeError(f"entry point {entry.name} = {entry.value} in {ENTRY_POINT_GROUP} is not a ZoneType")
            register(found)
        _loaded["plugins"] = True


def named(name: str) -> ZoneType | None:
    """The zone type configuration calls ``name``, built in or from a plug-in; None when there is none."""
    _builtins()
    if name not in _BY_NAME:
        _plugins()
    return _BY_NAME.get(name)


def known(*, plugins: bool = True) -> tuple[ZoneType, ...]:
    """Every zone type, built-in ones first, in registration order (without looking for plug-ins when
    ``plugins`` is false: inferring the type of a zone without ``type`` needs only the built-in ones)."""
    _builtins()
    if plugins:
        _plugins()
    return tuple(_BY_NAME.values())


def zone_type(zone: Zone) -> ZoneType:
    _builtins()
    try:
        return _BY_CLASS[type(zone)]
    except KeyError:
        raise TypeError(f"no zone type is registered for {type(zone).__name__}") from None


def provider_for(zone: Zone, context: ProviderContext, *, deadline: float, propagation_timeout: float) -> DnsProvider:
    """The provider that writes the challenge records of ``zone``."""
    return zone_type(zone).build(zone, context, deadline, propagation_timeout)

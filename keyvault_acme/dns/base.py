"""The whole DNS-provider contract, lego style: put a TXT value up, take it down, say how long to wait.

Everything else (CNAME delegation, propagation checks, grouping, always cleaning up) lives once in
:mod:`.challenges` and :mod:`.propagation`, so a provider stays a few dozen lines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from .servers import Server

DEFAULT_PROPAGATION_TIMEOUT = 120.0


@runtime_checkable
class DnsProvider(Protocol):
    """Writes DNS-01 TXT records in one zone.

    Several values may live at one name at once (``example.com`` and ``*.example.com`` share
    ``_acme-challenge.example.com``): ``present`` adds its value to the record set and keeps the others,
    ``cleanup`` removes only its own value and must not fail when it is already gone. Both give up at
    ``deadline`` (a ``time.monotonic()`` value: the operation's, so no provider waits on its own clock). ``fqdn`` is
    absolute, lower-case, without trailing dot. Providers may also offer
    ``authoritative_servers(zone) -> {nameserver: [(address, port), ...]}``: the servers that answer for the
    zone and each one's addresses, used to check propagation when no resolvers are configured (see
    :func:`authoritative_hint`).
    """

    propagation_timeout: float

    def present(self, fqdn: str, value: str, *, deadline: float | None = None) -> None: ...

    def cleanup(self, fqdn: str, value: str, *, deadline: float | None = None) -> None: ...


@dataclass(frozen=True)
class Challenge:
    """One DNS-01 validation to publish: the order's identifier (maybe ``*.x``) and the TXT value."""

    identifier: str
    value: str


# -- optional capabilities -----------------------------------------------------------------------------
# A provider offers one by having the method; the engine asks ``isinstance(provider, Capability)`` of these
# protocols, never of a provider class, so a new provider needs no edit of the engine.


@runtime_checkable
class KnowsAuthoritativeServers(Protocol):
    """The servers that answer for the zone and each one's addresses, to check propagation when no resolvers
    are configured (RFC 2136: the primary)."""

    def authoritative_servers(self, zone: str) -> dict[str, list[Server]] | None: ...


@runtime_checkable
class ChecksAccess(Protocol):
    """Preflight, before any order: raise :class:`~keyvault_acme.errors.DnsForbidden` when the identity may
    not write the challenge records (a 403 that is not Azure applying a new role assignment yet)."""

    def check_access(self, *, deadline: float | None = None) -> None: ...


@dataclass(frozen=True)
class Finding:
    """What a provider can tell without writing: ``ok``, what it saw, and the fix when not ok."""

    ok: bool
    detail: str
    fix: str = ""


@runtime_checkable
class ChecksWritable(Protocol):
    """``keyvault-acme check``'s "zones writable": whether the TXT ``records`` (absolute names) in ``zone`` could
    be written, found out without writing anything. Raises a KeyVaultAcmeError when it cannot tell."""

    def writable(self, zone: str, records: Sequence[str], *, deadline: float | None = None) -> Finding: ...


@runtime_checkable
class KnowsDelegation(Protocol):
    """``keyvault-acme check``'s "NS delegation": the NS names the zone must be delegated to, and where that
    list comes from (e.g. "Azure DNS (nameServers)")."""

    def delegation(self, zone: str, *, deadline: float | None = None) -> tuple[list[str], str]: ...


def authoritative_hint(provider: DnsProvider, zone: str) -> dict[str, list[Server]] | None:
    """The provider's own idea of the zone's authoritative servers (name -> addresses), when it has one."""
    found = provider.authoritative_servers(zone) if isinstance(provider, KnowsAuthoritativeServers) else None
    return None if found is None else {name: list(addresses) for name, addresses in found.items()}


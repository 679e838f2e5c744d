"""Publish every DNS-01 record of an order, wait until all are live, and always take them down again.

Given ``(identifier, value)`` pairs and the providers of the configured zones, :class:`DnsSolver`
follows ``_acme-challenge`` CNAME delegations, groups values per record name (``example.com`` and
``*.example.com`` share one record set), presents them, waits for propagation of all records at once,
and on leaving the ``with`` block (success, failure or interrupt) removes exactly what it presented.
"""
from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

from ..errors import DnsError, SpecError
from ..names import challenge_name, counted, zone_for
from .base import DEFAULT_PROPAGATION_TIMEOUT, Challenge, DnsProvider
from .propagation import Expectation, Nameserver, follow_cnames, servers_for_zone, wait_for_propagation

log = logging.getLogger("keyvault_acme.dns.challenges")

CLEANUP_MIN_S = 10.0  # removing records still gets this long when the operation's deadline has passed
CLEANUP_BUDGET_S = 10.0  # removing the records never gets longer: a failing DNS API must not hold the run


@dataclass(frozen=True)
class Placement:
    """Where one challenge value goes: ``record`` in ``zone`` (after CNAME delegation)."""

    identifier: str
    value: str
    record: str
    zone: str


class DnsSolver:
    """DNS-01 over the providers of the configured zones (zone name -> provider).

    ``resolvers`` (``host[:port]``) replace the authoritative servers for propagation checks;
    ``propagation_timeout`` defaults to the longest timeout of the providers involved.
    """

    def __init__(self, providers: Mapping[str, DnsProvider], *, resolvers: Sequence[str] = (),
                 propagation_timeout: float | None = None, follow_cname: bool = True) -> None:
        self.providers = {zone.lower().rstrip("."): p for zone, p in providers.items()}
        self.resolvers = tuple(resolvers)
        self.propagation_timeout = propagation_timeout
        self.follow_cname = follow_cname
        self._servers: dict[str, list[Nameserver]] = {}
        self.left_behind: list[Placement] = []  # values published here that clean-up could not remove

    def zone_of(self, name: str) -> str:
        try:
            return zone_for(name, self.providers)
        except SpecError as e:
            raise SpecError("zones", e.problem, e.fix) from None

    def servers(self, zone: str) -> list[Nameserver]:
        if zone not in self._servers:  # cached: NS discovery is a network round trip
            self._servers[zone] = servers_for_zone(zone, self.providers.get(zone), self.resolvers)
        return self._servers[zone]

    def place(self, challenges: Sequence[Challenge]) -> list[Placement]:
        """Decide where each value goes, following ``_acme-challenge`` CNAMEs into configured zones."""
        targets: dict[str, str] = {}
        placements = []
        for c in challenges:
            name = challenge_name(c.identifier)
            if name not in targets:
                target = name
                if self.follow_cname:
                    target = follow_cnames(name, lambda n: self.servers(self._cname_zone(name, n)))
                targets[name] = target
            placements.append(Placement(c.identifier, c.value, targets[name], self.zone_of(targets[name])))
        return placements

    def _cname_zone(self, origin: str, name: str) -> str:
        try:
            return zone_for(name, self.providers)
        except SpecError:
            raise DnsError(f"{origin} is delegated by CNAME to {name}, which is in no configured zone; "
                           f"add that zone to zones so the challenge record can be written there") from None

    @contextlib.contextmanager
    def published(self, challenges: Sequence[Challenge], *, deadline: float | None = None) -> Iterator[list[Placement]]:
        """Present all values, wait until every authoritative server serves them, yield, then clean up."""
        placements = self.place(challenges)
        presented: list[Placement] = []
        try:
            self._present(placements, presented, deadline)
            started = time.monotonic()
            timeout = self.propagation_timeout or max(
                (self.providers[z].propagation_timeout for z in {p.zone for p in placements}),
                default=DEFAULT_PROPAGATION_TIMEOUT)
            expectations = [Expectation(p.record, p.value, tuple(self.servers(p.zone))) for p in placements]
            # One line per order, not per poll: what an operator watching a slow propagation wants to know.
            log.info("waiting for DNS propagation of %s on %s (up to %.0f s)",
                     counted(sorted({e.record for e in expectations}), "TXT record"),
                     counted(sorted({str(s) for e in expectations for s in e.servers}), "server"), timeout)
            wait_for_propagation(expectations, timeout=timeout, deadline=deadline)
            log.debug("%d challenge records live after %.3f s", len(placements), time.monotonic() - started)
            yield placements
        finally:
            # A budget of its own, not what is left of the operation: records come down even after the
            # deadline, and a DNS API that keeps failing costs seconds, not the rest of the run.
            self.left_behind.extend(self._cleanup(presented, time.monotonic() + CLEANUP_BUDGET_S))

    def _present(self, placements: Sequence[Placement], presented: list[Placement], deadline: float | None) -> None:
        def present(p: Placement) -> None:
            presented.append(p)  # before present: a half-done write is still cleaned up
            self.providers[p.zone].present(p.record, p.value, deadline=deadline)

        _per_record(placements, present)

    def _cleanup(self, presented: Sequence[Placement], deadline: float | None) -> list[Placement]:
        """Remove every presented value; the ones left behind (each logged as a warning naming the record)."""
        left: list[Placement] = []

        # Every record gets its chance; a failing cleanup is a warning, never hides the original outcome.
        def cleanup(p: Placement) -> None:
            try:
                self.providers[p.zone].cleanup(p.record, p.value, deadline=deadline)
            except Exception as e:  # noqa: BLE001
                left.append(p)
                log.warning("challenge record left in DNS: TXT %s in zone %s (value %s) could not be removed: %s; "
                            "remove that value by hand, or let the next issue or renew of this certificate do it",
                            p.record, p.zone, p.value, " ".join(str(e).split()))

        _per_record(presented, cleanup)
        return left

    def remove(self, challenges: Sequence[Challenge], *, deadline: float | None = None) -> list[Placement]:
        """Take down values published earlier (by a run that stopped before its own clean-up); removing a value
        that is not there is no error. Returns the ones that could not be removed."""
        return self._cleanup(self.place(challenges), deadline)


def _per_record(placements: Sequence[Placement], fn: Callable[[Placement], None], workers: int = 8) -> None:
    """``fn`` on every placement: distinct record names in parallel, values of one record set in order."""
    groups: dict[str, list[Placement]] = {}
    for p in placements:
        groups.setdefault(p.record, []).append(p)

    def run(group: list[Placement]) -> None:
        for p in group:
            fn(p)

    if len(groups) <= 1:
        for group in groups.values():
            run(group)
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(groups))) as pool:
        for future in [pool.submit(run, g) for g in groups.values()]:
            future.result()

"""dns-persist-01 (draft-ietf-acme-dns-persist): the long-lived ``_validation-persist`` TXT records, and checking
that every authoritative server serves them.

One record per base name authorizes the account at one CA for as long as it stays (or until its
``persistUntil``): ``<issuer-domain-name>; accounturi=<account URL>[; policy=wildcard][; persistUntil=<unix>]``.
``policy=wildcard`` also covers ``*.<name>`` (and names below it). The stack writes the records (ARM, the
deployer's rights); issuance only reads DNS, so the issuer needs no DNS role.

Pure functions build and judge record values; :class:`PersistVerifier` waits until every server serves a
matching one, like DNS-01's propagation check but without writing anything.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from ..errors import PropagationTimeout
from ..names import counted
from .propagation import Nameserver, query, txt_values

log = logging.getLogger("keyvault_acme.dns.persist")

LABEL = "_validation-persist"
POLL_S = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)  # then every 2 s


def base_name(identifier: str) -> str:
    return identifier.lower().rstrip(".").removeprefix("*.")


def record_name(identifier: str) -> str:
    """``_validation-persist.<name>``: the record for ``name`` and ``*.name`` alike."""
    return f"{LABEL}.{base_name(identifier)}"


def record_value(issuer_domain: str, account_url: str, *, wildcard: bool = False,
                 persist_until: int | None = None) -> str:
    """The TXT value that authorizes ``account_url`` at the CA named ``issuer_domain``."""
    parts = [issuer_domain.lower().rstrip("."), f"accounturi={account_url}"]
    if wildcard:
        parts.append("policy=wildcard")
    if persist_until is not None:
        parts.append(f"persistUntil={int(persist_until)}")
    return "; ".join(parts)


def records_for(dns_names: Iterable[str], issuer_domain: str, account_url: str, *,
                persist_until: int | None = None) -> dict[str, str]:
    """Record name -> value for a certificate's names: one per base name, with ``policy=wildcard`` when a
    wildcard of it is among the names (that one record then covers the base name too)."""
    wildcard: dict[str, bool] = {}
    for name in dns_names:
        key = record_name(name)
        wildcard[key] = wildcard.get(key, False) or name.startswith("*.")
    return {key: record_value(issuer_domain, account_url, wildcard=w, persist_until=persist_until)
            for key, w in wildcard.items()}


@dataclass(frozen=True)
class ParsedRecord:
    issuer_domain: str
    params: Mapping[str, str]


def parse(value: str) -> ParsedRecord:
    """``issuer; key=value; ...`` (keys compared case-insensitively, as the draft says)."""
    head, *rest = [p.strip() for p in value.split(";")]
    params: dict[str, str] = {}
    for part in rest:
        key, _, val = part.partition("=")
        params[key.strip().lower()] = val.strip()
    return ParsedRecord(head.lower().rstrip("."), params)


def record_problem(values: Iterable[str], issuer_domains: Sequence[str], account_url: str, *, wildcard: bool,
                   now: float) -> str | None:
    """Why none of the TXT ``values`` authorizes ``account_url`` at a CA named in ``issuer_domains`` (for a wildcard
    name when ``wildcard``), or None when one does."""
    issuers = {d.lower().rstrip(".") for d in issuer_domains}
    seen = sorted(values)
    if not seen:
        return "no TXT record"
    reasons = []
    for value in seen:
        record = parse(value)
        if record.issuer_domain not in issuers:
            reasons.append(f"{value!r} names another CA")
        elif record.params.get("accounturi") != account_url:
            reasons.append(f"{value!r} names another account")
        elif wildcard and record.params.get("policy", "").lower() != "wildcard":
            reasons.append(f"{value!r} lacks policy=wildcard")
        elif "persistuntil" in record.params and _expired(record.params["persistuntil"], now):
            reasons.append(f"{value!r} expired (persistUntil)")
        else:
            return None
    return "; ".join(reasons)


def _expired(text: str, now: float) -> bool:
    try:
        return int(text) <= now
    except ValueError:
        return True  # a persistUntil the CA cannot read does not authorize anything


@dataclass(frozen=True)
class PersistExpectation:
    """A name whose record must authorize the account: where to look, and on which servers."""

    identifier: str
    issuer_domains: tuple[str, ...]
    servers: tuple[Nameserver, ...]

    @property
    def record(self) -> str:
        return record_name(self.identifier)

    @property
    def wildcard(self) -> bool:
        return self.identifier.startswith("*.")


def findings(expectations: Sequence[PersistExpectation], account_url: str, *,
             lookup: Callable[[str, Nameserver], set[str]] | None = None,
             now: Callable[[], float] = time.time) -> list[tuple[PersistExpectation, Nameserver, str]]:
    """(expectation, server, problem) for every server that does not serve a matching record."""
    lookup = lookup or _lookup
    out = []
    for e in expectations:
        for server in e.servers:
            try:
                values = lookup(e.record, server)
            except Exception as error:  # noqa: BLE001 - an unreachable server is a finding like a wrong answer
                out.append((e, server, f"no answer ({type(error).__name__}: {error})"))
                continue
            problem = record_problem(values, e.issuer_domains, account_url, wildcard=e.wildcard, now=now())
            if problem:
                out.append((e, server, problem))
    return out


def _lookup(name: str, server: Nameserver) -> set[str]:
    return txt_values(query(name, "TXT", server), name)


def wait_until_served(expectations: Sequence[PersistExpectation], account_url: str, *, timeout: float,
                      deadline: float | None = None, expected: Mapping[str, str] | None = None) -> None:
    """Return once every server serves a matching record; PropagationTimeout naming what is missing otherwise.
    Nothing is written: the records are the stack's."""
    started = time.monotonic()
    until = started + timeout if deadline is None else min(started + timeout, deadline)
    log.info("checking the dns-persist-01 records %s on every server",
             counted(sorted({e.record for e in expectations}), "record"))
    polls = iter(POLL_S)
    while True:
        missing = findings(expectations, account_url)
        if not missing:
            log.debug("dns-persist-01 records served everywhere after %.3f s", time.monotonic() - started)
            return
        if time.monotonic() >= until:
            lines = "; ".join(f"{e.record} on {server}: {problem}" for e, server, problem in missing[:5])
            wanted = ", ".join(f"{name} TXT {value!r}" for name, value in sorted((expected or {}).items()))
            raise PropagationTimeout(
                f"the dns-persist-01 record is not served everywhere after {timeout:.0f} s: {lines}"
                + (f"; the stack publishes {wanted}" if wanted else "")
                + " (dns-persist-01 writes no record during issuance: deploy the stack that creates it)")
        time.sleep(min(next(polls, POLL_S[-1]), max(0.0, until - time.monotonic())))


class ReadOnlyZone:
    """A zone of a dns-persist-01 certificate: the engine writes nothing there and has no DNS rights, so its
    servers come from public NS records (or the configured resolvers), never from the DNS provider's API."""

    def __init__(self, propagation_timeout: float) -> None:
        self.propagation_timeout = propagation_timeout

    def present(self, fqdn: str, value: str, *, deadline: float | None = None) -> None:
        raise AssertionError("dns-persist-01 writes no DNS record")

    cleanup = present


class PersistRecords:
    """The engine's :class:`~keyvault_acme.acme_client.PersistVerifier`: waits (reading DNS only) until every
    server of each name's zone serves a record that authorizes the account."""

    def __init__(self, servers_of: Callable[[str], Sequence[Nameserver]], *, timeout: float,
                 persist_until: int | None = None) -> None:
        self._servers_of, self.timeout, self.persist_until = servers_of, timeout, persist_until

    def served(self, challenges: Sequence, account_url: str, *, deadline: float | None = None) -> None:
        expectations = [PersistExpectation(c.identifier, tuple(c.issuer_domain_names),
                                           tuple(self._servers_of(record_name(c.identifier)))) for c in challenges]
        issuer = next((d for c in challenges for d in c.issuer_domain_names), "<issuer domain name>")
        expected = records_for([c.identifier for c in challenges], issuer, account_url,
                               persist_until=self.persist_until)
        wait_until_served(expectations, account_url, timeout=self.timeout, deadline=deadline, expected=expected)

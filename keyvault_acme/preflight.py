"""Checks before any order: nothing is created in Key Vault, DNS or at the CA when one fails.

* :func:`check_spec` (offline): names valid (IDNA, wildcard rules, no duplicates), at most 100 of
  them, and every name in a configured zone.
* :func:`check_caa` (RFC 8659): for each name, the closest CAA RRset up the tree must let one of the
  CA's ``caaIdentities`` issue (``issuewild`` for wildcards). The decision (:func:`caa_verdict`) is
  pure; :func:`caa_lookup` is the small DNS edge that feeds it. A lookup no server answers (SERVFAIL,
  REFUSED, silence) is "could not tell", never "no CAA": the check then fails and says how to fix it.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver

from .dns.challenges import DnsSolver
from .dns.propagation import Nameserver, query, resolver_servers
from .errors import CaaForbidsCa, PreflightError, SpecError
from .keyvault import CHAIN_SUFFIX, MANAGED_BY, MANAGED_BY_TAG
from .model import CertificateSpec
from .names import MAX_NAMES, base_name, is_wildcard, normalize_names, zone_for
from .renewal import issued_with_tags

log = logging.getLogger("keyvault_acme.preflight")

# RFC 8659 / 8657 / 9495 property tags a CA understands; an unknown tag with the critical flag forbids issuance.
KNOWN_CAA_TAGS = frozenset({"issue", "issuewild", "iodef", "contactemail", "contactphone", "issuemail", "issuevmc"})
CRITICAL = 128


MAX_TAGS = 15  # Key Vault's limit per object
# Tags the engine may add to a version after issuing it: the revocation reason and the CA's ARI answer.
LATER_TAGS = 2
_KV_NAME = re.compile(r"[0-9A-Za-z-]+")


def managed_tags(spec: CertificateSpec) -> dict[str, str]:
    """Everything the engine writes on a version it issues: the user's tags, then ours (ours win)."""
    return {**dict(spec.tags), MANAGED_BY_TAG: MANAGED_BY, **issued_with_tags(spec)}


def check_spec(spec: CertificateSpec, *, max_names: int = MAX_NAMES) -> tuple[str, ...]:
    """Offline preflight; returns the normalised names. Raises SpecError naming the field and the fix.

    The vault URL and the Key Vault names the engine will use (the certificate, its chain secret, the account
    key's secret or key), the names (valid, at most ``max_names``, each in a configured zone) and the tags
    (room for the engine's own, within Key Vault's limits)."""
    if not spec.vault_url.startswith("https://"):
        raise SpecError("vault_url", f"{spec.vault_url!r} is not an https URL", "use https://<vault>.vault.azure.net")
    if not _KV_NAME.fullmatch(spec.name) or len(spec.name) + len(CHAIN_SUFFIX) > 127:
        raise SpecError("name", f"{spec.name!r} is not a usable Key Vault certificate name",
                        f"use 1-{127 - len(CHAIN_SUFFIX)} letters, digits and hyphens")
    if spec.name.lower().endswith(CHAIN_SUFFIX):
        raise SpecError("name", f"{spec.name!r} ends in {CHAIN_SUFFIX!r}, the suffix of the secrets that hold "
                        "certificates' public chains (certificate X keeps its chain in the secret "
                        f"X{CHAIN_SUFFIX})", f"choose a name that does not end in {CHAIN_SUFFIX!r}")
    account_key = spec.acme.account_key_secret
    if not _KV_NAME.fullmatch(account_key) or len(account_key) > 127:
        raise SpecError("acme.account_key_secret", f"{account_key!r} is not a Key Vault secret name",
                        "use letters, digits and hyphens")
    if account_key.lower() == spec.name.lower() or account_key.lower().endswith(CHAIN_SUFFIX):
        raise SpecError("acme.account_key_secret", f"{account_key!r} is the name of a certificate or of a "
                        f"certificate's chain secret (<certificate>{CHAIN_SUFFIX})",
                        "choose a secret name that is no certificate's name and does not end in "
                        f"{CHAIN_SUFFIX!r}")
    if spec.acme.account_key_kind == "key" and spec.acme.account_key_name.lower() == spec.name.lower():
        raise SpecError("acme.account_key.name", f"{spec.acme.account_key_name!r} is the certificate's name, and so "
                        "the name of the certificate's own key", "name a key of its own, e.g. acme-account-key")
    names = _names_in_zones(spec, max_names)
    tags = managed_tags(spec)
    if len(tags) + LATER_TAGS > MAX_TAGS:
        raise SpecError("tags", f"{len(spec.tags)} tags leave no room for the engine's "
                        f"{len(tags) - len(spec.tags) + LATER_TAGS}",
                        f"Key Vault allows {MAX_TAGS} tags per certificate; use at most "
                        f"{MAX_TAGS - LATER_TAGS - (len(tags) - len(spec.tags))}")
    for key, value in tags.items():
        if len(key) > 512 or len(value) > 256:
            raise SpecError(f"tags.{key}", "is longer than Key Vault allows (512-character names, 256-character "
                            "values)", "shorten it")
    return names


def _names_in_zones(spec: CertificateSpec, max_names: int) -> tuple[str, ...]:
    names = normalize_names(spec.dns_names, "dns_names", limit=max_names)
    if not spec.zones:
        raise SpecError("zones", "no DNS zone is configured", "add the Azure DNS or RFC 2136 zone of your names")
    zone_names = [z.name for z in spec.zones]
    duplicates = {z for z in zone_names if zone_names.count(z) > 1}
    if duplicates:
        raise SpecError("zones", f"the zone {sorted(duplicates)[0]} is configured twice", "list each zone once")
    for name in names:
        zone_for(name, zone_names)
    return names


# -- CAA -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaaRecord:
    flags: int
    tag: str
    value: str


CaaLookup = Callable[[str], Optional[Sequence[CaaRecord]]]  # None: could not tell (lookup failed)


def relevant_caa(name: str, lookup: CaaLookup) -> tuple[Optional[str], Sequence[CaaRecord]]:
    """RFC 8659 tree climbing: the closest ancestor-or-self (wildcard stripped) with a CAA RRset."""
    labels = base_name(name).split(".")
    for i in range(len(labels)):
        owner = ".".join(labels[i:])
        records = lookup(owner)
        if records is None:
            raise PreflightError(f"CAA for {name} could not be checked: no DNS server answered the CAA query for "
                                 f"{owner} (SERVFAIL, REFUSED or no answer); set resolvers to recursive DNS servers "
                                 f"that answer for {owner}, so the check can tell whether the CA may issue")
        if records:
            return owner, records
    return None, ()


def caa_verdict(name: str, records: Sequence[CaaRecord], identities: Sequence[str]) -> Optional[str]:
    """None when ``records`` let a CA with ``identities`` issue for ``name``; otherwise why not.

    Without identities (a CA whose directory lists none, like Pebble 2.4) only an RRset that lets
    no CA at all issue is reported; anything else is left to the CA.
    """
    for r in records:
        if r.flags & CRITICAL and r.tag.lower() not in KNOWN_CAA_TAGS:
            return f"critical CAA property {r.tag!r} is unknown to CAs, so no CA may issue"
    issue = [r for r in records if r.tag.lower() == "issue"]
    wild = [r for r in records if r.tag.lower() == "issuewild"]
    relevant, tag = (wild, "issuewild") if is_wildcard(name) and wild else (issue, "issue")
    if not relevant:
        return None
    allowed = {_issuer(r.value) for r in relevant} - {""}
    if not allowed:
        return f"CAA {tag} \";\" lets no CA issue"
    if not identities:
        return None
    if allowed & {i.lower() for i in identities}:
        return None
    return f"CAA {tag} allows only {', '.join(sorted(allowed))}, not this CA ({', '.join(identities)})"


def _issuer(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def check_caa(names: Iterable[str], identities: Sequence[str], lookup: CaaLookup) -> None:
    """Raise CaaForbidsCa for the first name whose relevant CAA RRset does not let this CA issue."""
    seen: dict[str, Optional[Sequence[CaaRecord]]] = {}

    def cached(owner: str) -> Optional[Sequence[CaaRecord]]:
        # Names share ancestors (100 names under one zone climb through the same parents): ask once.
        if owner not in seen:
            seen[owner] = lookup(owner)
        return seen[owner]

    for name in names:
        owner, records = relevant_caa(name, cached)
        reason = caa_verdict(name, records, identities) if owner else None
        if reason:
            who = identities[0] if identities else "<the CA's identity>"
            tag = "issuewild" if is_wildcard(name) else "issue"
            raise CaaForbidsCa(f"CAA at {owner} forbids issuing for {name}: {reason}; add "
                               f"'0 {tag} \"{who}\"' at {owner} or remove the name")


class CaaCache:
    """CAA answers kept for as long as DNS says they hold, shared by every issuance of one engine.

    A hundred certificates under one zone climb through the same parents; without this, each issuance asks
    again about every ancestor. An answer lives for its TTL (the RRset's; for "no CAA here", the SOA's
    negative TTL, RFC 2308), at most ``max_ttl`` seconds; "could not tell" is never kept. CAs keep CAA
    answers for their TTL too, so a change the cache has not seen yet is one the CA may not have seen either.
    """

    def __init__(self, *, max_ttl: float = 300.0, max_entries: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_ttl = max_ttl
        self.max_entries = max_entries
        self._clock = clock
        self._answers: dict[str, tuple[float, tuple[CaaRecord, ...]]] = {}
        self._lock = threading.Lock()

    def get(self, owner: str) -> Optional[Sequence[CaaRecord]]:
        """The records kept for ``owner`` (empty: no CAA there); None when nothing is kept or it expired."""
        with self._lock:
            kept = self._answers.get(owner)
            if kept is None:
                return None
            if kept[0] <= self._clock():
                del self._answers[owner]
                return None
            return kept[1]

    def put(self, owner: str, records: Sequence[CaaRecord], ttl: float) -> None:
        ttl = min(ttl, self.max_ttl)
        if ttl <= 0:
            return
        with self._lock:
            now = self._clock()
            if len(self._answers) >= self.max_entries:  # a long-lived engine: forget what has expired
                self._answers = {k: v for k, v in self._answers.items() if v[0] > now}
            self._answers[owner] = (now + ttl, tuple(records))


def caa_lookup(solver: DnsSolver, resolver: Optional[dns.resolver.Resolver] = None, *,
               cache: Optional[CaaCache] = None) -> CaaLookup:
    """CAA records of a name: asked of its configured zone's servers; above the zones, of the configured
    resolvers, else of ``resolver`` (the system's by default). None when no server could tell. With
    ``cache``, an answer kept there is used while its TTL lasts, and every new answer is kept."""

    def ask(name: str) -> Optional[tuple[Sequence[CaaRecord], float]]:
        try:
            servers = solver.servers(zone_for(name, solver.providers))
        except SpecError:
            servers = resolver_servers(solver.resolvers)
            if not servers:
                return _resolve(name, resolver)
        return first_answer(name, servers)

    def lookup(name: str) -> Optional[Sequence[CaaRecord]]:
        kept = cache.get(name) if cache is not None else None
        if kept is not None:
            return kept
        answer = ask(name)
        if answer is None:
            return None
        records, ttl = answer
        if cache is not None:
            cache.put(name, records, ttl)
        return records

    return lookup


def first_answer(name: str, servers: Sequence[Nameserver]) -> Optional[tuple[Sequence[CaaRecord], float]]:
    """The CAA records of ``name`` from the first of ``servers`` that answers (NOERROR or NXDOMAIN), and how long
    that answer may be kept; None when none does: a server failing (SERVFAIL, REFUSED) or silent knows nothing,
    it does not say "no CAA"."""
    for server in servers:
        try:
            response = query(name, "CAA", server)
        except (dns.exception.DNSException, OSError) as e:
            log.debug("%s did not answer the CAA query for %s: %s", server, name, type(e).__name__)
            continue
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            log.debug("%s answered %s to the CAA query for %s", server, dns.rcode.to_text(response.rcode()), name)
            continue
        return _records(response), answer_ttl(response)
    return None


def _records(response: dns.message.Message) -> tuple[CaaRecord, ...]:
    return tuple(CaaRecord(rd.flags, rd.tag.decode(), rd.value.decode()) for rrset in response.answer
                 if rrset.rdtype == dns.rdatatype.CAA for rd in rrset)


def answer_ttl(response: dns.message.Message) -> float:
    """How long an answer holds: the lowest TTL in its answer section and, when it has no record of the type
    asked (NXDOMAIN or no data), the SOA's negative TTL from the authority section (RFC 2308); 0 when a
    negative answer carries no SOA."""
    asked = response.question[0].rdtype if response.question else None
    ttls = [rrset.ttl for rrset in response.answer]
    if not any(rrset.rdtype == asked for rrset in response.answer):
        negative = [min(rrset.ttl, min(rd.minimum for rd in rrset)) for rrset in response.authority
                    if rrset.rdtype == dns.rdatatype.SOA]
        if not negative:
            return 0
        ttls += negative
    return min(ttls)


def _resolve(name: str, resolver: Optional[dns.resolver.Resolver]) -> Optional[tuple[Sequence[CaaRecord], float]]:
    try:
        answer = (resolver or dns.resolver.get_default_resolver()).resolve(name, "CAA", lifetime=3)
    except dns.resolver.NoAnswer as e:
        return (), answer_ttl(e.response())
    except dns.resolver.NXDOMAIN as e:
        return (), min((answer_ttl(r) for r in e.responses().values()), default=0)
    except dns.exception.DNSException:
        return None
    return _records(answer.response), answer_ttl(answer.response)

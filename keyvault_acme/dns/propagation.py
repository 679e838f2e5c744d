"""Is the challenge record live? Ask the servers that answer for the zone, never sleep a fixed time.

Which servers: the configured resolvers when there are any (queried recursively); else the provider's
own hint (an RFC 2136 primary knows it is authoritative; Azure DNS lists the zone's name servers); else
the zone's NS set, each name server queried directly on port 53 without recursion. A record counts as
propagated when EVERY one of them serves the value, because the CA may ask any of them.

A name server is one server however many addresses it has (IPv4 and IPv6): it serves the value when
any of its addresses does. An address we cannot reach (no IPv6 on this runner) does not hold up the
check, but at least one address of every name server must answer.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from ..errors import Deadline, DnsError, PropagationTimeout
from ..retry import Backoff, Waiter
from .base import DnsProvider, authoritative_hint
from .servers import is_address, parse_server, server_addresses

log = logging.getLogger("keyvault_acme.dns.propagation")

QUERY_TIMEOUT = 2.0
MAX_CNAME_HOPS = 8
PROPAGATION_BACKOFF = Backoff(initial=0.01, factor=1.6, cap=5.0)


@dataclass(frozen=True)
class Nameserver:
    """One address to ask: authoritative (no recursion) or a configured resolver (recursive). ``name`` is the
    name server the address belongs to, when it has several; addresses of one name count as one server."""

    host: str
    port: int = 53
    recursive: bool = False
    name: str = ""

    @property
    def server(self) -> str:
        """The server this address stands for (its name server, or the address itself)."""
        return self.name or f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}" + (" (resolver)" if self.recursive else "")


def servers_for_zone(zone: str, provider: DnsProvider | None, resolvers: Sequence[str] = ()) -> list[Nameserver]:
    """The servers whose answers count for ``zone`` (see the module docstring for the order of choice)."""
    if resolvers:
        return resolver_servers(resolvers)
    hint = authoritative_hint(provider, zone) if provider is not None else None
    if hint:
        return [Nameserver(host, port, name=name) for name, addresses in hint.items() for host, port in addresses]
    return _ns_addresses(zone)


def resolver_servers(resolvers: Sequence[str]) -> list[Nameserver]:
    """The configured resolvers' addresses, asked recursively. A resolver given by host name is one server
    over all its addresses (named as configured); DnsError naming the entry when the name does not resolve."""
    servers = []
    for i, text in enumerate(resolvers):
        name = "" if is_address(parse_server(text)[0]) else text.strip()
        servers += [Nameserver(host, port, recursive=True, name=name)
                    for host, port in server_addresses(text, f"resolvers[{i}]")]
    return servers


def by_server(servers: Iterable[Nameserver]) -> dict[str, list[Nameserver]]:
    """Addresses grouped by the server they stand for (:attr:`Nameserver.server`), in order."""
    grouped: dict[str, list[Nameserver]] = {}
    for server in servers:
        grouped.setdefault(server.server, []).append(server)
    return grouped


def _ns_addresses(zone: str) -> list[Nameserver]:
    try:
        ns_names = sorted(str(r.target).rstrip(".") for r in dns.resolver.resolve(zone, "NS"))
    except dns.exception.DNSException as e:
        raise DnsError(f"cannot find the name servers of {zone}: {e}; configure resolvers if the zone is private") from e
    servers: list[Nameserver] = []
    for ns in ns_names:
        for rdtype in ("A", "AAAA"):
            try:
                servers += [Nameserver(r.address, name=ns) for r in dns.resolver.resolve(ns, rdtype)]
            except dns.exception.DNSException:
                continue
    if not servers:
        raise DnsError(f"the name servers of {zone} ({', '.join(ns_names)}) have no addresses")
    return servers


def query(name: str, rdtype: str, server: Nameserver, timeout: float = QUERY_TIMEOUT) -> dns.message.Message:
    """One question to one server: UDP, falling back to TCP when the answer is truncated."""
    q = dns.message.make_query(name, rdtype)
    if not server.recursive:
        q.flags &= ~dns.flags.RD
    response, _ = dns.query.udp_with_fallback(q, server.host, port=server.port, timeout=timeout)
    return response


def txt_values(response: dns.message.Message, name: str) -> set[str]:
    """TXT strings served at exactly ``name`` in a response (chunks joined, as the CA reads them)."""
    target = dns.name.from_text(name)
    return {b"".join(rd.strings).decode(errors="replace") for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.TXT and rrset.name == target for rd in rrset}


def cname_target(name: str, server: Nameserver, timeout: float = QUERY_TIMEOUT) -> str | None:
    """Where ``name`` is a CNAME to, per ``server``; None when it is not one.

    Every failure (no answer, refused connection, an error rcode) is a :class:`DnsError` naming the
    server and the name: the caller sees an engine error it can report or retry, never dnspython's.
    """
    try:
        response = query(name, "CNAME", server, timeout)
    except (dns.exception.DNSException, OSError) as e:
        raise DnsError(f"{server} did not answer the CNAME query for {name}: {_failure(e)}") from None
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise DnsError(f"{server} answered {dns.rcode.to_text(response.rcode())} to the CNAME query for {name}")
    owner = dns.name.from_text(name)
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.CNAME and rrset.name == owner:
            return str(rrset[0].target).rstrip(".").lower()
    return None


def _failure(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _first_cname_answer(name: str, servers: Sequence[Nameserver]) -> str | None:
    """:func:`cname_target` from the first of ``servers`` that answers; DnsError naming each when none does."""
    problems = []
    for server in servers:
        try:
            return cname_target(name, server)
        except DnsError as e:
            problems.append(str(e))
    if len(problems) == 1:
        raise DnsError(problems[0])
    raise DnsError(f"no server answered the CNAME query for {name}: {'; '.join(problems)}")


def follow_cnames(name: str, servers_for_name: Callable[[str], Sequence[Nameserver]]) -> str:
    """The name at the end of ``name``'s CNAME chain (``name`` itself when it is not a CNAME).

    Each hop is asked of the servers answering for that hop's zone; ``servers_for_name`` raises when a
    hop leaves the configured zones, because we could not write the record there.
    """
    seen = [name]
    current = name
    for _ in range(MAX_CNAME_HOPS):
        # One answering server suffices to learn the delegation; propagation checks every server later.
        target = _first_cname_answer(current, servers_for_name(current))
        if target is None:
            return current
        if target in seen:
            raise DnsError(f"CNAME loop: {' -> '.join(seen + [target])}")
        seen.append(target)
        current = target
    raise DnsError(f"CNAME chain longer than {MAX_CNAME_HOPS} hops: {' -> '.join(seen)}")


def ns_names(zone: str, addresses: Sequence[Nameserver] = ()) -> set[str]:
    """The NS set of ``zone`` as the first of ``addresses`` (one server's) that answers serves it; the system
    resolver's when there are none. Host names in lower case without the trailing dot. DnsError naming the
    server and the zone when it cannot be read."""
    if not addresses:
        try:
            return {str(r.target).rstrip(".").lower() for r in dns.resolver.resolve(zone, "NS", lifetime=5)}
        except dns.exception.DNSException as e:
            raise DnsError(f"the system resolver did not answer the NS query for {zone}: {_failure(e)}") from None
    problems = []
    for server in addresses:
        try:
            response = query(zone, "NS", server)
        except (dns.exception.DNSException, OSError) as e:
            problems.append(f"{server} did not answer the NS query for {zone}: {_failure(e)}")
            continue
        owner = dns.name.from_text(zone)
        # An authoritative answer, or a referral (a server that only delegates puts the NS set in authority).
        names = {str(rd.target).rstrip(".").lower() for rrset in (*response.answer, *response.authority)
                 if rrset.rdtype == dns.rdatatype.NS and rrset.name == owner for rd in rrset}
        if response.rcode() != dns.rcode.NOERROR or not names:
            raise DnsError(f"{server} has no NS records for {zone} (answered {dns.rcode.to_text(response.rcode())})")
        return names
    raise DnsError("; ".join(problems))


@dataclass(frozen=True)
class Expectation:
    """``value`` must be served at ``record`` by every one of ``servers``."""

    record: str
    value: str
    servers: tuple[Nameserver, ...]


def wait_for_propagation(expectations: Iterable[Expectation], *, timeout: float | None = None,
                         deadline: float | None = None, backoff: Backoff = PROPAGATION_BACKOFF,
                         clock: Callable[[], float] = time.monotonic,
                         sleep: Callable[[float], None] = time.sleep) -> None:
    """Return once every (record, server) pair serves all its values; PropagationTimeout otherwise.

    A server with several addresses (:attr:`Nameserver.server`) serves a record once any one of its
    addresses does. All records are checked in the same rounds (not one after the other), each round asks
    only the addresses still missing something, in parallel when there are several.
    """
    pending: dict[tuple[str, Nameserver], set[str]] = {}
    for e in expectations:
        for server in e.servers:
            pending.setdefault((e.record, server), set()).add(e.value)
    if not pending:
        return
    waiter = Waiter("DNS propagation", timeout=timeout, deadline=deadline, backoff=backoff, clock=clock, sleep=sleep)
    last_seen: dict[tuple[str, Nameserver], str] = {}
    with ThreadPoolExecutor(max_workers=min(16, len(pending))) as pool:
        while True:
            keys = list(pending)
            # A silent server must not hold a round past the deadline.
            limit = max(0.05, min(QUERY_TIMEOUT, waiter.remaining))
            results = list(pool.map(lambda k: _check(k, pending[k], limit), keys)) if len(keys) > 1 \
                else [_check(keys[0], pending[keys[0]], limit)]
            served = {(record, server.server) for (record, server), (done, _) in zip(keys, results) if done}
            for key, (_, seen) in zip(keys, results):
                last_seen[key] = seen
            for record, server in keys:  # one address serving is its whole server serving
                if (record, server.server) in served:
                    del pending[(record, server)]
            if not pending:
                return
            try:
                waiter.sleep()
            except Deadline:
                (record, server), values = next(iter(pending.items()))
                addresses = [(s, last_seen.get((r, s), "nothing")) for r, s in pending
                             if r == record and s.server == server.server]
                missing = {(r, s.server) for r, s in pending}
                more = f" (and {len(missing) - 1} more record/server pairs)" if len(missing) > 1 else ""
                raise PropagationTimeout(
                    f"{server.server} did not serve TXT {record} = {sorted(values)} within the propagation "
                    f"timeout; it served {'; '.join(f'{seen} at {s}' for s, seen in addresses)}{more}") from None


def _check(key: tuple[str, Nameserver], values: set[str], timeout: float) -> tuple[bool, str]:
    record, server = key
    try:
        served = txt_values(query(record, "TXT", server, timeout), record)
    except (dns.exception.DNSException, OSError) as e:
        return False, f"an error ({type(e).__name__})"
    return values <= served, (", ".join(sorted(served)) or "no value")

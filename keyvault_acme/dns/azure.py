"""Azure DNS as a DNS-01 provider (azure-mgmt-dns), zones identified by ARM resource id.

A zone's resource id carries its subscription, so zones in other subscriptions (and tenants' delegated
subscriptions) work with one credential; one management client per subscription is built on first use.

Writes are optimistic-concurrency safe and read nothing they do not need: several challenges for one name
(``example.com`` and ``*.example.com``), or several processes, share one TXT record set. A first value is
written blind with ``If-None-Match: *`` (the record set usually does not exist: we delete the ones we
create); every later write of this provider sends the ETag its previous write returned (``If-Match``).
Only a 412 (someone else wrote in between, or the set already existed) costs a read, then the write is
tried again. So a challenge costs one PUT to publish and one DELETE (or PUT) to clean up.

Clean-up removes only our value. A record set we created (marked in its metadata) is deleted once empty;
one that existed before (the stack creates the ``_acme-challenge`` sets that scope a least-privilege role
assignment, which must outlive every challenge) is emptied and kept.
"""
from __future__ import annotations

import fnmatch
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.mgmt.dns import DnsManagementClient
from azure.mgmt.dns.models import RecordSet, TxtRecord

from ..errors import DnsError, DnsForbidden, PreflightError
from ..model import AzureDnsZone
from ..names import counted
from ..retry import azure_verdict, retry_call
from .base import DEFAULT_PROPAGATION_TIMEOUT, Finding
from .servers import Server, host_addresses

log = logging.getLogger("keyvault_acme.dns.azure")

TXT_TTL = 60  # short: a stale challenge value must not outlive the next attempt by long
TXT_WRITE = "Microsoft.Network/dnszones/TXT/write"
PERMISSIONS_API_VERSION = "2022-04-01"
# Metadata on the record sets the engine creates: only those are deleted when their last value goes.
CREATED_BY = {"created-by": "keyvault-acme-challenge"}


def relative_name(fqdn: str, zone: str) -> str:
    """``_acme-challenge.www.example.com`` in ``example.com`` -> ``_acme-challenge.www``; the apex is ``@``."""
    name, zone = fqdn.lower().rstrip("."), zone.lower().rstrip(".")
    if name == zone:
        return "@"
    if not name.endswith("." + zone):
        raise DnsError(f"{fqdn} is not in the Azure DNS zone {zone}")
    return name[: -len(zone) - 1]


def record_set_values(record_set: RecordSet | None) -> list[str]:
    """The TXT strings of a record set (each TXT record's chunks joined, as resolvers see them)."""
    if record_set is None:
        return []
    return ["".join(r.value or []) for r in (record_set.txt_records or [])]


def permits(permissions: Iterable[Mapping[str, Any]], action: str) -> bool:
    """ARM's rule for the entries its permissions API returns (one per role held): an action is allowed when
    some entry's ``actions`` match it and none of that entry's ``notActions`` do. Wildcards, any case."""
    def matches(patterns: Iterable[str]) -> bool:
        return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)

    return any(matches(p.get("actions") or ()) and not matches(p.get("notActions") or ()) for p in permissions)


def _status(error: BaseException) -> int | None:
    return getattr(error, "status_code", None)


@dataclass(frozen=True)
class _Known:
    """A TXT record set as our last write (or read) of it left it."""

    etag: str | None  # ARM always sends one; typed optional by the SDK ("*": whatever is there)
    values: list[str]
    metadata: dict[str, str]
    ttl: int | None


class _Conflict(Exception):
    """Our precondition failed (412): the record set changed since we read it."""


class AzureDnsClients:
    """One DnsManagementClient per subscription, built lazily and shared by every zone in it."""

    def __init__(self, credential: Any, client_kwargs: Mapping[str, Any] | None = None) -> None:
        self._credential = credential
        self._kwargs = dict(client_kwargs or {})
        self._lock = threading.Lock()
        self._clients: dict[str, DnsManagementClient] = {}
        self._readable: set[str] = set()  # zones (resource ids) this process has read: see check_access

    def zone_readable(self, resource_id: str) -> bool:
        with self._lock:
            return resource_id.lower() in self._readable

    def mark_readable(self, resource_id: str) -> None:
        with self._lock:
            self._readable.add(resource_id.lower())

    def for_subscription(self, subscription_id: str) -> DnsManagementClient:
        with self._lock:
            client = self._clients.get(subscription_id.lower())
            if client is None:
                client = DnsManagementClient(self._credential, subscription_id, **self._kwargs)
                self._clients[subscription_id.lower()] = client
            return client


class AzureDnsProvider:
    """DNS-01 records in one Azure DNS zone.

    ``deadline`` (``time.monotonic()``) bounds every call that is not given its own: the engine builds a
    provider per operation with the operation's deadline. Without one, each call gets ``timeout_s``.
    """

    def __init__(self, zone: AzureDnsZone, clients: AzureDnsClients, *, timeout_s: float = 60.0,
                 deadline: float | None = None, propagation_timeout: float = DEFAULT_PROPAGATION_TIMEOUT) -> None:
        self.zone = zone
        self._clients = clients
        self.timeout_s = timeout_s
        self.deadline = deadline
        self.propagation_timeout = propagation_timeout
        # What our last write of each record set (relative name) returned. The next write of the same set needs
        # no read; a 412 says it changed since, and costs one.
        self._written: dict[str, _Known] = {}
        self._written_lock = threading.Lock()

    @property
    def _client(self) -> DnsManagementClient:
        return self._clients.for_subscription(self.zone.subscription_id)

    def __repr__(self) -> str:
        return f"AzureDnsProvider({self.zone.resource_id})"

    # -- the provider interface -------------------------------------------------------------------------

    def present(self, fqdn: str, value: str, *, deadline: float | None = None) -> None:
        """Add ``value`` to the TXT record set at ``fqdn`` (kept: any values already there)."""
        self._edit(fqdn, lambda values: values if value in values else [*values, value], "add", deadline)

    def cleanup(self, fqdn: str, value: str, *, deadline: float | None = None) -> None:
        """Remove only ``value``; the record set stays (possibly empty). Missing is fine."""
        self._edit(fqdn, lambda values: [v for v in values if v != value], "remove", deadline)

    def delegation(self, zone: str, *, deadline: float | None = None) -> tuple[list[str], str]:
        """The NS set Azure assigned the zone, which its parent must delegate to."""
        return self.nameservers(deadline=deadline), "Azure DNS (nameServers)"

    def writable(self, zone: str, records: Sequence[str], *, deadline: float | None = None) -> Finding:
        """Whether we may write each TXT record set, asked of ARM's permissions API (nothing written)."""
        if len(records) > 1:  # a 100-name certificate asks for many record sets: a few at a time
            with ThreadPoolExecutor(max_workers=min(8, len(records))) as pool:
                allowed = list(pool.map(lambda r: self.may_write_txt(r, deadline=deadline), records))
        else:
            allowed = [self.may_write_txt(r, deadline=deadline) for r in records]
        denied = [r for r, ok in zip(records, allowed) if not ok]
        if denied:
            return Finding(False, f"{zone}: no permission for {TXT_WRITE} on {counted(denied, 'record set')} "
                                  "(ARM permissions API)",
                           f"grant 'DNS Zone Contributor' on {self.zone.resource_id}, or a role with {TXT_WRITE} on "
                           f"{self.record_set_scope(denied[0])}" + (" and the others" if len(denied) > 1 else ""))
        return Finding(True, f"{zone}: {TXT_WRITE} permitted on {counted(list(records), 'record set')} (ARM "
                             "permissions API; nothing written)")

    def nameservers(self, *, deadline: float | None = None) -> list[str]:
        """The zone's authoritative servers as Azure assigned them (host names, no trailing dot)."""
        zone = self._call(f"read zone {self.zone.resource_id}", lambda: self._client.zones.get(
            self.zone.resource_group, self.zone.name), deadline)
        return [ns.rstrip(".") for ns in (zone.name_servers or [])]

    def authoritative_servers(self, zone: str) -> dict[str, list[Server]]:
        """The zone's ``nameServers`` (Azure's, read over ARM, not from public NS records, so a zone not yet
        delegated can still be checked), each with its IPv4 and IPv6 addresses."""
        servers: dict[str, list[Server]] = {}
        names = self.nameservers()
        for host in names:
            try:
                servers[host] = host_addresses(host)
            except OSError:
                continue
        if not servers:
            raise DnsError(f"the name servers of Azure DNS zone {self.zone.name} ({', '.join(names) or 'none'}) "
                           "have no addresses here; set resolvers to servers that answer for the zone")
        return servers

    def check_access(self, *, deadline: float | None = None) -> None:
        """Preflight: the zone exists and we may read it. Writes are proven by the first challenge. Once per
        process and zone: a zone does not vanish between two issuances, and a failed write says so anyway."""
        if self._clients.zone_readable(self.zone.resource_id):
            return
        try:
            self.nameservers(deadline=deadline)
            self._clients.mark_readable(self.zone.resource_id)
        except DnsForbidden:
            raise  # kept as it is: a 403 just after a role assignment is waited out (Engine.issue)
        except DnsError as e:
            raise PreflightError(f"Azure DNS zone {self.zone.resource_id}: {e}") from None

    def record_set_scope(self, fqdn: str) -> str:
        """The ARM id of the TXT record set at ``fqdn``: the narrowest scope a role for DNS-01 may have."""
        return f"{self.zone.resource_id}/TXT/{relative_name(fqdn, self.zone.name)}"

    def may_write_txt(self, fqdn: str, *, deadline: float | None = None) -> bool:
        """Whether our identity may write the TXT record set at ``fqdn``, asked of ARM's permissions API (the
        caller's effective roles at that scope), so nothing is written to find out."""
        scope = self.record_set_scope(fqdn)
        url: str | None = (f"{scope}/providers/Microsoft.Authorization/permissions"
                           f"?api-version={PERMISSIONS_API_VERSION}")
        entries: list[Mapping[str, Any]] = []
        while url:
            page_url: str = url

            def get(page_url: str = page_url) -> Any:
                response = self._client._send_request(HttpRequest("GET", page_url))
                response.raise_for_status()
                return response.json()

            page = self._call(f"read our permissions at {scope}", get, deadline)
            entries += page.get("value") or []
            url = page.get("nextLink")
        return permits(entries, TXT_WRITE)

    # -- internals --------------------------------------------------------------------------------------

    def _edit(self, fqdn: str, change: Callable[[list[str]], list[str]], verb: str, deadline: float | None) -> None:
        rel = relative_name(fqdn, self.zone.name)
        what = f"Azure DNS {self.zone.name}: {verb} TXT value at {rel}"
        must_read = False  # after a 412, what we know is stale: read before writing again

        def attempt() -> None:
            with self._written_lock:
                known = self._written.get(rel)
            if known is None and (verb != "add" or must_read):
                current = self._get(rel)
                known = None if current is None else _Known(current.etag, record_set_values(current),
                                                             dict(current.metadata or {}), current.ttl)
            if known is None:
                if verb == "add":  # blind create: the usual case, as the sets we create are deleted after use
                    self._put(rel, change([]), None, CREATED_BY, None)
                return  # nothing to remove, and no record set to keep
            after = change(known.values)
            if after == known.values:
                return
            if not after and known.metadata == CREATED_BY:
                self._delete(rel, known.etag or "*")
            else:
                self._put(rel, after, known.etag or "*", known.metadata, known.ttl)
            log.debug("%s (%d value(s) now)", what, len(after))

        def guarded() -> None:
            nonlocal must_read
            try:
                attempt()
            except _Conflict:
                must_read = True
                with self._written_lock:
                    self._written.pop(rel, None)
                raise

        self._call(what, guarded, deadline)

    def _get(self, rel: str) -> RecordSet | None:
        try:
            return self._client.record_sets.get(self.zone.resource_group, self.zone.name, rel, "TXT")
        except ResourceNotFoundError:
            return None

    def _put(self, rel: str, values: list[str], etag: str | None, metadata: Mapping[str, str] | None,
             ttl: int | None) -> None:
        """Write the record set, if unchanged since ``etag`` (None: only if it does not exist); remember what
        the write returned."""
        body = RecordSet(ttl=ttl or TXT_TTL, txt_records=[TxtRecord(value=[v]) for v in values],
                         metadata=dict(metadata) if metadata else None)
        precondition = {"if_none_match": "*"} if etag is None else {"if_match": etag}
        try:
            result = self._client.record_sets.create_or_update(self.zone.resource_group, self.zone.name, rel, "TXT",
                                                               body, **precondition)
        except HttpResponseError as e:
            if _status(e) == 412:
                raise _Conflict() from None
            raise
        with self._written_lock:
            self._written[rel] = _Known(result.etag, list(values), dict(result.metadata or metadata or {}),
                                        result.ttl)

    def _delete(self, rel: str, etag: str) -> None:
        try:
            self._client.record_sets.delete(self.zone.resource_group, self.zone.name, rel, "TXT", if_match=etag)
        except ResourceNotFoundError:
            pass  # gone already, and our value with it
        except HttpResponseError as e:
            if _status(e) == 412:
                raise _Conflict() from None
            raise
        with self._written_lock:
            self._written.pop(rel, None)

    def _call(self, what: str, fn: Callable[[], Any], deadline: float | None) -> Any:
        deadline = deadline if deadline is not None else self.deadline
        try:
            return retry_call(fn, what=what, retry_after=_verdict, deadline=deadline,
                              timeout=None if deadline is not None else self.timeout_s)
        except _Conflict:  # pragma: no cover - retry_call retries conflicts until its deadline
            raise DnsError(f"{what}: the record set kept changing under us") from None
        except HttpResponseError as e:
            message = getattr(getattr(e, "error", None), "message", None) or str(e).splitlines()[0]
            err = (DnsForbidden if _status(e) == 403 else DnsError)(f"{what}: {message} [{_status(e)}]")
            if _status(e) == 404:
                err.retryable = False
                err.hint = "check the zone's resource id (subscription, resource group, name)"
            raise err from None


def _verdict(error: BaseException) -> float | bool:
    return True if isinstance(error, _Conflict) else azure_verdict(error)

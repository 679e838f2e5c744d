"""Azure DNS as a DNS-01 provider (azure-mgmt-dns), zones identified by ARM resource id.

A zone's resource id carries its subscription, so zones in other subscriptions (and tenants' delegated
subscriptions) work with one credential; one management client per subscription is built on first use.

Writes are optimistic-concurrency safe: several challenges for one name (``example.com`` and
``*.example.com``), or several processes, share one TXT record set. We add our value with the etag we
read (``If-Match``), or create the set with ``If-None-Match: *``; a 412 means someone else wrote in
between, so we read again and retry. Clean-up removes only our value and leaves an *empty* record set
instead of deleting it: a role assignment may be scoped to exactly that record set (least privilege),
and deleting the set would delete the assignment's target.
"""
from __future__ import annotations

import fnmatch
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
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


class _Conflict(Exception):
    """Our precondition failed (412): the record set changed since we read it."""


class AzureDnsClients:
    """One DnsManagementClient per subscription, built lazily and shared by every zone in it."""

    def __init__(self, credential: Any, client_kwargs: Mapping[str, Any] | None = None) -> None:
        self._credential = credential
        self._kwargs = dict(client_kwargs or {})
        self._lock = threading.Lock()
        self._clients: dict[str, DnsManagementClient] = {}

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
        """Preflight: the zone exists and we may read it. Writes are proven by the first challenge."""
        try:
            self.nameservers(deadline=deadline)
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
        rg, zone = self.zone.resource_group, self.zone.name
        what = f"Azure DNS {zone}: {verb} TXT value at {rel}"

        def attempt() -> None:
            try:
                current = self._client.record_sets.get(rg, zone, rel, "TXT")
            except ResourceNotFoundError:
                current = None
            before = record_set_values(current)
            after = change(before)
            if after == before and current is not None:
                return
            if current is None and not after:
                return  # nothing to remove, and no record set to keep
            body = RecordSet(ttl=current.ttl if current is not None and current.ttl else TXT_TTL,
                             txt_records=[TxtRecord(value=[v]) for v in after],
                             metadata=current.metadata if current is not None else None)
            try:
                if current is None:
                    self._client.record_sets.create_or_update(rg, zone, rel, "TXT", body, if_none_match="*")
                else:
                    self._client.record_sets.create_or_update(rg, zone, rel, "TXT", body, if_match=current.etag)
            except HttpResponseError as e:
                if _status(e) == 412:
                    raise _Conflict() from None
                raise
            log.debug("%s (%d value(s) now)", what, len(after))

        self._call(what, attempt, deadline)

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

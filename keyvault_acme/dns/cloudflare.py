"""Cloudflare DNS through Cloudflare's official Python SDK (PyPI ``cloudflare``), with an API token.

One TXT record per challenge value (Cloudflare keeps each value as its own record): ``present`` creates the
record unless it is there, ``cleanup`` deletes the records holding exactly its value and leaves the others.
The token needs Zone:Read (to find the zone's id by name) and DNS:Edit on the zone; Cloudflare answers 403
otherwise, which becomes :class:`~keyvault_acme.errors.DnsForbidden` naming the permission. Requests go
through the environment's proxy and CA bundle like every other client (the SDK uses httpx, which reads them).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Sequence, TypeVar

import cloudflare
import httpx
from cloudflare import Cloudflare

from ..errors import DnsError, DnsForbidden
from ..transport import verifying_context
from .base import DEFAULT_PROPAGATION_TIMEOUT, Finding

log = logging.getLogger("keyvault_acme.dns.cloudflare")

T = TypeVar("T")
TTL = 60  # Cloudflare's lowest TTL for records that are not proxied
REQUEST_TIMEOUT_S = 30.0
PERMISSIONS = "Zone:Read and DNS:Edit on the zone"


class CloudflareApiError(DnsError):
    """Cloudflare's API answered an error other than 401/403; ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class CloudflareForbidden(DnsForbidden):
    """Cloudflare refused the API token (401) or its permissions (403)."""

    hint = f"give the Cloudflare API token {PERMISSIONS}"


class _NoZone(DnsError):
    """No zone of that name is visible to the token (a wrong name, or a token without Zone:Read on it)."""

    retryable = False


class CloudflareProvider:
    """Writes DNS-01 TXT records in one Cloudflare zone."""

    def __init__(self, zone: str, api_token: str, *, propagation_timeout: float = DEFAULT_PROPAGATION_TIMEOUT,
                 client: Cloudflare | None = None) -> None:
        self.zone = zone.lower().rstrip(".")
        self.propagation_timeout = propagation_timeout
        # The SDK retries 429 and 5xx itself (with Retry-After); a deadline bounds each call below.
        self._client = client or Cloudflare(api_token=api_token, max_retries=2, timeout=REQUEST_TIMEOUT_S,
                                            http_client=_http_client())
        self._zone: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the token
        return f"CloudflareProvider({self.zone})"

    # -- the contract -----------------------------------------------------------------------------------

    def present(self, fqdn: str, value: str, *, deadline: float | None = None) -> None:
        zone_id = self._zone_info(deadline).id
        if self._records(zone_id, fqdn, value, deadline):
            return  # already there (a retried present)
        self._call(f"create the TXT record {fqdn}", deadline, lambda timeout: self._client.dns.records.create(
            zone_id=zone_id, type="TXT", name=fqdn, content=value, ttl=TTL, timeout=timeout))
        log.debug("created TXT %s in Cloudflare zone %s", fqdn, self.zone)

    def cleanup(self, fqdn: str, value: str, *, deadline: float | None = None) -> None:
        zone_id = self._zone_info(deadline).id
        for record in self._records(zone_id, fqdn, value, deadline):
            def delete(timeout: float, record_id: str = record.id) -> Any:
                return self._client.dns.records.delete(record_id, zone_id=zone_id, timeout=timeout)

            try:
                self._call(f"delete the TXT record {fqdn}", deadline, delete)
            except CloudflareApiError as e:
                if e.status != 404:  # gone already: that is what cleanup wants
                    raise

    # -- optional capabilities (keyvault_acme.dns.base) -------------------------------------------------

    def delegation(self, zone: str, *, deadline: float | None = None) -> tuple[list[str], str]:
        """The name servers Cloudflare assigned the zone, which its parent must delegate to."""
        return sorted(self._zone_info(deadline).name_servers or []), "Cloudflare (the zone's name_servers)"

    def writable(self, zone: str, records: Sequence[str], *, deadline: float | None = None) -> Finding:
        """The token finds the zone (Zone:Read); DNS:Edit shows only on a write, so at the first challenge."""
        try:
            info = self._zone_info(deadline)
        except (DnsForbidden, _NoZone) as e:
            return Finding(False, f"{zone}: {e}", f"check the zone name, and give the API token {PERMISSIONS}")
        return Finding(True, f"{zone}: the API token finds Cloudflare zone {info.id}; its DNS:Edit right shows at the "
                             "first challenge")

    # -- Cloudflare's API -------------------------------------------------------------------------------

    def _zone_info(self, deadline: float | None) -> Any:
        with self._lock:
            if self._zone is not None:
                return self._zone
        page = self._call(f"find the zone {self.zone}", deadline,
                          lambda timeout: self._client.zones.list(name=self.zone, timeout=timeout))
        found = [z for z in page.result if z.name.lower() == self.zone]
        if not found:
            raise _NoZone(f"Cloudflare has no zone {self.zone} this API token may read; check the zone name and "
                          f"give the token {PERMISSIONS}")
        with self._lock:
            self._zone = found[0]
        return found[0]

    def _records(self, zone_id: str, fqdn: str, value: str, deadline: float | None) -> list[Any]:
        page = self._call(f"list the TXT records {fqdn}", deadline, lambda timeout: self._client.dns.records.list(
            zone_id=zone_id, type="TXT", name={"exact": fqdn}, per_page=100, timeout=timeout))
        return [r for r in page.result if (r.content or "").strip('"') == value]

    def _call(self, what: str, deadline: float | None, fn: Callable[[float], T]) -> T:
        timeout = REQUEST_TIMEOUT_S if deadline is None else max(0.1, min(REQUEST_TIMEOUT_S, deadline - time.monotonic()))
        where = f"Cloudflare zone {self.zone}: {what}"
        try:
            return fn(timeout)
        except cloudflare.PermissionDeniedError as e:
            raise CloudflareForbidden(f"{where}: Cloudflare refused the API token (403: {_errors(e)}); give it "
                                      f"{PERMISSIONS}") from None
        except cloudflare.AuthenticationError as e:
            raise CloudflareForbidden(f"{where}: Cloudflare does not accept the API token (401: {_errors(e)}); check "
                                      "the token in Key Vault") from None
        except cloudflare.APIStatusError as e:
            raise CloudflareApiError(f"{where}: Cloudflare answered {e.status_code} ({_errors(e)})", e.status_code) from None
        except cloudflare.APIConnectionError as e:
            raise DnsError(f"{where}: cannot reach Cloudflare's API ({e})") from None


def _http_client() -> httpx.Client:
    """httpx reads the proxy from the environment like requests, but its CA bundle only from SSL_CERT_FILE: the
    bundle the other clients trust (REQUESTS_CA_BUNDLE, a corporate proxy's root say) is trusted here too."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    return httpx.Client(verify=verifying_context(bundle) if bundle else True, trust_env=True,
                        timeout=REQUEST_TIMEOUT_S, follow_redirects=False)


def _errors(error: Any) -> str:
    """Cloudflare's own words: the ``errors`` of its response body."""
    body = getattr(error, "body", None)
    items = body.get("errors") if isinstance(body, dict) else None
    if isinstance(items, list) and items:
        return "; ".join(f"{i.get('code')}: {i.get('message')}" if isinstance(i, dict) else str(i) for i in items)
    return str(getattr(error, "message", "") or error)

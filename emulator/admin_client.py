"""A small Python client of the emulator's admin API (see emulator/admin.py for the routes)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Iterable

ROOT_ROLE = "Emulator Root"


class AdminError(Exception):
    def __init__(self, status: int, payload: Any) -> None:
        super().__init__(f"admin API answered {status}: {payload}")
        self.status, self.payload = status, payload


class AdminClient:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        """``base_url``: the emulator's ``proxy_url`` or its ``admin_url`` (``<proxy_url>/admin``, what
        ``python -m emulator`` prints); either reaches the same routes."""
        self.base_url = base_url.rstrip("/").removesuffix("/admin")
        self._timeout = timeout
        # The admin API is plain HTTP on loopback: never route it through a proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            raise AdminError(exc.code, json.loads(raw) if raw else None) from None
        return json.loads(raw) if raw else None

    def health(self) -> dict[str, Any]:
        return self.call("GET", "/admin/health")

    # Entra ID applications
    def add_client(self, client_id: str | None = None, secret: str | None = None, tenant_id: str | None = None,
                   name: str = "", roles: Iterable[tuple[str, str]] = ()) -> dict[str, Any]:
        """Registers an app; `roles` are (role, scope) pairs assigned at once. Returns client_id, secret, tenant_id."""
        body: dict[str, Any] = {"name": name, "roles": [{"role": r, "scope": s} for r, s in roles]}
        for key, value in (("client_id", client_id), ("secret", secret), ("tenant_id", tenant_id)):
            if value is not None:
                body[key] = value
        return self.call("POST", "/admin/clients", body)

    def add_root_client(self, **kwargs: Any) -> dict[str, Any]:
        """An app allowed everything everywhere, for tests that do not test authorization."""
        return self.add_client(roles=[(ROOT_ROLE, "/")], **kwargs)

    def remove_client(self, client_id: str) -> None:
        self.call("DELETE", f"/admin/clients/{client_id}")

    def request_mark(self) -> int:
        """The sequence number of the latest request the emulator answered: count from here with :meth:`requests`."""
        return int(self.call("GET", "/admin/requests?since=0&host=-")["last"])

    def requests(self, since: int = 0, host: str = "*") -> list[dict[str, Any]]:
        """Requests answered through the proxy after the mark ``since``, to hosts matching the glob ``host``."""
        from urllib.parse import urlencode

        return self.call("GET", "/admin/requests?" + urlencode({"since": since, "host": host}))["value"]

    def issue_token(self, client_id: str, audience: str, lifetime: int = 3600) -> str:
        return self.call("POST", "/admin/tokens",
                         {"client_id": client_id, "audience": audience, "lifetime": lifetime})["access_token"]

    # RBAC
    def define_role(self, name: str, actions: Iterable[str] = (), data_actions: Iterable[str] = (),
                    not_actions: Iterable[str] = (), not_data_actions: Iterable[str] = ()) -> dict[str, Any]:
        return self.call("POST", "/admin/role-definitions", {
            "name": name, "actions": list(actions), "data_actions": list(data_actions),
            "not_actions": list(not_actions), "not_data_actions": list(not_data_actions)})

    def assign_role(self, app_id: str, role: str, scope: str = "/", *, propagation_s: float = 0.0) -> dict[str, Any]:
        """Assigns ``role`` at ``scope``, in effect after ``propagation_s`` seconds (as Azure's take minutes)."""
        return self.call("POST", "/admin/role-assignments", {"app_id": app_id, "role": role, "scope": scope,
                                                             "propagation_s": propagation_s})

    def unassign_role(self, assignment_id: str) -> None:
        self.call("DELETE", f"/admin/role-assignments/{assignment_id}")

    def role_assignments(self, app_id: str | None = None) -> list[dict[str, Any]]:
        return self.call("GET", "/admin/role-assignments" + (f"?app_id={app_id}" if app_id else ""))["value"]

    # Key Vault
    def register_vault(self, name: str, subscription_id: str | None = None, resource_group: str | None = None,
                       tenant_id: str | None = None, sku: str | None = None) -> dict[str, Any]:
        """Places a vault in a subscription / resource group / tenant, of SKU standard (default) or premium
        (HSM keys allowed); returns its ARM id as `id`."""
        body = {"name": name, "subscription_id": subscription_id, "resource_group": resource_group,
                "tenant_id": tenant_id, "sku": sku}
        return self.call("POST", "/admin/vaults", {k: v for k, v in body.items() if v is not None})

    # Faults
    def add_fault(self, kind: str = "status", *, host: str = "*", path: str = "*", method: str = "*",
                  status: int | None = None, retry_after: int | None = None, latency_ms: int = 0,
                  count: int | None = None, skip: int | None = None) -> dict[str, Any]:
        """kind: "status" (answer `status`, 429 by default), "latency" (delay `latency_ms`), "readonly" (Key Vault
        failover: writes rejected). Lets the first `skip` matching calls through, then affects `count` of them,
        or all until removed. `host`, `path` and `method` are globs."""
        body: dict[str, Any] = {"kind": kind, "host": host, "path": path, "method": method, "latency_ms": latency_ms}
        for key, value in (("status", status), ("retry_after", retry_after), ("count", count), ("skip", skip)):
            if value is not None:
                body[key] = value
        return self.call("POST", "/admin/faults", body)

    def remove_fault(self, fault_id: str) -> None:
        self.call("DELETE", f"/admin/faults/{fault_id}")

    def clear_faults(self) -> None:
        self.call("DELETE", "/admin/faults")

    def faults(self) -> list[dict[str, Any]]:
        return self.call("GET", "/admin/faults")["value"]

    # Azure DNS zones
    def add_zone(self, name: str, subscription_id: str, resource_group: str,
                 tags: dict[str, str] | None = None) -> dict[str, Any]:
        return self.call("POST", "/admin/zones", {"name": name, "subscriptionId": subscription_id,
                                                   "resourceGroup": resource_group, "tags": tags or {}})

    def add_cloudflare_zone(self, name: str) -> dict[str, Any]:
        """A zone of the Cloudflare stand-in (api.cloudflare.com), served by the emulator's DNS server."""
        return self.call("POST", "/admin/cloudflare/zones", {"name": name})

    def add_cloudflare_token(self, zones: list[str], *, dns_edit: bool = True) -> str:
        """An API token of the Cloudflare stand-in that may read ``zones`` and, with ``dns_edit``, edit their DNS."""
        return self.call("POST", "/admin/cloudflare/tokens", {"zones": zones, "dns_edit": dns_edit})["token"]

    def zone(self, name: str) -> dict[str, Any]:
        return self.call("GET", f"/admin/zones/{name}")

    def zones(self) -> list[dict[str, Any]]:
        return self.call("GET", "/admin/zones")["value"]

    def delete_zone(self, name: str) -> None:
        self.call("DELETE", f"/admin/zones/{name}")

"""The emulator's own admin API (plain HTTP, JSON, loopback only): clients, roles, vaults, faults, tokens, zones.

    GET    /admin/health
    POST   /admin/clients            {client_id?, secret?, tenant_id?, name?, roles?: [{role, scope}]} -> 201
    GET    /admin/clients            DELETE /admin/clients/{client_id}
    POST   /admin/role-definitions   {name, actions?, data_actions?, not_actions?, not_data_actions?} -> 201
    POST   /admin/role-assignments   {app_id, role, scope, propagation_s?} -> 201   GET (?app_id=)   DELETE .../{id}
    POST   /admin/vaults             {name, subscription_id?, resource_group?, tenant_id?} -> 201   GET
    POST   /admin/faults             {kind?, host?, path?, method?, status?, retry_after?, latency_ms?, count?, skip?} -> 201
    GET    /admin/faults             DELETE /admin/faults (all)   DELETE /admin/faults/{id}
    POST   /admin/tokens             {client_id, audience, lifetime?} -> {access_token}
    GET    /admin/requests           (?since=SEQ&host=GLOB) -> {value: [{seq, method, host, path, status}], last}
    *      /admin/zones...           Azure DNS zones (emulator.arm_dns.ArmDns.handle_admin)
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

from .authz import Authorizer
from .entra import DEFAULT_TENANT, Entra, normalize_audience
from .faults import FaultInjector
from .keyvault import DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION, KeyVault
from .request_log import RequestLog
from .wire import Request, Response

ZonesHandler = Callable[[Request], Response]


class _AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _ok(status: int, payload: Any) -> Response:
    return Response.of_json(status, payload)


class Admin:
    def __init__(self, entra: Entra, authorizer: Authorizer, keyvault: KeyVault, faults: FaultInjector,
                 zones: ZonesHandler | None, health: Callable[[], dict[str, Any]],
                 requests: RequestLog | None = None) -> None:
        self._entra, self._authz, self._kv, self._faults = entra, authorizer, keyvault, faults
        self._zones, self._health = zones, health
        self._requests = requests if requests is not None else RequestLog()

    def handle(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if parts[:1] != ["admin"] or len(parts) < 2:
            return _ok(404, {"error": {"code": "NotFound", "message": f"no admin resource at {request.path}"}})
        if parts[1] == "zones":
            if self._zones is None:
                return _ok(501, {"error": {"code": "NotImplemented", "message": "Azure DNS is not available"}})
            return self._zones(request)
        try:
            body = request.json() if request.body else {}
            if not isinstance(body, dict):
                raise _AdminError(400, "the body must be a JSON object")
            return self._route(request.method, parts[1:], body, request)
        except _AdminError as exc:
            return _ok(exc.status, {"error": {"code": "BadRequest" if exc.status == 400 else "NotFound",
                                              "message": str(exc)}})
        except (ValueError, KeyError, TypeError) as exc:
            return _ok(400, {"error": {"code": "BadRequest", "message": f"{type(exc).__name__}: {exc}"}})

    def _route(self, method: str, parts: list[str], body: dict[str, Any], request: Request) -> Response:
        resource, ident = parts[0], (parts[1] if len(parts) > 1 else None)
        if resource == "health" and method == "GET":
            return _ok(200, self._health())
        if resource == "clients":
            if method == "POST" and ident is None:
                return self._add_client(body)
            if method == "GET" and ident is None:
                return _ok(200, {"value": [{"client_id": c.client_id, "tenant_id": c.tenant_id, "name": c.name}
                                           for c in self._entra.clients()]})
            if method == "DELETE" and ident is not None:
                return self._gone(self._entra.remove_client(ident), f"client {ident}")
        if resource == "role-definitions" and method == "POST" and ident is None:
            role = self._authz.define_role(body["name"], body.get("actions", ()), body.get("data_actions", ()),
                                           body.get("not_actions", ()), body.get("not_data_actions", ()))
            return _ok(201, asdict(role))
        if resource == "role-assignments":
            if method == "POST" and ident is None:
                return _ok(201, self._assign(body["app_id"], body["role"], body.get("scope", "/"),
                                             float(body.get("propagation_s", 0))))
            if method == "GET" and ident is None:
                return _ok(200, {"value": [asdict(a) for a in self._authz.assignments(request.query.get("app_id"))]})
            if method == "DELETE" and ident is not None:
                return self._gone(self._authz.unassign(ident), f"role assignment {ident}")
        if resource == "vaults":
            if method == "POST" and ident is None:
                info = self._kv.register_vault(body["name"], body.get("subscription_id", DEFAULT_SUBSCRIPTION),
                                               body.get("resource_group", DEFAULT_RESOURCE_GROUP),
                                               body.get("tenant_id", DEFAULT_TENANT),
                                               body.get("sku", "standard"))
                return _ok(201, {**asdict(info), "id": info.scope, "vault_url": info.url + "/"})
            if method == "GET" and ident is None:
                return _ok(200, {"value": [{**asdict(i), "id": i.scope, "vault_url": i.url + "/"}
                                           for i in self._kv.vaults()]})
        if resource == "faults":
            if method == "POST" and ident is None:
                spec = dict(body)
                if "count" in spec:
                    spec["remaining"] = spec.pop("count")
                return _ok(201, asdict(self._faults.add(**spec)))
            if method == "GET" and ident is None:
                return _ok(200, {"value": self._faults.list()})
            if method == "DELETE" and ident is None:
                self._faults.clear()
                return Response(204)
            if method == "DELETE" and ident is not None:
                return self._gone(self._faults.remove(ident), f"fault {ident}")
        if resource == "requests" and method == "GET" and ident is None:
            last = self._requests.last
            return _ok(200, {"value": self._requests.since(int(request.query.get("since", 0)),
                                                           request.query.get("host", "*")), "last": last})
        if resource == "tokens" and method == "POST" and ident is None:
            client = next((c for c in self._entra.clients() if c.client_id == body["client_id"]), None)
            if client is None:
                raise _AdminError(404, f"client {body['client_id']} is not registered")
            token = self._entra.issue_token(client, normalize_audience(body["audience"]),
                                            int(body.get("lifetime", 3600)))
            return _ok(200, {"access_token": token})
        raise _AdminError(404, f"no admin operation {method} /admin/{'/'.join(parts)}")

    def _add_client(self, body: dict[str, Any]) -> Response:
        client = self._entra.add_client(body.get("client_id"), body.get("secret"),
                                        body.get("tenant_id") or DEFAULT_TENANT, body.get("name", ""))
        assignments = [self._assign(client.client_id, r["role"], r.get("scope", "/")) for r in body.get("roles", [])]
        return _ok(201, {**asdict(client), "role_assignments": assignments})

    def _assign(self, app_id: str, role: str, scope: str, propagation_s: float = 0.0) -> dict[str, Any]:
        try:
            return asdict(self._authz.assign(app_id, role, scope, propagation_s=propagation_s))
        except KeyError:
            raise _AdminError(400, f"unknown role {role!r}; define it first with /admin/role-definitions") from None

    @staticmethod
    def _gone(found: bool, what: str) -> Response:
        if not found:
            raise _AdminError(404, f"{what} not found")
        return Response(204)

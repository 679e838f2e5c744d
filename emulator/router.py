"""Which emulated service answers a request that arrived through the proxy's TLS tunnel."""
from __future__ import annotations

import dataclasses
import uuid
from typing import Callable

from .authz import PERMISSIONS_API_VERSIONS, Authorizer, is_permissions_request, permissions_body
from .cloudflare import CLOUDFLARE_HOST
from .entra import LOGIN_HOST, Entra, InvalidToken
from .faults import FaultInjector
from .keyvault import VAULT_SUFFIX, KeyVault
from .request_log import RequestLog
from .wire import Request, Response

ARM_HOST = "management.azure.com"
ARM_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")
# The DNS resource provider's paths: zones (and record sets), and the status of its long-running operations.
_DNS_PATHS = ("/providers/microsoft.network/dnszones", "/providers/microsoft.network/dnsoperation")

Handler = Callable[[Request], Response]


def serves(host: str) -> bool:
    """The hosts whose TLS the proxy terminates; anything else is refused."""
    host = host.lower()
    return host in (LOGIN_HOST, ARM_HOST, CLOUDFLARE_HOST) or (host.endswith(VAULT_SUFFIX) and host.count(".") == 3)


def _arm_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response.of_json(status, {"error": {"code": code, "message": message}}, headers)


class Router:
    def __init__(self, entra: Entra, keyvault: KeyVault, faults: FaultInjector, dns: Handler | None,
                 on_write: Callable[[], None], authorizer: Authorizer | None = None,
                 cloudflare: Handler | None = None, log: RequestLog | None = None) -> None:
        self._entra, self._kv, self._faults, self._dns, self._on_write = entra, keyvault, faults, dns, on_write
        self._authorizer, self._cloudflare = authorizer, cloudflare
        self.log = log if log is not None else RequestLog()

    def __call__(self, request: Request) -> Response:
        response = self._answer(request)
        self.log.record(request.method, request.host, request.path, response.status)
        return response

    def _answer(self, request: Request) -> Response:
        forced = self._faults.apply(request)
        if forced is not None:
            return forced
        if request.host == LOGIN_HOST:
            return self._entra.handle(request)
        if request.host == CLOUDFLARE_HOST and self._cloudflare is not None:
            return self._cloudflare(request)
        if request.host.endswith(VAULT_SUFFIX):
            response = self._kv.handle(request)
        elif request.host == ARM_HOST:
            response = self._arm(request)
            # Every ARM answer names its request, as Azure's do (support cases and client logs quote them).
            request_id = str(uuid.uuid4())
            response.headers.setdefault("x-ms-request-id", request_id)
            response.headers.setdefault("x-ms-correlation-request-id", request_id)
        else:
            return _arm_error(404, "NotFound", f"{request.host} is not served by the emulator")
        if request.method not in ("GET", "HEAD") and response.status < 300:
            self._on_write()
        return response

    def _arm(self, request: Request) -> Response:
        authorization = request.headers.get("authorization")
        try:
            principal = self._entra.validate(authorization, ARM_AUDIENCES)
        except InvalidToken as exc:
            if not authorization:
                code, message = "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            else:
                code, message = "InvalidAuthenticationToken", f"The access token is invalid: {exc}"
            return _arm_error(401, code, message, {
                "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common", '
                                    f'error="invalid_token", error_description="{message}"'})
        # Before the DNS route: a record set's permissions path also contains the DNS provider.
        if self._authorizer is not None and is_permissions_request(request.path):
            if request.method.upper() != "GET":
                return _arm_error(405, "MethodNotAllowed", "The permissions API supports only GET.")
            version = request.query.get("api-version")
            if version not in PERMISSIONS_API_VERSIONS:
                return _arm_error(400, "InvalidApiVersionParameter" if version else "MissingApiVersionParameter",
                                  f"The api-version '{version or ''}' is invalid. The supported versions are "
                                  f"'{', '.join(sorted(PERMISSIONS_API_VERSIONS))}'.")
            return Response.of_json(200, permissions_body(self._authorizer, principal.app_id, request.path))
        if self._dns is not None and any(path in request.path.lower() for path in _DNS_PATHS):
            return self._dns(dataclasses.replace(request, principal=principal))
        return _arm_error(404, "InvalidResourceType",
                          f"The resource type for '{request.path}' is not served by the emulator.")

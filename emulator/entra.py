"""Entra ID (v2.0) for confidential clients: discovery, OpenID configuration, client-credentials tokens.

Tokens are RS256 JWTs signed by the emulator; every Key Vault and ARM call validates them with `validate`.
"""
from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .wire import Principal, Request, Response

LOGIN_HOST = "login.microsoftonline.com"
DEFAULT_TENANT = "00000000-0000-0000-0000-00000000a2ce"
TOKEN_LIFETIME = 3600
_AUTHORITY = f"https://{LOGIN_HOST}"
_SIGNING_KEY = "token-signing-key.pem"


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str
    tenant_id: str
    name: str = ""


class InvalidToken(Exception):
    """The bearer token is missing, malformed, expired, forged or meant for another audience/tenant."""


def normalize_audience(value: str) -> str:
    # Scopes arrive as "https://vault.azure.net/.default" or "https://management.azure.com//.default".
    value = value.split(" ")[0]
    if value.endswith("/.default"):
        value = value[: -len("/.default")]
    return value.rstrip("/")


class Entra:
    def __init__(self, key_dir: Path) -> None:
        key_path = key_dir / _SIGNING_KEY
        if key_path.exists():
            self._key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        else:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key_path.write_bytes(self._key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            key_path.chmod(0o600)
        self._public = self._key.public_key()  # type: ignore[union-attr]
        self._kid = "emulator-1"
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()

    # -- registry -------------------------------------------------------------------------------------
    def add_client(self, client_id: str | None = None, secret: str | None = None,
                   tenant_id: str = DEFAULT_TENANT, name: str = "") -> Client:
        client = Client(client_id or str(uuid.uuid4()), secret or secrets.token_urlsafe(24), tenant_id, name)
        with self._lock:
            self._clients[client.client_id] = client
        return client

    def remove_client(self, client_id: str) -> bool:
        with self._lock:
            return self._clients.pop(client_id, None) is not None

    def clients(self) -> list[Client]:
        with self._lock:
            return list(self._clients.values())

    def to_dict(self) -> dict[str, Any]:
        return {"clients": [asdict(c) for c in self.clients()]}

    def load_dict(self, data: dict[str, Any]) -> None:
        with self._lock:
            self._clients = {c["client_id"]: Client(**c) for c in data.get("clients", [])}

    # -- tokens ---------------------------------------------------------------------------------------
    def issue_token(self, client: Client, audience: str, lifetime: int = TOKEN_LIFETIME) -> str:
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{client.tenant_id}/",
            "iat": now, "nbf": now, "exp": now + lifetime,
            "appid": client.client_id, "azp": client.client_id,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, client.client_id)),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, client.client_id)),
            "tid": client.tenant_id, "ver": "1.0", "uti": secrets.token_urlsafe(12),
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})  # type: ignore[arg-type]

    def validate(self, authorization: str | None, audiences: tuple[str, ...]) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise InvalidToken("missing bearer token")
        token = authorization[7:].strip()
        try:
            claims = jwt.decode(token, self._public, algorithms=["RS256"],  # type: ignore[arg-type]
                                options={"verify_aud": False, "require": ["exp", "aud", "appid", "tid"]})
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        audience = normalize_audience(str(claims["aud"]))
        if audience not in audiences:
            raise InvalidToken(f"invalid audience {claims['aud']!r}")
        with self._lock:
            if claims["appid"] not in self._clients:
                raise InvalidToken("the application no longer exists")
        return Principal(app_id=claims["appid"], tenant_id=claims["tid"], audience=audience)

    # -- HTTP -----------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET" and parts[-2:] == ["discovery", "instance"]:
            return self._instance_discovery(request)
        if request.method == "GET" and parts[1:] in (["v2.0", ".well-known", "openid-configuration"],
                                                    [".well-known", "openid-configuration"]):
            return Response.of_json(200, self._openid_configuration(parts[0]))
        if request.method == "GET" and parts[1:] == ["discovery", "v2.0", "keys"]:
            return Response.of_json(200, {"keys": [self._jwk()]})
        if request.method == "POST" and parts[1:] == ["oauth2", "v2.0", "token"]:
            return self._token(parts[0], request)
        return _oauth_error(404, "invalid_request", "AADSTS90002: endpoint not found in the emulator", 90002)

    def _instance_discovery(self, request: Request) -> Response:
        tenant = "common"
        endpoint = request.query.get("authorization_endpoint", "")
        if endpoint.startswith(_AUTHORITY + "/"):
            tenant = endpoint[len(_AUTHORITY) + 1:].split("/")[0] or "common"
        return Response.of_json(200, {
            "tenant_discovery_endpoint": f"{_AUTHORITY}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": LOGIN_HOST, "preferred_cache": LOGIN_HOST,
                          "aliases": [LOGIN_HOST]}],
        })

    def _openid_configuration(self, tenant: str) -> dict[str, Any]:
        base = f"{_AUTHORITY}/{tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{_AUTHORITY}/{tenant}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "issuer": f"{_AUTHORITY}/{tenant}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "tenant_region_scope": "WW",
            "cloud_instance_name": "microsoftonline.com",
        }

    def _jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._public))
        return {**jwk, "kid": self._kid, "use": "sig"}

    def _token(self, tenant: str, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type",
                                "AADSTS70003: The app requested an unsupported grant type.", 70003)
        with self._lock:
            client = self._clients.get(form.get("client_id", ""))
        if client is None or (tenant not in ("organizations", "common") and tenant != client.tenant_id):
            return _oauth_error(400, "unauthorized_client",
                                f"AADSTS700016: Application with identifier '{form.get('client_id')}' was not found "
                                f"in the directory '{tenant}'.", 700016)
        if not secrets.compare_digest(form.get("client_secret", ""), client.secret):
            return _oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.", 7000215)
        scope = form.get("scope", "").strip()
        # The client-credentials flow takes one resource's /.default, nothing narrower: an app holds its granted
        # application permissions as a whole (Entra's AADSTS1002012).
        if len(scope.split()) != 1 or not scope.endswith("/.default"):
            return _oauth_error(400, "invalid_scope",
                                f"AADSTS1002012: The provided value for scope {scope} is not valid. Client credential "
                                "flows must have a scope value with /.default suffixed to the resource identifier "
                                "(application ID URI).", 1002012)
        audience = normalize_audience(scope)
        if not audience:
            return _oauth_error(400, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid.",
                                1002012)
        token = self.issue_token(client, audience)
        return Response.of_json(200, {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME,
                                      "ext_expires_in": TOKEN_LIFETIME, "access_token": token})


def _oauth_error(status: int, error: str, description: str, code: int) -> Response:
    return Response.of_json(status, {
        "error": error, "error_description": description, "error_codes": [code],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4()),
    })

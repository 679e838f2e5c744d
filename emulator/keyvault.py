"""Key Vault data plane (any api-version): certificates, keys and secrets of any number of vaults.

Order of checks is Key Vault's: bearer token (401 challenge, before the body is even looked at), api-version,
route, RBAC (403), then the body. Certificate keys and secrets are views of the certificate's versions, as in
Key Vault, so deleting or recovering a certificate moves all three together.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import kvcrypto
from .authz import Authorizer, vault_scope
from .entra import DEFAULT_TENANT, Entra, InvalidToken
from .state import plain
from .wire import Principal, Request, Response

VAULT_SUFFIX = ".vault.azure.net"
RESOURCE = "https://vault.azure.net"
DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
DEFAULT_RESOURCE_GROUP = "emulator"
_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_VERSION = re.compile(r"[0-9a-fA-F]{32}")
_RECOVERY = {"recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}
_ACTION = "Microsoft.KeyVault/vaults/"
PFX, PEM = "application/x-pkcs12", "application/x-pem-file"


def _now() -> int:
    return int(time.time())


class KvError(Exception):
    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner

    def response(self) -> Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return Response.of_json(self.status, {"error": error})


def _bad(message: str) -> KvError:
    return KvError(400, "BadParameter", message)


MAX_PAGE = 25  # Key Vault's page size, and the most `maxresults` may ask for


def _page(request: Request, value: list[dict[str, Any]]) -> Response:
    """One page of a list, as Key Vault pages: at most `maxresults` (1-25, default 25) entries, and a nextLink
    (the full URL, port included, with an opaque $skiptoken) while more remain; the SDKs follow it."""
    raw = request.query.get("maxresults")
    try:
        size = MAX_PAGE if raw is None else int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE:
        raise _bad(f"invalid maxresults {raw!r}: it must be between 1 and {MAX_PAGE}")
    start = 0
    if "$skiptoken" in request.query:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(request.query["$skiptoken"] + "==")
                                   )["NextMarker"])
        except (ValueError, KeyError, TypeError):
            raise _bad("invalid $skiptoken") from None
    end = start + size
    next_link = None
    if end < len(value):
        token = base64.urlsafe_b64encode(json.dumps({"NextMarker": str(end)}).encode()).decode().rstrip("=")
        query = urlencode({"api-version": request.query.get("api-version", ""), "$skiptoken": token,
                           "maxresults": size}, safe="$")
        next_link = f"https://{request.host}:443{request.path}?{query}"
    return Response.of_json(200, {"value": value[start:end], "nextLink": next_link})


@dataclass(frozen=True)
class VaultInfo:
    name: str
    subscription_id: str = DEFAULT_SUBSCRIPTION
    resource_group: str = DEFAULT_RESOURCE_GROUP
    tenant_id: str = DEFAULT_TENANT
    sku: str = "standard"  # "premium" vaults also make and keep keys in HSMs (RSA-HSM, EC-HSM)

    @property
    def scope(self) -> str:
        return vault_scope(self.subscription_id, self.resource_group, self.name)

    @property
    def url(self) -> str:
        return f"https://{self.name}{VAULT_SUFFIX}"


@dataclass
class Version:
    version: str
    created: int
    updated: int
    enabled: bool = True
    nbf: int | None = None
    exp: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    key_pem: str | None = None  # certificates and keys (stays inside the emulator)
    chain: list[str] = field(default_factory=list)  # certificates: base64 DER, leaf first
    kty: str | None = None  # keys
    key_ops: list[str] = field(default_factory=list)  # keys
    value: str | None = None  # secrets
    content_type: str | None = None  # secrets

    def attributes(self, **extra: Any) -> dict[str, Any]:
        attrs: dict[str, Any] = {"enabled": self.enabled}
        if self.nbf is not None:
            attrs["nbf"] = self.nbf
        if self.exp is not None:
            attrs["exp"] = self.exp
        return {**attrs, "created": self.created, "updated": self.updated, **_RECOVERY, **extra}


@dataclass
class Item:
    name: str
    versions: dict[str, Version] = field(default_factory=dict)  # in creation order
    current: str | None = None  # what the versionless URL returns
    policy: dict[str, Any] | None = None  # certificates
    pending: dict[str, Any] | None = None  # certificates: the pending operation
    deleted: dict[str, Any] | None = None  # recoveryId, deletedDate, scheduledPurgeDate

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Item":
        return Item(**{**d, "versions": {k: Version(**v) for k, v in d["versions"].items()}})


@dataclass
class Vault:
    info: VaultInfo
    certificates: dict[str, Item] = field(default_factory=dict)  # keyed by lower-case name
    keys: dict[str, Item] = field(default_factory=dict)
    secrets: dict[str, Item] = field(default_factory=dict)

    def collection(self, kind: str) -> dict[str, Item]:
        return {"certificates": self.certificates, "keys": self.keys, "secrets": self.secrets}[kind]


_SINGULAR = {"certificates": "certificate", "keys": "key", "secrets": "secret"}
_NOT_FOUND = {"certificates": "CertificateNotFound", "keys": "KeyNotFound", "secrets": "SecretNotFound"}


def _not_found(kind: str, name: str, version: str | None = None) -> KvError:
    ident = f"{name}/version {version}" if version else name
    return KvError(404, _NOT_FOUND[kind],
                   f"A {_SINGULAR[kind]} with (name/id) {ident} was not found in this key vault. If you recently "
                   f"deleted this {_SINGULAR[kind]} you may be able to recover it using the correct recovery command. "
                   "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182")


@dataclass(frozen=True)
class _Route:
    op: Callable[..., Response]
    action: str  # RBAC data action, relative to Microsoft.KeyVault/vaults/
    kind: str | None  # certificates / keys / secrets, for the object scope
    name: str | None = None
    version: str | None = None
    needs_body: bool = False


class KeyVault:
    def __init__(self, entra: Entra, authorizer: Authorizer) -> None:
        self._entra, self._authz = entra, authorizer
        self._vaults: dict[str, Vault] = {}
        self._registered: dict[str, VaultInfo] = {}
        self._lock = threading.RLock()

    # -- registry and persistence ---------------------------------------------------------------------
    def register_vault(self, name: str, subscription_id: str = DEFAULT_SUBSCRIPTION,
                       resource_group: str = DEFAULT_RESOURCE_GROUP, tenant_id: str = DEFAULT_TENANT,
                       sku: str = "standard") -> VaultInfo:
        if sku not in ("standard", "premium"):
            raise ValueError(f"sku {sku!r}: use standard or premium")
        info = VaultInfo(name.lower(), subscription_id, resource_group, tenant_id, sku)
        with self._lock:
            self._registered[info.name] = info
            if info.name in self._vaults:
                self._vaults[info.name].info = info
        return info

    def vault_info(self, name: str) -> VaultInfo:
        with self._lock:
            return self._registered.get(name.lower()) or VaultInfo(name.lower())

    def vaults(self) -> list[VaultInfo]:
        with self._lock:
            return list(self._registered.values())

    def _vault(self, name: str) -> Vault:
        vault = self._vaults.get(name)
        if vault is None:
            vault = self._vaults[name] = Vault(self.vault_info(name))
        return vault

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return plain({
                "registered": list(self._registered.values()),
                "vaults": {n: {k: v.collection(k) for k in ("certificates", "keys", "secrets")}
                           for n, v in self._vaults.items()},
            })

    def load_dict(self, data: dict[str, Any]) -> None:
        with self._lock:
            self._registered = {i["name"]: VaultInfo(**i) for i in data.get("registered", [])}
            self._vaults = {}
            for name, cols in data.get("vaults", {}).items():
                vault = self._vault(name)
                for kind, items in cols.items():
                    vault.collection(kind).update({k: Item.from_dict(i) for k, i in items.items()})

    # -- HTTP -----------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        info = self.vault_info(request.host.removesuffix(VAULT_SUFFIX))
        try:
            principal = self._authenticate(request, info)
        except InvalidToken as exc:
            return self._challenge(info, str(exc), "authorization" not in request.headers)
        try:
            if not request.query.get("api-version"):
                raise _bad("The 'api-version' query parameter is missing.")
            route = self._route(request)
            self._authorize(principal, info, route)
            body = self._body(request) if route.needs_body else {}
            with self._lock:
                response = route.op(self._vault(info.name), route, body, request)
        except KvError as exc:
            return exc.response()
        return response

    def _authenticate(self, request: Request, info: VaultInfo) -> Principal:
        principal = self._entra.validate(request.headers.get("authorization"), (RESOURCE,))
        if principal.tenant_id != info.tenant_id:
            raise InvalidToken(f"AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{info.tenant_id}/")
        return principal

    @staticmethod
    def _challenge(info: VaultInfo, reason: str, missing: bool) -> Response:
        message = "AKV10000: Request is missing a Bearer, PoP, or MTLS_POP token." if missing else reason
        response = KvError(401, "Unauthorized", message).response()
        response.headers["WWW-Authenticate"] = (
            f'Bearer authorization="https://login.microsoftonline.com/{info.tenant_id}", resource="{RESOURCE}"')
        return response

    def _authorize(self, principal: Principal, info: VaultInfo, route: _Route) -> None:
        scope = info.scope + (f"/{route.kind}/{route.name}" if route.kind and route.name else "")
        action = _ACTION + route.action
        if not self._authz.allowed(principal.app_id, action, scope):
            raise KvError(403, "Forbidden",
                          "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny "
                          "assignments or role definitions were changed recently, please observe propagation time.\r\n"
                          f"Caller: appid={principal.app_id};iss=https://sts.windows.net/{principal.tenant_id}/\r\n"
                          f"Action: '{action}'\r\nResource: '{scope.lower()}'\r\nAssignment: (not found)\r\n"
                          f"DenyAssignmentId: null\r\nDecisionReason: null \r\nVault: {info.name};location=eastus\r\n",
                          "ForbiddenByRbac")

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        if not request.body:
            raise _bad("The request body is missing.")
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise KvError(415, "UnsupportedMediaType", "The request content type must be application/json.")
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            raise _bad("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise _bad("The request body must be a JSON object.")
        return body

    def _route(self, request: Request) -> _Route:
        segs = request.path.split("/")[1:]
        if any(seg in (".", "..") for seg in segs):
            raise _bad(f"The request URI contains an invalid name: {request.path}")
        if len(segs) > 1 and segs[-1] == "":
            segs = segs[:-1]  # a trailing slash means "the current version"
        m, n = request.method, len(segs)
        col = segs[0].lower() if segs else ""

        def named(i: int = 1) -> str:
            if not _NAME.fullmatch(segs[i]):
                raise _bad(f"The request URI contains an invalid name: {segs[i]}")
            return segs[i]

        def version(i: int = 2) -> str:
            if not _VERSION.fullmatch(segs[i]):
                raise _bad(f"The request URI contains an invalid version: {segs[i]}")
            return segs[i].lower()

        if col in ("certificates", "keys", "secrets"):
            kind, sub = col, (segs[2].lower() if n > 2 else None)
            read = "secrets/getSecret/action" if kind == "secrets" else f"{kind}/read"
            meta = "secrets/readMetadata/action" if kind == "secrets" else f"{kind}/read"
            if n == 1 and m == "GET":
                return _Route(self._list, meta, None)
            if n == 2:
                name = named()
                if m == "GET":
                    return _Route(self._get, read, kind, name)
                if m == "PATCH":
                    return _Route(self._update, f"{kind}/update/action", kind, name, needs_body=True)
                if m == "DELETE":
                    return _Route(self._delete, f"{kind}/delete", kind, name)
                if m == "PUT" and kind == "secrets":
                    return _Route(self._set_secret, "secrets/setSecret/action", kind, name, needs_body=True)
            if n == 3 and sub == "create" and m == "POST" and kind != "secrets":
                op = self._create_certificate if kind == "certificates" else self._create_key
                return _Route(op, f"{kind}/create/action", kind, named(), needs_body=True)
            if n == 3 and sub == "versions" and m == "GET":
                return _Route(self._versions, meta, kind, named())
            if n == 3 and kind == "certificates" and sub == "policy":
                if m == "GET":
                    return _Route(self._get_policy, "certificates/read", kind, named())
                if m == "PATCH":
                    return _Route(self._update_policy, "certificates/update/action", kind, named(), needs_body=True)
            if n == 3 and kind == "certificates" and sub == "pending":
                if m == "GET":
                    return _Route(self._get_pending, "certificates/read", kind, named())
                if m == "PATCH":
                    return _Route(self._cancel_pending, "certificates/update/action", kind, named(), needs_body=True)
                if m == "DELETE":
                    return _Route(self._delete_pending, "certificates/delete", kind, named())
            if n == 4 and kind == "certificates" and sub == "pending" and segs[3].lower() == "merge" and m == "POST":
                return _Route(self._merge, "certificates/create/action", kind, named(), needs_body=True)
            if n == 3 and sub not in ("create", "versions", "policy", "pending"):
                if m == "GET":
                    return _Route(self._get, read, kind, named(), version())
                if m == "PATCH":
                    return _Route(self._update, f"{kind}/update/action", kind, named(), version(), needs_body=True)
            if n == 4 and kind == "keys" and segs[3].lower() == "sign" and m == "POST":
                return _Route(self._sign, "keys/sign/action", kind, named(), version() if segs[2] else None,
                              needs_body=True)
        if col in ("deletedcertificates", "deletedkeys", "deletedsecrets"):
            kind = col.removeprefix("deleted")
            read = "secrets/readMetadata/action" if kind == "secrets" else f"{kind}/read"
            if n == 1 and m == "GET":
                return _Route(self._list_deleted, read, None)
            if n == 2 and m == "GET":
                return _Route(self._get_deleted, read, kind, named())
            if n == 2 and m == "DELETE":
                return _Route(self._purge, f"{kind}/purge/action", kind, named())
            if n == 3 and segs[2].lower() == "recover" and m == "POST":
                return _Route(self._recover, f"{kind}/recover/action", kind, named())
        raise KvError(404, "NotFound", f"The operation {m} {request.path} is not supported by this key vault.")

    # -- shared object access -------------------------------------------------------------------------
    @staticmethod
    def _item(vault: Vault, kind: str, name: str, *, deleted: bool = False) -> Item:
        item = vault.collection(kind).get(name.lower())
        if item is None or (item.deleted is not None) != deleted or not item.versions:
            if deleted:
                raise KvError(404, _NOT_FOUND[kind], f"Deleted {_SINGULAR[kind].capitalize()} not found: {name}")
            raise _not_found(kind, name)
        return item

    @staticmethod
    def _pick(item: Item, kind: str, version: str | None) -> Version:
        if version is None:
            # The latest completed version; a certificate that never completed shows its newest (disabled) one.
            key = item.current or next(reversed(item.versions), None)
            if key is None:
                raise _not_found(kind, item.name)
            return item.versions[key]
        if version not in item.versions:
            raise _not_found(kind, item.name, version)
        return item.versions[version]

    def _cert_backed(self, vault: Vault, kind: str, name: str) -> Item | None:
        """The certificate behind a key or secret of the same name, if there is one."""
        if kind == "certificates":
            return None
        cert = vault.certificates.get(name.lower())
        return cert if cert is not None and cert.deleted is None and cert.versions else None

    def _resolve(self, vault: Vault, kind: str, name: str, version: str | None) -> tuple[Item, Version, bool]:
        cert = self._cert_backed(vault, kind, name)
        if cert is not None:
            return cert, self._pick(cert, kind, version), True
        item = self._item(vault, kind, name)
        return item, self._pick(item, kind, version), False

    # -- bundles --------------------------------------------------------------------------------------
    def _bundle(self, vault: Vault, kind: str, item: Item, v: Version, managed: bool,
                request: Request | None = None) -> dict[str, Any]:
        base = vault.info.url
        if kind == "certificates":
            body: dict[str, Any] = {"id": f"{base}/certificates/{item.name}/{v.version}"}
            if v.chain:  # a version that never completed has no key, secret or certificate to point at
                body["kid"] = f"{base}/keys/{item.name}/{v.version}"
                body["sid"] = f"{base}/secrets/{item.name}/{v.version}"
                body["x5t"] = kvcrypto.thumbprint(base64.b64decode(v.chain[0]))
                body["cer"] = v.chain[0]
            body["attributes"] = v.attributes()
            body["policy"] = self._policy_json(vault, item)
            if item.pending is not None:
                body["pending"] = {"id": f"{base}/certificates/{item.name}/pending"}
        elif kind == "keys":
            key = kvcrypto.key_from_pem(v.key_pem or "")
            jwk = kvcrypto.public_jwk(key)
            kty = v.kty or jwk["kty"]
            ops = v.key_ops or _default_ops(jwk["kty"])
            body = {"key": {"kid": f"{base}/keys/{item.name}/{v.version}", **jwk, "kty": kty, "key_ops": ops},
                    # hsmPlatform: "0" software-protected, "2" in an HSM (Key Vault's current platform)
                    "attributes": v.attributes(exportable=managed and self._exportable(item),
                                               hsmPlatform="2" if kty.endswith("-HSM") else "0")}
        else:
            body = {"id": f"{base}/secrets/{item.name}/{v.version}"}
            if managed:
                body.update(self._certificate_secret(item, v, request))
                body["kid"] = f"{base}/keys/{item.name}/{v.version}"
            else:
                body["value"] = v.value
                if v.content_type:
                    body["contentType"] = v.content_type
            body["attributes"] = v.attributes()
        if v.tags:
            body["tags"] = dict(v.tags)
        if managed:
            body["managed"] = True
        return body

    def _item_entry(self, vault: Vault, kind: str, item: Item, v: Version, versioned: bool) -> dict[str, Any]:
        """What list and list-versions return: ids, attributes and tags, never values or keys."""
        base = f"{vault.info.url}/{kind}/{item.name}"
        entry: dict[str, Any] = {("kid" if kind == "keys" else "id"): f"{base}/{v.version}" if versioned else base,
                                 "attributes": v.attributes()}
        if kind == "certificates" and v.chain:
            entry["x5t"] = kvcrypto.thumbprint(base64.b64decode(v.chain[0]))
        if kind == "secrets" and v.content_type:
            entry["contentType"] = v.content_type
        if v.tags:
            entry["tags"] = dict(v.tags)
        return entry

    def _deleted_fields(self, vault: Vault, kind: str, item: Item) -> dict[str, Any]:
        assert item.deleted is not None
        return {"recoveryId": f"{vault.info.url}/deleted{kind}/{item.name}", **item.deleted}

    @staticmethod
    def _exportable(cert: Item) -> bool:
        return bool(((cert.policy or {}).get("key_props") or {}).get("exportable", False))

    def _certificate_secret(self, cert: Item, v: Version, request: Request | None) -> dict[str, Any]:
        if not v.chain:
            raise KvError(403, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled")
        wanted = (request.query.get("outContentType") if request else None) or \
            ((cert.policy or {}).get("secret_props") or {}).get("contentType") or PFX
        if wanted not in (PFX, PEM):
            raise _bad(f"Invalid outContentType {wanted!r}; use {PFX} or {PEM}.")
        chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in v.chain]
        key = kvcrypto.key_from_pem(v.key_pem or "") if self._exportable(cert) else None
        value = base64.b64encode(kvcrypto.export_pfx(key, chain)).decode() if wanted == PFX else \
            kvcrypto.export_pem(key, chain)
        return {"value": value, "contentType": wanted}

    def _policy_json(self, vault: Vault, item: Item) -> dict[str, Any]:
        return {"id": f"{vault.info.url}/certificates/{item.name}/policy", **(item.policy or {})}

    def _pending_json(self, vault: Vault, item: Item) -> dict[str, Any]:
        op = dict(item.pending or {})
        op.pop("version", None)
        return {"id": f"{vault.info.url}/certificates/{item.name}/pending", **op}

    # -- generic operations ---------------------------------------------------------------------------
    def _kind(self, route: _Route) -> str:
        assert route.kind is not None
        return route.kind

    def _get(self, vault: Vault, route: _Route, body: Any, request: Request) -> Response:
        kind = self._kind(route)
        item, v, managed = self._resolve(vault, kind, route.name or "", route.version)
        if kind == "secrets" and not v.enabled and not managed:
            raise KvError(403, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled")
        return Response.of_json(200, self._bundle(vault, kind, item, v, managed, request))

    def _list(self, vault: Vault, route: _Route, body: Any, request: Request) -> Response:
        kind = request.path.strip("/").split("/")[0].lower()
        value = []
        for item in vault.collection(kind).values():
            if item.deleted is None:
                v = self._pick(item, kind, None)
                value.append(self._item_entry(vault, kind, item, v, versioned=False))
        if kind != "certificates":  # certificate keys and secrets are listed with the managed flag
            for cert in vault.certificates.values():
                if cert.deleted is None and cert.current:
                    entry = self._item_entry(vault, kind, cert, cert.versions[cert.current], versioned=False)
                    value.append({**entry, "managed": True})
        return _page(request, value)

    def _versions(self, vault: Vault, route: _Route, body: Any, request: Request) -> Response:
        kind = self._kind(route)
        item, _, managed = self._resolve(vault, kind, route.name or "", None)
        # Key Vault lists versions in an order that is stable but not chronological: by version id, here.
        value = [self._item_entry(vault, kind, item, item.versions[version], versioned=True)
                 for version in sorted(item.versions)]
        if managed:  # a certificate's key or secret versions say so, as in the list of all of them
            value = [{**entry, "managed": True} for entry in value]
        return _page(request, value)

    def _update(self, vault: Vault, route: _Route, body: dict[str, Any], request: Request) -> Response:
        kind = self._kind(route)
        item, v, managed = self._resolve(vault, kind, route.name or "", route.version)
        if managed and kind != "certificates":
            raise KvError(403, "Forbidden", f"This {_SINGULAR[kind]} is managed by a certificate; update the certificate.")
        attrs = body.get("attributes") or {}
        if not isinstance(attrs, dict) or not isinstance(body.get("tags", {}), dict):
            raise _bad("Properties attributes and tags must be JSON objects.")
        if "enabled" in attrs:
            v.enabled = bool(attrs["enabled"])
        for key in ("nbf", "exp"):
            if key in attrs and kind != "certificates":
                setattr(v, key, attrs[key])
        if "tags" in body:
            v.tags = {str(k): str(t) for k, t in (body["tags"] or {}).items()}
        if kind == "secrets" and "contentType" in body:
            v.content_type = body["contentType"]
        if kind == "keys" and "key_ops" in body:
            v.key_ops = list(body["key_ops"])
        if kind == "certificates" and isinstance(body.get("policy"), dict):
            item.policy = _merge_policy(item.policy or {}, body["policy"])
        v.updated = _now()
        return Response.of_json(200, self._bundle(vault, kind, item, v, managed, request))

    def _delete(self, vault: Vault, route: _Route, body: Any, request: Request) -> Response:
        kind = self._kind(route)
        if self._cert_backed(vault, kind, route.name or ""):
            raise KvError(403, "Forbidden", f"This {_SINGULAR[kind]} is managed by a certificate; delete the certificate.")
        item = self._item(vault, kind, route.name or "")
        v = self._pick(item, kind, None)
        now = _now()
        item.deleted = {"deletedDate": now, "scheduledPurgeDate": now + 90 * 86400}
        bundle = self._bundle(vault, kind, item, v, False, request) if kind != "secrets" else \
            {k: val for k, val in self._bundle(vault, kind, item, v, False, request).items() if k != "value"}
        return Response.of_json(200, {**bundle, **self._deleted_fields(vault, kind, item)})

    def _get_deleted(self, vault: Vault, route: _Route, body: Any, request: Request) -> Response:
        kind = self._kind(route)
        item = self._item(vault, kind, route.name or "", deleted=True)
        bundle = self._bundle(vault, kind, item, self._pick(item, kind, None), False, request)
        bundle.pop("value", None)
        return Response.of_json(200, {**bundle, **self._deleted_fields(vault, kind, item)})

    def _list_deleted(self, vault: Vault, route: _Route, body: Any, request: Request) -> Response:
        kind = request.path.strip("/").split("/")[0].lower().removeprefix("deleted")
        value = [{**self._item_entry(vault, kind, item, self._pick(item, kind, None), versioned=False),
                  **self._deleted_fields(vault, kind, item)}
                 for item in vault.collection(kind).values() if item.deleted is not None and item.versions]
        return _page(request, value)

    def _purge(self, vault: Vault, route: _Route, body: Any, request: Request) -> Response:
        kind = self._kind(route)
        item = self._item(vault, kind, route.name or "", deleted=True)
        del vault.collection(kind)[item.name.lower()]
        return Response(204)

    def _recover(self, vault: Vault, route: _Route, body: Any, request: Request) -> Response:
        kind = self._kind(route)
        item = self._item(vault, kind, route.name or "", deleted=True)
        item.deleted = None
        bundle = self._bundle(vault, kind, item, self._pick(item, kind, None), False, request)
        bundle.pop("value", None)
        return Response.of_json(200, bundle)

    def _check_new(self, vault: Vault, kind: str, name: str) -> Item | None:
        """The live item a create may add a version to; 409 while the name is soft-deleted."""
        item = vault.collection(kind).get(name.lower())
        if item is not None and item.deleted is not None:
            raise KvError(409, "Conflict",
                          f"{_SINGULAR[kind].capitalize()} {name} is currently in a deleted but recoverable state, "
                          "and its name cannot be reused; in this state, the "
                          f"{_SINGULAR[kind]} can only be recovered or purged.", "ObjectIsDeletedButRecoverable")
        if kind != "certificates" and self._cert_backed(vault, kind, name):
            raise KvError(409, "Conflict", f"A certificate named {name} already uses this {_SINGULAR[kind]} name.")
        return item

    # -- certificates ---------------------------------------------------------------------------------
    def _unlocked(self, make: Callable[[], Any]) -> Any:
        """Runs slow key generation without holding up every other request (the caller re-checks state)."""
        self._lock.release()
        try:
            return make()
        finally:
            self._lock.acquire()

    def _creatable_certificate(self, vault: Vault, name: str) -> Item | None:
        item = self._check_new(vault, "certificates", name)
        if item is not None and item.pending and item.pending.get("status") == "inProgress":
            raise KvError(409, "Conflict", f"Certificate {name} has a pending operation; merge, cancel or delete it "
                                           "before creating a new version.", "PendingCertificateOperation")
        return item

    def _create_certificate(self, vault: Vault, route: _Route, body: dict[str, Any], request: Request) -> Response:
        name = route.name or ""
        item = self._creatable_certificate(vault, name)
        raw_policy = body.get("policy", (item.policy if item else None))
        if not isinstance(raw_policy, dict):
            raise _bad("Property policy is required and must be a JSON object.")
        now = _now()
        policy = _normalize_policy(raw_policy, now)
        issuer = policy["issuer"]["name"]
        if issuer.lower() not in ("unknown", "self"):
            raise _bad(f"Issuer {issuer!r} is not configured in this vault; use 'Unknown' or 'Self'.")
        key_props, x509_props = policy["key_props"], policy["x509_props"]
        _refuse_hsm(vault, key_props["kty"])
        if not x509_props.get("subject") and not (x509_props.get("sans") or {}).get("dns_names"):
            raise _bad("Property policy.x509_props needs a subject or subject alternative names.")
        reuse = None
        if item is not None and key_props.get("reuse_key") and item.current:
            reuse = item.versions[item.current].key_pem
        try:
            key = kvcrypto.key_from_pem(reuse) if reuse else self._unlocked(
                lambda: kvcrypto.generate_key(key_props["kty"], key_props.get("key_size"), key_props.get("crv")))
            csr = kvcrypto.build_csr(key, x509_props)
        except kvcrypto.CryptoInputError as exc:
            raise _bad(str(exc)) from None
        item = self._creatable_certificate(vault, name)  # again: another request may have won meanwhile
        attrs = body.get("attributes") or {}
        # Until merged the version is disabled and carries the validity it was planned with, as in Key Vault.
        planned = int(x509_props.get("validity_months", 12)) * 365 * 86400 // 12
        version = Version(uuid.uuid4().hex, now, now, enabled=False, nbf=now - 600, exp=now + planned,
                          key_pem=kvcrypto.key_to_pem(key), kty=key_props["kty"],
                          tags={str(k): str(t) for k, t in (body.get("tags") or {}).items()})
        if item is None:
            item = vault.certificates[name.lower()] = Item(name)
        item.policy = policy
        item.versions[version.version] = version
        request_id = uuid.uuid4().hex
        item.pending = {"version": version.version, "issuer": {"name": issuer},
                        "csr": base64.b64encode(csr).decode(), "cancellation_requested": False,
                        "status": "inProgress",
                        "status_details": "Pending certificate created. Please Perform Merge to complete the request.",
                        "request_id": request_id}
        if issuer.lower() == "self":
            start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
            der = kvcrypto.self_signed(key, x509_props, start,
                                       start + dt.timedelta(days=30 * int(x509_props.get("validity_months", 12))))
            self._complete(item, version, [x509.load_der_x509_certificate(der)], attrs)
            item.pending.update(status="completed", status_details=None,
                                target=f"{vault.info.url}/certificates/{item.name}")
        op = self._pending_json(vault, item)
        location = (f"{vault.info.url}/certificates/{item.name}/pending?"
                    f"api-version={request.query.get('api-version')}&request_id={request_id}")
        return Response.of_json(202, op, {"Location": location, "Retry-After": "10"})

    @staticmethod
    def _complete(item: Item, version: Version, chain: list[x509.Certificate], attrs: dict[str, Any]) -> None:
        version.chain = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]
        version.nbf = int(chain[0].not_valid_before_utc.timestamp())
        version.exp = int(chain[0].not_valid_after_utc.timestamp())
        version.enabled = bool(attrs.get("enabled", True))
        version.updated = _now()
        item.current = version.version

    def _pending_item(self, vault: Vault, name: str) -> Item:
        item = vault.certificates.get(name.lower())
        if item is None or item.deleted is not None or item.pending is None:
            raise KvError(404, "PendingCertificateNotFound", f"Pending Certificate not found: {name}")
        return item

    def _get_pending(self, vault: Vault, route: _Route, body: Any, request: Request) -> Response:
        return Response.of_json(200, self._pending_json(vault, self._pending_item(vault, route.name or "")),
                                {"Retry-After": "10"})

    def _cancel_pending(self, vault: Vault, route: _Route, body: dict[str, Any], request: Request) -> Response:
        item = self._pending_item(vault, route.name or "")
        if body.get("cancellation_requested") is not True:
            raise _bad("Property cancellation_requested must be true.")
        assert item.pending is not None
        if item.pending["status"] != "inProgress":
            return Response.of_json(200, self._pending_json(vault, item))
        # Key Vault acknowledges the request with the operation still in progress; it reads "cancelled" afterwards.
        item.pending["cancellation_requested"] = True
        answer = self._pending_json(vault, item)
        item.pending["status"] = "cancelled"
        item.pending.pop("status_details", None)
        return Response.of_json(200, answer)

    def _delete_pending(self, vault: Vault, route: _Route, body: Any, request: Request) -> Response:
        item = self._pending_item(vault, route.name or "")
        op = self._pending_json(vault, item)
        assert item.pending is not None
        item.pending = None  # a never-completed version stays, disabled, as in Key Vault
        return Response.of_json(200, op)

    def _merge(self, vault: Vault, route: _Route, body: dict[str, Any], request: Request) -> Response:
        item = self._pending_item(vault, route.name or "")
        assert item.pending is not None
        if item.pending["status"] != "inProgress":
            raise _bad(f"The pending operation of certificate {item.name} is {item.pending['status']}; "
                       "it cannot be merged.")
        try:
            chain = kvcrypto.decode_merge_chain(body.get("x5c"))
        except kvcrypto.CryptoInputError as exc:
            raise _bad(str(exc)) from None
        version = item.versions[item.pending["version"]]
        key = kvcrypto.key_from_pem(version.key_pem or "")
        if kvcrypto.public_der(chain[0].public_key()) != kvcrypto.public_der(key.public_key()):
            raise _bad("Public key from x509 certificate and key of this instance doesn't match")
        self._complete(item, version, chain, body.get("attributes") or {})
        if isinstance(body.get("tags"), dict):
            version.tags = {str(k): str(t) for k, t in body["tags"].items()}
        # Key Vault keeps the completed operation (GET .../pending answers it, with the certificate as its target)
        # until the next create or a DELETE of it; the certificate's bundle links it meanwhile.
        item.pending.update(status="completed", target=f"{vault.info.url}/certificates/{item.name}")
        item.pending.pop("status_details", None)
        bundle = self._bundle(vault, "certificates", item, version, False, request)
        return Response.of_json(201, bundle, {"Location": f"{vault.info.url}/certificates/{item.name}/pending"})

    def _get_policy(self, vault: Vault, route: _Route, body: Any, request: Request) -> Response:
        item = self._item(vault, "certificates", route.name or "")
        return Response.of_json(200, self._policy_json(vault, item))

    def _update_policy(self, vault: Vault, route: _Route, body: dict[str, Any], request: Request) -> Response:
        item = self._item(vault, "certificates", route.name or "")
        item.policy = _merge_policy(item.policy or {}, body)
        return Response.of_json(200, self._policy_json(vault, item))

    # -- keys and secrets -----------------------------------------------------------------------------
    def _create_key(self, vault: Vault, route: _Route, body: dict[str, Any], request: Request) -> Response:
        name = route.name or ""
        item = self._check_new(vault, "keys", name)
        kty = body.get("kty")
        if not isinstance(kty, str):
            raise _bad("Property kty is required.")
        _refuse_hsm(vault, kty)
        try:
            key = self._unlocked(lambda: kvcrypto.generate_key(kty, body.get("key_size"), body.get("crv")))
        except kvcrypto.CryptoInputError as exc:
            raise _bad(str(exc)) from None
        item = self._check_new(vault, "keys", name)
        item, version = _add_version(vault.keys, item, name, body, key_pem=kvcrypto.key_to_pem(key), kty=kty,
                                     key_ops=list(body.get("key_ops") or _default_ops(kty)))
        return Response.of_json(200, self._bundle(vault, "keys", item, version, False, request))

    def _sign(self, vault: Vault, route: _Route, body: dict[str, Any], request: Request) -> Response:
        item, v, _ = self._resolve(vault, "keys", route.name or "", route.version)
        ops = v.key_ops or _default_ops(v.kty or kvcrypto.public_jwk(kvcrypto.key_from_pem(v.key_pem or ""))["kty"])
        if not v.enabled:
            raise KvError(403, "Forbidden", "Operation sign is not allowed on a disabled key.", "KeyDisabled")
        if "sign" not in ops:
            raise KvError(403, "Forbidden", "Operation sign is not permitted on this key.", "KeyOperationForbidden")
        alg, value = body.get("alg"), body.get("value")
        if not isinstance(alg, str) or not isinstance(value, str):
            raise _bad("Properties alg and value are required.")
        try:
            signature = kvcrypto.sign_digest(kvcrypto.key_from_pem(v.key_pem or ""), alg,
                                             kvcrypto.b64url_decode(value))
        except (kvcrypto.CryptoInputError, ValueError) as exc:
            raise _bad(str(exc)) from None
        return Response.of_json(200, {"kid": f"{vault.info.url}/keys/{item.name}/{v.version}",
                                      "value": kvcrypto.b64url(signature)})

    def _set_secret(self, vault: Vault, route: _Route, body: dict[str, Any], request: Request) -> Response:
        name = route.name or ""
        item = self._check_new(vault, "secrets", name)
        value = body.get("value")
        if not isinstance(value, str):
            raise _bad("Property value is required and must be a string.")
        item, version = _add_version(vault.secrets, item, name, body, value=value,
                                     content_type=body.get("contentType"))
        return Response.of_json(200, self._bundle(vault, "secrets", item, version, False, request))


def _add_version(collection: dict[str, Item], item: Item | None, name: str, body: dict[str, Any],
                 **fields: Any) -> tuple[Item, Version]:
    """A new current version of a key or secret (the item made on first use), with the request's attributes
    and tags."""
    now, attrs = _now(), body.get("attributes") or {}
    version = Version(uuid.uuid4().hex, now, now, enabled=bool(attrs.get("enabled", True)), nbf=attrs.get("nbf"),
                      exp=attrs.get("exp"), tags={str(k): str(t) for k, t in (body.get("tags") or {}).items()},
                      **fields)
    if item is None:
        item = collection[name.lower()] = Item(name)
    item.versions[version.version] = version
    item.current = version.version
    return item, version


def _refuse_hsm(vault: Vault, kty: str) -> None:
    """A standard vault keeps software keys only; its refusal in Key Vault's words (status not measured)."""
    if kty.upper().endswith("-HSM") and vault.info.sku != "premium":
        raise _bad("Hardware key operation not allowed on standard vault")


def _default_ops(kty: str) -> list[str]:
    if kty.upper().startswith("EC"):
        return ["sign", "verify"]
    return ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]


def _normalize_policy(raw: dict[str, Any], now: int) -> dict[str, Any]:
    """The policy as Key Vault stores it: every section present, Key Vault's defaults filled in."""
    key_props = dict(raw.get("key_props") or {})
    kty = key_props.get("kty") or ("EC" if key_props.get("crv") else "RSA")
    key_props["kty"] = kty
    key_props.setdefault("exportable", True)
    key_props.setdefault("reuse_key", False)
    if kty.upper().startswith("RSA"):
        key_props.setdefault("key_size", 2048)
    else:
        key_props.setdefault("crv", "P-256")
    x509_props = dict(raw.get("x509_props") or {})
    x509_props.setdefault("sans", {})
    x509_props.setdefault("ekus", list(kvcrypto.DEFAULT_EKUS))
    x509_props.setdefault("key_usage", ["digitalSignature", "keyEncipherment"] if kty.upper().startswith("RSA")
                          else ["digitalSignature"])
    x509_props.setdefault("validity_months", 12)
    x509_props.setdefault("basic_constraints", {"ca": False})
    issuer = dict(raw.get("issuer") or {})
    if not isinstance(issuer.get("name"), str):
        raise _bad("Property policy.issuer.name is required.")
    renewal = "EmailContacts" if issuer["name"].lower() == "unknown" else "AutoRenew"
    return {
        "key_props": key_props,
        "secret_props": dict(raw.get("secret_props") or {"contentType": PFX}),
        "x509_props": x509_props,
        "lifetime_actions": list(raw.get("lifetime_actions")
                                 or [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": renewal}}]),
        "issuer": issuer,
        "attributes": {"enabled": True, "created": now, "updated": now},
    }


def _merge_policy(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for section in ("key_props", "secret_props", "x509_props", "issuer"):
        if isinstance(update.get(section), dict):
            merged[section] = {**merged.get(section, {}), **update[section]}
    if isinstance(update.get("lifetime_actions"), list):
        merged["lifetime_actions"] = update["lifetime_actions"]
    attrs = dict(merged.get("attributes") or {})
    if isinstance(update.get("attributes"), dict) and "enabled" in update["attributes"]:
        attrs["enabled"] = bool(update["attributes"]["enabled"])
    attrs["updated"] = _now()
    merged["attributes"] = attrs
    return merged

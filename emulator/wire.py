"""The request/response types every emulated service handler speaks (HTTP parsing lives in the proxy)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Principal:
    """Who a bearer token says is calling: the app (client) id and the audience it was issued for."""

    app_id: str
    tenant_id: str
    audience: str  # "https://vault.azure.net" or "https://management.azure.com"


@dataclass(frozen=True)
class Request:
    method: str
    host: str  # lower-case, without port
    path: str  # percent-decoded path, without query
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""
    principal: Principal | None = None  # set by the proxy when a valid bearer token came with it

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> "Response":
        h = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        return cls(status, json.dumps(payload).encode(), h)

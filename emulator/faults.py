"""Faults on demand: throttling, server errors, latency and Key Vault's read-only failover mode, matched per host,
path and method, for a number of calls (or until cleared)."""
from __future__ import annotations

import fnmatch
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from .wire import Request, Response

KINDS = ("status", "latency", "readonly")
_WRITES = ("POST", "PUT", "PATCH", "DELETE")
# Key Vault's cryptographic operations are POSTs that keep working while the vault is read-only.
_READ_POSTS = ("/sign", "/verify", "/encrypt", "/decrypt", "/wrapkey", "/unwrapkey")


@dataclass
class Fault:
    id: str
    kind: str = "status"  # "status": answer with `status`; "latency": delay, then serve; "readonly": reject writes
    host: str = "*"  # glob on the host name, e.g. "*.vault.azure.net"
    path: str = "*"  # glob on the decoded path, case-insensitive, e.g. "/certificates/*/pending/merge"
    method: str = "*"  # glob too: "[PD]*" is PUT, PATCH, POST and DELETE
    status: int = 429
    retry_after: int | None = None  # seconds; 429 defaults to 1
    latency_ms: int = 0
    remaining: int | None = None  # calls left to affect; None until cleared
    skip: int = 0  # matching calls still to let through before the fault starts (a fault mid-operation)

    def matches(self, request: Request) -> bool:
        if not fnmatch.fnmatchcase(request.host.lower(), self.host.lower()):
            return False
        if not fnmatch.fnmatchcase(request.path.lower(), self.path.lower()):
            return False
        if not fnmatch.fnmatchcase(request.method.upper(), self.method.upper()):
            return False
        if self.kind == "readonly":
            return request.method in _WRITES and not request.path.lower().endswith(_READ_POSTS)
        return True


class FaultInjector:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._next = 1

    def add(self, **spec: Any) -> Fault:
        if spec.get("kind", "status") not in KINDS:
            raise ValueError(f"fault kind must be one of {KINDS}")
        with self._lock:
            fault = Fault(id=f"fault-{self._next}", **{k: v for k, v in spec.items() if k != "id"})
            self._next += 1
            if fault.kind == "readonly" and "status" not in spec:
                fault.status = 503
            self._faults.append(fault)
        return fault

    def remove(self, fault_id: str) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def clear(self) -> None:
        with self._lock:
            self._faults = []

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def apply(self, request: Request) -> Response | None:
        """The response a matching fault forces, or None to serve normally (after any injected latency)."""
        with self._lock:
            fault = next((f for f in self._faults if f.matches(request)), None)
            if fault is None:
                return None
            if fault.skip > 0:
                fault.skip -= 1
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
        if fault.kind == "latency":
            time.sleep(fault.latency_ms / 1000)
            return None
        return _fault_response(fault, request)


def _fault_response(fault: Fault, request: Request) -> Response:
    headers: dict[str, str] = {}
    if fault.kind == "readonly":
        # As Key Vault words it (seen in the field: 503 ServiceUnavailable, 'Operation "SecretSet" is
        # unavailable: the service is currently in a read-only state.').
        code, message = "ServiceUnavailable", (f'Operation "{operation_name(request)}" is unavailable: the service is '
                                               "currently in a read-only state.")
    elif fault.status == 429:
        code, message = ("Throttled" if request.host.endswith(".vault.azure.net") else "TooManyRequests",
                         "Request was not processed because too many requests were received.")
        headers["Retry-After"] = str(fault.retry_after if fault.retry_after is not None else 1)
    elif fault.status == 503:
        code, message = "ServiceUnavailable", "The service is temporarily unavailable."
    else:
        code, message = "InternalServerError", "The server encountered an internal error."
    if fault.retry_after is not None:
        headers["Retry-After"] = str(fault.retry_after)
    return Response.of_json(fault.status, {"error": {"code": code, "message": message}}, headers)


_KINDS = {"certificates": "Certificate", "keys": "Key", "secrets": "Secret"}
_VERBS = {"PUT": "Set", "PATCH": "Update", "DELETE": "Delete", "POST": "Create"}


def operation_name(request: Request) -> str:
    """Key Vault's name for a write, as its audit log and errors use it: SecretSet, CertificateCreate, ..."""
    segs = [s for s in request.path.split("/") if s]
    collection = segs[0].lower() if segs else ""
    kind = _KINDS.get(collection.removeprefix("deleted"), "Vault")
    last = segs[-1].lower() if segs else ""
    if last == "merge":
        return f"{kind}PendingMerge"
    if last in ("recover", "import", "restore", "backup"):
        return f"{kind}{last.capitalize()}"
    if collection.startswith("deleted") and request.method == "DELETE":
        return f"{kind}Purge"
    return f"{kind}{_VERBS.get(request.method, request.method.capitalize())}"

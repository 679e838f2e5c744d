"""What the engine tells an observer after each issuance, renewal and revocation.

Metrics (Prometheus text files, OpenTelemetry) live at the edges (the CLI); the engine only knows this
tiny interface, so it carries no metrics library and the Pulumi provider can observe the same way. An
observer must be quick and must not raise: the engine logs and ignores its errors, because a metrics
problem must never fail or repeat a certificate operation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .model import CertificateFacts

OPERATIONS = ("issue", "renew", "revoke")


@dataclass(frozen=True)
class Operation:
    """One finished engine operation: what, on which certificate, when, how long, and how it ended."""

    kind: str  # one of OPERATIONS
    vault_url: str
    certificate: str
    started_at: float  # seconds since the epoch
    duration_s: float
    failure: str | None = None  # None: it succeeded; else the error's class name (the failure reason)
    facts: CertificateFacts | None = None  # what it left in Key Vault, when it succeeded

    @property
    def ok(self) -> bool:
        return self.failure is None


class Observer(Protocol):
    def operation(self, op: Operation) -> None: ...


def failure_reason(error: BaseException) -> str:
    """The reason label of a failure: the error's class (errors are classes, certbot style), a short
    bounded vocabulary that is safe as a metric label, unlike the message."""
    return type(error).__name__


class Observers:
    """Several observers as one (a metrics file and OpenTelemetry at the same time)."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers

    def operation(self, op: Operation) -> None:
        for observer in self.observers:
            observer.operation(op)

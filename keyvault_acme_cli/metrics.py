"""Prometheus metrics as a text file, for node-exporter's textfile collector (``--metrics-file PATH``).

A scheduled ``renew --due`` or ``fleet status`` is a batch job with no port to scrape; node-exporter reads
``*.prom`` files from a directory instead. The per-certificate gauges use cert-manager's metric names with
our prefix (``certmanager_certificate_expiration_timestamp_seconds`` becomes
``keyvault_acme_certificate_expiration_timestamp_seconds``), so dashboards and alert rules written for
cert-manager work after a rename. The counters (issuances, failures by reason, durations) continue from
the values already in the file, so each run adds to them and ``increase()`` sees every run, not a reset.

prometheus-client renders and parses the format; nothing here writes exposition syntax by hand.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from keyvault_acme.observe import Operation

PREFIX = "keyvault_acme_"
EXPIRATION = PREFIX + "certificate_expiration_timestamp_seconds"
RENEWAL = PREFIX + "certificate_renewal_timestamp_seconds"
READY = PREFIX + "certificate_ready_status"
ISSUANCES = PREFIX + "issuances"  # counter: exposed as keyvault_acme_issuances_total
FAILURES = PREFIX + "failures"
DURATION = PREFIX + "operation_duration_seconds"
LAST_RUN = PREFIX + "last_run_timestamp_seconds"
# An issuance takes seconds against Pebble, a minute or more with a real CA and real name servers.
BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, math.inf)
CONDITIONS = ("True", "False", "Unknown")
CERTIFICATE_LABELS = ("name", "stack", "vault", "issuer")


@dataclass(frozen=True)
class CertificateMetric:
    """What the gauges say about one certificate; ``ready`` is cert-manager's Ready condition."""

    name: str
    stack: str
    vault: str
    issuer: str
    not_after: datetime | None
    renew_after: datetime | None
    ready: str  # "True", "False" or "Unknown"


def ready_condition(state: str) -> str:
    """cert-manager's Ready condition for a status state: True while the certificate serves (valid, or due and
    still valid), Unknown when it could not be read, False otherwise (missing, revoked, disabled, expired,
    outdated)."""
    return {"valid": "True", "due": "True", "error": "Unknown"}.get(state, "False")


class Recorder:
    """An engine observer that keeps the operations of this run for the file (thread-safe: the engine
    renews several certificates at once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._operations: list[Operation] = []

    def operation(self, op: Operation) -> None:
        with self._lock:
            self._operations.append(op)

    @property
    def operations(self) -> tuple[Operation, ...]:
        with self._lock:
            return tuple(self._operations)


_Key = tuple[str, tuple[tuple[str, str], ...]]  # (sample name, sorted labels)


def _run_samples(operations: Iterable[Operation]) -> dict[_Key, float]:
    """This run's counter and histogram samples, by sample name and labels."""
    samples: dict[_Key, float] = {}

    def add(sample: str, value: float, **labels: str) -> None:
        key = (sample, tuple(sorted(labels.items())))
        samples[key] = samples.get(key, 0.0) + value

    for op in operations:
        if op.ok and op.kind in ("issue", "renew"):
            add(ISSUANCES + "_total", 1, operation=op.kind, vault=op.vault_url.rstrip("/"), name=op.certificate)
        if not op.ok:
            add(FAILURES + "_total", 1, operation=op.kind, reason=str(op.failure))
        outcome = "success" if op.ok else "failure"
        for bound in BUCKETS:
            add(DURATION + "_bucket", 1 if op.duration_s <= bound else 0, operation=op.kind, outcome=outcome,
                le=_le(bound))
        add(DURATION + "_sum", op.duration_s, operation=op.kind, outcome=outcome)
        add(DURATION + "_count", 1, operation=op.kind, outcome=outcome)
    return samples


def _le(bound: float) -> str:
    # The exposition format's spelling of a bucket bound, as prometheus-client's parser gives it back.
    from prometheus_client.utils import floatToGoString
    return str(floatToGoString(bound))


def _previous_samples(path: Path) -> dict[_Key, float]:
    """The counter and histogram samples already in ``path``; an unreadable file starts them afresh."""
    from prometheus_client.parser import text_string_to_metric_families
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    samples: dict[_Key, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            if family.name not in (ISSUANCES, FAILURES, DURATION):
                continue
            for s in family.samples:
                if not s.name.endswith("_created"):
                    samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    except ValueError:  # not ours, or damaged: counters restart, which Prometheus reads as a reset
        return {}
    return samples


class _Collector:
    def __init__(self, certificates: Sequence[CertificateMetric], counters: dict[_Key, float],
                 now: datetime) -> None:
        self.certificates, self.counters, self.now = certificates, counters, now

    def collect(self) -> Iterator[object]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        expiration = GaugeMetricFamily(EXPIRATION, "The date after which the certificate expires, "
                                       "as seconds since the epoch.", labels=CERTIFICATE_LABELS)
        renewal = GaugeMetricFamily(RENEWAL, "The date after which the certificate is due for renewal, "
                                    "as seconds since the epoch.", labels=CERTIFICATE_LABELS)
        ready = GaugeMetricFamily(READY, "The ready status of the certificate (1 on its current condition).",
                                  labels=("condition", *CERTIFICATE_LABELS))
        for c in self.certificates:
            labels = [c.name, c.stack, c.vault.rstrip("/"), c.issuer]
            if c.not_after is not None:
                expiration.add_metric(labels, c.not_after.timestamp())
            if c.renew_after is not None:
                renewal.add_metric(labels, c.renew_after.timestamp())
            for condition in CONDITIONS:
                ready.add_metric([condition, *labels], 1.0 if c.ready == condition else 0.0)
        yield from (expiration, renewal, ready)

        for name, doc, label_names in (
                (ISSUANCES, "Certificates issued or renewed.", ("operation", "vault", "name")),
                (FAILURES, "Failed issue, renew and revoke operations, by the error's class.", ("operation", "reason"))):
            family = CounterMetricFamily(name, doc, labels=label_names)
            for (sample, pairs), value in sorted(self.counters.items()):
                if sample == name + "_total":
                    family.add_metric([dict(pairs)[k] for k in label_names], value)
            yield family
        yield self._durations(HistogramMetricFamily)
        last = GaugeMetricFamily(LAST_RUN, "When keyvault-acme last wrote this file, as seconds since the epoch.")
        last.add_metric([], self.now.timestamp())
        yield last

    def _durations(self, family_type: type) -> object:
        family = family_type(DURATION, "How long issue, renew and revoke took, in seconds.",
                             labels=("operation", "outcome"))
        series = sorted({(dict(k)["operation"], dict(k)["outcome"]) for n, k in self.counters
                         if n == DURATION + "_count"})
        for operation, outcome in series:
            def value(name: str, **extra: str) -> float:
                key = (name, tuple(sorted({"operation": operation, "outcome": outcome, **extra}.items())))
                return self.counters.get(key, 0.0)
            buckets = [(_le(b), value(DURATION + "_bucket", le=_le(b))) for b in BUCKETS]
            family.add_metric([operation, outcome], buckets=buckets, sum_value=value(DURATION + "_sum"))
        return family


def write_metrics_file(path: Path | str, certificates: Sequence[CertificateMetric],
                       operations: Iterable[Operation], now: datetime) -> None:
    """Write (atomically: node-exporter must never read half a file) the gauges of ``certificates`` and the
    counters of ``operations`` added to those already in ``path``."""
    from prometheus_client import CollectorRegistry, write_to_textfile

    path = Path(path)
    counters = _previous_samples(path)
    for key, value in _run_samples(operations).items():
        counters[key] = counters.get(key, 0.0) + value
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(certificates, counters, now))  # type: ignore[arg-type]
    write_to_textfile(str(path), registry)

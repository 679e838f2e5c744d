"""OpenTelemetry traces and metrics of each engine operation, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

The OpenTelemetry SDK and its OTLP exporter do the work (endpoint, headers, TLS and timeouts come from the
standard ``OTEL_*`` variables); this module only turns an :class:`~keyvault_acme.observe.Operation` into a
span and two instruments. Everything OpenTelemetry is imported on first use: a CLI run without the
variable never loads it (start-up time).
"""
from __future__ import annotations

import os
from typing import Any

from keyvault_acme.observe import Operation

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
SERVICE = "keyvault-acme"


class TelemetryError(Exception):
    """The OTEL_* settings ask for something this installation cannot do; the message says what to install."""


class OtelObserver:
    """An engine observer that records each operation as a span, a counter and a duration histogram."""

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        from opentelemetry.trace import SpanKind

        self._tracer_provider, self._meter_provider = tracer_provider, meter_provider
        self._kind = SpanKind.INTERNAL
        self._tracer = tracer_provider.get_tracer("keyvault_acme")
        meter = meter_provider.get_meter("keyvault_acme")
        self._issuances = meter.create_counter("keyvault_acme.issuances", unit="{certificate}",
                                               description="Certificates issued or renewed")
        self._failures = meter.create_counter("keyvault_acme.failures", unit="{operation}",
                                              description="Failed issue, renew and revoke operations, by reason")
        self._duration = meter.create_histogram("keyvault_acme.operation.duration", unit="s",
                                                description="How long issue, renew and revoke took")

    def operation(self, op: Operation) -> None:
        from opentelemetry.trace import Status, StatusCode

        attributes: dict[str, str] = {"keyvault_acme.operation": op.kind, "keyvault_acme.certificate": op.certificate,
                                      "keyvault_acme.vault": op.vault_url.rstrip("/")}
        if op.facts is not None:
            attributes.update({"keyvault_acme.version": op.facts.version, "keyvault_acme.serial": op.facts.serial,
                               "keyvault_acme.not_after": op.facts.not_after.isoformat()})
        if op.failure:
            attributes["error.type"] = op.failure
        start_ns = int(op.started_at * 1e9)
        # The engine reports an operation when it ends, so the span is recorded with its real start and end.
        span = self._tracer.start_span(f"keyvault-acme {op.kind}", kind=self._kind, start_time=start_ns,
                                       attributes=attributes)
        span.set_status(Status(StatusCode.ERROR, op.failure) if op.failure else Status(StatusCode.OK))
        span.end(end_time=start_ns + int(op.duration_s * 1e9))

        labels = {"operation": op.kind, "outcome": "failure" if op.failure else "success"}
        self._duration.record(op.duration_s, labels)
        if op.failure:
            self._failures.add(1, {"operation": op.kind, "reason": op.failure})
        elif op.kind in ("issue", "renew"):
            self._issuances.add(1, {"operation": op.kind})

    def shutdown(self) -> None:
        """Export what is left before the process exits (a batch job lives for seconds)."""
        self._tracer_provider.shutdown()
        self._meter_provider.shutdown()


def observer_from_environment() -> OtelObserver | None:
    """An observer exporting over OTLP to ``OTEL_EXPORTER_OTLP_ENDPOINT``; None when it is not set.

    The process environment, not a mapping handed in: the SDK's exporters read their settings (endpoint,
    headers, certificates, timeout) from it themselves."""
    environ = os.environ
    if not environ.get(ENDPOINT):
        return None
    protocol = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        elif protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # type: ignore[no-redef]
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[no-redef]
        else:
            raise TelemetryError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: use grpc or http/protobuf")
    except ImportError as e:
        package = "opentelemetry-exporter-otlp-proto-http" if protocol == "http/protobuf" else "'keyvault-acme[otel]'"
        raise TelemetryError(f"{ENDPOINT} is set but OpenTelemetry cannot be loaded ({e}); pip install {package}, "
                             f"or unset {ENDPOINT}") from None
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", SERVICE)})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    # Exported at shutdown at the latest; the interval only matters for long runs (fleet-wide renewals).
    meter_provider = MeterProvider(resource=resource,
                                   metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
    return OtelObserver(tracer_provider, meter_provider)

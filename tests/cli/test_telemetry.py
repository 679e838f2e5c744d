"""OpenTelemetry: each engine operation becomes a span and metrics, exported over OTLP by the SDK."""
from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from concurrent import futures
from datetime import datetime, timezone
from typing import Iterator

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from keyvault_acme.observe import Operation
from keyvault_acme_cli.telemetry import OtelObserver, TelemetryError, observer_from_environment

VAULT = "https://kv-shop-prod.vault.azure.net"
T0 = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc).timestamp()


def test_spans_and_metrics_of_each_operation_with_the_sdk_in_memory():
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    observer = OtelObserver(tracer_provider, MeterProvider(metric_readers=[reader]))
    observer.operation(Operation("renew", VAULT, "www", T0, 12.5))
    observer.operation(Operation("issue", VAULT, "api", T0 + 20, 3.0, failure="DnsPropagationTimeout"))

    renew, issue = spans.get_finished_spans()
    assert renew.name == "keyvault-acme renew" and renew.status.status_code == StatusCode.OK
    assert renew.attributes["keyvault_acme.certificate"] == "www"
    assert renew.start_time == int(T0 * 1e9) and renew.end_time - renew.start_time == int(12.5e9)
    assert issue.status.status_code == StatusCode.ERROR and issue.attributes["error.type"] == "DnsPropagationTimeout"

    metrics = {m.name: m for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
               for m in sm.metrics}
    [issued] = metrics["keyvault_acme.issuances"].data.data_points
    assert issued.value == 1 and dict(issued.attributes) == {"operation": "renew"}
    [failed] = metrics["keyvault_acme.failures"].data.data_points
    assert dict(failed.attributes) == {"operation": "issue", "reason": "DnsPropagationTimeout"}
    durations = {p.attributes["outcome"]: p for p in metrics["keyvault_acme.operation.duration"].data.data_points}
    assert durations["success"].sum == 12.5 and durations["failure"].sum == 3.0


class Collector(trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer):
    """An OTLP/gRPC collector on loopback that keeps what it receives."""

    def __init__(self) -> None:
        self.endpoint = ""
        self.spans: list = []
        self.metrics: list = []
        self.lock = threading.Lock()

    def Export(self, request, context):
        with self.lock:
            if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
                self.spans += [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
                return trace_service_pb2.ExportTraceServiceResponse()
            self.metrics += [m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
            return metrics_service_pb2.ExportMetricsServiceResponse()


@contextlib.contextmanager
def collector_on_loopback(collector: Collector) -> Iterator[Collector]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    collector.endpoint = f"http://127.0.0.1:{port}"
    try:
        yield collector
    finally:
        server.stop(None)


@pytest.fixture
def collector():
    with collector_on_loopback(Collector()) as running:
        yield running


def test_the_otlp_exporter_sends_them_to_the_endpoint_in_the_environment(collector, monkeypatch):
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "grpc_proxy"):
        monkeypatch.delenv(proxy, raising=False)  # gRPC honours them; the collector is on loopback
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    observer = observer_from_environment()
    assert observer is not None
    observer.operation(Operation("renew", VAULT, "www", T0, 1.0))
    observer.shutdown()  # flushes both: what a short CLI run does before it exits
    assert [s.name for s in collector.spans] == ["keyvault-acme renew"]
    assert {"keyvault_acme.issuances", "keyvault_acme.operation.duration"} <= {m.name for m in collector.metrics}


def test_no_endpoint_no_opentelemetry_and_no_import_of_it(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert observer_from_environment() is None
    # The CLI's start-up must not pay for the SDK when nobody asked for it.
    code = ("import sys; from keyvault_acme_cli.telemetry import observer_from_environment as o; o(); "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_an_unknown_protocol_is_named(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
    with pytest.raises(TelemetryError, match="OTEL_EXPORTER_OTLP_PROTOCOL='carrier-pigeon'"):
        observer_from_environment()

"""The Prometheus text file: cert-manager's metric names under our prefix, counters that add up across runs,
read back with prometheus-client's own parser (what node-exporter's textfile collector accepts)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prometheus_client.parser import text_string_to_metric_families

from keyvault_acme.observe import Operation
from keyvault_acme_cli.metrics import CertificateMetric, Recorder, write_metrics_file

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
VAULT = "https://kv-shop-prod.vault.azure.net"


def parse(path):
    return {f.name: f for f in text_string_to_metric_families(path.read_text())}


def values(family, **match):
    return {s.name: s.value for s in family.samples if all(s.labels.get(k) == v for k, v in match.items())}


def certificates():
    return [
        CertificateMetric("www", "shop-prod", VAULT + "/", "R11", NOW + timedelta(days=50), NOW + timedelta(days=20), "True"),
        CertificateMetric("api", "shop-prod", VAULT, "R11", None, None, "False"),
    ]


def run(*ops: Operation) -> Recorder:
    recorder = Recorder()
    for op in ops:
        recorder.operation(op)
    return recorder


def test_certificate_gauges_use_cert_managers_names_and_ready_condition(tmp_path):
    path = tmp_path / "keyvault-acme.prom"
    write_metrics_file(path, certificates(), [], NOW)
    families = parse(path)

    expiry = families["keyvault_acme_certificate_expiration_timestamp_seconds"]
    assert expiry.type == "gauge"
    assert [(s.labels, s.value) for s in expiry.samples] == [
        ({"name": "www", "stack": "shop-prod", "vault": VAULT, "issuer": "R11"}, (NOW + timedelta(days=50)).timestamp())]
    renewal = families["keyvault_acme_certificate_renewal_timestamp_seconds"]
    assert [s.value for s in renewal.samples] == [(NOW + timedelta(days=20)).timestamp()]
    ready = families["keyvault_acme_certificate_ready_status"]
    assert {(s.labels["name"], s.labels["condition"]): s.value for s in ready.samples} == {
        ("www", "True"): 1, ("www", "False"): 0, ("www", "Unknown"): 0,
        ("api", "True"): 0, ("api", "False"): 1, ("api", "Unknown"): 0}
    assert families["keyvault_acme_last_run_timestamp_seconds"].samples[0].value == NOW.timestamp()


def test_counters_of_issuances_failures_and_durations_add_up_across_runs(tmp_path):
    path = tmp_path / "keyvault-acme.prom"
    first = run(Operation("renew", VAULT, "www", NOW.timestamp(), 42.0),
                Operation("issue", VAULT, "api", NOW.timestamp(), 3.0, failure="DnsPropagationTimeout"))
    write_metrics_file(path, certificates(), first.operations, NOW)
    second = run(Operation("renew", VAULT, "www", NOW.timestamp(), 7.5),
                 Operation("issue", VAULT, "api", NOW.timestamp(), 0.5, failure="DnsPropagationTimeout"),
                 Operation("revoke", VAULT, "www", NOW.timestamp(), 1.5, failure="CertificateExpired"))
    write_metrics_file(path, certificates(), second.operations, NOW + timedelta(hours=6))
    families = parse(path)

    issuances = families["keyvault_acme_issuances"]
    assert issuances.type == "counter"
    assert values(issuances, operation="renew", name="www", vault=VAULT) == {"keyvault_acme_issuances_total": 2}
    assert not values(issuances, operation="issue")  # the failed issue is no issuance
    failures = families["keyvault_acme_failures"]
    assert values(failures, operation="issue", reason="DnsPropagationTimeout") == {"keyvault_acme_failures_total": 2}
    assert values(failures, operation="revoke", reason="CertificateExpired") == {"keyvault_acme_failures_total": 1}

    durations = families["keyvault_acme_operation_duration_seconds"]
    assert durations.type == "histogram"
    renew = {(s.name, s.labels.get("le")): s.value for s in durations.samples
             if s.labels["operation"] == "renew" and s.labels["outcome"] == "success"}
    assert renew[("keyvault_acme_operation_duration_seconds_count", None)] == 2
    assert renew[("keyvault_acme_operation_duration_seconds_sum", None)] == 49.5
    assert renew[("keyvault_acme_operation_duration_seconds_bucket", "10.0")] == 1  # 7.5 s
    assert renew[("keyvault_acme_operation_duration_seconds_bucket", "60.0")] == 2  # and 42 s
    assert renew[("keyvault_acme_operation_duration_seconds_bucket", "+Inf")] == 2
    assert families["keyvault_acme_last_run_timestamp_seconds"].samples[0].value == (NOW + timedelta(hours=6)).timestamp()


def test_a_damaged_file_restarts_the_counters_instead_of_failing(tmp_path):
    path = tmp_path / "keyvault-acme.prom"
    path.write_text("this is { not prometheus\n")
    write_metrics_file(path, [], run(Operation("issue", VAULT, "www", NOW.timestamp(), 2.0)).operations, NOW)
    assert values(parse(path)["keyvault_acme_issuances"]) == {"keyvault_acme_issuances_total": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["keyvault-acme.prom"]  # written atomically, no leftovers

"""Fleet operations against the local world (emulator, Pebble, BIND): fleet status over several stack files,
the HTML report, the metrics file, and the renewer job's exact command."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from keyvault_acme_cli import cli
from tests.cli.conftest import ZONE, write_stack

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).parent / "keyvault-acme"


def rename(path: Path, workload: str, environment: str) -> Path:
    """The same stack file for another workload/environment (each stack its own vault and names)."""
    document = yaml.safe_load(path.read_text())
    document["config"]["keyvault-acme:workload"] = workload
    document["config"]["keyvault-acme:environment"] = environment
    target = path.with_name(f"Pulumi.{workload}-{environment}.yaml")
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    if target != path:
        path.unlink()
    return target


def make_stack(directory: Path, workload: str, environment: str, emulator, pebble, names: list[str]) -> Path:
    label = uuid.uuid4().hex[:8]
    host, port = emulator.dns_address
    path = write_stack(directory / "tmp.yaml", vault=f"kv{workload}{label}", directory_url=pebble.directory_url,
                       resolver=f"{host}:{port}",
                       certificates=[{"name": n, "dns_names": [f"{n}-{label}.{ZONE}"]} for n in names])
    return rename(path, workload, environment)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, cli_env, emulator, short_pebble):
    """Two stacks: shop-dev (www issued, api never issued) and blog-prod (www issued)."""
    directory = tmp_path_factory.mktemp("stacks")
    shop = make_stack(directory, "shop", "dev", emulator, short_pebble, ["www", "api"])
    blog = make_stack(directory, "blog", "prod", emulator, short_pebble, ["www"])
    for stack in (shop, blog):
        done = subprocess.run([str(SCRIPT), "--config", str(stack), "issue", "www"], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    return directory


def test_fleet_status_shows_every_stack_with_the_same_rows_as_status(capsys, fleet):
    code, out, err = run(capsys, "fleet", "status", "--stacks-dir", str(fleet), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["stack"], r["workload"], r["environment"], r["name"], r["state"]) for r in rows] == [
        ("shop-dev", "shop", "dev", "api", "missing"),  # what needs attention first, then the soonest expiry
        ("shop-dev", "shop", "dev", "www", "valid"), ("blog-prod", "blog", "prod", "www", "valid")]
    # No logic of its own: every row is what `status` says of that certificate in that stack.
    for stack in ("shop-dev", "blog-prod"):
        code, out, _ = run(capsys, "--config", str(fleet / f"Pulumi.{stack}.yaml"), "status", "--json")
        assert code == 0
        for single in json.loads(out):
            [row] = [r for r in rows if (r["stack"], r["name"]) == (stack, single["name"])]
            assert {k: row[k] for k in ("state", "not_after", "renew_after", "version")} == {
                k: single[k] for k in ("state", "not_after", "renew_after", "version")}
            assert row["decided_by"] == single.get("decided_by")


def test_fleet_status_exit_codes_are_statuss(capsys, fleet):
    code, out, err = run(capsys, "fleet", "status", "--stacks-dir", str(fleet), "--fail-within", "0")
    assert code == cli.EXIT_ATTENTION and "shop-dev/api (missing)" in err
    header, *lines = out.splitlines()
    assert header.split()[:5] == ["STACK", "WORKLOAD", "ENV", "NAME", "STATE"]
    assert len(lines) == 3 and all(len(line) <= 100 for line in [header, *lines])
    assert "\033[" not in out  # not a terminal: no colours


def test_a_bad_stack_file_is_a_row_and_exit_2_without_hiding_the_others(capsys, fleet, tmp_path):
    for source in fleet.glob("Pulumi.*.yaml"):
        (tmp_path / source.name).write_text(source.read_text())
    (tmp_path / "Pulumi.pay-prod.yaml").write_text("config:\n  keyvault-acme:workload: pay\n  keyvault-acme:colour: red\n")
    code, out, err = run(capsys, "fleet", "status", "--stacks-dir", str(tmp_path), "--json")
    assert code == cli.EXIT_USAGE and "keyvault-acme:colour" in err
    rows = json.loads(out)
    assert [(r["stack"], r["state"]) for r in rows][0] == ("pay-prod", "error")
    assert {(r["stack"], r["name"]) for r in rows[1:]} == {("shop-dev", "api"), ("shop-dev", "www"), ("blog-prod", "www")}


def test_report_writes_the_fleet_as_one_page(capsys, fleet, tmp_path):
    from tests.cli.test_report import Dom
    out_file = tmp_path / "report.html"
    code, out, err = run(capsys, "report", "--out", str(out_file), "--stacks-dir", str(fleet))
    assert code == 0, err
    assert out == f"wrote {out_file}: 3 certificates, 1 failing\n"
    dom = Dom(out_file.read_text())
    assert [(r["data-stack"], r["data-name"], r["data-state"]) for r in dom.rows] == [
        ("shop-dev", "api", "missing"), ("shop-dev", "www", "valid"), ("blog-prod", "www", "valid")]
    assert len(dom.bars) == 2 and dom.references == []


def test_metrics_file_of_a_renewal_run(capsys, fleet, tmp_path):
    stack = fleet / "Pulumi.shop-dev.yaml"
    metrics = tmp_path / "keyvault-acme.prom"
    code, _, err = run(capsys, "--config", str(stack), "--metrics-file", str(metrics), "renew", "--due")
    assert code == 0, err  # issues api, the one that is missing; www is not due
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    issued = {(s.labels["operation"], s.labels["name"]): s.value for s in families["keyvault_acme_issuances"].samples
              if s.name.endswith("_total")}
    assert issued == {("issue", "api"): 1}
    expiry = {s.labels["name"]: s for s in families["keyvault_acme_certificate_expiration_timestamp_seconds"].samples}
    assert set(expiry) == {"www", "api"} and all(s.labels["stack"] == "shop-dev" for s in expiry.values())
    ready = {(s.labels["name"], s.labels["condition"]) for s in families["keyvault_acme_certificate_ready_status"].samples
             if s.value == 1}
    assert ready == {("www", "True"), ("api", "True")}
    durations = families["keyvault_acme_operation_duration_seconds"]
    assert [s.value for s in durations.samples if s.name.endswith("_count")] == [1]


def test_the_renewer_jobs_exact_command_renews_from_the_stack_file_it_is_given(tmp_path, cli_env, emulator,
                                                                            short_pebble):
    """The command and stack file the component gives the job (under mocks), run here against the local world:
    the only change is where the secret volume is (a temporary directory instead of /etc/keyvault-acme)."""
    from keyvault_acme_pulumi.components import CertificateWorkload
    from keyvault_acme_stack.renewer import MOUNT
    from keyvault_acme_stack.workload import parse_workload_config, read_stack_file
    from tests.component import harness

    path = make_stack(tmp_path, "renew", "job", emulator, short_pebble, ["www"])
    values = read_stack_file(path)
    values.update(
        monitoring={"workspace_id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
                                    "Microsoft.OperationalInsights/workspaces/log-renew-job"},
        issuer={"principal_id": "00000000-0000-0000-0000-0000000155e1", "client_id": cli_env["AZURE_CLIENT_ID"],
                "resource_id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
                               "Microsoft.ManagedIdentity/userAssignedIdentities/id-renew-job-issuer"},
        renewer={"image": "crshop.azurecr.io/keyvault-acme:0.1.0"})
    cfg = parse_workload_config(values)
    deployed = harness.run(lambda: CertificateWorkload(cfg.stack_name, cfg).outputs, stack=cfg.stack_name,
                           config={}, subscription_id=cfg.subscription_id)
    job = deployed.one("azure-native:app:Job")
    [container] = job.inputs["template"]["containers"]
    [secret] = job.inputs["configuration"]["secrets"]
    [volume] = job.inputs["template"]["volumes"]
    [mount] = container["volumeMounts"]
    assert mount["mountPath"] == MOUNT
    mounted = tmp_path / "secret-volume"
    mounted.mkdir()
    (mounted / volume["secrets"][0]["path"]).write_text(secret["value"])
    command = [str(mounted) + arg[len(MOUNT):] if arg.startswith(MOUNT + "/") else arg for arg in container["command"]]
    assert command[0] == "keyvault-acme"
    # The job's environment, plus the app secret that stands in for its managed identity here.
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"]}}
    first = subprocess.run([str(SCRIPT), *command[1:]], capture_output=True, text=True, timeout=180, env=env)
    assert first.returncode == 0, first.stderr
    [line] = [json.loads(x) for x in first.stdout.splitlines()]
    assert (line["keyvault-acme"], line["stack"], line["certificate"], line["result"], line["state"]) == (
        "renew", "renew-job", "www", "issued", "valid")
    assert line["renew_after"] and line["not_after"] and line["error"] is None
    again = subprocess.run([str(SCRIPT), *command[1:]], capture_output=True, text=True, timeout=180, env=env)
    assert again.returncode == 0, again.stderr
    [line2] = [json.loads(x) for x in again.stdout.splitlines()]
    # Not due yet: nothing issued, and the line still carries the date the overdue alert compares with.
    assert (line2["result"], line2["renew_after"], line2["version"]) == ("not-due", line["renew_after"], line["version"])


def test_metrics_file_of_the_fleet_has_every_stacks_certificates(capsys, fleet, tmp_path):
    metrics = tmp_path / "fleet.prom"
    code, _, err = run(capsys, "--metrics-file", str(metrics), "fleet", "status", "--stacks-dir", str(fleet))
    assert code == 0, err
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    ready = {(s.labels["stack"], s.labels["name"]): s.labels["condition"]
             for s in families["keyvault_acme_certificate_ready_status"].samples if s.value == 1}
    assert ready[("blog-prod", "www")] == "True" and ("shop-dev", "www") in ready and ("shop-dev", "api") in ready
    assert {s.labels["stack"] for s in families["keyvault_acme_certificate_expiration_timestamp_seconds"].samples} == {
        "shop-dev", "blog-prod"}


def test_a_failed_operation_is_counted_in_the_metrics_file(capsys, fleet, tmp_path):
    stack, metrics = fleet / "Pulumi.blog-prod.yaml", tmp_path / "failed.prom"
    other = tmp_path / "Pulumi.blog-prod.yaml"
    other.write_text(stack.read_text().replace("name: kvblog", "name: kvnone"))  # a fresh vault: nothing to revoke
    assert "kvnone" in other.read_text()
    code, _, err = run(capsys, "--config", str(other), "--metrics-file", str(metrics), "revoke", "www",
                       "--reason", "superseded")
    assert code == cli.EXIT_FAILED and "has no issued version to revoke" in err
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    [failure] = [s for s in families["keyvault_acme_failures"].samples if s.name.endswith("_total")]
    assert (failure.labels, failure.value) == ({"operation": "revoke", "reason": "CertificateNotFound"}, 1)


def test_opentelemetry_of_a_cli_run_reaches_the_collector(capsys, fleet, tmp_path, monkeypatch):
    from tests.cli.test_telemetry import Collector, collector_on_loopback

    with collector_on_loopback(Collector()) as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        code, _, err = run(capsys, "--config", str(fleet / "Pulumi.blog-prod.yaml"), "renew", "www")
        assert code == 0, err
        # The CLI flushed before returning: the span and the metrics are at the collector already.
        [span] = collector.spans
        assert span.name == "keyvault-acme renew"
        attributes = {a.key: a.value.string_value for a in span.attributes}
        assert attributes["keyvault_acme.certificate"] == "www" and attributes["keyvault_acme.version"]
        assert "keyvault_acme.issuances" in {m.name for m in collector.metrics}

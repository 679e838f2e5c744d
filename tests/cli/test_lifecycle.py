"""The CLI against the local world: real issuance through the engine, then status, renew --due, revoke."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from azure.identity import ClientSecretCredential
from azure.keyvault.certificates import CertificateClient
from cryptography import x509

from keyvault_acme.lifecycle import Engine
from keyvault_acme.renewal import ari_from_tags, due_at
from keyvault_acme_cli import cli
from keyvault_acme_cli.output import STATE_COLOURS
from keyvault_acme_stack.workload import load_stack_file
from tests.cli.conftest import VALIDITY_S

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).parent / "keyvault-acme"


def kvacme(capsys, stack: Path, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--config", str(stack), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def status_json(capsys, stack: Path, *names: str) -> dict[str, dict]:
    code, out, _ = kvacme(capsys, stack, "status", "--json", *names)
    assert code == 0
    return {row["name"]: row for row in json.loads(out)}


@pytest.fixture(scope="module")
def engine(cli_env) -> Engine:
    """The test's own view of Key Vault, through the same engine (and the same app) the CLI uses."""
    return Engine(ClientSecretCredential(cli_env["AZURE_TENANT_ID"], cli_env["AZURE_CLIENT_ID"],
                                         cli_env["AZURE_CLIENT_SECRET"]))


@pytest.fixture(scope="module")
def specs(stack):
    return {c.name: c.spec for c in load_stack_file(stack).certificates}


@pytest.fixture(scope="module")
def issued(stack, specs, engine):
    """`keyvault-acme issue` for two of the three certificates, as a separate process (the console script)."""
    for name in ("early", "late"):
        result = subprocess.run([str(SCRIPT), "--config", str(stack), "issue", name],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # not a terminal: no progress
        facts = engine.inspect(specs[name].vault_url, name)
        assert facts is not None
        assert result.stdout.startswith(f"issued {name}: version {facts.version}, serial {facts.serial}")
    return {name: engine.inspect(specs[name].vault_url, name) for name in ("early", "late")}


def test_check_passes_for_a_good_stack_and_creates_nothing(capsys, stack, specs, engine):
    from keyvault_acme.checks import STEPS

    code, out, _ = kvacme(capsys, stack, "check", "unissued")
    assert code == 0
    lines = out.splitlines()
    assert all(line.startswith("ok   unissued: ") for line in lines)
    # Every step of issue 6, in order: spec, credentials, vault, CA directory, profile, zones, NS, CAA.
    steps = list(dict.fromkeys(line.split(": ")[1] for line in lines))
    assert steps == [s for s in STEPS if s != "dns-persist-01 record"]  # a dns-01 certificate's steps
    assert engine.inspect(specs["unissued"].vault_url, "unissued") is None


def test_status_json_reports_what_key_vault_holds(capsys, stack, specs, issued, cli_env, engine):
    rows = status_json(capsys, stack)
    assert list(rows) == ["early", "late", "unissued"]
    for name, facts in issued.items():
        row = rows[name]
        assert (row["version"], row["serial"], row["thumbprint"]) == (facts.version, facts.serial, facts.thumbprint)
        assert row["not_after"] == facts.not_after.isoformat()
        # Pebble 2.10 offers ARI: its window decides (cached on the version by status), unless the certificate's
        # explicit policy wants it earlier ("early": 3 s after issue).
        window = ari_from_tags(engine.inspect(specs[name].vault_url, name).tags).window
        assert row["renew_after"] == due_at(facts, specs[name], window).isoformat()
        assert row["decided_by"] == {"early": "policy", "late": "ari"}[name]
        assert row["secret_id"] == f"{specs[name].vault_url}/secrets/{name}"
        assert 0 < row["days_left"] * 86400 <= VALIDITY_S + 1
        assert "Pebble" in row["issuer"]
    assert rows["unissued"]["state"] == "missing" and rows["unissued"]["version"] is None
    # What Key Vault itself says (through its own SDK) is what status printed.
    client = CertificateClient(specs["late"].vault_url, ClientSecretCredential(
        cli_env["AZURE_TENANT_ID"], cli_env["AZURE_CLIENT_ID"], cli_env["AZURE_CLIENT_SECRET"]))
    cert = x509.load_der_x509_certificate(bytes(client.get_certificate("late").cer))
    assert format(cert.serial_number, "x") == rows["late"]["serial"]


def test_status_table_has_a_row_per_certificate_and_fits_the_width(capsys, stack, issued, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = kvacme(capsys, stack, "status", "late", "unissued")
    assert code == 0
    header, late, unissued = out.splitlines()
    assert header.split() == ["NAME", "DNS", "NAMES", "VERSION", "NOT", "AFTER", "DAYS", "LEFT", "RENEW", "AFTER",
                              "ISSUER", "STATE"]
    assert late.startswith("late ") and issued["late"].version[:8] in late and late.endswith("valid")
    assert unissued.split()[0] == "unissued" and unissued.endswith("missing")
    assert "\033[" not in out  # not a terminal: no colours
    # Not a terminal and no COLUMNS: 100 columns; narrower, the least needed columns go first.
    for columns, kept in ((None, ["NAME", "DNS", "NAMES", "VERSION", "NOT", "AFTER", "DAYS", "LEFT", "RENEW", "AFTER",
                                  "STATE"]),
                          ("60", ["NAME", "DAYS", "LEFT", "RENEW", "AFTER", "STATE"])):
        if columns is None:
            monkeypatch.delenv("COLUMNS")
        else:
            monkeypatch.setenv("COLUMNS", columns)
        code, out, _ = kvacme(capsys, stack, "status", "late", "unissued")
        lines = out.splitlines()
        assert code == 0 and lines[0].split() == kept
        assert max(len(line) for line in lines) <= int(columns or 100)
        assert lines[1].endswith("valid") and lines[2].endswith("missing")


def test_fail_within_exits_3_only_when_a_certificate_needs_attention(capsys, stack, issued):
    code, _, err = kvacme(capsys, stack, "status", "late", "--fail-within", "0")
    assert (code, err) == (0, "")
    code, _, err = kvacme(capsys, stack, "status", "late", "--fail-within", "1")  # it lives 10 minutes, not a day
    assert code == cli.EXIT_ATTENTION and "late (valid)" in err
    code, _, err = kvacme(capsys, stack, "status", "--fail-within", "0")
    assert code == cli.EXIT_ATTENTION and "unissued (missing)" in err and "late" not in err


def test_renew_due_renews_exactly_what_is_due_and_issues_what_is_missing(capsys, stack, specs, issued, engine):
    early, late = issued["early"], issued["late"]
    # Real time passes until "early" is due (3 s after issue); "late" is due only 540 s after its issue.
    deadline = time.monotonic() + 60
    while status_json(capsys, stack, "early")["early"]["state"] != "due":
        assert time.monotonic() < deadline, "early never came due"
        time.sleep(0.2)

    code, out, err = kvacme(capsys, stack, "renew", "--due")
    assert code == 0, err
    renewed = engine.inspect(specs["early"].vault_url, "early")
    assert renewed.version != early.version and renewed.serial != early.serial
    assert engine.inspect(specs["late"].vault_url, "late").version == late.version
    assert engine.inspect(specs["unissued"].vault_url, "unissued") is not None
    lines = out.splitlines()
    assert any(line.startswith(f"renewed early: version {renewed.version}") for line in lines)
    assert any(line.startswith("late: not due (Up to date") for line in lines)
    assert any(line.startswith("issued unissued: ") for line in lines)

    rows = status_json(capsys, stack)
    assert {name: row["state"] for name, row in rows.items()} == {"early": "valid", "late": "valid",
                                                                  "unissued": "valid"}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_key_compromise_asks_for_confirmation_unless_yes(capsys, stack, specs, issued, engine, monkeypatch):
    before = engine.inspect(specs["late"].vault_url, "late")
    # No terminal to ask on (a pipeline): refused, pointing at --yes.
    code, out, err = kvacme(capsys, stack, "revoke", "late", "--reason", "keyCompromise")
    assert (code, out) == (cli.EXIT_USAGE, "") and "rerun with --yes" in err
    # A terminal: the wrong answer revokes nothing.
    monkeypatch.setattr("sys.stdin", Terminal("late-ish\n"))
    code, out, err = kvacme(capsys, stack, "revoke", "late", "--reason", "keyCompromise")
    assert code == cli.EXIT_USAGE and "Revoke late for keyCompromise?" in err and "not revoked" in err
    assert engine.inspect(specs["late"].vault_url, "late") == before  # still enabled, not revoked
    # Other reasons do not ask (superseded is the everyday one); checked on a name that does not exist.
    code, _, err = kvacme(capsys, stack, "revoke", "nosuch", "--reason", "superseded")
    assert code == cli.EXIT_USAGE and "no certificate 'nosuch'" in err


def test_colours_by_state_on_a_terminal(capsys, stack, issued, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert cli.main(["--config", str(stack), "status"]) == 0
    rows = terminal.getvalue().splitlines()[1:]
    assert len(rows) == 3 and "\033[32mvalid\033[0m" in rows[1]  # late: valid, green
    for row in rows:  # every state in its colour (red: needs someone; yellow: due or outdated; green: valid)
        state = row.rsplit("\033[", 1)[0].rsplit("m", 1)[1]
        assert row.endswith(f"{STATE_COLOURS[state]}{state}\033[0m")
    monkeypatch.setenv("NO_COLOR", "1")  # no-color.org
    terminal.seek(0), terminal.truncate()
    assert cli.main(["--config", str(stack), "status", "late"]) == 0
    assert "\033[" not in terminal.getvalue()


def test_revoke_revokes_at_the_ca_and_status_shows_it(capsys, stack, specs, issued, engine, short_pebble):
    before = engine.inspect(specs["late"].vault_url, "late")
    code, out, err = kvacme(capsys, stack, "revoke", "late", "--reason", "keyCompromise", "--verbose", "--yes")
    assert code == 0, err
    # --verbose shows the CLI's steps and the engine's, timed, on stderr
    progress = err.splitlines()
    assert progress[0].endswith("] late: revoking (keyCompromise)")
    assert any(f"revoked {before.id} version {before.version}" in line for line in progress), progress
    assert out == f"revoked late: serial {before.serial} (keyCompromise), version disabled in Key Vault\n"
    assert short_pebble.cert_status(before.serial) == "Revoked"
    after = engine.inspect(specs["late"].vault_url, "late")
    assert not after.enabled and after.version == before.version
    row = status_json(capsys, stack, "late")["late"]
    assert row["state"] == "revoked" and row["revoked_reason"] == "keyCompromise"
    code, _, err = kvacme(capsys, stack, "status", "late", "--fail-within", "0")
    assert code == cli.EXIT_ATTENTION and "late (revoked)" in err
    # A revoked certificate is re-issued by the next run: no RENEW AFTER in the future.
    assert row["renew_after"] is None or datetime.fromisoformat(row["renew_after"]) <= datetime.now(timezone.utc)
    code, out, _ = kvacme(capsys, stack, "status", "late")
    [table_row] = [line for line in out.splitlines() if line.startswith("late ")]
    assert table_row.split()[-1] == "revoked" and " - " in table_row
    # Revoking again with another reason: the CA had already revoked it; the first reason stays recorded.
    code, out, err = kvacme(capsys, stack, "revoke", "late", "--reason", "superseded")
    assert code == 0, err
    assert "already revoked" in out and "keyCompromise" in out and "superseded" in out
    assert engine.inspect(specs["late"].vault_url, "late").revoked_reason == "keyCompromise"


def test_an_operation_that_fails_is_one_line_exit_1(capsys, tmp_path, stack, issued):
    # A certificate never issued in a fresh vault: nothing to revoke; the engine says so, the CLI prints one line.
    other = tmp_path / "Pulumi.other.yaml"
    other.write_text(stack.read_text().replace("kvcli", "kvcl2"))
    code, out, err = kvacme(capsys, other, "revoke", "early", "--reason", "superseded")
    assert code == cli.EXIT_FAILED and out == ""
    [line] = err.splitlines()
    assert line.startswith("keyvault-acme: error: ") and "has no issued version to revoke" in line


def test_check_names_the_failing_step_for_an_identity_without_roles(capsys, stack, emulator, monkeypatch):
    nobody = emulator.admin.add_client(name="cli-no-roles")
    monkeypatch.setenv("AZURE_CLIENT_ID", nobody["client_id"])
    monkeypatch.setenv("AZURE_CLIENT_SECRET", nobody["secret"])
    code, out, _ = kvacme(capsys, stack, "check", "early", "late")
    assert code == cli.EXIT_FAILED
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    # The identity signs in, but may neither read the vault, nor write the zone, nor read its name servers.
    steps = ["vault", "zones writable", "NS delegation"]
    assert [line.split(": ")[:2] for line in failures] == [[f"FAIL {c}", s] for c in ("early", "late") for s in steps]
    assert all("403" in line or "forbidden" in line.lower() or "permission" in line.lower() for line in failures)
    assert all("; fix: " in line for line in failures)
    # The hint is said once, as the fix, not again inside the finding.
    for line in failures:
        finding, fix = line.split("; fix: ", 1)
        assert fix not in finding, line
    assert "ok   early: credentials: " in out


def test_unusable_credentials_say_how_to_sign_in(capsys, stack, monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-the-secret")
    code, out, err = kvacme(capsys, stack, "status")
    assert code == cli.EXIT_FAILED and out == ""
    [line] = err.splitlines()
    assert line.startswith("keyvault-acme: error: ") and "az login" in line and "AZURE_CLIENT_ID" in line


def test_renew_due_isolates_a_failing_certificate(capsys, tmp_path, emulator, short_pebble, cli_env, engine):
    from tests.cli.conftest import ZONE, write_stack

    label = uuid.uuid4().hex[:8]
    host, port = emulator.dns_address
    vault = f"kvfail{label}"
    stack = write_stack(tmp_path / "Pulumi.fail.yaml", vault=vault, directory_url=short_pebble.directory_url,
                        resolver=f"{host}:{port}", certificates=[
                            {"name": "broken", "dns_names": [f"broken-{label}.{ZONE}"]},
                            {"name": "fine", "dns_names": [f"fine-{label}.{ZONE}"]}])
    # Key Vault refuses every call on one certificate (403 is not retried); the other must still be issued.
    fault = emulator.admin.add_fault("status", host=f"{vault}.vault.azure.net", path="/certificates/broken*",
                                     status=403)
    try:
        code, out, err = kvacme(capsys, stack, "renew", "--due")
    finally:
        emulator.admin.remove_fault(fault["id"])
    assert code == cli.EXIT_FAILED
    assert out.startswith("issued fine: version ")
    [line] = err.splitlines()
    assert line.startswith("keyvault-acme: error: broken: ") and "403" in line
    assert engine.inspect(f"https://{vault}.vault.azure.net", "fine") is not None


def test_a_terminal_sees_the_engine_wait_for_propagation_and_validation(capsys, tmp_path, emulator, short_pebble,
                                                                        cli_env):
    from tests.cli.conftest import ZONE, write_stack

    label = uuid.uuid4().hex[:8]
    host, port = emulator.dns_address
    stack = write_stack(tmp_path / "Pulumi.progress.yaml", vault=f"kvprog{label}",
                        directory_url=short_pebble.directory_url, resolver=f"{host}:{port}",
                        certificates=[{"name": "shown", "dns_names": [f"shown-{label}.{ZONE}"]}])
    code, _, err = kvacme(capsys, stack, "issue", "shown", "--verbose")  # --verbose: progress off a terminal too
    assert code == 0
    [propagation] = [line for line in err.splitlines() if "waiting for DNS propagation" in line]
    assert f"_acme-challenge.shown-{label}.{ZONE}" in propagation and f"{host}:{port}" in propagation
    assert sum("the CA is validating 1 name" in line for line in err.splitlines()) == 1
    assert sum("the CA validated 1 name" in line for line in err.splitlines()) == 1


def test_timeout_reuses_a_crashed_runs_pending_operation_from_another_host_sooner(capsys, tmp_path, emulator,
                                                                                  short_pebble, cli_env, engine):
    """A run on another host crashed with its pending operation made: by default that blocks the certificate for
    the operation timeout (600 s); `--timeout 5` reuses it once it is 5 s old."""
    from keyvault_acme.lifecycle import managed_tags
    from keyvault_acme.runs import RUN_TAG, RunRecord
    from tests.cli.conftest import ZONE, write_stack

    label = uuid.uuid4().hex[:8]
    host, port = emulator.dns_address
    stack = write_stack(tmp_path / "Pulumi.crash.yaml", vault=f"kvcrash{label}",
                        directory_url=short_pebble.directory_url, resolver=f"{host}:{port}",
                        certificates=[{"name": "crashed", "dns_names": [f"crashed-{label}.{ZONE}"]}])
    spec = load_stack_file(stack).certificates[0].spec
    vault = engine.wiring.vault(spec.vault_url)
    elsewhere = RunRecord("another-runner", 4242, "1").tag()
    crashed = vault.create_pending(spec.name, spec.key, spec.dns_names, {**managed_tags(spec), RUN_TAG: elsewhere})
    code, _, err = kvacme(capsys, stack, "issue", "crashed")
    assert code == cli.EXIT_FAILED and "another run is issuing" in err and "--timeout" in err
    with pytest.raises(SystemExit) as usage:
        kvacme(capsys, stack, "issue", "crashed", "--timeout", "0")
    assert usage.value.code == cli.EXIT_USAGE and "positive number of seconds" in capsys.readouterr().err
    while (datetime.now(timezone.utc) - vault.pending_properties(spec.name).created_on).total_seconds() <= 5:
        time.sleep(0.2)
    code, out, err = kvacme(capsys, stack, "issue", "crashed", "--timeout", "5")
    assert code == 0, err
    from keyvault_acme.keyvault import same_public_key, split_pem_chain
    facts = engine.inspect(spec.vault_url, spec.name)
    assert same_public_key(split_pem_chain(facts.pem_chain)[0].public_key(), crashed.csr.public_key())

"""The CLI's contract before it touches Azure: help, one-line usage errors with exit code 2, stack files."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keyvault_acme_cli import cli

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "keyvault-acme"  # the console script pyproject.toml declares
DEV_STACK = ROOT / "stacks" / "Pulumi.shop-dev.yaml"


def run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, cwd=cwd, timeout=60)


def run_main(capsys, *argv: str, cwd: Path | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if cwd is not None:
        monkeypatch.chdir(cwd)
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["status", "issue", "renew", "revoke", "check"])
def test_every_subcommand_has_help(command):
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: keyvault-acme {command}")
    assert "--stack NAME" in result.stdout and "--config FILE" in result.stdout


def test_top_level_help_lists_commands_and_exit_codes():
    result = run("--help")
    assert result.returncode == 0
    for word in ("status", "issue", "renew", "revoke", "check", "exit codes", "--fail-within"):
        assert word in result.stdout


@pytest.mark.parametrize("argv,expected", [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["status", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["renew"], "one of the arguments NAME --due is required"),
    (["renew", "www", "--due"], "not allowed with argument"),
    (["revoke", "www"], "the following arguments are required: --reason"),
    (["revoke", "www", "--reason", "because"], "invalid choice: 'because'"),
    (["status", "--fail-within", "soon"], "'soon' is not a number of days"),
    (["status", "--fail-within", "-1"], "must not be negative"),
    (["--stack", "shop-dev", "status", "--config", "x.yaml"], "not allowed with argument --stack"),
])
def test_bad_usage_is_one_line_and_exit_2(argv, expected):
    result = run(*argv)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("keyvault-acme: error: ") and expected in line


def test_missing_stack_choice_is_one_line_and_exit_2():
    result = run("status")
    assert result.returncode == 2
    assert result.stderr == ("keyvault-acme: error: no stack given: pass --stack NAME "
                             "(reads stacks/Pulumi.NAME.yaml) or --config FILE\n")


def test_unknown_stack_names_the_file_and_the_known_stacks():
    result = run("--stack", "nope", "status")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "Pulumi.nope.yaml" in line and "shop-dev" in line and "shop-prod" in line


def test_missing_config_file(tmp_path):
    result = run("--config", str(tmp_path / "absent.yaml"), "status")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"keyvault-acme: error: stack file {tmp_path / 'absent.yaml'} not found"]


@pytest.mark.parametrize("content,names", [
    ("config: [unclosed\n", ["is not valid YAML"]),
    ("config:\n  keyvault-acme:workload: shop\n", ["environment", "is required"]),
    ("config:\n  keyvault-acme:colour: blue\n", ["keyvault-acme:colour", "unknown config key"]),
])
def test_bad_stack_file_is_one_line_naming_the_problem(tmp_path, content, names):
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(content)
    result = run("--config", str(path), "status")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"keyvault-acme: error: {path}: ")
    assert all(n in line for n in names), line


def test_a_bad_certificate_entry_names_its_field(tmp_path):
    text = DEV_STACK.read_text().replace("kty: RSA", "kty: DSA")
    path = tmp_path / "Pulumi.dsa.yaml"
    path.write_text(text)
    result = run("--config", str(path), "status")
    assert result.returncode == 2
    assert "certificates[1].key.kty" in result.stderr and "'DSA'" in result.stderr


def test_unknown_certificate_name_lists_the_known_ones(capsys):
    code, out, err = run_main(capsys, "--config", str(DEV_STACK), "issue", "nope")
    assert code == 2
    assert err == f"keyvault-acme: error: no certificate 'nope' in {DEV_STACK} (certificates: www-dev, wildcard-dev)\n"


def test_stack_is_found_from_a_subdirectory_through_stack_config_dir(tmp_path, capsys, monkeypatch):
    (tmp_path / "Pulumi.yaml").write_text("name: p\nruntime: python\nstackConfigDir: envs\n")
    (tmp_path / "envs").mkdir()
    shutil.copy(DEV_STACK, tmp_path / "envs" / "Pulumi.shop-dev.yaml")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    stack = cli.load_stack(cli.stack_path("shop-dev", None, cwd=tmp_path / "deep" / "er"))
    assert stack.path == tmp_path / "envs" / "Pulumi.shop-dev.yaml"
    assert list(stack.certificates) == ["www-dev", "wildcard-dev"]
    assert stack.certificates["wildcard-dev"].dns_names == ("*.dev.shop.example.com",)
    # and the same lookup fails with the directory it looked in
    with pytest.raises(cli.UsageError, match=r"envs/Pulumi\.shop-qa\.yaml"):
        cli.stack_path("shop-qa", None, cwd=tmp_path / "deep")


def test_options_work_before_and_after_the_subcommand(tmp_path):
    parser = cli.build_parser()
    before = parser.parse_args(["--stack", "a", "-v", "status", "--json"])
    after = parser.parse_args(["status", "--stack", "a", "-v", "--json"])
    assert (before.stack, before.verbose, before.json) == (after.stack, after.verbose, after.json) == ("a", True, True)
    assert parser.parse_args(["--stack", "a", "status"]).stack == "a"  # not overwritten by the subcommand's default


def test_progress_heartbeat_during_a_long_step_and_silence_when_disabled():
    import io
    import logging
    import time

    shown, hidden = io.StringIO(), io.StringIO()
    for stream, enabled in ((shown, True), (hidden, False)):
        progress = cli.Progress(stream, enabled=enabled)
        with progress.step("www: issuing", every_s=0.01):
            deadline = time.monotonic() + 10
            while enabled and "still running" not in stream.getvalue():
                assert time.monotonic() < deadline
                time.sleep(0.01)
        log = logging.getLogger("keyvault_acme.test-progress")
        log.setLevel(logging.DEBUG)  # main() sets the level of the keyvault_acme loggers the same way
        handler = progress.handler()
        log.addHandler(handler)
        try:
            log.info("a step")
            log.warning("a record could not be removed")
        finally:
            log.removeHandler(handler)
    lines = shown.getvalue().splitlines()
    assert lines[0].endswith("] www: issuing") and "www: issuing: still running after" in lines[1]
    assert lines[-2].endswith("] a step") and lines[-1].endswith("] warning: a record could not be removed")
    # Not a terminal and no --verbose: only the warning.
    [only] = hidden.getvalue().splitlines()
    assert only.endswith("] warning: a record could not be removed")


PROD_STACK = ROOT / "stacks" / "Pulumi.shop-prod.yaml"


def _without(path: Path, tmp_path: Path, *keys: str) -> Path:
    import yaml

    document = yaml.safe_load(path.read_text())
    for key in keys:
        del document["config"][f"keyvault-acme:{key}"]
    out = tmp_path / path.name
    out.write_text(yaml.safe_dump(document))
    return out


def test_a_read_command_reads_only_what_it_needs_of_a_stack(tmp_path):
    # A production stack without alerts (and without the deployment-only keys location and tenant_id) cannot
    # be deployed, but its certificates are fully described: `status` must read them, not refuse the stack.
    path = _without(PROD_STACK, tmp_path, "alerts", "location", "tenant_id", "consumers", "monitoring")
    stack = cli.load_stack(path)
    assert list(stack.certificates) == ["www", "api"]
    www = stack.certificates["www"]
    assert www.vault_url == "https://kv-shop-prod-weu.vault.azure.net"
    assert www.dns_names == ("shop.example.com", "www.shop.example.com")
    assert www.tags["environment"] == "prod" and www.acme.contact == ("shop-oncall@example.com",)
    # The program still refuses it, naming the missing setting.
    from keyvault_acme.errors import SpecError
    from keyvault_acme_stack.workload import load_stack_file

    with pytest.raises(SpecError, match="location"):
        load_stack_file(path)


def test_what_the_cli_reads_of_a_stack_is_still_checked(tmp_path):
    # Reading less is not reading carelessly: the certificates' own settings, the allowlist and unknown keys
    # are refused as before, naming the field.
    text = PROD_STACK.read_text().replace("      - shop.example.com\n  keyvault-acme:acme", "      - other.example.com\n  keyvault-acme:acme")
    path = tmp_path / "Pulumi.shop-prod.yaml"
    path.write_text(text)
    with pytest.raises(cli.UsageError, match=r"certificates\[0\]\.dns_names"):
        cli.load_stack(path)
    path.write_text(PROD_STACK.read_text() + "  keyvault-acme:alert: {}\n")
    with pytest.raises(cli.UsageError, match="keyvault-acme:alert"):
        cli.load_stack(path)


def test_python_dash_m_runs_the_same_cli():
    result = subprocess.run([sys.executable, "-m", "keyvault_acme_cli", "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: keyvault-acme")


def test_only_the_command_line_itself_changes_garbage_collection(monkeypatch, capsys):
    """The console script (argv from sys.argv) collects no garbage while starting and none at exit; a program
    calling main() with its own arguments goes on living, and keeps its collector as it was."""
    import atexit
    import gc

    calls: list = []
    monkeypatch.setattr(atexit, "register", lambda fn, *a, **k: calls.append(("at exit", fn)))
    for name in ("disable", "enable", "freeze"):
        monkeypatch.setattr(gc, name, lambda name=name: calls.append(name))
    assert run_main(capsys, "--config", str(DEV_STACK), "issue", "no-such-certificate")[0] == 2
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["keyvault-acme", "--config", str(DEV_STACK), "issue", "no-such-certificate"])
    assert cli.main() == 2
    # Start-up without collection; a command that built no engine collects again when it returns.
    assert calls == [("at exit", gc.freeze), "disable", "freeze", "enable"]

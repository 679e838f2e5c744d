"""The CLI at fleet scale (issue 12): one Key Vault request per certificate read, one engine and one token per
process, no issuance libraries for a read, Ctrl-C ends any command at once, an unreachable vault is named within
half a minute. Every command runs as a separate process, as an operator or a scheduler runs it."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from azure.identity import ClientSecretCredential

from keyvault_acme.lifecycle import Engine
from keyvault_acme_stack.workload import load_stack_file
from tests.cli.conftest import ZONE, write_stack
from tests.request_counts import data_requests

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).parent / "keyvault-acme"
CERTIFICATES = 4  # issued; one more in the stack file is never issued


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, cli_env, emulator, short_pebble):
    """A stack of five certificates, four of them issued (by the engine, in this process), none due."""
    label = uuid.uuid4().hex[:8]
    host, port = emulator.dns_address
    vault = f"kvfleet{label}"
    names = [f"f{i}" for i in range(CERTIFICATES + 1)]
    path = write_stack(tmp_path_factory.mktemp("fleet") / "Pulumi.fleet-test.yaml", vault=vault,
                       directory_url=short_pebble.directory_url, resolver=f"{host}:{port}",
                       certificates=[{"name": n, "dns_names": [f"{n}-{label}.{ZONE}"],
                                      "renewal": {"fraction_remaining": 0.1}} for n in names])
    engine = Engine(ClientSecretCredential(cli_env["AZURE_TENANT_ID"], cli_env["AZURE_CLIENT_ID"],
                                           cli_env["AZURE_CLIENT_SECRET"]))
    specs = {c.name: c.spec for c in load_stack_file(path).certificates}
    for name in names[:CERTIFICATES]:
        engine.issue(specs[name])
    return path, f"{vault}.vault.azure.net"


def run(stack: Path, *argv: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), "--config", str(stack), *argv], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_status_reads_each_certificate_with_one_request_and_signs_in_once(fleet, emulator):
    stack, host = fleet
    # The first run after issuance asks the CA for its renewal info (ARI) and caches the answer on each version
    # (a tag): the steady state, counted here, is every later run.
    assert run(stack, "status").returncode == 0
    mark = emulator.admin.request_mark()
    result = run(stack, "status", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["state"] for r in rows] == ["valid"] * CERTIFICATES + ["missing"]
    reads = data_requests(emulator, mark, host)
    assert sorted(reads) == sorted(("GET", f"/certificates/f{i}/") for i in range(CERTIFICATES + 1))
    # One engine, one credential: one token for Key Vault and one challenge, however many worker threads.
    challenges = [r for r in emulator.admin.requests(since=mark, host=host) if r["status"] == 401]
    tokens = [r for r in emulator.admin.requests(since=mark, host="login.microsoftonline.com")
              if r["method"] == "POST" and r["path"].endswith("/token")]
    assert (len(challenges), len(tokens)) == (1, 1)


def test_versions_the_ca_gives_no_renewal_info_for_still_cost_one_request_per_read(tmp_path, cli_env, emulator,
                                                                                   short_pebble):
    """Versions the CA does not know (here self-signed ones, tagged as ours: its ARI answers 404) record that
    there was no answer, so a later run neither asks the CA again nor reads each version's tags a second time."""
    from azure.keyvault.certificates import CertificateClient, CertificatePolicy

    label = uuid.uuid4().hex[:8]
    host, port = emulator.dns_address
    vault, names = f"kvnoari{label}", [f"n{i}" for i in range(3)]
    client = CertificateClient(f"https://{vault}.vault.azure.net", ClientSecretCredential(
        cli_env["AZURE_TENANT_ID"], cli_env["AZURE_CLIENT_ID"], cli_env["AZURE_CLIENT_SECRET"]))
    for n in names:
        client.begin_create_certificate(n, CertificatePolicy(issuer_name="Self", subject=f"CN={n}-{label}.{ZONE}",
                                                             san_dns_names=[f"{n}-{label}.{ZONE}"]),
                                        tags={"managed-by": "keyvault-acme"}).result()
    stack = write_stack(tmp_path / "Pulumi.noari-test.yaml", vault=vault, directory_url=short_pebble.directory_url,
                        resolver=f"{host}:{port}",
                        certificates=[{"name": n, "dns_names": [f"{n}-{label}.{ZONE}"]} for n in names])
    first = run(stack, "status", "--json")
    assert first.returncode == 0, first.stderr
    assert {r["decided_by"] for r in json.loads(first.stdout)} == {"policy"}
    mark = emulator.admin.request_mark()
    again = run(stack, "status", "--json")
    assert again.returncode == 0, again.stderr
    assert sorted(data_requests(emulator, mark, f"{vault}.vault.azure.net")) == \
        sorted(("GET", f"/certificates/{n}/") for n in names)


def test_renew_due_with_nothing_due_reads_each_certificate_once(fleet, emulator):
    stack, host = fleet
    # Without the never-issued one, which renew --due would issue.
    only_issued = stack.with_name("Pulumi.fleet-issued.yaml")
    import yaml
    document = yaml.safe_load(stack.read_text())
    key = next(k for k in document["config"] if k.endswith(":certificates"))
    document["config"][key] = document["config"][key][:CERTIFICATES]
    only_issued.write_text(yaml.safe_dump(document, sort_keys=False))
    # The steady state: the first read after issuance caches the CA's renewal info on each version (whatever
    # test ran before this one).
    assert run(only_issued, "status").returncode == 0
    mark = emulator.admin.request_mark()
    result = run(only_issued, "renew", "--due")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": not due (") == CERTIFICATES, result.stdout + result.stderr
    reads = data_requests(emulator, mark, host)
    assert len(reads) == CERTIFICATES, (reads, result.stdout, result.stderr)  # seen failing once: say why


def test_status_imports_no_acme_jose_or_dns_library(fleet):
    """`status` reads Key Vault only: the issuance stack (acme, josepy, dnspython, azure-mgmt-dns) stays unloaded."""
    stack, _ = fleet
    probe = ("import json, sys\nfrom keyvault_acme_cli.cli import main\n"
             f"code = main(['--config', {str(stack)!r}, 'status'])\n"
             "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\nsys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stderr.strip().splitlines()[-1])
    heavy = [m for m in loaded if m.split(".")[0] in ("acme", "josepy", "dns") or m.startswith("azure.mgmt.dns")]
    assert heavy == []


def test_the_version_is_looked_up_only_when_asked(monkeypatch, capsys):
    from keyvault_acme_cli import cli

    asked = []
    monkeypatch.setattr(cli, "_version", lambda: asked.append(1) or "9.9")
    cli.build_parser().parse_args(["status"])
    assert asked == []
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == "keyvault-acme 9.9\n" and asked == [1]


class _SilentProxy:
    """A proxy that accepts connections and never answers: any command hangs in its first request."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.connected = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._held.append(conn)
            self.connected.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


@pytest.mark.parametrize("argv", [["status"], ["renew", "--due"], ["issue", "f4"], ["check"]],
                         ids=["status", "renew-due", "issue", "check"])
def test_one_ctrl_c_stops_any_command_at_once_with_130(fleet, cli_env, argv):
    stack, _ = fleet
    proxy = _SilentProxy()
    try:
        env = {**cli_env, "HTTPS_PROXY": proxy.url}
        proc = subprocess.Popen([str(SCRIPT), "--config", str(stack), *argv], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proxy.connected.wait(60), "the command never reached the network"
        time.sleep(0.3)  # inside its first request now
        pressed = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        took = time.monotonic() - pressed
    finally:
        proxy.close()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines() == ["keyvault-acme: interrupted"]
    assert took < 5


def test_an_unreachable_vault_fails_within_30_s_naming_the_host(fleet, cli_env):
    stack, host = fleet
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: every connection is refused
    started = time.monotonic()
    result = run(stack, "status", env={**cli_env, "HTTPS_PROXY": f"http://127.0.0.1:{port}"}, timeout=90)
    took = time.monotonic() - started
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot reach {host}" in lines[0] and "proxy" in lines[0]
    assert took < 30


def _mixed_stack(directory: Path, emulator, short_pebble, cli_env, label: str) -> Path:
    """f0 issued and not due, f1-f3 missing (renew --due issues them), f4 asks for a profile the CA does not
    offer (its issuance fails)."""
    host, port = emulator.dns_address
    vault = f"kvmix{label}"
    path = write_stack(directory / f"Pulumi.mix{label}-test.yaml", vault=vault,
                       directory_url=short_pebble.directory_url, resolver=f"{host}:{port}",
                       certificates=[{"name": f"f{i}", "dns_names": [f"f{i}-{label}.{ZONE}"],
                                      "renewal": {"fraction_remaining": 0.1}} for i in range(4)]
                       + [{"name": "f4", "dns_names": [f"f4-{label}.{ZONE}"], "profile": "no-such-profile"}])
    credential = ClientSecretCredential(cli_env["AZURE_TENANT_ID"], cli_env["AZURE_CLIENT_ID"],
                                        cli_env["AZURE_CLIENT_SECRET"])
    specs = {c.name: c.spec for c in load_stack_file(path).certificates}
    Engine(credential).issue(specs["f0"])
    return path


def _normalized(text: str, label: str) -> list[str]:
    import re

    text = text.replace(label, "LABEL")
    text = re.sub(r"\d{4}-\d\d-\d\d[T ][0-9:.+]+Z?", "TIME", text)
    text = re.sub(r"\b[0-9a-f]{32}\b", "VERSION", text)
    text = re.sub(r"serial [0-9a-f]+", "serial SERIAL", text)
    return text.splitlines()


def test_renew_due_in_processes_prints_the_same_and_exits_the_same(tmp_path, emulator, short_pebble, cli_env):
    outcomes = []
    for processes in (1, 2):
        label = uuid.uuid4().hex[:8]
        stack = _mixed_stack(tmp_path, emulator, short_pebble, cli_env, label)
        result = run(stack, "-v", "renew", "--due", "--processes", str(processes), timeout=300)
        errors = [line for line in result.stderr.splitlines() if line.startswith("keyvault-acme: error")]
        outcomes.append((result.returncode, _normalized(result.stdout, label), _normalized("\n".join(errors), label)))
        assert ("renewing 4 certificates in 2 processes" in result.stderr) == (processes == 2), result.stderr
    (code, out, errors), other = outcomes
    assert (code, out, errors) == other
    assert code == 1 and len(errors) == 1 and "f4" in errors[0] and "no-such-profile" in errors[0]
    assert out[0].startswith("f0: not due (") and [line.split(":")[0] for line in out if ": version " in line] == [
        "issued f1", "issued f2", "issued f3"]

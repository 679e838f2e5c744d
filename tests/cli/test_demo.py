"""`make demo` runs `python -m demo`: end to end, in its own process, leaving nothing running."""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def test_make_demo_module_runs_the_whole_lifecycle_and_stops_everything():
    result = subprocess.run([sys.executable, "-m", "demo", "--validity", "12"], cwd=ROOT,
                            capture_output=True, text=True, timeout=240)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]

    commands = re.findall(r"^\$ keyvault-acme (\S+(?: \S+)?)", out, re.MULTILINE)
    assert commands == ["check", "issue www-demo", "issue wildcard-demo", "status", "renew --due", "renew --due",
                        "status", "revoke www-demo", "revoke wildcard-demo", "status --fail-within"]
    assert out.count("is Revoked") == 2
    renewals = re.findall(r"^    (\S+): version (\w+) -> (\w+), serial (\w+) -> (\w+)$", out, re.MULTILINE)
    assert [r[0] for r in renewals] == ["www-demo", "wildcard-demo"]
    assert all(old != new for _, old, new, _, _ in renewals)
    # The final status table: both certificates, revoked.
    final = out[out.rindex("$ keyvault-acme status"):].splitlines()
    assert final[1].split()[0] == "NAME"
    assert [line.split()[0] for line in final[2:4]] == ["www-demo", "wildcard-demo"]
    assert all(line.endswith("revoked") for line in final[2:4])
    if shutil.which("pulumi") is None:
        assert "Pulumi: skipped (the pulumi CLI is not installed" in out

    # Nothing left running: Pebble's and the emulator's ports are closed, the work directory is gone.
    [pebble_port] = re.findall(r"ACME directory https://127\.0\.0\.1:(\d+)/dir", out)
    [proxy_port] = re.findall(r"HTTPS proxy http://127\.0\.0\.1:(\d+)", out)
    assert not listening("127.0.0.1", int(pebble_port)) and not listening("127.0.0.1", int(proxy_port))
    [stack_file] = re.findall(r"stack file for this run: (\S+)", out)
    assert not Path(stack_file).parent.exists()

"""The demo's Pulumi part, where the pulumi CLI is installed: which commands run, where, with what.

The pulumi CLI is not installed here, so a recording stand-in on PATH takes its place. This proves the
demo's orchestration only (command order, an isolated project copy with a local file backend, the
repository untouched), not that `pulumi up` works; tests/provider drives the real provider host for that.
"""
from __future__ import annotations

import io
import json
import os
import stat
import sys
from pathlib import Path

from demo.walkthrough import LOCAL_STACK, ROOT, Demo
from keyvault_acme_stack.workload import load_stack_file

RECORDER = """#!{python}
import json, os, sys
with open({log!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(), "backend": os.environ.get("PULUMI_BACKEND_URL"),
                        "arm_client": os.environ.get("ARM_CLIENT_ID"),
                        "stack_files": sorted(os.listdir(os.path.join(os.getcwd(), "stacks")))}}) + "\\n")
"""


def test_pulumi_up_refresh_destroy_run_on_a_copy_of_the_project(tmp_path, monkeypatch):
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"
    fake.write_text(RECORDER.format(python=sys.executable, log=str(log)))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for key, value in (("AZURE_CLIENT_ID", "app"), ("AZURE_CLIENT_SECRET", "s"), ("AZURE_TENANT_ID", "t")):
        monkeypatch.setenv(key, value)
    before = LOCAL_STACK.read_text()

    demo = Demo(io.StringIO(), validity_s=10)
    demo.tmp, demo.runtime_stack, demo.workload = tmp_path / "work", LOCAL_STACK, load_stack_file(LOCAL_STACK)
    demo.tmp.mkdir()
    demo.pulumi()

    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["argv"][:2] for c in calls] == [["stack", "init"], ["up", "--yes"], ["refresh", "--yes"],
                                             ["destroy", "--yes"], ["stack", "rm"]]
    assert all("--non-interactive" in c["argv"] for c in calls)
    assert {c["cwd"] for c in calls} == {str(demo.tmp / "project")}
    assert {c["backend"] for c in calls} == {f"file://{demo.tmp / 'pulumi-state'}"}
    assert {c["arm_client"] for c in calls} == {"app"}
    assert all(c["stack_files"] == ["Pulumi.local.yaml"] for c in calls)
    assert LOCAL_STACK.read_text() == before and Path(ROOT / "Pulumi.yaml").is_file()

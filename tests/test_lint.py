"""`make test` checks lint and types before the tests, so CI fails on either (issue #15)."""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_test_runs_ruff_and_mypy_before_pytest():
    # -n prints the commands without running them; the venv and system-deps steps are up to date or printed too.
    plan = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    steps = [line for line in plan.splitlines() if "ruff check" in line or line.rstrip().endswith("/mypy")
             or "-m pytest" in line]
    assert [("ruff" if "ruff" in s else "mypy" if "mypy" in s else "pytest") for s in steps] == ["ruff", "mypy", "pytest"]


def test_the_type_checker_covers_every_shipped_package():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    checked = set(config["tool"]["mypy"]["files"])
    assert {"keyvault_acme", "keyvault_acme_cli", "keyvault_acme_stack", "providers", "components"} <= checked

"""The wheel: which top-level packages `pip install keyvault-acme` puts on a user's sys.path."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
# The repository's folders and what they become in the wheel (pyproject's [tool.setuptools.package-dir]).
MAPPED = {"pulumi_package": "keyvault_acme_pulumi", "components": "keyvault_acme_pulumi/components",
          "providers": "keyvault_acme_pulumi/providers"}
SOURCE_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".state",
                                       ".pytest_cache", "tests")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    # Built from a copy: an in-tree build would leave build/ and egg-info behind in the worktree.
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=SOURCE_IGNORE)
    # No build isolation: the venv's setuptools (a dev dependency) builds it, with no index to reach.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp / "out"), str(src)], check=True, capture_output=True, timeout=240)
    [built] = (tmp / "out").glob("keyvault_acme-*.whl")
    with zipfile.ZipFile(built) as zf:
        yield zf


def _top_level(names: list[str]) -> set[str]:
    return {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}


def test_the_wheel_installs_only_the_projects_own_namespaces(wheel):
    tops = _top_level(wheel.namelist())
    # Top-level `components`, `providers` or `emulator` would shadow (or be shadowed by) a user's own folders.
    assert not tops & {"components", "providers", "emulator", "demo", "tests", "stacks", "policy"}
    assert tops <= {"keyvault_acme", "keyvault_acme_pulumi", "keyvault_acme_cli", "keyvault_acme_stack"}
    assert {"keyvault_acme", "keyvault_acme_pulumi"} <= tops
    top_level_txt = next(n for n in wheel.namelist() if n.endswith(".dist-info/top_level.txt"))
    assert set(wheel.read(top_level_txt).decode().split()) == tops


def test_every_module_of_the_packaged_folders_is_in_the_wheel(wheel):
    # pyproject lists the packages one by one (the mapped folders cannot be found automatically): a new
    # sub-package left off the list would be missing from every installation, so compare file by file.
    names = set(wheel.namelist())
    folders = {p.name: p.name for p in ROOT.iterdir() if p.name.startswith("keyvault_acme") and p.is_dir()}
    missing = []
    for folder, packaged in {**folders, **MAPPED}.items():
        for module in (ROOT / folder).rglob("*.py"):
            inside = f"{packaged}/{module.relative_to(ROOT / folder).as_posix()}"
            if inside not in names:
                missing.append(inside)
    assert not missing, f"add their packages to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_the_console_script_points_into_the_wheel(wheel):
    entry_points = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    target = wheel.read(entry_points).decode().split("keyvault-acme = ", 1)[1].split(":", 1)[0].strip()
    assert f"{target.replace('.', '/')}.py" in wheel.namelist() or f"{target.replace('.', '/')}/__init__.py" in wheel.namelist()


def _requirements(wheel: zipfile.ZipFile) -> list[Requirement]:
    metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    return [Requirement(r) for r in Parser().parsestr(wheel.read(metadata).decode()).get_all("Requires-Dist", [])]


def _names(requirements: list[Requirement]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", r.name).lower() for r in requirements}


def test_the_runtime_requirements_hold_no_pulumi_package(wheel):
    # `pip install keyvault-acme` (the renewer image, a CI job that only runs the CLI) gets the engine, the CLI and
    # the stack model; the Pulumi SDK and pulumi-azure-native (~350 MB installed) come only with the extra.
    requirements = _requirements(wheel)
    base = [r for r in requirements if r.marker is None]
    assert base and not [n for n in _names(base) if n.startswith("pulumi")]
    pulumi_extra = [r for r in requirements if r.marker is not None and r.marker.evaluate({"extra": "pulumi"})]
    assert {"pulumi", "pulumi-azure-native"} <= _names(pulumi_extra)


# Without the extra: what a subprocess sees when neither Pulumi package is installed (a None entry in
# sys.modules makes `import x` raise ModuleNotFoundError naming x, as a missing package does).
WITHOUT_PULUMI = textwrap.dedent('''
    import sys
    for name in ("pulumi", "pulumi_azure_native"):
        sys.modules[name] = None
    {body}
''')


def _without_pulumi(body: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_PULUMI.format(body=body)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_importing_the_pulumi_namespace_without_the_extra_names_the_extra_to_install():
    done = _without_pulumi("import keyvault_acme_pulumi")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ") and "pip install 'keyvault-acme[pulumi]'" in last and "pulumi" in last


def test_the_cli_engine_and_stack_model_import_without_the_extra():
    # Every module of the base package, imported with the Pulumi packages missing, as in the renewer image.
    done = _without_pulumi(textwrap.dedent('''
        import importlib, pkgutil
        for top in ("keyvault_acme", "keyvault_acme_cli", "keyvault_acme_stack"):
            package = importlib.import_module(top)
            for module in pkgutil.walk_packages(package.__path__, top + "."):
                if not module.name.endswith(".__main__"):  # that one runs the CLI
                    importlib.import_module(module.name)
        from keyvault_acme_cli.cli import main
        main(["renew", "--help"])
    '''))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--due" in done.stdout

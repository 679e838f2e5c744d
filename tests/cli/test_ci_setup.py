"""The pipelines' first run: the install lands in the virtualenv Pulumi uses, and one command sets up CI."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / "pipelines" / "github" / "certificates.yml"
AZDO_SETUP = ROOT / "pipelines" / "azure-devops" / "steps-setup.yml"
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".state",
                                     ".pytest_cache", "tests")

# Run with the virtualenv's Python, in the project directory, as Pulumi runs the program: __main__.py under
# mocks with a stack file's config. It sees only what that virtualenv has installed.
PROGRAM_UNDER_MOCKS = textwrap.dedent('''
    import json, runpy, yaml, pulumi
    registered = []

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            registered.append(args.typ)
            return f"{args.name}-id", dict(args.inputs)

        def call(self, args):
            return {}

    document = yaml.safe_load(open("stacks/Pulumi.shop-dev.yaml"))
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in document["config"].items()})
    pulumi.runtime.set_mocks(Mocks(), project="keyvault-acme", stack="shop-dev", preview=False)

    @pulumi.runtime.test
    def program():
        runpy.run_path("__main__.py", run_name="__main__")

    program()
    import keyvault_acme_pulumi
    print(json.dumps({"registered": registered, "package": keyvault_acme_pulumi.__file__}))
''')


def install_commands() -> str:
    """The one install command both templates run (every GitHub job, and Azure DevOps' shared setup)."""
    github = [s["run"] for job in yaml.safe_load(GITHUB.read_text())["jobs"].values() for s in job["steps"]
              if "install" in s.get("name", "").lower()]
    azdo = [s["script"] for s in yaml.safe_load(AZDO_SETUP.read_text())["steps"]
            if "keyvault-acme" in s.get("displayName", "") and "install" in s.get("displayName", "")]
    assert len(github) == 3 and len(azdo) == 1
    assert len(set(github + azdo)) == 1, "the templates install differently"
    return github[0]


def test_no_template_installs_into_the_runners_own_python():
    texts = GITHUB.read_text() + AZDO_SETUP.read_text()
    assert "pip install" not in texts


def test_the_templates_install_into_the_virtualenv_pulumi_runs_the_program_with(tmp_path):
    command = install_commands()
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=COPY_IGNORE)
    bin_dir = tmp_path / "runner-bin"  # the runner's `python` (setup-python / UsePythonVersion), no virtualenv
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    github_path = tmp_path / "github_path"
    env = {**{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
           "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", "GITHUB_PATH": str(github_path), "TF_BUILD": "True"}
    done = subprocess.run(["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    # The Python Pulumi uses: Pulumi.yaml's runtime.options.virtualenv, relative to the project.
    venv = project / yaml.safe_load((project / "Pulumi.yaml").read_text())["runtime"]["options"]["virtualenv"]
    ran = subprocess.run([str(venv / "bin" / "python"), "-c", PROGRAM_UNDER_MOCKS], cwd=project, env=env,
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-4000:]
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    assert Path(seen["package"]).is_relative_to(venv)  # installed there, not read from the checkout
    assert "keyvault-acme:index:CertificateWorkload" in seen["registered"]
    assert seen["registered"].count("pulumi-python:dynamic/keyvault_acme:Certificate") == 2

    # The CLI steps find keyvault-acme: its directory was put on PATH for later steps, on both platforms.
    [path_entry] = github_path.read_text().split()
    assert f"##vso[task.prependpath]{path_entry}" in done.stdout.splitlines()
    cli = subprocess.run([str(Path(path_entry) / "keyvault-acme"), "--help"], capture_output=True, text=True,
                         timeout=120)
    assert cli.returncode == 0 and "usage" in cli.stdout.lower()


# ------------------------------------------------------------------------------------------ bootstrap-ci

FLAGS = ["--stack", "shop-prod", "--github", "contoso/shop", "--backend-url", "azblob://pulumi-state",
         "--state-account", "pulumistate", "--secrets-provider",
         "azurekeyvault://kv-platform-pulumi.vault.azure.net/keys/pulumi-shop-prod",
         "--preview-identity", "id-shop-preview", "--preview-resource-group", "rg-platform-ci",
         "--policy-repo", "contoso/keyvault-acme-policy", "--policy-ref", "v1", "--policy-path", "keyvault-acme"]


def bootstrap(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keyvault_acme_cli.bootstrap_ci", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_bootstrap_sets_every_variable_the_workflow_reads_and_the_three_federations():
    done = bootstrap(*FLAGS)
    assert done.returncode == 0, done.stderr
    variables = re.findall(r"^gh variable set (\w+) --repo contoso/shop ", done.stdout, re.M)
    assert sorted(variables) == sorted(set(re.findall(r"vars\.(\w+)", GITHUB.read_text())))
    assert len(variables) == 11
    workflow = yaml.safe_load(GITHUB.read_text())["jobs"]
    credentials = re.findall(r"^az identity federated-credential create --identity-name (\S+) .*--subject (\S+)",
                             done.stdout, re.M)
    assert credentials == [
        ("id-shop-prod-issuer", f"repo:contoso/shop:environment:{workflow['up']['environment']}"),
        ("id-shop-prod-issuer", f"repo:contoso/shop:environment:{workflow['renew']['environment']}"),
        ("id-shop-preview", "repo:contoso/shop:pull_request"),  # pull requests never federate to the issuer
    ]
    stack = yaml.safe_load((ROOT / "stacks" / "Pulumi.shop-prod.yaml").read_text())["config"]
    assert f"AZURE_SUBSCRIPTION_ID --repo contoso/shop --body {stack['keyvault-acme:subscription_id']}\n" in done.stdout
    assert f"AZURE_TENANT_ID --repo contoso/shop --body {stack['keyvault-acme:tenant_id']}\n" in done.stdout
    assert subprocess.run(["bash", "-n"], input=done.stdout, text=True).returncode == 0  # valid bash


def test_bootstrap_apply_runs_az_and_gh(tmp_path):
    log = tmp_path / "calls.jsonl"
    for tool in ("az", "gh"):
        fake = tmp_path / tool
        fake.write_text(f"#!{sys.executable}\nimport json, sys\nopen({str(log)!r}, 'a').write(json.dumps(['{tool}', *sys.argv[1:]]) + '\\n')\n"
                        "if sys.argv[1:3] == ['identity', 'show']: print('c1c1c1c1-0000-0000-0000-' + sys.argv[4][-12:].rjust(12, '0'))\n")
        fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    done = bootstrap(*FLAGS, "--apply", env=env)
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(c[:4] == ["az", "identity", "federated-credential", "create"] for c in calls) == 3
    sets = {c[3]: c[-1] for c in calls if c[:3] == ["gh", "variable", "set"]}
    assert len(sets) == 11 and sets["AZURE_CLIENT_ID"].startswith("c1c1c1c1-") and sets["PULUMI_STACK"] == "shop-prod"


def test_bootstrap_refuses_a_secrets_provider_that_is_not_a_key_vault_key():
    flags = list(FLAGS)
    flags[flags.index("--secrets-provider") + 1] = "passphrase"
    done = bootstrap(*flags)
    assert done.returncode == 2 and "--secrets-provider" in done.stderr and "azurekeyvault://" in done.stderr
    assert not done.stdout

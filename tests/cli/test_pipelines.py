"""The CI/CD templates users copy: valid for their platforms' schemas, and wired the way README promises."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cli.azdo_expressions import Context, evaluate, run_stages

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / "pipelines" / "github" / "certificates.yml"
AZDO_DIR = ROOT / "pipelines" / "azure-devops"
AZDO = AZDO_DIR / "azure-pipelines.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess:
    # The Azure Pipelines schema uses regex syntax the default (ECMA) engine rejects; Python's accepts it.
    return subprocess.run([str(CHECK_JSONSCHEMA), "--regex-variant", "python", "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, timeout=120)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def every_string(node) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in every_string(k) + every_string(v)]
    if isinstance(node, list):
        return [s for v in node for s in every_string(v)]
    return [node] if isinstance(node, str) else []


@pytest.mark.parametrize("schema,path", [
    ("vendor.github-workflows", GITHUB),
    *[("vendor.azure-pipelines", p) for p in sorted(AZDO_DIR.glob("*.yml"))],
], ids=lambda v: v.name if isinstance(v, Path) else v)
def test_template_is_valid_for_its_platform(schema, path):
    result = check_jsonschema(schema, path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_catches_a_broken_workflow(tmp_path):
    broken = load(GITHUB)
    del broken["jobs"]["up"]["runs-on"]
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    assert check_jsonschema("vendor.github-workflows", path).returncode != 0


def test_github_preview_on_pr_up_on_main_with_approval_and_renewal_every_6_hours():
    wf = load(GITHUB)
    on = wf[True]  # YAML 1.1 reads the key `on` as a boolean
    assert set(on) >= {"pull_request", "push", "schedule"}
    assert on["push"]["branches"] == ["main"]
    [cron] = [entry["cron"] for entry in on["schedule"]]
    assert cron.split()[1] == "*/6"

    jobs = wf["jobs"]
    pulumi = {name: [s["with"] for s in job["steps"] if str(s.get("uses", "")).startswith("pulumi/actions")]
              for name, job in jobs.items()}
    assert "pull_request" in jobs["preview"]["if"] and [w["command"] for w in pulumi["preview"]] == ["preview"]
    assert "push" in jobs["up"]["if"] and [w["command"] for w in pulumi["up"]] == ["up"]
    assert jobs["up"]["environment"]  # reviewers approve it
    assert "schedule" in jobs["renew"]["if"]
    assert [(w["command"], w["refresh"]) for w in pulumi["renew"]] == [("up", True)]
    assert any("status --fail-within" in s.get("run", "") for s in jobs["renew"]["steps"])


def test_github_logs_in_by_workload_identity_federation_without_stored_secrets():
    wf = load(GITHUB)
    assert wf["permissions"]["id-token"] == "write"
    for name, job in wf["jobs"].items():
        assert job.get("permissions", wf["permissions"])["id-token"] == "write", name
        logins = [s["with"] for s in job["steps"] if str(s.get("uses", "")).startswith("azure/login")]
        assert len(logins) == 1, name
        assert set(logins[0]) == {"client-id", "tenant-id", "subscription-id"}, name  # no creds, no client secret
    assert not [s for s in every_string(wf) if "secrets." in s]


def test_azure_devops_preview_up_with_approval_and_scheduled_refresh():
    p = load(AZDO)
    [schedule] = p["schedules"]
    assert schedule["cron"].split()[1] == "*/6" and schedule["always"] in (True, "true")
    stages = {s["stage"]: s for s in p["stages"]}
    assert "PullRequest" in stages["preview"]["condition"]
    assert "Schedule" in stages["renew"]["condition"]
    [deployment] = stages["up"]["jobs"]
    assert deployment["deployment"] and deployment["environment"]  # approvals are checks on the environment

    def scripts(stage):
        return "\n".join(s["inputs"].get("inlineScript", "") for job in stage["jobs"]
                         for s in job.get("steps") or job["strategy"]["runOnce"]["deploy"]["steps"]
                         if s.get("task") == "AzureCLI@2")

    assert "pulumi preview" in scripts(stages["preview"])
    assert "pulumi up" in scripts(stages["up"])
    assert "pulumi up" in scripts(stages["renew"]) and "--refresh" in scripts(stages["renew"])
    assert "status --fail-within" in scripts(stages["renew"])
    # The service connection federates; nothing secret is referenced (the stack's secrets provider is a Key Vault
    # key's URL, which encrypts stack secrets and is no secret itself).
    every_task = [s for s in every_string(p) if "secret" in re.sub(r"(?i)secrets-?provider", "", s).lower()]
    assert not every_task


def test_templates_reference_only_files_that_exist():
    p = load(AZDO)
    referenced = {s["template"] for st in p["stages"] for job in st["jobs"]
                  for s in job.get("steps") or job["strategy"]["runOnce"]["deploy"]["steps"] if "template" in s}
    assert referenced and all((AZDO_DIR / t).is_file() for t in referenced)
    assert (AZDO_DIR / "oidc-env.sh").is_file()
    assert all("pipelines/azure-devops/oidc-env.sh" in s for s in every_string(p) if "oidc-env.sh" in s)


# ------------------------------------------------------------------------------------------ platform policy, identities


def _steps(job: dict) -> list[dict]:
    return job.get("steps") or job["strategy"]["runOnce"]["deploy"]["steps"]


def test_github_runs_the_platforms_policy_pack_on_every_preview_and_up():
    wf = load(GITHUB)
    pack = wf["env"]["POLICY_PACK"]
    assert pack.startswith("platform-policy/") and "vars.PLATFORM_POLICY_PATH" in pack
    for name, job in wf["jobs"].items():
        steps = job["steps"]
        [policy_checkout] = [s for s in steps if s.get("with", {}).get("path") == "platform-policy"]
        # The pack comes from the platform team's repository at its released ref, not from this (PR-editable) one.
        assert policy_checkout["uses"].startswith("actions/checkout@")
        assert policy_checkout["with"]["repository"] == "${{ vars.PLATFORM_POLICY_REPO }}"
        assert policy_checkout["with"]["ref"] == "${{ vars.PLATFORM_POLICY_REF }}"
        pulumi_steps = [s for s in steps if str(s.get("uses", "")).startswith("pulumi/actions")]
        assert pulumi_steps, name
        for s in pulumi_steps:
            assert s["with"]["policyPacks"] == "${{ env.POLICY_PACK }}", name
            assert s["with"]["policyPackConfigs"] == "${{ env.POLICY_PACK }}/config.json", name
            assert steps.index(policy_checkout) < steps.index(s)


def test_github_previews_pull_requests_as_the_read_only_identity():
    wf = load(GITHUB)
    for name, job in wf["jobs"].items():
        [login] = [s["with"] for s in job["steps"] if str(s.get("uses", "")).startswith("azure/login")]
        client = job.get("env", {}).get("ARM_CLIENT_ID", wf["env"]["ARM_CLIENT_ID"])
        want = "${{ vars.AZURE_PREVIEW_CLIENT_ID }}" if name == "preview" else "${{ vars.AZURE_CLIENT_ID }}"
        assert login["client-id"] == client == want, name  # azure/login and the providers' env agree
    header = GITHUB.read_text().split("\nname:", 1)[0]
    assert "AZURE_PREVIEW_CLIENT_ID" in header and "repo:<org>/<repo>:pull_request" in header
    issuer_part = header.split("AZURE_CLIENT_ID, the issuer", 1)[1].split("AZURE_PREVIEW_CLIENT_ID", 1)[0]
    assert ":pull_request" not in issuer_part  # pull requests never federate to the issuer
    assert "Key Vault Reader" in header and "Reader on the workload's resource group" in header


def test_github_check_runs_as_the_issuer_and_its_name_matches_what_check_verifies():
    from keyvault_acme.checks import STEPS

    wf = load(GITHUB)
    assert not [s for s in wf["jobs"]["preview"]["steps"] if "keyvault-acme" in s.get("run", "") and " check" in s["run"]]
    for name in ("up", "renew"):
        [check] = [s for s in wf["jobs"][name]["steps"] if s.get("run", "").endswith(" check")]
        assert "failure()" in check["if"], name
        # The step's name promises only steps Engine.check performs.
        promised = check["name"].split("(", 1)[1].split(")", 1)[0].split(", ")
        assert {"zones writable", "NS delegation", "CAA"} <= set(promised)
        assert set(promised) - {"CA"} <= set(STEPS) and "CA directory" in STEPS


def test_azure_devops_runs_the_platforms_policy_pack_and_previews_read_only():
    p = load(AZDO)
    [repo] = p["resources"]["repositories"]
    assert repo["repository"] == "platformPolicy" and repo["ref"]
    setup = load(AZDO_DIR / "steps-setup.yml")
    checkouts = [s for s in setup["steps"] if "checkout" in s]
    assert [(s["checkout"], s["path"]) for s in checkouts] == [("self", "s"), ("platformPolicy", "platform-policy")]
    args = p["variables"]["policyArgs"]
    assert '--policy-pack "$(Pipeline.Workspace)/platform-policy/$(policyPackPath)"' in args
    assert '--policy-pack-config "$(Pipeline.Workspace)/platform-policy/$(policyPackPath)/config.json"' in args
    stages = {s["stage"]: s for s in p["stages"]}
    for name, stage in stages.items():
        for job in stage["jobs"]:
            for step in _steps(job):
                script = step.get("inputs", {}).get("inlineScript", "")
                for line in script.splitlines():
                    if line.startswith(("pulumi preview", "pulumi up")):
                        assert line.endswith("$(policyArgs)"), (name, line)
                if step.get("task") == "AzureCLI@2":
                    want = "$(previewServiceConnection)" if name == "preview" else "$(serviceConnection)"
                    assert step["inputs"]["azureSubscription"] == want, (name, step["displayName"])
                    assert name != "preview" or " check" not in script
    assert p["variables"]["previewServiceConnection"] != p["variables"]["serviceConnection"]


# ------------------------------------------------------------------------------------------ Azure DevOps stage graph

TRIGGERS = {  # what Azure DevOps sets for each way a run starts
    "push to main": {"Build.Reason": "IndividualCI", "Build.SourceBranch": "refs/heads/main"},
    "batched push to main": {"Build.Reason": "BatchedCI", "Build.SourceBranch": "refs/heads/main"},
    "pull request": {"Build.Reason": "PullRequest", "Build.SourceBranch": "refs/pull/7/merge"},
    "schedule": {"Build.Reason": "Schedule", "Build.SourceBranch": "refs/heads/main"},
    "manual run of main": {"Build.Reason": "Manual", "Build.SourceBranch": "refs/heads/main"},
    "manual run of a branch": {"Build.Reason": "Manual", "Build.SourceBranch": "refs/heads/feature"},
}
RUNS = {"push to main": {"up"}, "batched push to main": {"up"}, "pull request": {"preview"}, "schedule": {"renew"},
        "manual run of main": {"up"}, "manual run of a branch": set()}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_azure_devops_runs_the_stage_of_each_trigger(trigger):
    results = run_stages(load(AZDO)["stages"], TRIGGERS[trigger])
    assert {name for name, result in results.items() if result == "Succeeded"} == RUNS[trigger]


def test_the_stage_graph_evaluator_reproduces_the_skipped_deploy():
    # The template before the fix: `up` after `preview` by default, and `and(succeeded(), ...)`: on a push the
    # preview is skipped, so succeeded() is false and the approved deploy never ran, the run looking green.
    stages = [{"stage": "preview", "condition": "eq(variables['Build.Reason'], 'PullRequest')"},
              {"stage": "up", "condition": "and(succeeded(), eq(variables['Build.SourceBranch'], 'refs/heads/main'), "
                                           "ne(variables['Build.Reason'], 'PullRequest'))"}]
    assert run_stages(stages, TRIGGERS["push to main"]) == {"preview": "Skipped", "up": "Skipped"}
    assert run_stages([{**s, "dependsOn": []} for s in stages], TRIGGERS["push to main"])["up"] == "Succeeded"


@pytest.mark.parametrize("expression, want", [
    ("in(variables['Build.Reason'], 'IndividualCI', 'Manual')", True),
    ("eq(variables['build.reason'], 'individualci')", True),  # names and comparisons ignore case
    ("notIn(variables['Build.Reason'], 'Schedule')", True),
    ("and(true, not(eq(variables.Build.Reason, 'IndividualCI')))", False),
    ("or(false, startsWith(variables['Build.SourceBranch'], 'refs/heads/'))", True),
    ("eq('it''s', 'it''s')", True),
])
def test_the_evaluator_reads_the_expression_language(expression, want):
    assert evaluate(expression, Context(TRIGGERS["push to main"])) is want


def test_the_evaluator_refuses_what_it_does_not_know():
    with pytest.raises(NameError):
        evaluate("eqq(1, 1)", Context({}))
    with pytest.raises(KeyError):
        evaluate("eq(variables['Build.Reson'], 'x')", Context({}))


# ------------------------------------------------------------------------------------------ GitHub concurrency


def _group(job: dict, stack: str, pr: int | None) -> str:
    expressions = {"vars.PULUMI_STACK": stack, "github.event.pull_request.number": "" if pr is None else str(pr)}

    def substitute(m: re.Match) -> str:
        return expressions[m.group(1).strip()]  # an unknown expression is a KeyError, not a silent ""

    return re.sub(r"\$\{\{(.*?)\}\}", substitute, job["concurrency"]["group"])


def test_github_has_no_workflow_wide_concurrency_group():
    # One group for every job let a new pull request's preview cancel a pending deploy or renewal.
    assert "concurrency" not in load(GITHUB)


def test_github_previews_cancel_only_older_previews_of_the_same_pull_request():
    jobs = load(GITHUB)["jobs"]
    preview = jobs["preview"]
    assert preview["concurrency"]["cancel-in-progress"] is True
    assert _group(preview, "web-prod", 7) == _group(preview, "web-prod", 7)
    assert _group(preview, "web-prod", 7) != _group(preview, "web-prod", 8)
    assert _group(preview, "web-prod", 7) != _group(preview, "web-dev", 7)
    for other in ("up", "renew"):
        assert _group(preview, "web-prod", 7) != _group(jobs[other], "web-prod", None)


def test_github_deploys_and_renewals_of_a_stack_queue_and_never_cancel_each_other():
    jobs = load(GITHUB)["jobs"]
    up, renew = jobs["up"], jobs["renew"]
    assert _group(up, "web-prod", None) == _group(renew, "web-prod", None)  # one at a time per stack
    assert _group(up, "web-prod", None) != _group(up, "web-dev", None)
    for job in (up, renew):
        # Not cancelled while running, and every pending run kept (the default queue keeps one, cancelling the rest).
        assert job["concurrency"]["cancel-in-progress"] is False and job["concurrency"]["queue"] == "max"


# ------------------------------------------------------------------------------------------ pinned actions

# Each action's release, resolved to its commit from the action's own repository (tag -> commit), not typed in.
PINNED = {
    "actions/checkout": ("11d5960a326750d5838078e36cf38b85af677262", "v4.4.0"),
    "actions/setup-python": ("a26af69be951a213d495a4c3e4e4022e16d87065", "v5.6.0"),
    "azure/login": ("7184910d9eb2b1c5e48f7073824a90609bb9b6d6", "v2.3.1"),
    "pulumi/actions": ("8582a9e8cc630786854029b4e09281acd6794b58", "v6.6.1"),
}


def test_github_actions_are_pinned_by_commit_with_the_release_in_a_comment():
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", GITHUB.read_text(), re.M)
    assert uses
    for ref, rest in uses:
        action, _, sha = ref.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", sha), f"{ref}: pin a commit, not a tag or branch"
        assert (sha, rest.strip()) == (PINNED[action][0], f"# {PINNED[action][1]}"), ref


# ------------------------------------------------------------------------------------------ stack upsert


def test_deploys_create_the_stack_with_the_key_vault_secrets_provider():
    wf = load(GITHUB)
    for name in ("up", "renew"):
        [step] = [s["with"] for s in wf["jobs"][name]["steps"] if str(s.get("uses", "")).startswith("pulumi/actions")]
        assert step["upsert"] is True and step["secrets-provider"] == "${{ vars.PULUMI_SECRETS_PROVIDER }}", name
    p = load(AZDO)
    assert p["variables"]["pulumiSecretsProvider"].startswith("azurekeyvault://")
    stages = {s["stage"]: s for s in p["stages"]}
    for name in ("up", "renew"):
        script = "\n".join(step.get("inputs", {}).get("inlineScript", "") for job in stages[name]["jobs"]
                           for step in _steps(job)).splitlines()
        select = script.index('pulumi stack select --create --stack "$(pulumiStack)" '
                              '--secrets-provider "$(pulumiSecretsProvider)"')
        assert select < next(i for i, line in enumerate(script) if line.startswith("pulumi up")), name

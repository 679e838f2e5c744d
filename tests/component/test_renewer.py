"""The opt-in in-Azure renewer: a scheduled Container Apps Job running `keyvault-acme renew --due` as the issuer
identity, its logs in the stack's workspace, and the renewal-overdue alert reading them (under set_mocks)."""
from __future__ import annotations

import pytest
import yaml

from keyvault_acme.errors import SpecError
from keyvault_acme_pulumi.components import CertificateWorkload
from keyvault_acme_pulumi.components.renewer import job_name, renewer_log_query
from keyvault_acme_stack.renewer import job_command
from keyvault_acme_stack.workload import parse_workload_config, stack_config_values

from . import harness
from .harness import STACKS

T = "azure-native:"
IMAGE = "crshop.azurecr.io/keyvault-acme:0.1.0"
IDENTITY_ID = ("/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-identities/providers/"
               "Microsoft.ManagedIdentity/userAssignedIdentities/id-shop-dev-issuer")


def values(stack: str = "shop-dev", **changes) -> dict:
    base = stack_config_values(yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text()))
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def deploy(config_values: dict):
    cfg = parse_workload_config(config_values)
    run = harness.run(lambda: CertificateWorkload(cfg.stack_name, cfg).outputs, stack=cfg.stack_name, config={},
                      subscription_id=cfg.subscription_id)
    return run, cfg


@pytest.fixture(scope="module")
def with_renewer():
    return deploy(values(renewer={"schedule": "0 */6 * * *", "image": IMAGE, "registry": "crshop.azurecr.io"}))


def test_the_job_runs_renew_due_on_its_schedule_as_the_issuer_identity(with_renewer):
    run, cfg = with_renewer
    job, environment = run.one(f"{T}app:Job"), run.one(f"{T}app:ManagedEnvironment")
    issuer = run.one(f"{T}managedidentity:UserAssignedIdentity")
    component = next(r for r in run.registered if r.type == "keyvault-acme:index:CertificateWorkload")
    assert job.parent == component.urn and environment.parent == component.urn
    assert job.inputs["jobName"] == job_name(cfg) == "job-shop-dev-renew"
    assert job.inputs["environmentId"] == environment.id
    assert job.inputs["identity"] == {"type": "UserAssigned", "userAssignedIdentities": [issuer.id]}
    configuration = job.inputs["configuration"]
    assert configuration["triggerType"] == "Schedule"
    assert configuration["scheduleTriggerConfig"] == {"cronExpression": "0 */6 * * *", "parallelism": 1,
                                                      "replicaCompletionCount": 1}
    assert configuration["replicaTimeout"] == 1800
    # Pulled from the private registry with the same identity: no registry password anywhere.
    assert configuration["registries"] == [{"server": "crshop.azurecr.io", "identity": issuer.id}]
    [container] = job.inputs["template"]["containers"]
    assert container["image"] == IMAGE
    assert container["command"] == job_command("shop-dev") == [
        "keyvault-acme", "--config", "/etc/keyvault-acme/Pulumi.shop-dev.yaml", "renew", "--due", "--json"]
    assert container["env"] == [{"name": "AZURE_CLIENT_ID", "value": issuer.state["clientId"]}]
    assert job.inputs["tags"] == dict(cfg.tags)


def test_the_stack_file_is_configuration_the_cli_reads_back_as_the_same_stack(with_renewer, tmp_path):
    run, cfg = with_renewer
    job = run.one(f"{T}app:Job")
    [secret] = job.inputs["configuration"]["secrets"]
    [volume] = job.inputs["template"]["volumes"]
    [mount] = job.inputs["template"]["containers"][0]["volumeMounts"]
    assert volume == {"name": "stack", "storageType": "Secret",
                      "secrets": [{"secretRef": secret["name"], "path": "Pulumi.shop-dev.yaml"}]}
    assert mount == {"volumeName": "stack", "mountPath": "/etc/keyvault-acme"}
    # The file the job's --config names, as the volume makes it: the CLI's own loader gives the same certificates.
    from keyvault_acme_stack.workload import load_stack_certificates
    path = tmp_path / volume["secrets"][0]["path"]
    path.write_text(secret["value"])
    assert mount["mountPath"] + "/" + path.name == job_command("shop-dev")[2]
    assert load_stack_certificates(path) == cfg.certificates


def test_the_jobs_stack_file_carries_no_webhook_url(tmp_path):
    """Webhook URLs are credentials (Pulumi secrets); the job's file is a plain input in state, so they stay out."""
    prod = values("shop-prod", renewer={"schedule": "0 */6 * * *", "image": IMAGE})
    uris = [w["uri"] for w in prod["alerts"]["webhooks"]]
    assert uris
    run, _ = deploy(prod)
    [secret] = run.one(f"{T}app:Job").inputs["configuration"]["secrets"]
    assert not [u for u in uris if u in secret["value"]] and "alerts" not in secret["value"]


def test_its_logs_go_to_the_stacks_workspace(with_renewer):
    run, _ = with_renewer
    environment = run.one(f"{T}app:ManagedEnvironment")
    workspace = run.one(f"{T}operationalinsights:Workspace")
    assert environment.inputs["appLogsConfiguration"] == {"destination": "azure-monitor"}
    [setting] = [d for d in run.of_type(f"{T}monitor:DiagnosticSetting") if d.inputs["resourceUri"] == environment.id]
    assert setting.inputs["workspaceId"] == workspace.id
    assert setting.inputs["logAnalyticsDestinationType"] == "Dedicated"
    assert setting.inputs["logs"] == [{"categoryGroup": "allLogs", "enabled": True}]


def test_the_overdue_alert_also_reads_the_renewers_dates(with_renewer):
    run, cfg = with_renewer
    [overdue] = [r for r in run.of_type(f"{T}monitor:ScheduledQueryRule") if r.name.endswith("-renewal-overdue")]
    [condition] = overdue.inputs["criteria"]["allOf"]
    query = condition["query"]
    # The dates of the last pulumi up, and those the renewer logged since: the latest of each certificate counts.
    for cert in cfg.certificates:
        assert f'"{cert.name}", datetime(2027-01-30T00:00:00Z)' in query
    assert renewer_log_query("shop-dev").replace("\n", "\n    ") in query
    assert "union deployed, renewed\n| summarize renew_after = max(renew_after) by certificate" in query
    assert query.rstrip().endswith("overdue_hours = (now() - renew_after) / 1h")
    assert overdue.inputs["windowSize"] == "P1D"  # several runs of the job are in view
    assert "renewer job" in overdue.inputs["description"]


def test_no_renewer_no_job():
    run, _ = deploy(values())
    assert not run.of_type(f"{T}app:Job") and not run.of_type(f"{T}app:ManagedEnvironment")
    [overdue] = [r for r in run.of_type(f"{T}monitor:ScheduledQueryRule") if r.name.endswith("-renewal-overdue")]
    assert "ContainerAppConsoleLogs" not in overdue.inputs["criteria"]["allOf"][0]["query"]
    assert overdue.inputs["windowSize"] == "PT1H"


def test_an_existing_issuer_runs_the_job_by_its_resource_id():
    issuer = {"principal_id": "22222222-2222-2222-2222-222222222222", "client_id": "33333333-3333-3333-3333-333333333333",
              "resource_id": IDENTITY_ID}
    run, _ = deploy(values(issuer=issuer, renewer={"image": IMAGE}))
    job = run.one(f"{T}app:Job")
    assert job.inputs["identity"]["userAssignedIdentities"] == [IDENTITY_ID]
    assert job.inputs["template"]["containers"][0]["env"] == [
        {"name": "AZURE_CLIENT_ID", "value": "33333333-3333-3333-3333-333333333333"}]
    assert job.inputs["configuration"]["scheduleTriggerConfig"]["cronExpression"] == "0 */6 * * *"  # the default
    assert "registries" not in job.inputs["configuration"]  # a public image


@pytest.mark.parametrize("change, field, fix", [
    ({"renewer": {"image": IMAGE, "schedule": "every 6 hours"}}, "renewer.schedule", "minute hour day month weekday"),
    ({"renewer": {"image": IMAGE, "schedule": "0 */6 * * * *"}}, "renewer.schedule", "minute hour"),
    ({"renewer": {"image": IMAGE, "schedule": "61 * * * *"}}, "renewer.schedule", "minute hour"),
    ({"renewer": {"schedule": "0 * * * *"}}, "renewer.image", "Dockerfile"),
    ({"renewer": {"image": "crshop.azurecr.io/keyvault-acme"}}, "renewer.image", "version tag"),
    ({"renewer": {"image": "crshop.azurecr.io/keyvault-acme:latest"}}, "renewer.image", "pin a version"),
    ({"renewer": {"image": IMAGE, "registry": "other.azurecr.io"}}, "renewer.registry", "image's registry"),
    ({"renewer": {"image": IMAGE, "timeout_minutes": 0}}, "renewer.timeout_minutes", "minutes"),
    ({"renewer": {"image": IMAGE, "shedule": "0 * * * *"}}, "renewer.shedule", "schedule"),
    ({"renewer": {"image": IMAGE}, "monitoring": {"enabled": False}}, "renewer", "monitoring.enabled"),
    ({"renewer": {"image": IMAGE}, "issuer": {"principal_id": "22222222-2222-2222-2222-222222222222",
                                              "client_id": "33333333-3333-3333-3333-333333333333"}},
     "issuer.resource_id", "userAssignedIdentities"),
])
def test_a_bad_renewer_setting_is_named_before_anything_is_registered(change, field, fix):
    with pytest.raises(SpecError) as caught:
        deploy(values(**change))
    assert caught.value.field == field and fix in str(caught.value)

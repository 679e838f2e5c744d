"""The in-Azure renewer: a Container Apps Job on a cron schedule running ``keyvault-acme renew --due``.

Deployed only when the stack sets ``keyvault-acme:renewer``. The job runs as the issuer's user-assigned
identity (the same least-privilege grants as the pipeline; no secret anywhere), from the image built by the
repository's Dockerfile, reading the stack file it is given as a secret volume (the stack's own config, which
holds no secrets), so no repository checkout or pipeline is needed at run time. Its console output goes to the
stack's Log Analytics workspace through the environment's diagnostic setting; the renewal-overdue alert reads
each certificate's next renewal date from it (:func:`renewer_log_query`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import pulumi
from pulumi_azure_native import app, monitor

from keyvault_acme_stack.renewer import MOUNT, job_command, stack_document, stack_file_name
from keyvault_acme_stack.workload import NAMESPACE, WorkloadConfig

STACK_SECRET = "stack-file"
# Container Apps' smallest consumption size: the CLI waits on DNS and the CA far more than it computes.
CPU, MEMORY = 0.25, "0.5Gi"


@dataclass(frozen=True)
class Renewer:
    environment: app.ManagedEnvironment
    job: app.Job


def job_name(cfg: WorkloadConfig) -> str:
    # Container Apps names: lower-case letters, digits and '-', at most 32 characters.
    return f"job-{cfg.stack_name}-renew"[:32].rstrip("-")


def deploy_renewer(name: str, cfg: WorkloadConfig, *, rg_name: pulumi.Input[str], workspace_id: pulumi.Input[str],
                   issuer_id: pulumi.Input[str], issuer_client_id: pulumi.Input[str],
                   here: Callable[..., pulumi.ResourceOptions]) -> Renewer:
    renewer = cfg.renewer
    assert renewer is not None
    tags = dict(cfg.tags)
    # Logs through Azure Monitor (a diagnostic setting), not the environment's shared-key Log Analytics link:
    # no workspace key is handed to anything.
    environment = app.ManagedEnvironment(
        f"{name}-renewer-env", environment_name=f"cae-{cfg.stack_name}"[:32], resource_group_name=rg_name,
        location=cfg.location, app_logs_configuration=app.AppLogsConfigurationArgs(destination="azure-monitor"),
        tags=tags, opts=here())
    monitor.DiagnosticSetting(
        f"{name}-renewer-logs", name="keyvault-acme-renewer", resource_uri=environment.id, workspace_id=workspace_id,
        log_analytics_destination_type="Dedicated",  # ContainerAppConsoleLogs, the table the overdue alert reads
        logs=[monitor.DiagnosticsLogSettingsArgs(category_group="allLogs", enabled=True)], opts=here())
    stack_file = json.dumps(stack_document(cfg.values, NAMESPACE), indent=1)  # JSON is YAML: the CLI reads it as is
    job = app.Job(
        f"{name}-renewer", job_name=job_name(cfg), resource_group_name=rg_name, location=cfg.location,
        environment_id=environment.id,
        identity=app.ManagedServiceIdentityArgs(type="UserAssigned", user_assigned_identities=[issuer_id]),
        configuration=app.JobConfigurationArgs(
            trigger_type="Schedule", replica_timeout=renewer.timeout_minutes * 60,
            replica_retry_limit=0,  # the next scheduled run is the retry; renew --due picks up what is still due
            schedule_trigger_config=app.JobConfigurationScheduleTriggerConfigArgs(
                cron_expression=renewer.schedule, parallelism=1, replica_completion_count=1),
            # A Container Apps secret only because that is how a job gets a file: the stack's config holds no
            # secrets (the parser refuses them), so it stays readable in previews.
            secrets=[app.SecretArgs(name=STACK_SECRET, value=stack_file)],
            registries=[app.RegistryCredentialsArgs(server=renewer.registry, identity=issuer_id)]
            if renewer.registry else None),
        template=app.JobTemplateArgs(
            containers=[app.ContainerArgs(
                name="renew", image=renewer.image, command=job_command(cfg.stack_name),
                # DefaultAzureCredential picks the managed identity with this client id.
                env=[app.EnvironmentVarArgs(name="AZURE_CLIENT_ID", value=issuer_client_id)],
                resources=app.ContainerResourcesArgs(cpu=CPU, memory=MEMORY),
                volume_mounts=[app.VolumeMountArgs(volume_name="stack", mount_path=MOUNT)])],
            volumes=[app.VolumeArgs(name="stack", storage_type="Secret", secrets=[app.SecretVolumeItemArgs(
                secret_ref=STACK_SECRET, path=stack_file_name(cfg.stack_name))])]),
        tags=tags, opts=here())
    return Renewer(environment, job)


def renewer_log_query(stack_name: str) -> str:
    """KQL rows (certificate, renew_after) from the renewer's JSON lines in the workspace (one line per
    certificate per run, whether it renewed or not: see ``renew --due --json``)."""
    return (f"ContainerAppConsoleLogs\n"
            f"| extend r = parse_json(Log)\n"
            f"| where tostring(r.stack) == \"{stack_name}\" and isnotempty(r.renew_after)\n"
            f"| project certificate = tostring(r.certificate), renew_after = todatetime(r.renew_after)")

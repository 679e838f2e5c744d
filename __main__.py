"""The keyvault-acme Pulumi program: one CertificateWorkload per stack (one workload in one environment).

The stack's ``keyvault-acme:*`` config is read with ``pulumi.Config`` (secrets arrive decrypted) into
``CertificateWorkloadArgs``, which the component parses with ``keyvault_acme_stack.workload`` -- the same parser the
CLI uses -- so a malformed stack fails before any resource is registered, with the key and the fix in the
message. ``pulumi.Config`` cannot list keys, so misspelt keys are found in the stack's own file.
"""
from pathlib import Path

import pulumi
import yaml

from keyvault_acme.errors import SpecError
from keyvault_acme_pulumi import CertificateWorkload, CertificateWorkloadArgs
from keyvault_acme_stack.workload import NAMESPACE


def stack_file() -> Path:
    project = Path(__file__).resolve().parent
    settings = yaml.safe_load((project / "Pulumi.yaml").read_text(encoding="utf-8")) or {}
    return project / settings.get("stackConfigDir", ".") / f"Pulumi.{pulumi.get_stack()}.yaml"


try:
    args = CertificateWorkloadArgs.from_config(pulumi.Config(NAMESPACE), stack_file=stack_file())
    workload = CertificateWorkload(f"{args.workload}-{args.environment}", args)
except SpecError as e:
    raise pulumi.RunError(f"stack config keyvault-acme:{e}") from None

pulumi.export("vault_uri", workload.vault_uri)
pulumi.export("issuer_client_id", workload.issuer_client_id)
pulumi.export("zone_name_servers", workload.zone_name_servers)
pulumi.export("certificates", workload.outputs["certificates"])

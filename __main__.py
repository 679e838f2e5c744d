"""The keyvault-acme Pulumi program: one CertificateWorkload per stack (one workload in one environment).

The stack's ``keyvault-acme:*`` config is read here, once, as plain values and parsed by
``keyvault_acme_stack.workload`` -- the same parser the CLI uses -- so a malformed stack fails before any
resource is registered, with the key and the fix in the message.
"""
import json

import pulumi
from pulumi.runtime import config as runtime_config

from keyvault_acme.errors import SpecError
from keyvault_acme_pulumi import CertificateWorkload
from keyvault_acme_stack.workload import KEYS, NAMESPACE, parse_workload_config


def read_config() -> dict:
    config = pulumi.Config(NAMESPACE)
    # Every key of our namespace, known or not: the parser names unknown keys (typos) instead of ignoring them.
    present = {k.split(":", 1)[1] for k in (*runtime_config.CONFIG.get(), *runtime_config.get_config_env())
               if k.startswith(NAMESPACE + ":")}
    values = {}
    for key in sorted(present | set(KEYS)):
        raw = config.get(key)
        if raw is None:
            continue
        # Structured values arrive as JSON text, scalars as plain text ("westeurope", "true").
        try:
            values[key] = json.loads(raw)
        except ValueError:
            values[key] = raw
    return values


try:
    workload_config = parse_workload_config(read_config())
except SpecError as e:
    raise pulumi.RunError(f"stack config keyvault-acme:{e}") from None

workload = CertificateWorkload(workload_config.stack_name, workload_config)

pulumi.export("vault_uri", workload.vault_uri)
pulumi.export("issuer_client_id", workload.issuer_client_id)
pulumi.export("zone_name_servers", workload.zone_name_servers)
pulumi.export("certificates", workload.outputs["certificates"])

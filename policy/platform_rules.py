"""The platform team's validation functions for keyvault-acme stacks (the policy pack's logic).

Kept apart from ``__main__.py`` because constructing a ``PolicyPack`` starts the analyzer server; these
functions are plain and tested directly. Name checks call the engine's own allowlist code
(:mod:`keyvault_acme_stack.authorization`), so the pack, the component and the CLI refuse a name in the same words.
The allowlists live in this pack's config, which workloads do not control: a workload cannot widen its
names from its own stack file.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from pulumi_policy import ReportViolation, ResourceValidationArgs

from keyvault_acme.errors import SpecError
from keyvault_acme_stack.authorization import allowlist_from_dict, check_names

CERTIFICATE_TYPE = "pulumi-python:dynamic/keyvault_acme:Certificate"
ROLE_ASSIGNMENT_TYPE = "azure-native:authorization:RoleAssignment"

# Roles that hand out the keys to the kingdom: never assigned by a certificate workload.
FORBIDDEN_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
}
# Data roles that read or write every secret when granted on a whole vault: the vault also holds the ACME
# account key, so they go on single secrets (<vault>/secrets/<name>) only.
SECRET_ROLES = {
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
}
_VAULT_SCOPE = re.compile(r"/providers/Microsoft\.KeyVault/vaults/[^/]+/?$", re.I)
_WIDE_SCOPE = re.compile(r"^/subscriptions/[^/]+(/resourceGroups/[^/]+)?/?$|^/$|^/providers/Microsoft\.Management/", re.I)

ALLOWLIST_CONFIG_SCHEMA: dict[str, Any] = {
    "allowlists": {
        "type": "object",
        "description": "<project>/<stack>, exactly as Pulumi names them -> {suffixes: [...], names: [...]}: "
                       "the DNS names that stack's certificates may hold. A stack not listed may hold none.",
        "propertyNames": {"pattern": "^[^/]+/[^/]+$"},
        "additionalProperties": {
            "type": "object",
            "properties": {
                "suffixes": {"type": "array", "items": {"type": "string"}},
                "names": {"type": "array", "items": {"type": "string"}},
            },
            "additionalProperties": False,
        },
    },
}


def stack_of(urn: str) -> str:
    """``<project>/<stack>`` of a resource: urn:pulumi:<stack>::<project>::<type>::<name>."""
    stack, project = urn.split("::", 2)[:2]
    return f"{project}/{stack.split(':', 2)[-1]}"


def allowlist_key(config: Mapping[str, Any], stack: str) -> str | None:
    """The allowlist of exactly this ``<project>/<stack>``, or None.

    No prefix or fallback match: stack names are chosen by whoever runs ``pulumi stack init``, so a stack
    ``shop-x`` (or a project of another team with a stack ``shop-prod``) must not inherit ``shop``'s names.
    """
    lists = config.get("allowlists") or {}
    return stack if stack in lists else None


def certificate_name_violations(resource_type: str, props: Mapping[str, Any], urn: str,
                                config: Mapping[str, Any]) -> list[str]:
    """Why a Certificate's DNS names break the platform allowlist (empty: they do not)."""
    if resource_type != CERTIFICATE_TYPE:
        return []
    names = props.get("dns_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return []  # unknown at preview: checked again when known
    stack = stack_of(urn)
    key = allowlist_key(config, stack)
    if key is None:
        return [f"stack {stack} has no DNS-name allowlist in the platform policy config; "
                f"ask the platform team to add one under allowlists.\"{stack}\""]
    try:
        check_names(names, allowlist_from_dict(config["allowlists"][key], f"allowlists.{key}"),
                    field=f"{props.get('name', 'certificate')}.dns_names", owner=f"stack {key}")
    except SpecError as e:
        return [str(e)]
    return []


def role_assignment_violations(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Why a role assignment is broader than a certificate workload may grant (empty: it is not)."""
    if resource_type != ROLE_ASSIGNMENT_TYPE:
        return []
    out = []
    role, scope = props.get("roleDefinitionId"), props.get("scope")
    if isinstance(role, str):
        guid = role.rstrip("/").rsplit("/", 1)[-1].lower()
        if guid in FORBIDDEN_ROLES:
            out.append(f"role assignment grants {FORBIDDEN_ROLES[guid]}; grant a narrow data role on one vault or "
                       "record set instead")
        if guid in SECRET_ROLES and isinstance(scope, str) and _VAULT_SCOPE.search(scope):
            out.append(f"role assignment grants {SECRET_ROLES[guid]} on the whole vault {scope}, which holds the ACME "
                       "account key; scope it to <vault>/secrets/<certificate>")
    if isinstance(scope, str) and _WIDE_SCOPE.match(scope):
        out.append(f"role assignment scope {scope} is subscription- or resource-group-wide; scope it to the vault, "
                   "the zone or the _acme-challenge record set")
    return out


# The policies' validate functions, as the analyzer calls them.


def certificate_names_allowed(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for message in certificate_name_violations(args.resource_type, args.props, args.urn, args.get_config()):
        report_violation(message, None)


def role_assignments_narrow(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for message in role_assignment_violations(args.resource_type, args.props):
        report_violation(message, None)

"""The least-privilege rules, as a check over what a program registered (shared by the graph tests)."""
from __future__ import annotations

import re

from keyvault_acme_pulumi.components.workload import (
    DNS_TXT_ACTIONS,
    DNS_ZONE_READ_ACTIONS,
    KEY_VAULT_CERTIFICATES_OFFICER,
    KEY_VAULT_SECRETS_OFFICER,
    KEY_VAULT_SECRETS_USER,
)

from .harness import Run

OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
ENGINE_SECRETS = re.compile(r"/secrets/(acme-account-key|[A-Za-z0-9-]+-chain)$")

_SUBSCRIPTION_WIDE = re.compile(r"^/subscriptions/[^/]+/?$", re.I)
_GROUP_WIDE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/?$", re.I)
_VAULT = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.KeyVault/vaults/[^/]+$", re.I)
_CHALLENGE_RECORD_SET = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/dnszones/[^/]+/TXT/_acme-challenge(\.[^/]+)?$", re.I)
_ZONE = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/dnszones/[^/]+$", re.I)


class TooBroad(AssertionError):
    pass


def role_guid(role_definition_id: str) -> str:
    return role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()


def check_least_privilege(run: Run, *, vault_id: str, issuer: str, consumers: set[str], certificates: set[str],
                          zone_scoped: set[str] = frozenset()) -> None:
    """Raise :class:`TooBroad` if any registered assignment is wider than the workload rules allow.

    issuer -> Certificates Officer on this vault, Secrets Officer on the engine's own secrets (account key,
    ``<cert>-chain``) only, the TXT-only custom role on an
    ``_acme-challenge`` record set (or on a zone listed in ``zone_scoped``) and the zone-read-only role on
    a zone; consumers -> Secrets User on the secret of one of ``certificates`` (never the vault: it holds the ACME
    account key, the chains and maybe TSIG keys). Never Owner, Contributor, User Access Administrator, a subscription or
    resource group scope.
    """
    writers, readers = {}, {}
    for d in run.of_type("azure-native:authorization:RoleDefinition"):
        perms = d.inputs["permissions"]
        actions = sorted(perms[0].get("actions", [])) if len(perms) == 1 else None
        if any(perms[0].get(k) for k in ("dataActions", "notActions", "notDataActions")):
            actions = None
        if actions == sorted(DNS_TXT_ACTIONS):
            writers[d.id.lower()] = d
        elif actions == sorted(DNS_ZONE_READ_ACTIONS):
            readers[d.id.lower()] = d
        else:
            raise TooBroad(f"custom role {d.inputs['roleName']} grants {perms}, not only TXT writes / zone read")
        for scope in d.inputs["assignableScopes"]:
            if _SUBSCRIPTION_WIDE.match(scope):
                raise TooBroad(f"custom role {d.inputs['roleName']} is assignable subscription-wide ({scope})")
    for a in run.of_type("azure-native:authorization:RoleAssignment"):
        role, scope, who = a.inputs["roleDefinitionId"], a.inputs["scope"], a.inputs["principalId"]
        guid = role_guid(role)
        where = f"assignment {a.name} ({role} on {scope} for {who})"
        if guid in (OWNER, CONTRIBUTOR, USER_ACCESS_ADMINISTRATOR):
            raise TooBroad(f"{where}: built-in admin role")
        if _SUBSCRIPTION_WIDE.match(scope) or _GROUP_WIDE.match(scope):
            raise TooBroad(f"{where}: subscription- or resource-group-wide")
        if role.lower() in writers:
            if who != issuer:
                raise TooBroad(f"{where}: the DNS role belongs to the issuer only")
            if not (_CHALLENGE_RECORD_SET.match(scope) or (_ZONE.match(scope) and scope.lower() in zone_scoped)):
                raise TooBroad(f"{where}: DNS role outside an _acme-challenge record set")
        elif role.lower() in readers:
            if who != issuer or not _ZONE.match(scope):
                raise TooBroad(f"{where}: the zone reader role goes to the issuer on a zone only")
        elif guid == KEY_VAULT_CERTIFICATES_OFFICER:
            if who != issuer or scope.lower() != vault_id.lower():
                raise TooBroad(f"{where}: Certificates Officer goes to the issuer on this vault only")
        elif guid == KEY_VAULT_SECRETS_OFFICER:
            secret = scope[len(vault_id):] if scope.lower().startswith(vault_id.lower() + "/secrets/") else ""
            if who != issuer or not ENGINE_SECRETS.match(secret):
                raise TooBroad(f"{where}: Secrets Officer goes to the issuer on the engine's own secrets only")
        elif guid == KEY_VAULT_SECRETS_USER:
            if who not in consumers:
                raise TooBroad(f"{where}: Secrets User goes to a consumer only")
            if _VAULT.match(scope):
                raise TooBroad(f"{where}: Secrets User on the whole vault reads the ACME account key and every secret")
            secret = scope[len(vault_id) + len("/secrets/"):] if scope.lower().startswith(vault_id.lower() + "/secrets/") else ""
            if secret.lower() not in {c.lower() for c in certificates}:
                raise TooBroad(f"{where}: Secrets User goes on a certificate's own secret in this vault only")
        else:
            raise TooBroad(f"{where}: role not in the workload's rules")

"""Azure RBAC, reduced to what the emulated services check: roles (action patterns) assigned to apps at scopes.

An assignment at scope S covers scope T when T equals S or lies below it (T starts with S + "/"), compared
case-insensitively, as ARM does. Unknown principals are denied: nothing is allowed without an assignment.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

ROOT_SCOPE = "/"

# The built-in roles the project relies on, with the permissions Azure documents for them (trimmed to the
# providers the emulator serves). "Emulator Root" is the emulator's own switch for tests that do not test authz.
_MGMT_READ = ["Microsoft.Authorization/*/read", "Microsoft.Resources/subscriptions/resourceGroups/read"]
BUILTIN_ROLES: dict[str, dict[str, list[str]]] = {
    "Owner": {"actions": ["*"], "data_actions": []},
    "Contributor": {"actions": ["*"], "data_actions": []},
    "Reader": {"actions": ["*/read"], "data_actions": []},
    "Key Vault Administrator": {
        "actions": [*_MGMT_READ, "Microsoft.KeyVault/vaults/*/read"],
        "data_actions": ["Microsoft.KeyVault/vaults/*"],
    },
    "Key Vault Certificates Officer": {
        "actions": [*_MGMT_READ, "Microsoft.KeyVault/vaults/*/read"],
        "data_actions": [
            "Microsoft.KeyVault/vaults/certificatecas/*",
            "Microsoft.KeyVault/vaults/certificates/*",
            "Microsoft.KeyVault/vaults/certificatecontacts/write",
        ],
    },
    "Key Vault Secrets Officer": {
        "actions": [*_MGMT_READ, "Microsoft.KeyVault/vaults/*/read"],
        "data_actions": ["Microsoft.KeyVault/vaults/secrets/*"],
    },
    "Key Vault Secrets User": {
        "actions": [],
        "data_actions": [
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
    },
    "Key Vault Crypto Officer": {
        "actions": [*_MGMT_READ, "Microsoft.KeyVault/vaults/*/read"],
        "data_actions": ["Microsoft.KeyVault/vaults/keys/*", "Microsoft.KeyVault/vaults/keyrotationpolicies/*"],
    },
    "Key Vault Crypto User": {
        "actions": [],
        "data_actions": [
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/update/action",
            "Microsoft.KeyVault/vaults/keys/backup/action",
            "Microsoft.KeyVault/vaults/keys/encrypt/action",
            "Microsoft.KeyVault/vaults/keys/decrypt/action",
            "Microsoft.KeyVault/vaults/keys/wrap/action",
            "Microsoft.KeyVault/vaults/keys/unwrap/action",
            "Microsoft.KeyVault/vaults/keys/sign/action",
            "Microsoft.KeyVault/vaults/keys/verify/action",
        ],
    },
    "Key Vault Reader": {
        "actions": [*_MGMT_READ, "Microsoft.KeyVault/vaults/*/read"],
        "data_actions": [
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
    },
    "DNS Zone Contributor": {
        "actions": [*_MGMT_READ, "Microsoft.Network/dnsZones/*"],
        "data_actions": [],
    },
    "Emulator Root": {"actions": ["*"], "data_actions": ["*"]},
}


@dataclass(frozen=True)
class Role:
    name: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()

    def permits(self, action: str) -> bool:
        # Data actions and control-plane actions are separate grants in Azure; "*" in actions never grants data.
        allow, deny = (self.data_actions, self.not_data_actions) if is_data_action(action) else (self.actions, self.not_actions)
        return _matches_any(action, allow) and not _matches_any(action, deny)


@dataclass(frozen=True)
class Assignment:
    app_id: str
    role: str
    scope: str
    id: str = field(default="")
    created_on: str = ""  # ISO 8601, as ARM reports it
    effective_at: float = 0.0  # epoch seconds: Azure takes minutes to apply a new assignment everywhere


# Key Vault data-plane operations are the "data actions"; everything else is management plane.
_DATA_PREFIXES = (
    "microsoft.keyvault/vaults/certificates/",
    "microsoft.keyvault/vaults/certificatecas/",
    "microsoft.keyvault/vaults/certificatecontacts/",
    "microsoft.keyvault/vaults/secrets/",
    "microsoft.keyvault/vaults/keys/",
    "microsoft.keyvault/vaults/keyrotationpolicies/",
)


def is_data_action(action: str) -> bool:
    return action.lower().startswith(_DATA_PREFIXES)


def _matches_any(action: str, patterns: Iterable[str]) -> bool:
    lowered = action.lower()
    return any(fnmatch.fnmatchcase(lowered, p.lower()) for p in patterns)


def scope_covers(assigned: str, target: str) -> bool:
    a, t = assigned.rstrip("/").lower(), target.rstrip("/").lower()
    return a == "" or t == a or t.startswith(a + "/")


def vault_scope(subscription_id: str, resource_group: str, vault_name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/Microsoft.KeyVault/vaults/{vault_name}"


class Authorizer:
    """Thread-safe role definitions and assignments; `allowed` is the one question services ask."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._roles: dict[str, Role] = {
            name.lower(): Role(name, tuple(r["actions"]), (), tuple(r["data_actions"]), ())
            for name, r in BUILTIN_ROLES.items()
        }
        self._custom: set[str] = set()
        self._assignments: list[Assignment] = []
        self._next_id = 1

    def define_role(
        self,
        name: str,
        actions: Iterable[str] = (),
        data_actions: Iterable[str] = (),
        not_actions: Iterable[str] = (),
        not_data_actions: Iterable[str] = (),
    ) -> Role:
        role = Role(name, tuple(actions), tuple(not_actions), tuple(data_actions), tuple(not_data_actions))
        with self._lock:
            self._roles[name.lower()] = role
            self._custom.add(name.lower())
        return role

    def assign(self, app_id: str, role: str, scope: str, *, propagation_s: float = 0.0) -> Assignment:
        """Assign ``role`` at ``scope``; it takes effect ``propagation_s`` seconds from now (Azure: up to 10 min)."""
        if not scope.startswith("/"):
            raise ValueError(f"scope {scope!r} must be an ARM id starting with '/'")
        now = self._clock()
        with self._lock:
            if role.lower() not in self._roles:
                raise KeyError(role)
            assignment = Assignment(app_id, self._roles[role.lower()].name, scope, f"ra-{self._next_id}",
                                    dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(),
                                    now + max(0.0, float(propagation_s)))
            self._next_id += 1
            self._assignments.append(assignment)
        return assignment

    def unassign(self, assignment_id: str) -> bool:
        with self._lock:
            before = len(self._assignments)
            self._assignments = [a for a in self._assignments if a.id != assignment_id]
            return len(self._assignments) != before

    def assignments(self, app_id: str | None = None) -> list[Assignment]:
        with self._lock:
            return [a for a in self._assignments if app_id is None or a.app_id == app_id]

    def allowed(self, app_id: str, action: str, scope: str) -> bool:
        now = self._clock()
        with self._lock:
            for a in self._assignments:
                if a.app_id == app_id and a.effective_at <= now and scope_covers(a.scope, scope) \
                        and self._roles[a.role.lower()].permits(action):
                    return True
        return False

    def permissions(self, app_id: str, scope: str) -> list[Role]:
        """The roles the app holds at ``scope`` (assigned there or above), as ARM's permissions API lists them."""
        with self._lock:
            return [self._roles[a.role.lower()] for a in self._assignments
                    if a.app_id == app_id and scope_covers(a.scope, scope)]

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "roles": [asdict(self._roles[n]) for n in sorted(self._custom)],
                "assignments": [asdict(a) for a in self._assignments],
                "next_id": self._next_id,
            }

    def load_dict(self, data: dict[str, Any]) -> None:
        for r in data.get("roles", []):
            self.define_role(r["name"], r["actions"], r["data_actions"], r["not_actions"], r["not_data_actions"])
        with self._lock:
            self._assignments = [Assignment(**a) for a in data.get("assignments", [])]
            self._next_id = int(data.get("next_id", len(self._assignments) + 1))


# -- ARM: GET {scope}/providers/Microsoft.Authorization/permissions ------------------------------------------

PERMISSIONS_SUFFIX = "/providers/microsoft.authorization/permissions"
PERMISSIONS_API_VERSIONS = frozenset({"2015-07-01", "2018-01-01-preview", "2022-04-01"})


def is_permissions_request(path: str) -> bool:
    return path.rstrip("/").lower().endswith(PERMISSIONS_SUFFIX)


def permissions_body(authorizer: Authorizer, app_id: str, path: str) -> dict[str, Any]:
    """The caller's effective permissions at the scope before the suffix: one entry per role held there, as
    ARM answers (any authenticated caller may ask about itself; the scope need not exist yet)."""
    scope = path.rstrip("/")[: -len(PERMISSIONS_SUFFIX)] or ROOT_SCOPE
    return {"value": [{"actions": list(r.actions), "notActions": list(r.not_actions),
                       "dataActions": list(r.data_actions), "notDataActions": list(r.not_data_actions)}
                      for r in authorizer.permissions(app_id, scope)]}

"""The local world the lifecycle tests run in, and one resource driven through the host as the Pulumi engine does.

:class:`Deployed` plays the engine's part for one ``Certificate``: it keeps the resource's state
(id, checked inputs, outputs) and turns ``up``, ``preview``, ``refresh`` and ``destroy`` into the same
RPC sequences the engine sends (check -> diff -> create/update/replace; read -> diff; delete).
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.provider.conftest import FRACTION_REMAINING
from tests.provider.host import ProviderHost, changes
from tests.services import BIND_ZONE, azure_zone_id

AZURE_ZONE = "azure.test"

PROVIDER_KEY = "__provider"
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.")  # a bearer token's header and claims


@dataclass
class World:
    bind: Any
    pebble: Any
    emulator: Any
    credential: Any
    secrets: dict[str, str]  # values that must never reach state: the client secret, the TSIG secret
    app_id: str = ""  # the identity the provider host signs in as
    host: ProviderHost | None = None
    vaults: tuple[str, ...] = field(default_factory=lambda: tuple(
        f"https://kv{uuid.uuid4().hex[:10]}{i}.vault.azure.net" for i in range(2)))

    def inputs(self, name: str, labels: list[str], *, vault: int = 0, azure: list[str] = (), **extra: Any
               ) -> dict[str, Any]:
        """A program's inputs for certificate ``name``: ``<label>.rfc2136.test`` (BIND 9, RFC 2136) for each
        of ``labels`` and ``<label>.azure.test`` (the emulator's Azure DNS) for each of ``azure``."""
        vault_url = self.vaults[vault]
        zones = [{"zone": BIND_ZONE, "server": self.bind.server, "tsig_key_name": self.bind.tsig_key_name,
                  "tsig_secret": f"{vault_url}/secrets/tsig"}]
        if azure:
            zones.append({"resource_id": azure_zone_id(AZURE_ZONE)})
        return {
            "vault_url": vault_url, "name": name,
            "dns_names": [f"{label}.{BIND_ZONE}" for label in labels] + [f"{label}.{AZURE_ZONE}" for label in azure],
            "zones": zones,
            "acme": {"directory_url": self.pebble.directory_url, "contact": ["ops@rfc2136.test"]},
            "renewal": {"fraction_remaining": FRACTION_REMAINING},
            # BIND answers for its zone and forwards the emulator's Azure zones: one resolver checks both.
            "resolvers": [self.bind.server], "propagation_timeout_s": 30,
            **extra,
        }

    def leaks(self, state: dict[str, Any]) -> list[str]:
        """What must never be in a resource's state but is."""
        text = json.dumps(state)
        found = [what for what, value in self.secrets.items() if value and value in text]
        found += ["PRIVATE KEY"] if "PRIVATE KEY" in text else []
        found += ["a token"] if _JWT.search(text) else []
        return found


class Deployed:
    """One resource's state, advanced by the RPCs `pulumi up / preview / refresh / destroy` would send."""

    def __init__(self, host: ProviderHost, provider: str) -> None:
        self.host, self.provider = host, provider
        self.id = ""
        self.inputs: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.deleted: list[tuple[str, dict[str, Any]]] = []  # (id, outputs) of replaced resources

    def _news(self, program_inputs: dict[str, Any]) -> dict[str, Any]:
        return {**program_inputs, PROVIDER_KEY: self.provider}

    def _checked(self, program_inputs: dict[str, Any]) -> dict[str, Any]:
        checked, failures = self.host.check(self.inputs, self._news(program_inputs))
        assert not failures, failures
        return checked

    def preview(self, program_inputs: dict[str, Any]) -> str:
        """check + diff only (the host never creates or updates in a preview)."""
        checked = self._checked(program_inputs)
        return "create" if not self.id else changes(self.host.diff(self.id, self.outputs, checked))

    def up(self, program_inputs: dict[str, Any]) -> str:
        checked = self._checked(program_inputs)
        if not self.id:
            self.id, self.outputs = self.host.create(checked)
            self.inputs = checked
            return "create"
        step = changes(self.host.diff(self.id, self.outputs, checked))
        if step == "update":
            self.outputs = self.host.update(self.id, self.outputs, checked)
        elif step == "replace":  # create before delete (deleteBeforeReplace is false)
            old = (self.id, self.outputs)
            self.id, self.outputs = self.host.create(checked)
            self.host.delete(*old)
            self.deleted.append(old)
        self.inputs = checked
        return step

    def refresh(self) -> str:
        """read, then diff against the inputs (what `pulumi refresh` shows); "gone" when read drops it."""
        new_id, outputs = self.host.read(self.id, self.outputs, self.inputs)
        if not new_id:
            self.id, self.outputs = "", {}
            return "gone"
        self.id, self.outputs = new_id, outputs
        return changes(self.host.diff(self.id, self.outputs, self.inputs))

    def destroy(self) -> None:
        self.host.delete(self.id, self.outputs)
        self.deleted.append((self.id, self.outputs))
        self.id, self.outputs = "", {}

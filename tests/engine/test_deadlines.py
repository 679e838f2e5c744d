"""One deadline per operation: every step of an issuance (preflight, DNS writes and clean-up, Key Vault, the
CA) works against the deadline ``Engine.timeout_s`` set when the operation began, not a clock of its own."""
from __future__ import annotations

import time

import pytest

from keyvault_acme.dns.azure import AzureDnsProvider
from keyvault_acme.dns.challenges import CLEANUP_BUDGET_S
from keyvault_acme.dns.rfc2136 import Rfc2136Provider
from keyvault_acme.errors import Deadline
from keyvault_acme.keyvault import KeyVault
from keyvault_acme.lifecycle import Engine
from tests.engine.conftest import AZURE_ZONE, faults, unique
from tests.services import BIND_ZONE

pytestmark = pytest.mark.integration


def record_deadlines(monkeypatch, cls, method: str, seen: list) -> None:
    original = getattr(cls, method)

    def spy(self, *args, deadline=None, **kwargs):
        seen.append((f"{cls.__name__}.{method}", deadline if deadline is not None else getattr(self, "deadline", None)))
        return original(self, *args, deadline=deadline, **kwargs)

    monkeypatch.setattr(cls, method, spy)


def test_every_step_of_an_issuance_shares_the_operations_deadline(world, credential, monkeypatch):
    engine = Engine(credential)
    spec = world.spec([unique(AZURE_ZONE), unique(BIND_ZONE)], zones="both")
    seen: list = []
    for cls, method in ((KeyVault, "certificate"), (KeyVault, "refuse_foreign_secret"),
                        (KeyVault, "create_pending"), (KeyVault, "merge"), (AzureDnsProvider, "check_access"),
                        (AzureDnsProvider, "present"), (AzureDnsProvider, "cleanup"),
                        (Rfc2136Provider, "present"), (Rfc2136Provider, "cleanup")):
        record_deadlines(monkeypatch, cls, method, seen)
    engine.issue(spec)
    called = {name for name, _ in seen}
    assert {"KeyVault.certificate", "KeyVault.refuse_foreign_secret", "AzureDnsProvider.check_access",
            "AzureDnsProvider.present", "Rfc2136Provider.present", "AzureDnsProvider.cleanup"} <= called
    # The issuance's first step fixed the deadline; preflight and the DNS writes use the same one.
    first = seen[0][1]
    assert first is not None
    assert {deadline for name, deadline in seen if not name.endswith("cleanup")} == {first}
    # Clean-up has a small budget of its own, from when it starts, not what is left of the operation's 600 s:
    # a failing DNS API costs seconds (and it still gets them when the operation's deadline has passed).
    cleanups = [deadline for name, deadline in seen if name.endswith("cleanup")]
    assert cleanups and all(deadline <= time.monotonic() + CLEANUP_BUDGET_S < first for deadline in cleanups)


@pytest.mark.timeout(45)  # Azure DNS's own 60 s per call would be stopped here
def test_azure_dns_writes_give_up_at_the_operations_deadline(world, credential, emulator):
    engine = Engine(credential, timeout_s=3)
    spec = world.spec([unique(AZURE_ZONE)])
    with faults(emulator, {"status": 503, "host": "management.azure.com", "path": "*/TXT/*", "method": "PUT"}):
        with pytest.raises(Deadline, match="Azure DNS"):
            engine.issue(spec)
    assert engine.inspect(spec.vault_url, spec.name) is None

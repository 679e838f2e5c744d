"""The engine tells its observer of every issue, renew and revoke, with the outcome and the failure reason."""
from __future__ import annotations

import pytest

from keyvault_acme.errors import CertificateNotFound
from keyvault_acme.lifecycle import Engine
from keyvault_acme.observe import Operation
from tests.engine.conftest import AZURE_ZONE, unique


class Seen:
    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def operation(self, op: Operation) -> None:
        self.operations.append(op)


@pytest.mark.integration
def test_issue_renew_revoke_and_a_failure_reach_the_observer(world, credential):
    seen = Seen()
    engine = Engine(credential, observer=seen)
    spec = world.spec([unique(AZURE_ZONE)])
    issued = engine.issue(spec)
    renewed = engine.renew(spec)
    engine.revoke(spec, "superseded")
    with pytest.raises(CertificateNotFound):
        engine.revoke(world.spec([unique(AZURE_ZONE)]), "superseded")  # never issued

    assert [(o.kind, o.certificate, o.failure) for o in seen.operations] == [
        ("issue", spec.name, None), ("renew", spec.name, None), ("revoke", spec.name, None),
        ("revoke", seen.operations[3].certificate, "CertificateNotFound")]
    assert seen.operations[0].facts == issued and seen.operations[1].facts == renewed
    assert all(o.vault_url == spec.vault_url and o.duration_s > 0 for o in seen.operations)
    assert seen.operations[0].started_at <= seen.operations[1].started_at <= seen.operations[2].started_at


@pytest.mark.integration
def test_a_failing_observer_does_not_fail_the_operation(world, credential, caplog):
    class Broken:
        def operation(self, op: Operation) -> None:
            raise RuntimeError("metrics disk full")

    engine = Engine(credential, observer=Broken())
    facts = engine.issue(world.spec([unique(AZURE_ZONE)]))
    assert facts.version
    assert "the Broken observer failed on issue" in caplog.text and "metrics disk full" in caplog.text

"""A 403 just after the role assignments were made is waited out; any other 403 is the answer at once.

The emulator applies a new assignment only after its propagation time, as Azure takes minutes to."""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

import pytest

from emulator.admin_client import ROOT_ROLE
from emulator.authz import vault_scope
from emulator.keyvault import DEFAULT_RESOURCE_GROUP, DEFAULT_SUBSCRIPTION
from keyvault_acme.access import RBAC_PROPAGATION, may_still_settle
from keyvault_acme.errors import DnsError, DnsForbidden, KeyVaultError, KeyVaultForbidden
from keyvault_acme.lifecycle import Engine
from tests import services
from tests.engine.conftest import AZURE_ZONE, unique

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)


# -- the decision ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("error, granted_at, expected", [
    (KeyVaultForbidden("403"), NOW - timedelta(minutes=1), True),
    (DnsForbidden("403"), NOW - timedelta(minutes=9, seconds=59), True),
    (KeyVaultForbidden("403"), NOW - RBAC_PROPAGATION, False),  # surely in effect by now: a real refusal
    (KeyVaultForbidden("403"), None, False),  # nobody said a grant was just made
    (KeyVaultError("500"), NOW, False),
    (DnsError("SERVFAIL"), NOW, False),
])
def test_which_errors_may_be_a_grant_still_settling(error, granted_at, expected):
    assert may_still_settle(error, granted_at, NOW) is expected


# -- against the emulator ----------------------------------------------------------------------------------
def _engine_for(emulator, grants: list[tuple[str, float]]) -> Engine:
    """An engine signed in as a new app holding the emulator's root role at each (scope, propagation_s)."""
    from azure.identity import ClientSecretCredential

    app = emulator.admin.add_client(name="late-grants")
    for scope, propagation_s in grants:
        emulator.admin.assign_role(app["client_id"], ROOT_ROLE, scope, propagation_s=propagation_s)
    return Engine(ClientSecretCredential(app["tenant_id"], app["client_id"], app["secret"]))


def _vault_scope(vault_url: str) -> str:
    return vault_scope(DEFAULT_SUBSCRIPTION, DEFAULT_RESOURCE_GROUP, vault_url.split("//")[1].split(".")[0])


def test_a_key_vault_grant_still_propagating_is_waited_for(world, emulator, pebble, caplog):
    engine = _engine_for(emulator, [("/", 4.0)])  # longer than any start-up, so the first call is refused
    granted_at = datetime.now(timezone.utc)
    with caplog.at_level(logging.INFO, logger="keyvault_acme"):
        facts = engine.issue(world.spec([unique(AZURE_ZONE)]), access_granted_at=granted_at)
    assert pebble.cert_status(facts.serial) == "Valid"
    waits = [r.getMessage() for r in caplog.records if "can take up to 10 minutes" in r.getMessage()]
    assert len(waits) == 1 and "403" in waits[0], "one line says why it waits, not one per attempt"


def test_a_dns_grant_still_propagating_is_waited_for(world, emulator, pebble):
    zones = [(services.azure_zone_id(zone), 2.0) for zone in services.AZURE_ZONES]  # the spec's zones
    engine = _engine_for(emulator, [(_vault_scope(world.vault_url), 0.0), *zones])
    facts = engine.issue(world.spec([unique(AZURE_ZONE)]), access_granted_at=datetime.now(timezone.utc))
    assert pebble.cert_status(facts.serial) == "Valid"


@pytest.mark.parametrize("granted_ago", [None, RBAC_PROPAGATION + timedelta(minutes=1)], ids=["unknown", "old"])
def test_a_403_is_the_answer_at_once_when_no_grant_is_settling(world, emulator, granted_ago):
    engine = _engine_for(emulator, [("/", 3600.0)])  # never in effect during this test
    granted_at = None if granted_ago is None else datetime.now(timezone.utc) - granted_ago
    started = time.monotonic()
    with pytest.raises(KeyVaultForbidden):
        engine.issue(world.spec([unique(AZURE_ZONE)]), access_granted_at=granted_at)
    assert time.monotonic() - started < 5

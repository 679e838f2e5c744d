"""dns-persist-01 records: their values and how a served record is judged (pure). The end-to-end tests against
Pebble 2.10 (an issuer with no DNS role issues and renews; a CA without the challenge fails preflight; check;
PersistRecords following the account) wait on branch i10b-with-pebble210-tests until Pebble 2.10 is on main."""
from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from azure.identity import ClientSecretCredential
from azure.mgmt.dns import DnsManagementClient

from keyvault_acme.dns import persist
from tests import services
from tests.engine.conftest import AZURE_ZONE, World

pytestmark = pytest.mark.integration


def publish(credential, records: dict[str, str]) -> None:
    """What the stack does (ARM, the deployer's rights): one TXT record set per record."""
    client = DnsManagementClient(credential, services.AZURE_ZONES[AZURE_ZONE])
    for name, value in records.items():
        client.record_sets.create_or_update(services.AZURE_RESOURCE_GROUP, AZURE_ZONE,
                                            name[: -len(AZURE_ZONE) - 1], "TXT",
                                            {"ttl": 60, "txt_records": [{"value": [value]}]})


@pytest.fixture
def issuer_without_dns(world, emulator):
    """An identity with Key Vault roles only: Certificates Officer on the vault, Secrets Officer on its secrets."""
    app = emulator.admin.add_client(name=f"persist-{uuid.uuid4().hex[:6]}")
    scope = emulator.admin.register_vault(world.vault_url.split("//")[1].split(".")[0])["id"]
    emulator.admin.assign_role(app["client_id"], "Key Vault Certificates Officer", scope)
    emulator.admin.assign_role(app["client_id"], "Key Vault Secrets Officer", scope)
    return ClientSecretCredential(app["tenant_id"], app["client_id"], app["secret"])


def persist_spec(world: World, names, **kwargs):
    spec = world.spec(names, **kwargs)
    return replace(spec, challenge="dns-persist-01",
                   acme=replace(spec.acme, account_key_secret=f"acct-{uuid.uuid4().hex[:8]}"))


def test_record_values_and_their_judgement():
    url = "https://ca.example/acct/1"
    assert persist.record_value("CA.example.", url, wildcard=True, persist_until=2000000000) == \
        "ca.example; accounturi=https://ca.example/acct/1; policy=wildcard; persistUntil=2000000000"
    assert persist.records_for(["a.example.com", "b.example.com"], "ca.example", url) == {
        "_validation-persist.a.example.com": "ca.example; accounturi=https://ca.example/acct/1",
        "_validation-persist.b.example.com": "ca.example; accounturi=https://ca.example/acct/1"}
    good = "ca.example; accounturi=https://ca.example/acct/1; policy=wildcard"
    judge = lambda values, wildcard=False, now=0: persist.record_problem(  # noqa: E731
        values, ["ca.example"], url, wildcard=wildcard, now=now)
    assert judge({good}) is None and judge({good}, wildcard=True) is None
    assert "lacks policy=wildcard" in judge({"ca.example; accounturi=https://ca.example/acct/1"}, wildcard=True)
    assert "another CA" in judge({"other.example; accounturi=https://ca.example/acct/1"})
    assert "another account" in judge({"ca.example; accounturi=https://ca.example/acct/2"})
    assert "expired" in judge({good + "; persistUntil=100"}, now=200)
    assert judge({"unrelated", good}) is None
    assert judge(set()) == "no TXT record"

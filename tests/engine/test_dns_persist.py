"""dns-persist-01 (``challenge: dns-persist-01``): the stack writes one long-lived ``_validation-persist`` record per
name; issuance and renewal only read DNS, so an issuer with no DNS role at all issues and renews. Against real
Pebble 2.10 (which offers dns-persist-01), Pebble 2.4 (which does not) and the emulator's Azure DNS."""
from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from azure.identity import ClientSecretCredential
from azure.keyvault.certificates import CertificateClient
from azure.mgmt.dns import DnsManagementClient

from keyvault_acme.dns import persist
from keyvault_acme.errors import PreflightError, PropagationTimeout
from keyvault_acme.lifecycle import Engine
from tests import services
from tests.engine.conftest import AZURE_ZONE, World, unique

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


def test_an_issuer_without_any_dns_role_issues_and_renews_with_the_stacks_persistent_records(
        world, credential, issuer_without_dns, pebble, emulator):
    base = unique(AZURE_ZONE)
    spec = persist_spec(world, [base, f"*.{base}"])
    engine = Engine(issuer_without_dns, timeout_s=120)
    records = engine.persist_records(spec)  # registers the account: the record names it
    account_url = engine.wiring.account(spec, engine.wiring.vault(spec.vault_url), 1e12).account_url()
    # One record for the name and its wildcard, naming Pebble's issuer domain and the account.
    assert records == {f"_validation-persist.{base}":
                       f"pebble.letsencrypt.org; accounturi={account_url}; policy=wildcard"}
    publish(credential, records)
    facts = engine.issue(spec)
    assert pebble.cert_status(facts.serial) == "Valid" and set(facts.names) == {base, f"*.{base}"}
    # The renewal writes nothing either: the issuer could not (no DNS role); the record is still the stack's.
    renewed = engine.renew(spec)
    assert renewed.serial != facts.serial and pebble.cert_status(renewed.serial) == "Valid"
    client = DnsManagementClient(credential, services.AZURE_ZONES[AZURE_ZONE])
    kept = client.record_sets.get(services.AZURE_RESOURCE_GROUP, AZURE_ZONE, f"_validation-persist.{base}"[: -len(AZURE_ZONE) - 1], "TXT")
    assert ["".join(r.value) for r in kept.txt_records] == list(records.values())
    # and the issuer really has no DNS role.
    with pytest.raises(Exception) as denied:
        DnsManagementClient(issuer_without_dns, services.AZURE_ZONES[AZURE_ZONE]).record_sets.create_or_update(
            services.AZURE_RESOURCE_GROUP, AZURE_ZONE, "_acme-challenge.x", "TXT",
            {"ttl": 60, "txt_records": [{"value": ["x"]}]})
    assert getattr(denied.value, "status_code", None) == 403


def test_a_record_for_another_account_fails_naming_the_record_and_leaves_nothing(world, engine, credential):
    spec = replace(persist_spec(world, [unique(AZURE_ZONE)]), propagation_timeout_s=1.0)
    records = engine.persist_records(spec)
    publish(credential, {name: value.replace("accounturi=", "accounturi=https://other.example/acct/")
                         for name, value in records.items()})
    with pytest.raises(PropagationTimeout) as err:
        engine.issue(spec)
    text = str(err.value)
    (name,) = records
    assert name in text and "names another account" in text and records[name] in text
    assert [p.name for p in CertificateClient(spec.vault_url, credential).list_properties_of_certificates()
            if p.name == spec.name] in ([], [spec.name])
    assert engine.inspect(spec.vault_url, spec.name) is None  # nothing issued, the pending version discarded


def test_a_ca_without_dns_persist_01_fails_preflight_before_anything_is_created(world, engine, pebble_24, credential):
    spec = persist_spec(world, [unique(AZURE_ZONE)])
    spec = replace(spec, acme=replace(spec.acme, directory_url=pebble_24.directory_url))
    with pytest.raises(PreflightError) as err:
        engine.issue(spec)
    text = str(err.value)
    assert "does not offer dns-persist-01" in text and "dns-01" in text and "no fallback" in text
    names = [p.name for p in CertificateClient(spec.vault_url, credential).list_properties_of_certificates()]
    assert spec.name not in names  # no Key Vault certificate, not even a pending one


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


def test_check_verifies_the_persistent_record_on_every_server_and_needs_no_dns_role(
        world, credential, issuer_without_dns):
    spec = persist_spec(world, [unique(AZURE_ZONE)])
    engine = Engine(issuer_without_dns, timeout_s=60)

    def step(results):
        found = [r for r in results if r.step == "dns-persist-01 record"]
        assert found and not any(r.step in ("zones writable", "NS delegation") for r in results)
        return found

    (before,) = step(engine.check(spec))  # no account yet: nothing is registered by a check
    assert not before.ok and "no account at the CA yet" in before.detail
    records = engine.persist_records(spec)
    (record, value), = records.items()
    (missing,) = step(engine.check(spec))
    assert not missing.ok and record in missing.detail and "no TXT record" in missing.detail
    assert value in missing.fix
    publish(credential, records)
    results = engine.check(spec)
    (served,) = step(results)
    assert served.ok and "served by every server" in served.detail
    assert all(r.ok for r in results), [r for r in results if not r.ok]


def test_the_records_resource_follows_the_account_so_an_account_key_change_rewrites_the_records(world, azure_env):
    from keyvault_acme_pulumi.providers.persist import PersistRecordsProvider

    spec = persist_spec(world, [unique(AZURE_ZONE)])
    from keyvault_acme.config import spec_to_dict

    inputs = {**spec_to_dict(spec), "revoke_on_delete": True}
    provider = PersistRecordsProvider()
    created = provider.create(inputs)
    (record, value), = created.outs["records"].items()
    assert created.outs["account_url"] in value and record == persist.record_name(spec.dns_names[0])
    assert provider.read(created.id, created.outs).outs["records"] == created.outs["records"]  # stable
    # Tags or renewal settings do not touch the records; another account key does, and gives another account.
    assert not provider.diff(created.id, created.outs, {**created.outs, "tags": {"team": "x"}}).changes
    moved = {**inputs, "acme": {**inputs["acme"], "account_key_secret": f"acct-{uuid.uuid4().hex[:8]}"}}
    assert provider.diff(created.id, created.outs, moved).changes
    updated = provider.update(created.id, created.outs, moved).outs
    assert updated["account_url"] != created.outs["account_url"]
    assert updated["records"][record] == value.replace(created.outs["account_url"], updated["account_url"])

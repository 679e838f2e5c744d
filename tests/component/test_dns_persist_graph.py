"""The component's dns-persist-01 resources under set_mocks: the account's records as ordinary Azure DNS record
sets, written by the stack, values from PersistRecords, the certificate after them, and no DNS role."""
from __future__ import annotations

from keyvault_acme_pulumi import CertificateWorkload
from keyvault_acme_stack.workload import parse_workload_config

from . import harness

SUB = "11111111-1111-1111-1111-111111111111"
PERSIST = "pulumi-python:dynamic/keyvault_acme:PersistRecords"
CERT = "pulumi-python:dynamic/keyvault_acme:Certificate"


def deploy(**acme):
    cfg = parse_workload_config({
        "workload": "shop", "environment": "dev", "location": "westeurope", "subscription_id": SUB,
        "tenant_id": "22222222-2222-2222-2222-222222222222", "zones": [{"name": "shop.example.com"}],
        "allowlist": {"suffixes": ["shop.example.com"]}, "acme": acme,
        "certificates": [{"name": "www", "dns_names": ["shop.example.com", "*.shop.example.com", "www.shop.example.com"],
                          "challenge": "dns-persist-01", "persist_until": "2030-01-01T00:00:00Z"}],
    })
    return harness.run(lambda: CertificateWorkload(cfg.stack_name, cfg).outputs, stack=cfg.stack_name, config={},
                       subscription_id=cfg.subscription_id)


def test_the_stack_writes_the_persistent_records_and_grants_no_dns_role():
    run = deploy()
    (records,) = run.of_type(PERSIST)
    account = records.state["account_url"]
    sets = {r.inputs["relativeRecordSetName"]: r for r in run.of_type("azure-native:dns:RecordSet")}
    assert set(sets) == {"_validation-persist", "_validation-persist.www"}  # no _acme-challenge record set
    assert sets["_validation-persist"].inputs["txtRecords"] == [{"value": [
        f"ca.example; accounturi={account}; policy=wildcard; persistUntil=1893456000"]}]
    assert sets["_validation-persist.www"].inputs["txtRecords"] == [{"value": [
        f"ca.example; accounturi={account}; persistUntil=1893456000"]}]
    (cert,) = run.of_type(CERT)
    assert cert.inputs["challenge"] == "dns-persist-01"
    assert {sets[n].urn for n in sets} <= set(cert.dependencies)
    assert records.inputs["acme"]["account_key_secret"] == "acme-account-key"
    scopes = [a.inputs["scope"] for a in run.of_type("azure-native:authorization:RoleAssignment")]
    assert not [s for s in scopes if "Microsoft.Network" in s]
    assert not run.of_type("azure-native:authorization:RoleDefinition")  # no custom DNS role is even defined


def test_with_a_key_vault_account_key_the_records_wait_for_the_key():
    run = deploy(account_key={"kind": "key"})
    (records,) = run.of_type(PERSIST)
    (key,) = run.of_type("azure-native:keyvault:Key")
    assert key.urn in records.dependencies

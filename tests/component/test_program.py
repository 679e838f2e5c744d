"""``__main__.py`` itself, run under set_mocks with each example stack file as the stack's config."""
from __future__ import annotations

import json
import runpy
import shutil
from pathlib import Path

import pulumi
import pytest
import yaml

from keyvault_acme_pulumi.components.workload import KEY_VAULT_CERTIFICATES_OFFICER
from keyvault_acme_stack.workload import load_stack_file

from . import harness, rules
from .harness import ROOT, STACKS

CERT = "pulumi-python:dynamic/keyvault_acme:Certificate"
EXAMPLE_STACKS = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in STACKS.glob("Pulumi.*.yaml"))


def run_main(stack: str, config: dict[str, str], project: Path = ROOT) -> harness.Run:
    exports: dict[str, object] = {}
    real_export = pulumi.export

    def program():
        pulumi.export = lambda name, value: exports.__setitem__(name, value)
        try:
            runpy.run_path(str(project / "__main__.py"), run_name="__main__")
        finally:
            pulumi.export = real_export
        return dict(exports)

    return harness.run(program, stack=stack, config=config, subscription_id=config["keyvault-acme:subscription_id"])


def test_every_example_stack_is_here():
    assert {"shop-dev", "shop-prod", "local"} <= set(EXAMPLE_STACKS)


@pytest.mark.parametrize("stack", EXAMPLE_STACKS)
def test_main_builds_the_workload_of_each_stack_file(stack):
    cfg = load_stack_file(STACKS / f"Pulumi.{stack}.yaml")
    run = run_main(stack, harness.stack_config(stack))
    (component,) = run.of_type("keyvault-acme:index:CertificateWorkload")
    assert component.name == cfg.stack_name
    certs = {c.inputs["name"]: c for c in run.of_type(CERT)}
    assert set(certs) == {c.name for c in cfg.certificates}
    for c in cfg.certificates:
        assert certs[c.name].inputs["dns_names"] == list(c.spec.dns_names)
        assert certs[c.name].inputs["vault_url"] == cfg.vault.url
    assert set(run.result) == {"vault_uri", "issuer_client_id", "zone_name_servers", "certificates"}
    assert set(run.result["certificates"]) == {c.name for c in cfg.certificates}
    assert run.result["vault_uri"].rstrip("/") == cfg.vault.url
    if cfg.grant_roles:
        vault = run.one("azure-native:keyvault:Vault").id
        identity = run.one("azure-native:managedidentity:UserAssignedIdentity").state["principalId"]
        rules.check_least_privilege(run, vault_id=vault, issuer=identity, consumers={c.principal_id for c in cfg.consumers},
                                    certificates={c.name for c in cfg.certificates})


def test_local_stack_creates_only_certificates_in_existing_resources():
    run = run_main("local", harness.stack_config("local"))
    assert {r.type for r in run.registered} == {"keyvault-acme:index:CertificateWorkload", CERT}
    cfg = load_stack_file(STACKS / "Pulumi.local.yaml")
    assert run.result["issuer_client_id"] == cfg.issuer.client_id
    cert = run.of_type(CERT)[0]
    assert cert.inputs["acme"]["directory_url"].startswith("https://127.0.0.1:")


def test_dev_stack_grants_the_issuer_the_certificates_officer_role():
    run = run_main("shop-dev", harness.stack_config("shop-dev"))
    roles = {rules.role_guid(a.inputs["roleDefinitionId"]) for a in run.of_type("azure-native:authorization:RoleAssignment")}
    assert KEY_VAULT_CERTIFICATES_OFFICER in roles


@pytest.mark.parametrize("change, words", [
    ({"keyvault-acme:vault": json.dumps({"purge_protection": False})}, "vault.purge_protection: must be true"),
    ({"keyvault-acme:subscription_id": "not-a-guid"}, "subscription_id: 'not-a-guid' is not a GUID"),
    ({"keyvault-acme:certificates": json.dumps([{"name": "x", "dns_names": ["www.other.example.org"]}])},
     "www.other.example.org is not allowed for workload shop"),
])
def test_malformed_config_fails_with_the_key_before_any_resource(change, words):
    config = {**harness.stack_config("shop-prod"), **change}
    with pytest.raises(Exception) as e:
        run_main("shop-prod", config)
    assert words in str(e.value)


def test_a_missing_required_key_is_named():
    config = {k: v for k, v in harness.stack_config("shop-dev").items() if k != "keyvault-acme:location"}
    with pytest.raises(Exception) as e:
        run_main("shop-dev", config)
    assert "location: is required" in str(e.value)


def test_a_misspelt_key_in_the_stack_file_is_named(tmp_path):
    # pulumi.Config reads keys by name and cannot list them; the program finds a typo in the stack's own file.
    shutil.copy(ROOT / "__main__.py", tmp_path / "__main__.py")
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "stacks").mkdir()
    document = yaml.safe_load((STACKS / "Pulumi.shop-prod.yaml").read_text())
    document["config"]["keyvault-acme:vualt"] = {"sku": "premium"}
    (tmp_path / "stacks" / "Pulumi.shop-prod.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(Exception) as e:
        run_main("shop-prod", harness.stack_config("shop-prod"), project=tmp_path)
    assert "keyvault-acme:vualt: unknown config key" in str(e.value)


def test_main_reads_config_through_pulumi_config_only():
    # pulumi.runtime.config.CONFIG is the SDK's internal store; the program uses the public pulumi.Config.
    source = (ROOT / "__main__.py").read_text()
    assert "pulumi.Config(" in source and "runtime.config" not in source and "CONFIG" not in source

"""The platform policy pack: its validation functions, called directly, and the pack's declaration."""
from __future__ import annotations

import importlib.util
import json
import runpy
import sys

import pulumi_policy
import pytest
from pulumi_policy import ResourceValidationArgs

from keyvault_acme_pulumi.components import CertificateWorkload
from keyvault_acme_stack.workload import load_stack_file

from . import harness
from .harness import ROOT, STACKS

POLICY = ROOT / "policy"
CERT = "pulumi-python:dynamic/keyvault_acme:Certificate"


def _load_rules():
    spec = importlib.util.spec_from_file_location("platform_rules", POLICY / "platform_rules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


platform_rules = _load_rules()
PACK_CONFIG = json.loads((POLICY / "config.json").read_text())
ALLOWLIST_CONFIG = PACK_CONFIG["certificate-dns-names-allowed"]


def validate(policy, resource_type: str, props: dict, *, stack: str = "shop-prod", config=None,
             project: str = "keyvault-acme") -> list[str]:
    urn = f"urn:pulumi:{stack}::{project}::keyvault-acme:index:CertificateWorkload${resource_type}::x"
    violations: list[str] = []
    args = ResourceValidationArgs(resource_type, props, urn, "x", None, None,
                                  config=ALLOWLIST_CONFIG if config is None else config)
    policy(args, lambda message, urn=None: violations.append(message))
    return violations


def test_names_inside_the_stacks_allowlist_pass():
    props = {"name": "www", "dns_names": ["shop.example.com", "*.shop.example.com"]}
    assert validate(platform_rules.certificate_names_allowed, CERT, props) == []
    dev = {"name": "www", "dns_names": ["dev.shop.example.com", "*.dev.shop.example.com"]}
    assert validate(platform_rules.certificate_names_allowed, CERT, dev, stack="shop-dev") == []


def test_a_name_outside_fails_naming_the_name_and_the_rule():
    props = {"name": "www", "dns_names": ["www.shop.example.com", "login.bank.example"]}
    (message,) = validate(platform_rules.certificate_names_allowed, CERT, props)
    assert "login.bank.example is not allowed for stack keyvault-acme/shop-prod" in message
    assert "suffixes shop.example.com" in message


def test_each_stack_has_its_own_list():
    # shop-dev may not hold production names just because both stacks belong to "shop".
    (message,) = validate(platform_rules.certificate_names_allowed, CERT, {"dns_names": ["www.shop.example.com"]},
                          stack="shop-dev")
    assert "www.shop.example.com is not allowed for stack keyvault-acme/shop-dev" in message


@pytest.mark.parametrize("stack, project", [
    ("shop-x", "keyvault-acme"),      # used to fall back to "shop" (the name before the last hyphen)
    ("shop", "keyvault-acme"),
    ("shop-prod-2", "keyvault-acme"),
    ("shop-prod", "another-project"),  # same stack name, another team's project
])
def test_only_the_exact_project_and_stack_get_an_allowlist(stack, project):
    config = {"allowlists": {"keyvault-acme/shop-prod": {"suffixes": ["shop.example.com"]},
                             "shop": {"suffixes": ["shop.example.com"]}}}  # an old workload-keyed entry is inert
    props = {"name": "www", "dns_names": ["www.shop.example.com"]}
    (message,) = validate(platform_rules.certificate_names_allowed, CERT, props, stack=stack, project=project,
                          config=config)
    assert f"stack {project}/{stack} has no DNS-name allowlist" in message
    assert validate(platform_rules.certificate_names_allowed, CERT, props, config=config) == []


def test_the_config_schema_takes_only_project_slash_stack_keys():
    import jsonschema

    schema = {"type": "object", "properties": platform_rules.ALLOWLIST_CONFIG_SCHEMA}
    jsonschema.validate(ALLOWLIST_CONFIG, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"allowlists": {"shop": {"suffixes": ["shop.example.com"]}}}, schema)


def test_the_stack_file_cannot_widen_the_platform_allowlist():
    # The workload's own stack says demo.test is fine for "local"; the platform's config for "shop" does not.
    props = {"name": "www", "dns_names": ["www.demo.test"]}
    assert validate(platform_rules.certificate_names_allowed, CERT, props, stack="local") == []
    assert validate(platform_rules.certificate_names_allowed, CERT, props, stack="shop-prod")


def test_a_stack_without_an_allowlist_is_refused():
    (message,) = validate(platform_rules.certificate_names_allowed, CERT, {"dns_names": ["a.example.com"]},
                          stack="payroll-prod")
    assert "stack keyvault-acme/payroll-prod has no DNS-name allowlist" in message
    assert 'allowlists."keyvault-acme/payroll-prod"' in message


def test_unknown_names_at_preview_and_other_types_are_not_judged():
    assert validate(platform_rules.certificate_names_allowed, CERT, {"dns_names": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"}) == []
    assert validate(platform_rules.certificate_names_allowed, "azure-native:keyvault:Vault", {"dns_names": ["x.org"]}) == []


@pytest.mark.parametrize("props, words", [
    ({"roleDefinitionId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
      "scope": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"}, "grants Owner"),
    ({"roleDefinitionId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c",
      "scope": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"}, "grants Contributor"),
    ({"roleDefinitionId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6",
      "scope": "/subscriptions/s"}, "subscription- or resource-group-wide"),
    ({"roleDefinitionId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6",
      "scope": "/subscriptions/s/resourceGroups/rg"}, "subscription- or resource-group-wide"),
    ({"roleDefinitionId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6",
      "scope": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"}, "Key Vault Secrets User on the whole vault"),
    ({"roleDefinitionId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
      "scope": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv/"}, "Key Vault Secrets Officer on the whole vault"),
])
def test_broad_role_assignments_are_refused(props, words):
    (message,) = validate(platform_rules.role_assignments_narrow, "azure-native:authorization:RoleAssignment", props)
    assert words in message


@pytest.mark.parametrize("stack", ["shop-dev", "shop-prod", "local"])
def test_every_resource_of_the_example_stacks_passes_the_pack(stack):
    cfg = load_stack_file(STACKS / f"Pulumi.{stack}.yaml")
    run = harness.run(lambda: CertificateWorkload(cfg.stack_name, cfg).outputs, stack=stack, config={},
                      subscription_id=cfg.subscription_id)
    for r in run.registered:
        for policy in (platform_rules.certificate_names_allowed, platform_rules.role_assignments_narrow):
            args = ResourceValidationArgs(r.type, r.inputs, r.urn, r.name, None, None, config=ALLOWLIST_CONFIG)
            violations: list[str] = []
            policy(args, lambda message, urn=None: violations.append(message))
            assert violations == [], (r.name, violations)


def test_a_narrowed_platform_allowlist_stops_the_dev_stack():
    cfg = load_stack_file(STACKS / "Pulumi.shop-dev.yaml")
    run = harness.run(lambda: CertificateWorkload(cfg.stack_name, cfg).outputs, stack="shop-dev", config={},
                      subscription_id=cfg.subscription_id)
    narrowed = {"allowlists": {"keyvault-acme/shop-dev": {"names": ["www.dev.shop.example.com", "dev.shop.example.com"]}}}
    refused = [m for r in run.of_type(CERT)
               for m in validate(platform_rules.certificate_names_allowed, CERT, r.inputs, stack="shop-dev", config=narrowed)]
    assert len(refused) == 1 and "*.dev.shop.example.com is not allowed" in refused[0]


def test_the_pack_declares_both_policies_as_mandatory(monkeypatch):
    declared = {}

    class FakePack:
        def __init__(self, name, policies, enforcement_level=None, **_):
            declared.update(name=name, policies=policies, level=enforcement_level)

    monkeypatch.setattr(pulumi_policy, "PolicyPack", FakePack)
    monkeypatch.syspath_prepend(str(POLICY))
    monkeypatch.delitem(sys.modules, "platform_rules", raising=False)
    runpy.run_path(str(POLICY / "__main__.py"), run_name="__main__")
    assert declared["level"] == pulumi_policy.EnforcementLevel.MANDATORY
    by_name = {p.name: p for p in declared["policies"]}
    assert set(by_name) == {"certificate-dns-names-allowed", "no-broad-role-assignments"}
    # The declared policies run the tested functions: a name outside is reported through them.
    assert validate(by_name["certificate-dns-names-allowed"].validate, CERT, {"dns_names": ["x.example.org"]})
    assert validate(by_name["no-broad-role-assignments"].validate, "azure-native:authorization:RoleAssignment",
                    {"scope": "/subscriptions/s"})
    assert "allowlists" in by_name["certificate-dns-names-allowed"].config_schema.properties

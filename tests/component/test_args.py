"""CertificateWorkloadArgs: other resources' outputs as inputs, the same validation as stack files, secret webhooks."""
from __future__ import annotations

import asyncio
import dataclasses
import gc

import pulumi
import pytest
import yaml
from pulumi.runtime import rpc
from pulumi_azure_native import managedidentity

from keyvault_acme.errors import SpecError
from keyvault_acme_pulumi import (
    AlertsArgs,
    CertificateWorkload,
    CertificateWorkloadArgs,
    ConsumerArgs,
    IssuerArgs,
    WebhookArgs,
)
from keyvault_acme_pulumi.components.workload import KEY_VAULT_SECRETS_USER
from keyvault_acme_stack.workload import load_stack_file

from . import harness, rules
from .harness import STACKS

T = "azure-native:"
DEV = STACKS / "Pulumi.shop-dev.yaml"
PROD = STACKS / "Pulumi.shop-prod.yaml"
SUB = "11111111-1111-1111-1111-111111111111"


def run(build, stack="shop-dev"):
    return harness.run(build, stack=stack, config={}, subscription_id=SUB)


@pytest.fixture
def failing_apply():
    """A program whose apply raises leaves every dependent resource's future failed and never awaited; asyncio
    reports each when it is collected. Collect them here, with those reports (and only those) silenced."""
    loop = asyncio.get_event_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda lp, context: None if "never retrieved" in context.get("message", "")
                               else lp.default_exception_handler(context))
    yield
    gc.collect()
    loop.set_exception_handler(previous)


def consumer_assignments(run_, name):
    return [a for a in run_.of_type(f"{T}authorization:RoleAssignment") if f"-consumer-{name}-" in a.name]


def test_an_app_gateway_identitys_principal_id_output_is_a_consumer():
    def program():
        appgw = managedidentity.UserAssignedIdentity("appgw-identity", resource_name_="id-appgw",
                                                     resource_group_name="rg-network", location="westeurope")
        args = dataclasses.replace(CertificateWorkloadArgs.from_stack_file(DEV),
                                   consumers=[ConsumerArgs("appgw", appgw.principal_id)])
        CertificateWorkload("shop-dev", args)

    result = run(program)
    appgw = next(r for r in result.of_type(f"{T}managedidentity:UserAssignedIdentity") if r.name == "appgw-identity")
    grants = consumer_assignments(result, "appgw")
    cfg = load_stack_file(DEV)
    assert len(grants) == len(cfg.certificates)  # one per certificate's own secret, never the vault
    for grant in grants:
        assert grant.inputs["principalId"] == appgw.state["principalId"]
        assert rules.role_guid(grant.inputs["roleDefinitionId"]) == KEY_VAULT_SECRETS_USER
        assert "/secrets/" in grant.inputs["scope"]
        # The assignment waits for the identity: its principal id is one of the assignment's dependencies.
        assert appgw.urn in grant.dependencies


def test_the_args_from_a_stack_file_build_what_the_parsed_stack_file_builds():
    by_args = run(lambda: CertificateWorkload("shop-dev", CertificateWorkloadArgs.from_stack_file(DEV)))
    by_config = run(lambda: CertificateWorkload("shop-dev", load_stack_file(DEV)))
    def inputs(result):  # registration order and the mock's createdOn clock differ from run to run
        return {(r.type, r.name): {k: v for k, v in r.inputs.items() if k != "access_granted_at"}
                for r in result.registered}

    assert inputs(by_args) == inputs(by_config) and len(by_args.registered) == len(by_config.registered)


def test_every_stack_file_key_is_an_args_field():
    from keyvault_acme_stack.workload import KEYS

    assert set(KEYS) == {f.name for f in dataclasses.fields(CertificateWorkloadArgs)}


def test_a_stack_with_a_renewer_builds_through_the_args_as_through_the_parsed_file(tmp_path):
    document = yaml.safe_load(DEV.read_text())
    document["config"]["keyvault-acme:renewer"] = {"schedule": "0 */6 * * *",
                                                   "image": "crshop.azurecr.io/keyvault-acme:0.1.0",
                                                   "registry": "crshop.azurecr.io"}
    stack = tmp_path / "Pulumi.shop-dev.yaml"
    stack.write_text(yaml.safe_dump(document))
    by_args = run(lambda: CertificateWorkload("shop-dev", CertificateWorkloadArgs.from_stack_file(stack)))
    by_config = run(lambda: CertificateWorkload("shop-dev", load_stack_file(stack)))
    assert [r.name for r in by_args.registered if r.type == "azure-native:app:Job"] == \
        [r.name for r in by_config.registered if r.type == "azure-native:app:Job"] != []


def test_from_stack_file_reads_yaml_as_boundedly_as_the_cli(tmp_path):
    bomb = tmp_path / "Pulumi.bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)))
    with pytest.raises(SpecError, match="aliases"):
        CertificateWorkloadArgs.from_stack_file(bomb)


def test_a_known_bad_value_fails_at_preview_before_anything_is_registered():
    args = dataclasses.replace(CertificateWorkloadArgs.from_stack_file(DEV),
                               consumers=[ConsumerArgs("appgw", "not-a-guid")])
    registered = []

    def program():
        try:
            CertificateWorkload("shop-dev", args)
        except SpecError as e:
            registered.append(str(e))

    result = run(program, stack="shop-dev")
    assert registered == ["consumers[0].principal_id: 'not-a-guid' is not a GUID; "
                          "give the identity's object (principal) id as xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"]
    assert result.registered == []


def test_an_output_is_checked_by_the_same_rule_once_known(failing_apply):
    def program():
        args = dataclasses.replace(CertificateWorkloadArgs.from_stack_file(DEV),
                                   consumers=[ConsumerArgs("appgw", pulumi.Output.from_input("not-a-guid"))])
        CertificateWorkload("shop-dev", args)

    with pytest.raises(Exception) as e:
        run(program)
    assert "consumers[0].principal_id: 'not-a-guid' is not a GUID" in str(e.value)


def test_an_existing_issuers_ids_may_be_outputs():
    def program():
        identity = managedidentity.UserAssignedIdentity("shared-issuer", resource_name_="id-shared",
                                                        resource_group_name="rg-platform", location="westeurope")
        args = dataclasses.replace(CertificateWorkloadArgs.from_stack_file(DEV),
                                   issuer=IssuerArgs(principal_id=identity.principal_id, client_id=identity.client_id))
        workload = CertificateWorkload("shop-dev", args)
        return workload.issuer_client_id

    result = run(program)
    [identity] = result.of_type(f"{T}managedidentity:UserAssignedIdentity")  # the component created none
    assert result.result == identity.state["clientId"]
    officer = next(a for a in result.of_type(f"{T}authorization:RoleAssignment")
                   if a.name.endswith("issuer-certificates-officer"))
    assert officer.inputs["principalId"] == identity.state["principalId"]


@pytest.mark.parametrize("field, change", [
    ("certificates[0].dns_names[0]", {"certificates": [{"name": "www", "dns_names": [pulumi.Output.from_input("x")]}]}),
    ("location", {"location": pulumi.Output.from_input("westeurope")}),
    ("zones[0].name", {"zones": [{"name": pulumi.Output.from_input("dev.shop.example.com")}]}),
])
def test_an_output_where_names_and_resources_are_decided_is_refused_by_field(field, change):
    args = dataclasses.replace(CertificateWorkloadArgs.from_stack_file(DEV), **change)
    with pytest.raises(SpecError) as e:
        args.resolve()
    assert e.value.field == field and "must be known when the program runs" in str(e.value)


@pytest.mark.parametrize("uri", [
    pulumi.Output.secret("https://hooks.example.com/services/T0/B0/token"),  # config.require_secret(...)
    "https://hooks.example.com/services/T0/B0/token",  # a plain string: made secret all the same
])
def test_webhook_uris_are_secret_in_state(uri):
    def program():
        args = dataclasses.replace(CertificateWorkloadArgs.from_stack_file(PROD),
                                   alerts=AlertsArgs(emails=["oncall@example.com"],
                                                     webhooks=[WebhookArgs("teams", uri)]))
        CertificateWorkload("shop-prod", args)

    result = run(program, stack="shop-prod")
    hooks = result.one(f"{T}monitor:ActionGroup").inputs["webhookReceivers"]
    assert rpc.is_rpc_secret(hooks)
    assert [h["serviceUri"] for h in rpc.unwrap_rpc_secret(hooks)] == ["https://hooks.example.com/services/T0/B0/token"]


def test_a_secret_webhook_that_is_not_https_is_refused_once_known_without_echoing_it(failing_apply):
    def program():
        args = dataclasses.replace(CertificateWorkloadArgs.from_stack_file(PROD), alerts=AlertsArgs(
            emails=["oncall@example.com"], webhooks=[WebhookArgs("teams", pulumi.Output.secret("http://h/tok3n"))]))
        CertificateWorkload("shop-prod", args)

    with pytest.raises(Exception) as e:
        run(program, stack="shop-prod")
    assert "alerts.webhooks[0].uri: is not an https URL" in str(e.value) and "tok3n" not in str(e.value)


def test_a_secure_webhook_uri_in_the_stack_file(tmp_path):
    # `pulumi config set --secret --path 'keyvault-acme:alerts.webhooks[0].uri' https://...` writes this shape.
    document = yaml.safe_load(PROD.read_text())
    document["config"]["keyvault-acme:alerts"]["webhooks"][0]["uri"] = {"secure": "v1:AAAA"}
    stack = tmp_path / "Pulumi.shop-prod.yaml"
    stack.write_text(yaml.safe_dump(document))
    # The CLI (which deploys no alerts) reads the stack; the receiver is known to be encrypted.
    [hook] = load_stack_file(stack).alerting.webhooks
    assert hook.encrypted and hook.name == "teams" and "AAAA" not in repr(hook)
    # Only Pulumi can decrypt it: building the component from the raw file says so by field.
    with pytest.raises(SpecError) as e:
        CertificateWorkloadArgs.from_stack_file(stack).resolve()
    assert e.value.field == "alerts.webhooks[0].uri" and "from_config" in str(e.value)


def test_from_config_reads_the_decrypted_secret_through_pulumi_config():
    # What the Pulumi CLI hands the program for that stack file: the decrypted value, the key listed as secret.
    config = harness.stack_config("shop-prod")
    pulumi.runtime.set_all_config(config, ["keyvault-acme:alerts"])
    try:
        args = CertificateWorkloadArgs.from_config(pulumi.Config("keyvault-acme"))
    finally:
        pulumi.runtime.set_all_config({}, [])
    assert args == CertificateWorkloadArgs.from_stack_file(PROD)

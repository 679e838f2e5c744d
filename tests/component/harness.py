"""Run the component (or the whole program) under ``pulumi.runtime.set_mocks`` against an ARM-shaped mock.

The mock answers like Azure Resource Manager would: ARM resource ids built from the inputs (in the
subscription of the provider the resource was registered with), the computed properties the component
reads (vault URI, identity ids, zone name servers). The monitor records every registration with its
parent, provider and dependencies, as the engine would see them.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

ROOT = Path(__file__).resolve().parents[2]
STACKS = ROOT / "stacks"


@dataclass
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]
    id: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    parent: str = ""
    provider: str = ""
    dependencies: list[str] = field(default_factory=list)
    urn: str = ""


def _guid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


# The ARM id Azure gives each resource type (templates over its inputs), and the input that is its name.
ARM_IDS: dict[str, tuple[str, str | None]] = {
    "azure-native:resources:ResourceGroup": ("/subscriptions/{sub}/resourceGroups/{resourceGroupName}",
                                             "resourceGroupName"),
    "azure-native:keyvault:Vault": ("{rg}/providers/Microsoft.KeyVault/vaults/{vaultName}", "vaultName"),
    "azure-native:keyvault:Key": ("{rg}/providers/Microsoft.KeyVault/vaults/{vaultName}/keys/{keyName}", "keyName"),
    "azure-native:dns:Zone": ("{rg}/providers/Microsoft.Network/dnszones/{zoneName}", "zoneName"),
    "azure-native:dns:RecordSet": (
        "{rg}/providers/Microsoft.Network/dnszones/{zoneName}/{recordType}/{relativeRecordSetName}",
        "relativeRecordSetName"),
    "azure-native:managedidentity:UserAssignedIdentity": (
        "{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{resourceName}", "resourceName"),
    "azure-native:authorization:RoleDefinition": (
        "{scope}/providers/Microsoft.Authorization/roleDefinitions/{roleDefinitionId}", None),
    "azure-native:authorization:RoleAssignment": (
        "{scope}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}", None),
    "azure-native:eventgrid:SystemTopic": ("{rg}/providers/Microsoft.EventGrid/systemTopics/{systemTopicName}",
                                           "systemTopicName"),
    "azure-native:monitor:ActionGroup": ("{rg}/providers/Microsoft.Insights/actionGroups/{actionGroupName}", None),
    "azure-native:operationalinsights:Workspace": (
        "{rg}/providers/Microsoft.OperationalInsights/workspaces/{workspaceName}", None),
    "azure-native:monitor:DiagnosticSetting": (
        "{resourceUri}/providers/Microsoft.Insights/diagnosticSettings/{name}", None),
    "azure-native:network:PrivateEndpoint": (
        "{rg}/providers/Microsoft.Network/privateEndpoints/{privateEndpointName}", "privateEndpointName"),
    "azure-native:network:PrivateDnsZoneGroup": (
        "{rg}/providers/Microsoft.Network/privateEndpoints/{privateEndpointName}"
        "/privateDnsZoneGroups/{privateDnsZoneGroupName}", None),
    "azure-native:app:ManagedEnvironment": ("{rg}/providers/Microsoft.App/managedEnvironments/{environmentName}",
                                            None),
    "azure-native:app:Job": ("{rg}/providers/Microsoft.App/jobs/{jobName}", None),
    "azure-native:privatedns:PrivateZone": ("{rg}/providers/Microsoft.Network/privateDnsZones/{privateZoneName}",
                                            "privateZoneName"),
    "azure-native:privatedns:VirtualNetworkLink": (
        "{rg}/providers/Microsoft.Network/privateDnsZones/{privateZoneName}"
        "/virtualNetworkLinks/{virtualNetworkLinkName}", None),
}


class AzureMocks(pulumi.runtime.Mocks):
    def __init__(self, subscription_id: str) -> None:
        self.subscription_id = subscription_id
        self.provider_subscriptions: dict[str, str] = {}  # provider id -> subscription
        self._assignments_made = 0

    def _sub(self, args: pulumi.runtime.MockResourceArgs) -> str:
        provider_id = (args.provider or "").split("::")[-1]
        return self.provider_subscriptions.get(provider_id, self.subscription_id)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        i, typ, sub = args.inputs, args.typ, self._sub(args)
        rg = f"/subscriptions/{sub}/resourceGroups/{i.get('resourceGroupName')}"
        state = dict(i)
        if typ == "pulumi:providers:azure-native":
            rid = f"provider-{args.name}"
            self.provider_subscriptions[rid] = i["subscriptionId"]
        elif typ == "pulumi-python:dynamic/keyvault_acme:PersistRecords":
            # What the engine would answer (Engine.persist_records), for a made-up account of this certificate.
            from keyvault_acme.dns import persist

            rid = f"{i['vault_url']}/persist/{i['name']}"
            account = f"https://ca.example/acme/acct/{_guid('account', i['vault_url'])[:8]}"
            state.update(account_url=account, records=persist.records_for(
                i["dns_names"], "ca.example", account, persist_until=i.get("persist_until")))
        elif typ.startswith("pulumi-python:dynamic"):
            rid = f"{i['vault_url']}/certificates/{i['name']}"
            state.update(secret_id=f"{i['vault_url']}/secrets/{i['name']}", renew_after="2027-01-30T00:00:00+00:00")
        elif typ in ARM_IDS:
            template, name_key = ARM_IDS[typ]
            rid = template.format(rg=rg, sub=sub, **i)
            if name_key:
                state["name"] = i[name_key]
        else:
            rid = f"{rg}/providers/mock/{typ}/{args.name}"
        # What Azure fills in on create, which the component reads back.
        if typ == "azure-native:keyvault:Vault":
            state["properties"] = {**i["properties"], "vaultUri": f"https://{i['vaultName']}.vault.azure.net/"}
        elif typ == "azure-native:dns:Zone":
            state["nameServers"] = [f"ns1-0{n}.azure-dns.com." for n in (1, 2)]
        elif typ == "azure-native:managedidentity:UserAssignedIdentity":
            state.update(principalId=_guid("principal", rid), clientId=_guid("client", rid))
        elif typ == "azure-native:app:Job" and "identity" in i:
            # ARM answers the identity list of the request as a map of id -> {principalId, clientId}.
            ids = i["identity"].get("userAssignedIdentities") or []
            state["identity"] = {**i["identity"], "userAssignedIdentities": {uid: {} for uid in ids}}
        elif typ == "azure-native:authorization:RoleAssignment":
            # ARM's createdOn (seven fractional digits); each assignment a different second, so "latest" shows.
            self._assignments_made += 1
            state["createdOn"] = f"2026-11-26T09:30:{self._assignments_made:02d}.1234567Z"
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs):
        raise AssertionError(f"the component must not invoke {args.token}: it reads nothing from Azure at preview")


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: AzureMocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            reg = self.resources.get(response.urn)
            self.registered.append(Registered(
                type=request.type, name=request.name, inputs=rpc.deserialize_properties(request.object),
                id=reg.id if reg else "", state=dict(reg.state) if reg else {}, parent=request.parent,
                provider=request.provider, dependencies=list(request.dependencies), urn=response.urn))
        return response


@dataclass
class Run:
    registered: list[Registered]
    result: Any

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.registered if r.type == typ]

    def one(self, typ: str) -> Registered:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, got {[r.name for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Registered:
        return next(r for r in self.registered if r.urn == urn)


def stack_config(stack: str) -> dict[str, Any]:
    """A stack file's config as the Pulumi CLI hands it to the program: structured values as JSON text."""
    document = yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text())
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in (document.get("config") or {}).items()}


def run(program: Callable[[], Any], *, stack: str, config: dict[str, str], subscription_id: str,
        preview: bool = False) -> Run:
    """Run ``program`` as ``pulumi up`` would, with ``config`` as the stack's config; await every output."""
    mocks = AzureMocks(subscription_id)
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_all_config(dict(config))
    pulumi.runtime.set_mocks(mocks, project="keyvault-acme", stack=stack, preview=preview, monitor=monitor)
    box: dict[str, Any] = {}

    @pulumi.runtime.test
    def go():
        result = program()
        if result is None:
            return None
        return pulumi.Output.from_input(result).apply(lambda v: box.__setitem__("result", v))

    try:
        go()
    finally:
        pulumi.runtime.set_all_config({})
    return Run(monitor.registered, box.get("result"))

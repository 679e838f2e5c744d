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


class AzureMocks(pulumi.runtime.Mocks):
    def __init__(self, subscription_id: str) -> None:
        self.subscription_id = subscription_id
        self.provider_subscriptions: dict[str, str] = {}  # provider id -> subscription

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
        elif typ == "azure-native:resources:ResourceGroup":
            rid = f"/subscriptions/{sub}/resourceGroups/{i['resourceGroupName']}"
            state["name"] = i["resourceGroupName"]
        elif typ == "azure-native:keyvault:Vault":
            rid = f"{rg}/providers/Microsoft.KeyVault/vaults/{i['vaultName']}"
            state["name"] = i["vaultName"]
            state["properties"] = {**i["properties"], "vaultUri": f"https://{i['vaultName']}.vault.azure.net/"}
        elif typ == "azure-native:dns:Zone":
            rid = f"{rg}/providers/Microsoft.Network/dnszones/{i['zoneName']}"
            state.update(name=i["zoneName"], nameServers=[f"ns1-0{n}.azure-dns.com." for n in (1, 2)])
        elif typ == "azure-native:dns:RecordSet":
            rid = (f"{rg}/providers/Microsoft.Network/dnszones/{i['zoneName']}/"
                   f"{i['recordType']}/{i['relativeRecordSetName']}")
            state["name"] = i["relativeRecordSetName"]
        elif typ == "azure-native:managedidentity:UserAssignedIdentity":
            rid = f"{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{i['resourceName']}"
            state.update(name=i["resourceName"], principalId=_guid("principal", rid), clientId=_guid("client", rid))
        elif typ == "azure-native:authorization:RoleDefinition":
            rid = f"{i['scope']}/providers/Microsoft.Authorization/roleDefinitions/{i['roleDefinitionId']}"
        elif typ == "azure-native:authorization:RoleAssignment":
            rid = f"{i['scope']}/providers/Microsoft.Authorization/roleAssignments/{i['roleAssignmentName']}"
        elif typ == "azure-native:eventgrid:SystemTopic":
            rid = f"{rg}/providers/Microsoft.EventGrid/systemTopics/{i['systemTopicName']}"
            state["name"] = i["systemTopicName"]
        elif typ == "azure-native:monitor:ActionGroup":
            rid = f"{rg}/providers/Microsoft.Insights/actionGroups/{i['actionGroupName']}"
        elif typ == "azure-native:operationalinsights:Workspace":
            rid = f"{rg}/providers/Microsoft.OperationalInsights/workspaces/{i['workspaceName']}"
        elif typ == "azure-native:monitor:DiagnosticSetting":
            rid = f"{i['resourceUri']}/providers/Microsoft.Insights/diagnosticSettings/{i['name']}"
        elif typ == "azure-native:network:PrivateEndpoint":
            rid = f"{rg}/providers/Microsoft.Network/privateEndpoints/{i['privateEndpointName']}"
            state["name"] = i["privateEndpointName"]
        elif typ == "azure-native:network:PrivateDnsZoneGroup":
            rid = (f"{rg}/providers/Microsoft.Network/privateEndpoints/{i['privateEndpointName']}"
                   f"/privateDnsZoneGroups/{i['privateDnsZoneGroupName']}")
        elif typ == "azure-native:privatedns:PrivateZone":
            rid = f"{rg}/providers/Microsoft.Network/privateDnsZones/{i['privateZoneName']}"
            state["name"] = i["privateZoneName"]
        elif typ == "azure-native:privatedns:VirtualNetworkLink":
            rid = (f"{rg}/providers/Microsoft.Network/privateDnsZones/{i['privateZoneName']}"
                   f"/virtualNetworkLinks/{i['virtualNetworkLinkName']}")
        elif typ.startswith("pulumi-python:dynamic"):
            rid = f"{i['vault_url']}/certificates/{i['name']}"
            state.update(secret_id=f"{i['vault_url']}/secrets/{i['name']}", renew_after="2027-01-30T00:00:00+00:00")
        else:
            rid = f"{rg}/providers/mock/{typ}/{args.name}"
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

"""``Engine.check``: every step against the local world (emulator, BIND 9, Pebble), passing and failing,
and nothing created anywhere."""
from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.dns import DnsManagementClient
from azure.mgmt.dns.models import NsRecord, RecordSet

from emulator.dns_store import NAME_SERVERS
from keyvault_acme.checks import STEPS, ns_verdict
from keyvault_acme.dns.azure import permits
from keyvault_acme.lifecycle import Engine
from keyvault_acme.model import AcmeAccount, AzureDnsZone, SecretRef
from tests import services
from tests.engine.conftest import AZURE_ZONE, unique
from tests.services import BIND_ZONE

pytestmark = pytest.mark.integration


def by_step(results) -> dict[str, list]:
    found: dict[str, list] = {}
    for r in results:
        found.setdefault(r.step, []).append(r)
    return found


def failed(results) -> list:
    return [r for r in results if not r.ok]


# -- pure parts --------------------------------------------------------------------------------------------


def test_permits_follows_arm_wildcards_and_not_actions():
    txt = "Microsoft.Network/dnszones/TXT/write"
    assert permits([{"actions": ["Microsoft.Network/dnsZones/*"]}], txt)
    assert permits([{"actions": ["*"], "notActions": ["Microsoft.Authorization/*/write"]}], txt)
    assert not permits([{"actions": ["*/read"]}], txt)
    assert not permits([{"actions": ["Microsoft.Network/dnszones/*"], "notActions": ["*/TXT/*"]}], txt)
    # notActions subtract within their own role only: another role may still grant it.
    assert permits([{"actions": ["*"], "notActions": ["*/TXT/write"]}, {"actions": ["*/TXT/write"]}], txt)
    assert not permits([], txt)


def test_ns_verdict_normalises_and_names_both_sets():
    ok = ns_verdict("z.test", ["NS1.example.", "ns2.example"], "Azure DNS", {"r:53": ["ns2.example.", "ns1.example"]})
    assert ok.ok
    bad = ns_verdict("z.test", ["ns1.azure."], "Azure DNS", {"r:53": ["ns1.old-provider."]})
    assert not bad.ok and "ns1.old-provider" in bad.detail and "ns1.azure" in bad.detail
    assert "registrar" in bad.fix and "ns1.azure" in bad.fix


# -- against the local world -------------------------------------------------------------------------------


def test_a_good_spec_passes_every_step_and_creates_nothing(world, engine, credential):
    name = unique(AZURE_ZONE)
    spec = world.spec([name, f"*.{unique(BIND_ZONE)}"], zones="both")
    results = engine.check(spec)
    assert failed(results) == []
    assert set(by_step(results)) == set(STEPS) - {"dns-persist-01 record"}  # a dns-01 spec's steps
    assert len(by_step(results)["zones writable"]) == 2 and len(by_step(results)["NS delegation"]) == 2
    [writable_azure] = [r for r in results if r.step == "zones writable" and r.detail.startswith(AZURE_ZONE)]
    assert "nothing written" in writable_azure.detail
    [writable_bind] = [r for r in results if r.step == "zones writable" and r.detail.startswith(BIND_ZONE)]
    assert "TSIG key is accepted" in writable_bind.detail
    # Nothing in Key Vault, nothing in DNS.
    assert engine.inspect(spec.vault_url, spec.name) is None
    zone = AzureDnsZone(services.azure_zone_id(AZURE_ZONE))
    with pytest.raises(ResourceNotFoundError):
        DnsManagementClient(credential, zone.subscription_id).record_sets.get(
            zone.resource_group, zone.name, f"_acme-challenge.{name.split('.')[0]}", "TXT")


def test_zones_writable_is_decided_by_the_roles_at_the_record_set(world, emulator, azure_env):
    name = unique(AZURE_ZONE)
    zone = AzureDnsZone(services.azure_zone_id(AZURE_ZONE))
    record_set = f"{zone.resource_id}/TXT/_acme-challenge.{name.split('.')[0]}"
    emulator.admin.define_role("ACME TXT writer", actions=["Microsoft.Network/dnszones/TXT/*"])
    base = [("Key Vault Administrator", "/"), ("Reader", "/")]  # reads everything, writes no DNS
    reader = emulator.admin.add_client(roles=base)
    writer = emulator.admin.add_client(roles=[*base, ("ACME TXT writer", record_set)])
    spec = world.spec([name])

    def check_as(app):
        return Engine(ClientSecretCredential(app["tenant_id"], app["client_id"], app["secret"])).check(spec)

    [denied] = failed(check_as(reader))
    assert denied.step == "zones writable" and "_acme-challenge" in denied.detail
    assert "Microsoft.Network/dnszones/TXT/write" in denied.detail and record_set in denied.fix
    assert failed(check_as(writer)) == []


def test_ns_delegation_mismatch_names_both_sets(world, engine, emulator, credential):
    zone_name = f"ns{uuid.uuid4().hex[:8]}.test"
    subscription = services.AZURE_ZONES[AZURE_ZONE]
    emulator.admin.add_zone(zone_name, subscription, services.AZURE_RESOURCE_GROUP)
    try:
        zone = AzureDnsZone(f"/subscriptions/{subscription}/resourceGroups/{services.AZURE_RESOURCE_GROUP}"
                            f"/providers/Microsoft.Network/dnszones/{zone_name}")
        spec = replace(world.spec([f"www.{zone_name}"]), zones=(zone,))
        assert failed(engine.check(spec)) == []
        # The zone's servers now answer with another NS set than Azure assigned (a delegation gone stale).
        DnsManagementClient(credential, subscription).record_sets.create_or_update(
            services.AZURE_RESOURCE_GROUP, zone_name, "@", "NS",
            RecordSet(ttl=3600, ns_records=[NsRecord(nsdname="ns1.old-provider.example."),
                                            NsRecord(nsdname="ns2.old-provider.example.")]))
        [mismatch] = failed(engine.check(spec))
        assert mismatch.step == "NS delegation"
        assert "ns1.old-provider.example" in mismatch.detail and "Azure DNS" in mismatch.detail
        assert all(ns.rstrip(".") in mismatch.detail for ns in NAME_SERVERS)
        assert NAME_SERVERS[0].rstrip(".") in mismatch.fix and "registrar" in mismatch.fix
    finally:
        emulator.admin.delete_zone(zone_name)


def test_rfc2136_zone_with_a_wrong_tsig_key_is_not_writable(world, engine, credential):
    SecretClient(world.vault_url, credential).set_secret("wrong-tsig", "c2VjcmV0LXRoYXQtaXMtd3Jvbmctc2VjcmV0LXRo")
    spec = world.spec([unique(BIND_ZONE)], zones="rfc2136")
    wrong = SecretRef(f"{world.vault_url}/secrets/wrong-tsig")
    spec = replace(spec, zones=tuple(replace(z, tsig_secret=wrong) for z in spec.zones))
    [problem] = failed(engine.check(spec))
    assert problem.step == "zones writable" and "TSIG" in problem.detail and BIND_ZONE in problem.detail
    assert "TSIG key" in problem.fix


def test_an_rfc2136_zone_the_resolvers_do_not_serve_fails_delegation(world, engine, emulator):
    host, port = emulator.dns_address  # the emulator's DNS knows nothing of BIND's zone
    spec = world.spec([unique(BIND_ZONE)], zones="rfc2136", resolvers=(f"{host}:{port}",))
    problems = by_step(failed(engine.check(spec)))
    # The challenge's CNAME lookup cannot be answered either; both name the resolver. Nor can CAA: a refusal
    # is "could not tell", never "no CAA".
    assert set(problems) == {"zones writable", "NS delegation", "CAA"}
    [caa] = problems["CAA"]
    assert "could not be checked" in caa.detail and "set resolvers" in caa.detail
    [delegation] = problems["NS delegation"]
    assert delegation.detail.startswith(f"{BIND_ZONE}: {host}:{port}") and "NS" in delegation.detail
    assert f"{host}:{port}" in problems["zones writable"][0].detail


def test_an_unknown_profile_and_an_unreachable_ca(world, engine):
    spec = world.spec([unique(AZURE_ZONE)], profile="no-such-profile")
    [problem] = failed(engine.check(spec))
    assert problem.step == "profile" and "no-such-profile" in problem.detail

    from emulator.process import free_port

    dead = f"https://127.0.0.1:{free_port()}/dir"
    results = engine.check(replace(spec, acme=AcmeAccount(directory_url=dead)), timeout_s=2)
    assert [r.step for r in failed(results)] == ["CA directory"] and dead in failed(results)[0].detail
    assert "profile" not in by_step(results) and "CAA" not in by_step(results)  # they need the directory


def test_bad_credentials_fail_first_and_say_how_to_sign_in(world, azure_app):
    spec = world.spec([unique(AZURE_ZONE)])
    bad = Engine(ClientSecretCredential(azure_app["tenant_id"], azure_app["client_id"], "not-the-secret"))
    results = bad.check(spec)
    assert [r.step for r in failed(results)] == ["credentials"]
    assert "az login" in failed(results)[0].fix and "vault" not in by_step(results)


def test_a_bad_spec_is_the_only_finding(world, engine):
    results = engine.check(world.spec(["www.nowhere.example"]))
    assert [(r.step, r.ok) for r in results] == [("spec", False)]
    assert "www.nowhere.example" in results[0].detail and results[0].fix

"""The Certificate resource's whole life through the real provider host, against Pebble, BIND 9 and the emulator.

Each test drives the RPC sequence of a Pulumi command (see ``world.Deployed``) and checks the result
where it lives: Key Vault (through the emulator, with the SDK), Pebble's view of the serial, and state.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from pulumi.runtime.rpc import UNKNOWN

from tests.provider.conftest import DUE_SOON_FRACTION, RENEW_AFTER_S
from tests.provider.world import Deployed

pytestmark = pytest.mark.integration


@pytest.fixture
def deployed(live, serialized_provider):
    return Deployed(live.host, serialized_provider)


def poll(what, condition, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.5)


def assert_outputs(outs: dict, inputs: dict) -> None:
    vault, name = inputs["vault_url"], inputs["name"]
    assert outs["certificate_id"] == f"{vault}/certificates/{name}"
    assert outs["secret_id"] == f"{vault}/secrets/{name}"
    assert outs["versioned_certificate_id"] == f"{vault}/certificates/{name}/{outs['version']}"
    assert outs["versioned_secret_id"] == f"{vault}/secrets/{name}/{outs['version']}"
    assert len(outs["thumbprint"]) == 40 and outs["serial"]
    not_before, not_after = (datetime.fromisoformat(outs[k]) for k in ("not_before", "not_after"))
    assert not_before < datetime.fromisoformat(outs["renew_after"]) < not_after
    assert sorted(outs["names"]) == sorted(inputs["dns_names"])
    assert outs["pem_chain"].startswith("-----BEGIN CERTIFICATE-----") and outs["pem_chain"].count("BEGIN") >= 2
    assert outs["issuer"] and outs["enabled"] is True
    for key, value in inputs.items():  # the checked inputs are part of the state
        assert outs[key] == value, key


def test_up_issues_and_a_second_up_changes_nothing(live, deployed):
    inputs = live.inputs("up-www", ["up-www"])
    assert deployed.up(inputs) == "create"
    assert_outputs(deployed.outputs, deployed.inputs)
    assert deployed.id == deployed.outputs["certificate_id"]
    assert live.pebble.cert_status(deployed.outputs["serial"]) == "Valid"
    kv = CertificateClient(inputs["vault_url"], live.credential).get_certificate("up-www")
    assert kv.properties.version == deployed.outputs["version"]
    assert live.leaks(deployed.outputs) == []
    account_key = SecretClient(inputs["vault_url"], live.credential).get_secret("acme-account-key").value
    assert account_key and account_key not in json.dumps(deployed.outputs)

    assert deployed.up(inputs) == "none"


def test_preview_with_unknowns_plans_without_touching_anything(live, deployed):
    inputs = live.inputs("pv-www", ["pv-www"])
    deployed.up(inputs)
    version = deployed.outputs["version"]
    assert deployed.preview({**inputs, "vault_url": UNKNOWN}) == "replace"
    assert deployed.preview({**inputs, "dns_names": [UNKNOWN]}) == "update"
    assert deployed.preview({**inputs, "dns_names": inputs["dns_names"] + ["pv-api.rfc2136.test"]}) == "update"
    assert deployed.preview(inputs) == "none"
    assert CertificateClient(inputs["vault_url"], live.credential).get_certificate("pv-www").properties.version == version


def refresh_judged_against_the_clock(deployed) -> str:
    """``refresh``, checked against the renewal time whatever the machine's speed: "none" when it ended before
    ``renew_after``, "update" when it began after it (in between, the provider's clock decides either way)."""
    renew_after = datetime.fromisoformat(deployed.outputs["renew_after"])
    began = datetime.now().astimezone()
    step = deployed.refresh()
    ended = datetime.now().astimezone()
    if ended < renew_after:
        assert step == "none", f"refresh planned {step} before the renewal time"
    if began >= renew_after:
        assert step == "update", f"refresh planned {step} after the renewal time"
    return step


def test_up_with_refresh_renews_exactly_when_due(live, deployed):
    inputs = live.inputs("due-www", ["due-www"], renewal={"fraction_remaining": DUE_SOON_FRACTION})
    deployed.up(inputs)
    first = dict(deployed.outputs)
    assert refresh_judged_against_the_clock(deployed) in ("none", "update")  # refresh: read, then diff
    assert deployed.outputs["version"] == first["version"]

    # `pulumi up --refresh` on a schedule: nothing until the renewal time, then an update that renews.
    poll("renewal coming due", lambda: refresh_judged_against_the_clock(deployed) == "update",
         timeout=RENEW_AFTER_S + 60)
    assert deployed.up(inputs) == "update"
    renewed = deployed.outputs
    assert renewed["version"] != first["version"] and renewed["serial"] != first["serial"]
    assert renewed["certificate_id"] == first["certificate_id"] and renewed["secret_id"] == first["secret_id"]
    assert_outputs(renewed, deployed.inputs)  # the full outputs, not a partial bag
    assert live.pebble.cert_status(renewed["serial"]) == "Valid"
    assert refresh_judged_against_the_clock(deployed) in ("none", "update")


def test_adding_a_domain_updates_in_place(live, deployed):
    inputs = live.inputs("dom-www", ["dom-www"])
    deployed.up(inputs)
    first = dict(deployed.outputs)
    wider = {**inputs, "dns_names": inputs["dns_names"] + ["dom-api.rfc2136.test"]}
    assert deployed.up(wider) == "update"
    assert sorted(deployed.outputs["names"]) == sorted(wider["dns_names"])
    assert deployed.outputs["version"] != first["version"]
    assert deployed.outputs["certificate_id"] == first["certificate_id"]
    assert deployed.up(wider) == "none"


def test_renaming_the_vault_replaces_create_before_delete_and_revokes_the_old(live, deployed):
    inputs = live.inputs("mv-www", ["mv-www"])
    deployed.up(inputs)
    old = dict(deployed.outputs)
    moved = live.inputs("mv-www", ["mv-www"], vault=1)
    assert deployed.up(moved) == "replace"
    assert deployed.outputs["certificate_id"].startswith(live.vaults[1])
    assert live.pebble.cert_status(deployed.outputs["serial"]) == "Valid"
    assert deployed.deleted == [(old["certificate_id"], old)]
    assert live.pebble.cert_status(old["serial"]) == "Revoked"
    old_id, outs = live.host.read(old["certificate_id"], old)
    assert old_id == "" and set(outs) <= {"__provider"}


def test_destroy_revokes_every_version_then_deletes_and_tolerates_gone(live, deployed):
    inputs = live.inputs("rm-www", ["rm-www"], revoke_reason="superseded", purge_on_delete=True)
    deployed.up(inputs)
    first = dict(deployed.outputs)
    assert deployed.up({**inputs, "dns_names": inputs["dns_names"] + ["rm-api.rfc2136.test"]}) == "update"
    outs = dict(deployed.outputs)
    assert outs["version"] != first["version"]
    deployed.destroy()
    # The earlier version is deleted with the certificate too, and still valid: it is revoked as well.
    for serial in (first["serial"], outs["serial"]):
        assert live.pebble.cert_status(serial) == "Revoked"
    assert live.host.read(outs["certificate_id"], outs)[0] == ""
    live.host.delete(outs["certificate_id"], outs)  # deleting again (a retried destroy) is fine


def test_deleted_out_of_band_refresh_drops_it_and_up_issues_again(live, deployed):
    inputs = live.inputs("oob-www", ["oob-www"])
    deployed.up(inputs)
    first = dict(deployed.outputs)
    client = CertificateClient(inputs["vault_url"], live.credential)
    client.begin_delete_certificate("oob-www").wait()
    client.purge_deleted_certificate("oob-www")
    assert deployed.refresh() == "gone"
    assert deployed.up(inputs) == "create"
    assert deployed.outputs["version"] != first["version"] and deployed.outputs["serial"] != first["serial"]


def test_disabled_out_of_band_is_renewed(live, deployed):
    inputs = live.inputs("dis-www", ["dis-www"])
    deployed.up(inputs)
    first = dict(deployed.outputs)
    CertificateClient(inputs["vault_url"], live.credential).update_certificate_properties(
        "dis-www", first["version"], enabled=False)
    assert deployed.refresh() == "update"
    assert deployed.up(inputs) == "update"
    assert deployed.outputs["enabled"] is True and deployed.outputs["version"] != first["version"]


def test_a_retried_create_adopts_what_a_lost_create_issued(live, serialized_provider):
    # A create whose result never reached the state (the engine records nothing) is simply retried.
    first, again = Deployed(live.host, serialized_provider), Deployed(live.host, serialized_provider)
    inputs = live.inputs("retry-www", ["retry-www"])
    first.up(inputs)
    assert again.up(inputs) == "create"
    assert again.outputs["version"] == first.outputs["version"] and again.outputs["serial"] == first.outputs["serial"]


def test_four_certificates_created_concurrently_through_one_host(live, serialized_provider):
    resources = [Deployed(live.host, serialized_provider) for _ in range(4)]
    keys = [{"kty": "EC", "curve": "P-256"}, {"kty": "EC", "curve": "P-384"}, {"kty": "RSA", "size": 2048},
            {"kty": "RSA", "size": 3072, "exportable": True}]  # exportable: Key Vault's secret holds the key
    inputs = [live.inputs(f"par-{i}", [f"par-{i}"], key=key) for i, key in enumerate(keys)]
    with ThreadPoolExecutor(4) as pool:
        steps = list(pool.map(lambda pair: pair[0].up(pair[1]), zip(resources, inputs)))
    assert steps == ["create"] * 4
    assert len({r.outputs["serial"] for r in resources}) == 4
    for r, key in zip(resources, keys):
        assert_outputs(r.outputs, r.inputs)
        public = x509.load_pem_x509_certificate(r.outputs["pem_chain"].encode()).public_key()
        assert (public.curve.name if key["kty"] == "EC" else public.key_size) == {
            "P-256": "secp256r1", "P-384": "secp384r1"}.get(key.get("curve"), key.get("size"))
        assert live.pebble.cert_status(r.outputs["serial"]) == "Valid"
        assert live.leaks(r.outputs) == []
    # What the host printed (Pulumi shows it with the deployment) is as clean as the state.
    log = live.host.stderr()
    assert "issued" in log and live.leaks({"log": log}) == []


def test_names_in_azure_dns_and_rfc2136_zones(live, deployed):
    inputs = live.inputs("az-www", ["az-www"], azure=["az-www", "az-api"])
    assert deployed.up(inputs) == "create"
    assert_outputs(deployed.outputs, deployed.inputs)
    assert {"az-www.azure.test", "az-api.azure.test", "az-www.rfc2136.test"} == set(deployed.outputs["names"])
    deployed.destroy()
    assert live.pebble.cert_status(deployed.deleted[-1][1]["serial"]) == "Revoked"


def test_revoked_out_of_band_is_renewed(live, deployed):
    from keyvault_acme.config import certificate_spec_from_dict
    from keyvault_acme.lifecycle import Engine

    inputs = live.inputs("rev-www", ["rev-www"])
    deployed.up(inputs)
    first = dict(deployed.outputs)
    spec = certificate_spec_from_dict({k: v for k, v in deployed.inputs.items()
                                       if k not in ("revoke_on_delete", "revoke_reason", "purge_on_delete",
                                                    "__provider")})
    Engine(live.credential).revoke(spec, "keyCompromise")  # e.g. `keyvault-acme revoke` during an incident
    assert live.pebble.cert_status(first["serial"]) == "Revoked"
    assert deployed.refresh() == "update"
    assert deployed.outputs["revoked_reason"] == "keyCompromise"
    assert deployed.up(inputs) == "update"
    assert deployed.outputs["serial"] != first["serial"] and "revoked_reason" not in deployed.outputs
    assert live.pebble.cert_status(deployed.outputs["serial"]) == "Valid"


def test_a_tags_change_reaches_key_vault_at_once_without_renewing(live, deployed):
    inputs = live.inputs("tag-www", ["tag-www"], tags={"team": "web", "cost-center": "42"})
    deployed.up(inputs)
    first = dict(deployed.outputs)
    client = CertificateClient(inputs["vault_url"], live.credential)
    assert client.get_certificate("tag-www").properties.tags["cost-center"] == "42"

    assert deployed.up({**inputs, "tags": {"team": "payments"}}) == "update"
    tags = client.get_certificate("tag-www").properties.tags
    assert tags["team"] == "payments" and "cost-center" not in tags and tags["managed-by"] == "keyvault-acme"
    assert deployed.outputs["vault_tags"] == tags  # the state says what Key Vault holds
    assert (deployed.outputs["version"], deployed.outputs["serial"]) == (first["version"], first["serial"])
    assert client.get_certificate("tag-www").properties.version == first["version"]
    assert deployed.up({**inputs, "tags": {"team": "payments"}}) == "none"


def test_a_create_right_after_its_grants_waits_until_they_apply(live, deployed):
    # The host's identity loses its grant and gets it back, applied only seconds later (Azure: minutes);
    # the component passes the grants' createdOn, and the create waits instead of failing with 403.
    from emulator.admin_client import ROOT_ROLE

    admin = live.emulator.admin
    [old] = [a for a in admin.role_assignments(live.app_id) if a["role"] == ROOT_ROLE]
    admin.unassign_role(old["id"])
    new = admin.assign_role(live.app_id, ROOT_ROLE, "/", propagation_s=4.0)  # longer than check + start-up
    started = time.monotonic()
    assert deployed.up({**live.inputs("late-grant", ["late-grant"]), "access_granted_at": new["created_on"]}) \
        == "create"
    assert time.monotonic() - started >= 3.5  # it did wait for the grant
    assert live.pebble.cert_status(deployed.outputs["serial"]) == "Valid"
    assert "can take up to 10 minutes" in live.host.stderr()


def test_a_refresh_is_one_key_vault_request_and_a_renewal_elsewhere_brings_its_chain(live, deployed):
    """`pulumi refresh` (read, then diff) of an unchanged certificate costs one Key Vault request: the chain in
    state stays the chain while the thumbprint is unchanged. Renewed outside Pulumi, its new chain is read."""
    from tests.request_counts import data_requests, vault_host

    inputs = live.inputs("rq-www", ["rq-www"])
    deployed.up(inputs)
    # The first refresh after issuance asks the CA for its renewal info (ARI) and caches it on the version: the
    # steady state, counted here, is every later refresh.
    assert deployed.refresh() == "none"
    before = dict(deployed.outputs)
    host = vault_host(inputs["vault_url"])
    mark = live.emulator.admin.request_mark()
    assert deployed.refresh() == "none"
    assert data_requests(live.emulator, mark, host) == [("GET", "/certificates/rq-www/")]
    assert deployed.outputs == before

    # Another process renews it (the CLI's `renew`): the next refresh reads the new version's chain.
    from keyvault_acme.config import certificate_spec_from_dict
    from keyvault_acme.lifecycle import Engine
    from providers.state import PROVIDER_INPUTS

    renewed = Engine(live.credential).renew(certificate_spec_from_dict(
        {k: v for k, v in deployed.inputs.items() if k not in PROVIDER_INPUTS and not k.startswith("__")}))
    deployed.refresh()
    assert deployed.outputs["thumbprint"] == renewed.thumbprint != before["thumbprint"]
    assert deployed.outputs["pem_chain"] == renewed.pem_chain and renewed.pem_chain.count("BEGIN") >= 2


def test_preview_shows_a_renewal_the_ca_asked_for_through_ari(live, deployed):
    inputs = live.inputs("ari-www", ["ari-www"])
    deployed.up(inputs)
    first = dict(deployed.outputs)
    # The CA moves the window into the past (as before a mass revocation), on Pebble 2.10's management port.
    now = datetime.now(timezone.utc)
    live.pebble.set_renewal_info(first["pem_chain"], (now - timedelta(hours=2), now - timedelta(hours=1)))
    assert deployed.preview(inputs) == "update"
    assert "ari-www: CARequestedRenewal: Renewing: the CA asked for renewal now" in live.host.stderr()
    assert deployed.up(inputs) == "update"
    assert deployed.outputs["serial"] != first["serial"]
    # The new version's window is the CA's ordinary one, cached in its tags: nothing more to do.
    assert deployed.refresh() == "none"
    assert "acme-ari" in deployed.outputs["vault_tags"]

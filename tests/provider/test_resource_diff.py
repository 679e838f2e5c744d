"""plan_change: replace on another vault/name, renew when the renewal decision says so, else record or nothing."""
from datetime import datetime, timedelta, timezone

import pytest

from keyvault_acme.config import certificate_spec_from_dict, spec_to_dict
from keyvault_acme.model import CertificateFacts
from keyvault_acme.renewal import issued_with_tags
from keyvault_acme.resource_diff import NONE, REPLACE, UPDATE, plan_change

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
ZONE_ID = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/dns-rg"
           "/providers/Microsoft.Network/dnszones/example.com")
SPEC = spec_to_dict(certificate_spec_from_dict({
    "vault_url": "https://kv-web-dev.vault.azure.net", "name": "www", "dns_names": ["www.example.com"],
    "zones": [{"resource_id": ZONE_ID}], "renewal": {"fraction_remaining": 0.25}}))
OLD = {**SPEC, "revoke_on_delete": True}


def facts(not_before=NOW - timedelta(days=10), lifetime=timedelta(days=90), **kw) -> CertificateFacts:
    base = dict(
        id="https://kv-web-dev.vault.azure.net/certificates/www",
        versioned_id="https://kv-web-dev.vault.azure.net/certificates/www/" + "a" * 32,
        secret_id="https://kv-web-dev.vault.azure.net/secrets/www",
        versioned_secret_id="https://kv-web-dev.vault.azure.net/secrets/www/" + "a" * 32,
        version="a" * 32, thumbprint="AB" * 20, serial="01", not_before=not_before,
        not_after=not_before + lifetime, issuer="CN=Pebble", names=("www.example.com",), pem_chain="",
        tags=issued_with_tags(certificate_spec_from_dict(SPEC)))
    return CertificateFacts(**{**base, **kw})


def plan(new=None, f=None, now=NOW, **kw):
    return plan_change(OLD, OLD if new is None else new, facts() if f is None else f, now,
                       other_keys={"revoke_on_delete"}, **kw)


def test_unchanged_and_not_due_is_no_change():
    p = plan()
    assert (p.action, p.reissue) == (NONE, False)
    assert "renewal due at" in p.message


@pytest.mark.parametrize("change", [{"vault_url": "https://kv-web-prod.vault.azure.net"}, {"name": "www2"}])
def test_another_vault_or_name_replaces(change):
    p = plan({**OLD, **change})
    assert p.action == REPLACE and p.replaces == tuple(change)


def test_case_only_change_of_vault_is_the_same_certificate():
    assert plan({**OLD, "vault_url": "https://KV-web-dev.vault.azure.net/"}).action != REPLACE


@pytest.mark.parametrize("change, reason", [
    ({"dns_names": ["www.example.com", "api.example.com"]}, "NamesChanged"),
    ({"key": {"kty": "RSA", "size": 2048, "exportable": False}}, "KeyChanged"),
    ({"acme": {**SPEC["acme"], "directory_url": "https://ca.example/dir"}}, "IssuerChanged"),
    ({"profile": "shortlived"}, "ProfileChanged"),
])
def test_settings_baked_into_the_certificate_renew(change, reason):
    p = plan({**OLD, **change})
    assert (p.action, p.reissue, p.reason) == (UPDATE, True, reason)


def test_due_renews_exactly_from_the_renewal_time_on():
    f = facts()
    due = f.not_after - (f.not_after - f.not_before) * 0.25
    assert plan(f=f, now=due - timedelta(seconds=1)).action == NONE
    p = plan(f=f, now=due)
    assert (p.action, p.reissue, p.reason) == (UPDATE, True, "Renewing")


@pytest.mark.parametrize("kw, reason", [({"revoked_reason": "keyCompromise"}, "Revoked"),
                                        ({"enabled": False}, "Disabled")])
def test_revoked_or_disabled_out_of_band_renews(kw, reason):
    p = plan(f=facts(**kw))
    assert (p.action, p.reissue, p.reason) == (UPDATE, True, reason)


def test_other_settings_update_without_reissue():
    p = plan({**OLD, "revoke_on_delete": False, "tags": {"team": "web"}})
    assert (p.action, p.reissue) == (UPDATE, False)
    assert "revoke_on_delete" in p.message and "tags" in p.message


def test_unknown_values_in_preview():
    assert plan({**OLD, "vault_url": "?"}, unknown={"vault_url"}).action == REPLACE
    p = plan({**OLD, "dns_names": "?"}, unknown={"dns_names"})
    assert (p.action, p.reissue) == (UPDATE, True)

"""Check and Diff through the real provider host, as `pulumi preview` and `pulumi up` call them (no services needed)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

from keyvault_acme.config import certificate_spec_from_dict
from keyvault_acme.renewal import issued_with_tags
from keyvault_acme_pulumi.providers.state import PROVIDER_INPUTS
from tests.provider.conftest import INPUTS
from tests.provider.host import changes

CERT_ID = "https://kv-web-dev.vault.azure.net/certificates/www"


def test_check_normalises_and_fills_defaults(offline_host, serialized_provider):
    inputs, failures = offline_host.check({}, {**INPUTS, "key": {"kty": "rsa", "size": 3072.0},
                                              "__provider": serialized_provider})
    assert failures == []
    assert inputs["vault_url"] == "https://kv-web-dev.vault.azure.net"  # no trailing slash
    assert inputs["key"] == {"kty": "RSA", "size": 3072, "exportable": False}
    assert inputs["acme"]["directory_url"].startswith("https://")
    assert (inputs["revoke_on_delete"], inputs["revoke_reason"], inputs["purge_on_delete"]) == (
        True, "cessationOfOperation", False)
    assert inputs["__provider"] == serialized_provider


@pytest.mark.parametrize("change, field, fix", [
    ({"key": {"kty": "RSA", "size": 1024}}, "key.size", "use one of"),
    ({"dns_names": []}, "dns_names", "set dns_names"),
    ({"vault_url": "http://kv.vault.azure.net"}, "vault_url", "https://<vault>.vault.azure.net"),
    ({"zones": [{"resource_id": "/subscriptions/x/dnszones/example.com"}]}, "zones[0].resource_id", "/subscriptions/"),
    ({"revoke_reason": "because"}, "revoke_reason", "keyCompromise"),
    ({"purge_on_delete": "yes"}, "purge_on_delete", "true or false"),
    ({"acme": {"eab_kid": "kid", "eab_hmac": "c2VjcmV0"}}, "acme.eab_hmac", "never put a secret value"),
    ({"colour": "blue"}, "colour", "use only"),
    ({"access_granted_at": "yesterday"}, "access_granted_at", "ISO 8601"),
    ({"access_granted_at": "2026-11-26T09:30:00"}, "access_granted_at", "UTC offset"),
])
def test_check_names_the_field_and_the_fix(offline_host, serialized_provider, change, field, fix):
    _, failures = offline_host.check({}, {**INPUTS, **change, "__provider": serialized_provider})
    assert [f for f, _ in failures] == [field]
    assert fix in failures[0][1]


def test_check_runs_the_engines_offline_preflight(offline_host, serialized_provider):
    # A name outside every configured zone is caught before anything is created.
    _, failures = offline_host.check({}, {**INPUTS, "dns_names": ["www.other.org"], "__provider": serialized_provider})
    assert [f for f, _ in failures] == ["dns_names"]
    assert "www.other.org" in failures[0][1]


def test_check_tolerates_unknowns_in_preview(offline_host, serialized_provider):
    news = {**INPUTS, "vault_url": UNKNOWN, "dns_names": [UNKNOWN], "__provider": serialized_provider}
    inputs, failures = offline_host.check({}, news)
    assert failures == []
    # The host hands unknowns to the provider as Unknown objects and sends them back as unknowns.
    assert isinstance(inputs["vault_url"], Unknown) and isinstance(inputs["dns_names"][0], Unknown)
    # What is known is still checked.
    _, failures = offline_host.check({}, {**news, "key": {"kty": "EC", "curve": "P-521"}})
    assert [f for f, _ in failures] == ["key.curve"]


# -- diff: olds are the recorded outputs ---------------------------------------------------------------

def recorded(checked: dict, *, not_before: datetime, lifetime: timedelta, **facts) -> dict:
    """Outputs as create records them (the provider's inputs plus the certificate's facts)."""
    version = "0" * 32
    spec = certificate_spec_from_dict({k: v for k, v in checked.items()
                                       if k not in PROVIDER_INPUTS and k != "__provider"})
    return {**checked, "certificate_id": CERT_ID, "versioned_certificate_id": f"{CERT_ID}/{version}",
            "secret_id": CERT_ID.replace("certificates", "secrets"),
            "versioned_secret_id": f"{CERT_ID.replace('certificates', 'secrets')}/{version}",
            "version": version, "thumbprint": "AB" * 20, "serial": "0abc", "not_before": not_before.isoformat(),
            "not_after": (not_before + lifetime).isoformat(), "issuer": "CN=Pebble Intermediate CA",
            "names": list(spec.dns_names), "pem_chain": "-----BEGIN CERTIFICATE-----\n...", "enabled": True,
            "vault_tags": issued_with_tags(spec), "renew_after": "", **facts}


@pytest.fixture
def checked(offline_host, serialized_provider):
    inputs, failures = offline_host.check({}, {**INPUTS, "renewal": {"fraction_remaining": 0.5},
                                               "__provider": serialized_provider})
    assert failures == []
    return inputs


def fresh(checked, **facts):
    return recorded(checked, not_before=datetime.now(timezone.utc) - timedelta(minutes=1),
                    lifetime=timedelta(days=90), **facts)


def test_diff_no_change_when_current(offline_host, checked):
    assert changes(offline_host.diff(CERT_ID, fresh(checked), checked)) == "none"


def test_diff_replaces_on_another_vault_creating_before_deleting(offline_host, checked):
    diff = offline_host.diff(CERT_ID, fresh(checked), {**checked, "vault_url": "https://kv-web-prod.vault.azure.net"})
    assert changes(diff) == "replace" and list(diff.replaces) == ["vault_url"]
    assert diff.deleteBeforeReplace is False


@pytest.mark.parametrize("change", [
    {"dns_names": ["www.example.com", "api.example.com"]},
    {"key": {"kty": "RSA", "size": 2048, "exportable": False}},
    {"revoke_on_delete": False},
])
def test_diff_updates_on_names_key_or_settings(offline_host, checked, change):
    assert changes(offline_host.diff(CERT_ID, fresh(checked), {**checked, **change})) == "update"


def test_diff_updates_when_renewal_is_due(offline_host, checked):
    # Half the lifetime left is the policy; 60 of 90 days have passed.
    olds = recorded(checked, not_before=datetime.now(timezone.utc) - timedelta(days=60), lifetime=timedelta(days=90))
    assert changes(offline_host.diff(CERT_ID, olds, checked)) == "update"


@pytest.mark.parametrize("facts", [{"enabled": False}, {"revoked_reason": "keyCompromise"}])
def test_diff_updates_when_revoked_or_disabled_out_of_band(offline_host, checked, facts):
    assert changes(offline_host.diff(CERT_ID, fresh(checked, **facts), checked)) == "update"


@pytest.mark.parametrize("granted_at", ["2026-11-26T09:30:00Z", UNKNOWN])
def test_when_access_was_granted_is_never_a_change(offline_host, checked, granted_at):
    # The component passes the role assignments' createdOn: recreated grants must not renew certificates.
    olds = fresh({**checked, "access_granted_at": "2026-01-01T00:00:00+00:00"})
    assert changes(offline_host.diff(CERT_ID, olds, {**checked, "access_granted_at": granted_at})) == "none"


def test_diff_with_unknowns_in_preview(offline_host, checked):
    assert changes(offline_host.diff(CERT_ID, fresh(checked), {**checked, "vault_url": UNKNOWN})) == "replace"
    assert changes(offline_host.diff(CERT_ID, fresh(checked), {**checked, "dns_names": UNKNOWN})) == "update"

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from keyvault_acme.model import AcmeAccount, CertificateFacts, CertificateSpec, KeySpec, RenewalPolicy
from keyvault_acme.renewal import (
    TAG_ARI,
    TAG_REVOKED,
    NoRenewalInfo,
    RenewalInfo,
    ari_from_tags,
    ari_recheck_at,
    ari_renewal_time,
    ari_tag,
    due_at,
    issued_with_tags,
    no_ari_from_tags,
    no_ari_tag,
    renew_after,
    renewal_decision,
)

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def spec(**kw) -> CertificateSpec:
    base = dict(vault_url="https://kv.vault.azure.net", name="web", dns_names=("www.example.com", "example.com"),
                zones=(), acme=AcmeAccount(directory_url="https://ca.test/dir"))
    base.update(kw)
    return CertificateSpec(**base)


def facts(days: float, *, names=("example.com", "www.example.com"), s: CertificateSpec | None = None, **kw):
    tags = issued_with_tags(s or spec())
    tags.update(kw.pop("tags", {}))
    return CertificateFacts(
        id="https://kv.vault.azure.net/certificates/web", versioned_id="v", secret_id="s", versioned_secret_id="vs",
        version="1" * 32, thumbprint="AB", serial="0badc0de", not_before=T0, not_after=T0 + days * DAY,
        issuer="CN=test", names=names, pem_chain="", tags=tags, **kw)


@pytest.mark.parametrize("days, due_day", [(6, 4), (45, 30), (90, 60)])
def test_default_renews_with_a_third_of_the_lifetime_left(days, due_day):
    assert renew_after(T0, T0 + days * DAY, RenewalPolicy()) == T0 + due_day * DAY
    just_before, at_due = T0 + due_day * DAY - timedelta(seconds=1), T0 + due_day * DAY
    assert not renewal_decision(facts(days), spec(), just_before).reissue
    decision = renewal_decision(facts(days), spec(), at_due)
    assert decision.reissue and decision.reason == "Renewing"
    assert decision.renew_at == at_due


@pytest.mark.parametrize("days, expected_day", [(90, 60), (45, 15), (6, 4)])
def test_days_before_expiry_falls_back_to_a_third_when_longer_than_the_lifetime(days, expected_day):
    assert renew_after(T0, T0 + days * DAY, RenewalPolicy(days_before_expiry=30)) == T0 + expected_day * DAY


@pytest.mark.parametrize("days, fraction, expected", [(90, 0.5, 45), (6, 0.5, 3), (45, 0.2, 36)])
def test_fraction_remaining(days, fraction, expected):
    assert renew_after(T0, T0 + days * DAY, RenewalPolicy(fraction_remaining=fraction)) == T0 + expected * DAY


def test_up_to_date_says_when_it_will_be_due():
    d = renewal_decision(facts(90), spec(), T0 + DAY)
    assert (d.reissue, d.reason, d.renew_at) == (False, "UpToDate", T0 + 60 * DAY)
    assert "renewal due at 2026-04-30 00:00:00Z" in d.message  # the one date format people read everywhere


def test_expired_has_its_own_reason():
    d = renewal_decision(facts(6), spec(), T0 + 7 * DAY)
    assert d.reissue and d.reason == "Expired"


def test_missing_certificate():
    d = renewal_decision(None, spec(), T0)
    assert d.reissue and d.reason == "DoesNotExist"


def test_revoked_marker_from_facts_or_tag():
    assert renewal_decision(facts(90, revoked_reason="keyCompromise"), spec(), T0).reason == "Revoked"
    d = renewal_decision(facts(90, tags={TAG_REVOKED: "superseded"}), spec(), T0)
    assert d.reason == "Revoked" and "superseded" in d.message


def test_disabled():
    assert renewal_decision(facts(90, enabled=False), spec(), T0).reason == "Disabled"


def test_names_changed_lists_what_changes():
    d = renewal_decision(facts(90), spec(dns_names=("example.com", "API.example.com")), T0 + DAY)
    assert d.reason == "NamesChanged"
    assert "adding api.example.com" in d.message and "removing www.example.com" in d.message


def test_name_order_and_case_do_not_count_as_a_change():
    assert not renewal_decision(facts(90), spec(dns_names=("Example.com.", "www.example.com")), T0 + DAY).reissue


@pytest.mark.parametrize("changed, reason", [
    (dict(key=KeySpec(kty="RSA", size=3072)), "KeyChanged"),
    (dict(key=KeySpec(exportable=True)), "KeyChanged"),
    (dict(key=KeySpec(kty="EC-HSM")), "KeyChanged"),
    (dict(acme=AcmeAccount(directory_url="https://other-ca.test/dir")), "IssuerChanged"),
    (dict(profile="shortlived"), "ProfileChanged"),
])
def test_settings_recorded_at_issuance_trigger_reissue_when_changed(changed, reason):
    d = renewal_decision(facts(90), spec(**changed), T0 + DAY)
    assert d.reissue and d.reason == reason


def test_certificate_without_recorded_settings_is_not_reissued_for_them():
    adopted = replace(facts(90), tags={})
    assert not renewal_decision(adopted, spec(profile="tlsserver"), T0 + DAY).reissue


def test_ari_window_overrides_the_policy_with_a_stable_point_inside_it():
    window = (T0 + 10 * DAY, T0 + 12 * DAY)
    point = ari_renewal_time(window, "0badc0de")
    assert window[0] <= point <= window[1]
    assert point == ari_renewal_time(window, "0badc0de")
    assert ari_renewal_time(window, "0badc0df") != point
    assert not renewal_decision(facts(90), spec(), point - timedelta(seconds=1), ari_window=window).reissue
    d = renewal_decision(facts(90), spec(), point, ari_window=window)
    assert d.reissue and "ARI window" in d.message and d.decided_by == "ari"


def test_a_window_in_the_past_is_the_ca_asking_for_renewal_now():
    # RFC 9773 4.2: the CA moved the window into the past (e.g. before a mass revocation): due at once, long
    # before the policy (day 60 of 90) would renew.
    window = (T0 + DAY, T0 + DAY + timedelta(seconds=1))
    d = renewal_decision(facts(90), spec(), T0 + 2 * DAY, ari_window=window)
    assert (d.reissue, d.reason, d.decided_by) == (True, "CARequestedRenewal", "ari")
    assert "asked for renewal" in d.message
    # Changes of the spec still speak first; expiry too.
    assert renewal_decision(facts(90), spec(dns_names=("a.example.com",)), T0 + 2 * DAY,
                            ari_window=window).reason == "NamesChanged"
    assert renewal_decision(facts(1), spec(), T0 + 2 * DAY, ari_window=window).reason == "Expired"


def test_without_ari_the_policy_decides_and_says_why():
    d = renewal_decision(facts(90), spec(), T0 + DAY, ari_note="the CA at https://ca.test/dir offers no renewal info")
    assert (d.reissue, d.decided_by, d.renew_at) == (False, "policy", T0 + 60 * DAY)
    assert "the renewal policy" in d.message and "offers no renewal info" in d.message
    due = renewal_decision(facts(90), spec(), T0 + 61 * DAY, ari_note="the CA's renewal info could not be read")
    assert due.reissue and due.decided_by == "policy" and "could not be read" in due.message
    # Decisions the spec or the certificate's state make are nobody's timing.
    assert renewal_decision(None, spec(), T0).decided_by == ""


def test_the_stable_point_keeps_out_of_the_last_tenth_of_the_lifetime_when_the_window_allows():
    # Pebble's window for a short certificate is its whole lifetime: a point at its very end would leave no time
    # to retry a failed renewal. Serials are picked so the hash lands late and early in the window.
    window = (T0, T0 + 10 * DAY)
    late = next(s for s in (f"{i:x}" for i in range(1000)) if ari_renewal_time(window, s) > T0 + 9 * DAY)
    assert due_at(replace(facts(10), serial=late), spec(), window) == T0 + 9 * DAY
    early = next(s for s in (f"{i:x}" for i in range(1000)) if ari_renewal_time(window, s) < T0 + 5 * DAY)
    assert due_at(replace(facts(10), serial=early), spec(), window) == ari_renewal_time(window, early)
    # A window wholly in the last tenth is the CA's call: its start, not earlier.
    narrow = (T0 + 9.5 * DAY, T0 + 9.9 * DAY)
    assert due_at(replace(facts(10), serial=late), spec(), narrow) == narrow[0]


def test_an_explicit_renewal_policy_still_holds_as_the_latest_moment_under_ari():
    window = (T0 + 80 * DAY, T0 + 82 * DAY)  # later than the owner wants
    explicit = spec(renewal=RenewalPolicy(days_before_expiry=30))
    d = renewal_decision(facts(90, s=explicit), explicit, T0 + 60 * DAY, ari_window=window)
    assert (d.reissue, d.decided_by, d.renew_at) == (True, "policy", T0 + 60 * DAY)
    assert "earlier than the CA's ARI window" in d.message
    # The default policy does not compete: the CA's window decides.
    d = renewal_decision(facts(90), spec(), T0 + 60 * DAY, ari_window=window)
    assert (d.reissue, d.decided_by) == (False, "ari") and window[0] <= d.renew_at <= window[1]
    # An explicit policy later than the window changes nothing either.
    late = spec(renewal=RenewalPolicy(days_before_expiry=1))
    assert renewal_decision(facts(90, s=late), late, T0 + DAY, ari_window=window).decided_by == "ari"


def test_the_ari_answer_round_trips_through_its_tag_and_bounds_retry_after():
    info = RenewalInfo(T0 + 10 * DAY, T0 + 12 * DAY, next_check=T0 + timedelta(hours=6))
    tag = ari_tag(info)
    assert len(tag) < 256 and ari_from_tags({TAG_ARI: tag}) == info
    assert ari_from_tags({}) is None and ari_from_tags({TAG_ARI: "garbage"}) is None
    assert info.fresh(T0) and not info.fresh(T0 + timedelta(hours=6))
    assert ari_recheck_at(T0, 21600) == T0 + timedelta(hours=6)
    assert ari_recheck_at(T0, None) == T0 + timedelta(hours=6)  # RFC 9773's suggestion when none is sent


def test_no_answer_round_trips_through_the_same_tag_and_is_never_read_as_a_window():
    for why in (NoRenewalInfo.NO_ARI, NoRenewalInfo.FAILED):
        absent = NoRenewalInfo(why, next_check=T0 + timedelta(minutes=5))
        tag = no_ari_tag(absent)
        assert no_ari_from_tags({TAG_ARI: tag}) == absent and ari_from_tags({TAG_ARI: tag}) is None
        assert absent.fresh(T0) and not absent.fresh(T0 + timedelta(minutes=5))
    window = ari_tag(RenewalInfo(T0, T0 + DAY, next_check=T0 + DAY))
    assert no_ari_from_tags({TAG_ARI: window}) is None and no_ari_from_tags({}) is None
    for garbage in ("none", "none why 20260301T000000Z", "none failed yesterday", "none failed 1 2"):
        assert no_ari_from_tags({TAG_ARI: garbage}) is None, garbage
    assert "offers no renewal info" in NoRenewalInfo(NoRenewalInfo.NO_ARI, T0).note("https://ca.test/dir")
    assert "2026-03-01 00:00:00Z" in NoRenewalInfo(NoRenewalInfo.FAILED, T0).note("https://ca.test/dir")
    assert ari_recheck_at(T0, 1) == T0 + timedelta(minutes=1)  # never a tight loop
    assert ari_recheck_at(T0, 10 * 86400) == T0 + DAY  # never less than daily



def test_every_reason_is_one_shared_constant():
    # The renewal chain, the resource diff and the CLI's status column name reasons through renewal.Reason: no
    # module spells a reason as a literal (so none can drift), and the CLI has a state for every reason.
    import ast
    from pathlib import Path

    from keyvault_acme.renewal import Reason
    from keyvault_acme_cli.cli import STATE_OF

    root = Path(__file__).resolve().parents[2]
    words = {r.value for r in Reason}
    for module in ("keyvault_acme/renewal.py", "keyvault_acme/resource_diff.py", "keyvault_acme_cli/cli.py"):
        tree = ast.parse((root / module).read_text())
        tree.body = [node for node in tree.body if not (isinstance(node, ast.ClassDef) and node.name == "Reason")]
        literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        # "Unknown" is also an ordinary word there (a metric condition, Key Vault's issuer name).
        assert not literals & (words - {Reason.UNKNOWN.value}), module
    assert set(STATE_OF) == set(Reason)
    assert {STATE_OF[r] for r in (Reason.RENEWING, Reason.UP_TO_DATE, Reason.DOES_NOT_EXIST)} == {"due", "valid", "missing"}

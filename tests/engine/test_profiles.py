"""ACME profiles per certificate against a Pebble 2.10 that offers several (``meta.profiles``), and renewal
timing for short-lived certificates: a profile whose certificates live SHORT_S seconds (like Let's Encrypt's
6-day ``shortlived``, scaled down) renewed on time by a real refresh loop."""
from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from keyvault_acme.acme_client import DirectoryInfo
from keyvault_acme.errors import PreflightError
from keyvault_acme.model import LETS_ENCRYPT
from tests import services
from tests.engine.conftest import AZURE_ZONE, unique

pytestmark = pytest.mark.integration

SHORT_S = 90
PROFILES = {"classic": 90 * 86400, "tlsserver": 45 * 86400, "shortlived": SHORT_S}


@pytest.fixture(scope="module")
def profiled_pebble(bind):
    with services.pebble_server(bind, profiles=PROFILES) as pebble:
        yield pebble


@pytest.fixture
def profiled(world, profiled_pebble):
    """The world with this module's Pebble as the CA (its TLS CA is the one every Pebble shares)."""
    return replace(world, directory_url=profiled_pebble.directory_url)


def lifetime_s(facts) -> float:
    return (facts.not_after - facts.not_before).total_seconds()


# -- pure: name-count limits per profile --------------------------------------------------------------------
def test_name_limits_are_the_profile_s_where_the_ca_publishes_them_else_100():
    le = DirectoryInfo(url=LETS_ENCRYPT, profiles={"classic": "90 days", "tlsserver": "45 days",
                                                   "shortlived": "6 days"})
    assert (le.name_limit("tlsserver"), le.name_limit("classic"), le.name_limit(None)) == (25, 100, 100)
    assert le.name_limit("shortlived") == 100  # published without a limit of its own
    le.check_profile("tlsserver", 25)
    with pytest.raises(PreflightError, match=r"at most 25 names .* 'tlsserver'; this certificate has 26"):
        le.check_profile("tlsserver", 26)
    other = DirectoryInfo(url="https://ca.example/dir", profiles={"tlsserver": "whatever"})
    other.check_profile("tlsserver", 100)
    with pytest.raises(PreflightError, match="at most 100 names"):
        other.check_profile("tlsserver", 101)


# -- against Pebble 2.10 --------------------------------------------------------------------------------------
def test_an_unknown_profile_fails_preflight_with_the_offered_ones(profiled, engine):
    spec = profiled.spec([unique(AZURE_ZONE)], profile="tlsclient")
    with pytest.raises(PreflightError, match=r"does not offer the profile 'tlsclient' "
                                             r"\(offered: classic, shortlived, tlsserver\)"):
        engine.preflight(spec)
    [step] = [r for r in engine.check(spec) if r.step == "profile"]
    assert not step.ok and "offered: classic, shortlived, tlsserver" in step.detail
    assert engine.inspect(spec.vault_url, spec.name) is None  # nothing was created


def test_the_chosen_profile_is_what_the_ca_issues(profiled, engine):
    tls = engine.issue(profiled.spec([unique(AZURE_ZONE)], profile="tlsserver"))
    assert abs(lifetime_s(tls) - PROFILES["tlsserver"]) <= 1
    assert tls.tags["acme-profile"] == "tlsserver"
    [step] = [r for r in engine.check(profiled.spec([unique(AZURE_ZONE)], profile="tlsserver")) if r.step == "profile"]
    assert step.ok and "1 of at most 100 names" in step.detail


def test_short_lived_certificates_are_renewed_on_time_by_a_refresh_loop(profiled, engine):
    """A scheduled job (``renew --due``, ``pulumi up --refresh``) in miniature: every second, decide, renew
    what is due. Each certificate must be renewed before it expires, and not before the decision said."""
    specs = [profiled.spec([unique(AZURE_ZONE)], profile="shortlived") for _ in range(2)]
    first = {s.name: engine.issue(s) for s in specs}
    assert all(abs(lifetime_s(f) - SHORT_S) <= 1 for f in first.values())
    renewed: dict[str, tuple[datetime, object, object]] = {}
    deadline = time.monotonic() + 2 * SHORT_S
    while len(renewed) < len(specs):
        assert time.monotonic() < deadline, "the refresh loop did not renew every certificate in time"
        for spec in specs:
            if spec.name in renewed:
                continue
            facts = engine.inspect(spec.vault_url, spec.name)
            decision = engine.decide(spec, facts)
            assert decision.decided_by == "ari"  # Pebble 2.10's window for the short certificate
            if decision.reissue:
                assert decision.reason == "Renewing"
                renewed[spec.name] = (datetime.now(timezone.utc), decision, engine.renew(spec, current=facts))
        time.sleep(1)
    for spec in specs:
        when, decision, new = renewed[spec.name]
        old = first[spec.name]
        assert decision.renew_at <= when < old.not_after  # on time: due, and before expiry
        assert new.not_before < old.not_after  # no gap without a valid certificate
        assert abs(lifetime_s(new) - SHORT_S) <= 1  # the renewal kept the profile

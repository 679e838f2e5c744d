"""ARI (RFC 9773) decides renewal when the CA offers it: real Pebble 2.10, windows forced on its management port
(``/set-renewal-info/``), what the CA was asked seen through a recording proxy; Debian 12's Pebble 2.4 (no ARI)
for the fallback to the lifetime policy."""
from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509

from keyvault_acme.account import new_account_key
from keyvault_acme.acme_client import AcmeClient, ari_cert_id
from keyvault_acme.ari import ARI_FAILURE_RECHECK_S
from keyvault_acme.lifecycle import Engine
from keyvault_acme.renewal import TAG_ARI, ari_from_tags, no_ari_from_tags
from tests.engine.conftest import AZURE_ZONE, unique
from tests.recording_proxy import RecordingProxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def proxy(pebble):
    with RecordingProxy(pebble) as recording:
        yield recording


def via(url: str, spec):
    return replace(spec, acme=replace(spec.acme, directory_url=url))


def leaf_of(facts) -> x509.Certificate:
    return x509.load_pem_x509_certificates(facts.pem_chain.encode())[0]


def test_ari_decides_and_the_ca_is_asked_once_per_retry_after(world, engine, proxy, credential):
    spec = via(proxy.directory_url, world.spec([unique(AZURE_ZONE)]))
    facts = engine.issue(spec)
    leaf = leaf_of(facts)
    before = len(proxy.requests_to("/renewalInfo/"))

    decision = engine.decide(spec, facts)
    assert (decision.reissue, decision.reason, decision.decided_by) == (False, "UpToDate", "ari")
    assert "ARI window" in decision.message
    assert leaf.not_valid_before_utc <= decision.renew_at < leaf.not_valid_after_utc
    [asked] = proxy.requests_to("/renewalInfo/")[before:]
    assert asked.method == "GET" and asked.path.endswith("/" + ari_cert_id(leaf))  # CertID: AKI + serial

    # The answer is cached on the version for Pebble's Retry-After (6 h)...
    tagged = engine.inspect(spec.vault_url, spec.name)
    cached = ari_from_tags(tagged.tags)
    assert cached is not None and cached.window[0] <= decision.renew_at <= cached.window[1]
    assert timedelta(hours=5, minutes=59) < cached.next_check - datetime.now(timezone.utc) <= timedelta(hours=6)
    # ...so neither this engine, nor another process (a new engine), nor old facts (a preview's state) ask again.
    engine.decide(spec, facts)
    Engine(credential).decide(spec, facts)
    Engine(credential).decide(spec, tagged)
    assert len(proxy.requests_to("/renewalInfo/")) == before + 1
    # Once the Retry-After is over, the CA is asked again, once.
    later = datetime.now(timezone.utc) + timedelta(hours=6, minutes=1)
    again = Engine(credential)
    assert again.decide(spec, tagged, now=later).decided_by == "ari"
    again.decide(spec, tagged, now=later)
    assert len(proxy.requests_to("/renewalInfo/")) == before + 2


def test_a_window_moved_into_the_past_makes_it_due_at_once(world, engine, pebble):
    spec = world.spec([unique(AZURE_ZONE)])
    facts = engine.issue(spec)
    now = datetime.now(timezone.utc)
    pebble.set_renewal_info(facts.pem_chain, (now - timedelta(hours=2), now - timedelta(hours=1)))

    decision = engine.decide(spec, facts)
    assert (decision.reissue, decision.reason, decision.decided_by) == (True, "CARequestedRenewal", "ari")
    renewed = engine.renew(spec)
    assert renewed.serial != facts.serial
    # The new version has the CA's ordinary window: not due.
    after = engine.decide(spec, renewed)
    assert (after.reissue, after.decided_by) == (False, "ari")


def test_an_unreadable_answer_leaves_the_decision_to_the_policy(world, engine, pebble, proxy, credential):
    spec = via(proxy.directory_url, world.spec([unique(AZURE_ZONE)]))
    facts = engine.issue(spec)
    pebble.set_renewal_info(facts.pem_chain, raw="{this is not JSON")
    decision = engine.decide(spec, facts)
    assert (decision.reissue, decision.decided_by) == (False, "policy")
    assert "renewal info could not be read" in decision.message
    # The failure is cached on the version for a short while (no window is invented), so the next process
    # neither asks the CA nor reads the version's tags again: a steady read stays one Key Vault request.
    tagged = engine.inspect(spec.vault_url, spec.name)
    absent = no_ari_from_tags(tagged.tags)
    assert ari_from_tags(tagged.tags) is None and absent is not None and absent.why == "failed"
    now = datetime.now(timezone.utc)
    assert now < absent.next_check <= now + timedelta(seconds=ARI_FAILURE_RECHECK_S)
    asked = len(proxy.requests_to("/renewalInfo/"))
    again = Engine(credential).decide(spec, tagged)
    assert again.decided_by == "policy" and "could not be read when last asked" in again.message
    assert len(proxy.requests_to("/renewalInfo/")) == asked
    # Once that while is over, the CA is asked again.
    Engine(credential).decide(spec, tagged, now=absent.next_check + timedelta(seconds=1))
    assert len(proxy.requests_to("/renewalInfo/")) == asked + 1
    # ARI trouble never blocks a renewal.
    assert engine.renew(spec).serial != facts.serial


def test_without_ari_the_lifetime_policy_decides_and_says_so(world, engine, pebble_24, credential):
    spec = via(pebble_24.directory_url, world.spec([unique(AZURE_ZONE)]))
    facts = engine.issue(spec)
    decision = engine.decide(spec, facts)
    assert (decision.reissue, decision.decided_by) == (False, "policy")
    assert "offers no renewal info (ARI)" in decision.message
    # Recorded on the version, so another process decides from the one read it makes anyway.
    tagged = engine.inspect(spec.vault_url, spec.name)
    absent = no_ari_from_tags(tagged.tags)
    assert absent is not None and absent.why == "no-ari" and tagged.tags[TAG_ARI].startswith("none no-ari ")
    again = Engine(credential).decide(spec, tagged)
    assert again.decided_by == "policy" and "offers no renewal info (ARI)" in again.message


# -- renewal orders name the version they replace (RFC 9773 5) ---------------------------------------------
def test_a_renewal_order_names_the_version_it_replaces_and_the_ca_records_it(world, engine, proxy, caplog):
    spec = via(proxy.directory_url, world.spec([unique(AZURE_ZONE)]))
    old = engine.issue(spec)
    cert_id = ari_cert_id(leaf_of(old))
    orders = len(proxy.requests_to("/order-plz"))
    renewed = engine.renew(spec)
    [order] = [s for s in proxy.requests_to("/order-plz")[orders:] if not s.nonce_refused]
    assert order.payload["replaces"] == cert_id
    assert renewed.serial != old.serial
    # The CA recorded the replacement: another order replacing the same certificate is refused as already
    # replaced (and falls back to a plain order, once, saying so).
    client = AcmeClient(proxy.directory_url, new_account_key(), timeout=30)
    with caplog.at_level(logging.WARNING, logger="keyvault_acme.acme"):
        fallback = client.new_order(list(spec.dns_names), replaces=cert_id)
    assert fallback.replaces is None
    [line] = [r.getMessage() for r in caplog.records if "refused to let this order replace" in r.getMessage()]
    assert cert_id in line and "alreadyReplaced" in line


def test_already_replaced_falls_back_to_a_plain_order_once(world, engine, proxy, caplog):
    spec = via(proxy.directory_url, world.spec([unique(AZURE_ZONE)]))
    old = engine.issue(spec)
    engine.renew(spec, current=old)
    orders = len(proxy.requests_to("/order-plz"))
    # Old facts (a provider state another run has renewed since): the CA refuses `replaces`, the renewal goes on.
    with caplog.at_level(logging.WARNING, logger="keyvault_acme.acme"):
        third = engine.renew(spec, current=old)
    # (A request Pebble refused for its nonce, on purpose now and then, is sent again: not another order.)
    sent = [s.payload for s in proxy.requests_to("/order-plz")[orders:] if not s.nonce_refused]
    assert [p.get("replaces") for p in sent] == [ari_cert_id(leaf_of(old)), None]
    # The CA's 409 is read as the problem document it is: its type and words, not a raw body.
    [refused] = [r.getMessage() for r in caplog.records if "refused to let this order replace" in r.getMessage()]
    assert "ACME alreadyReplaced: " in refused and "HTTP 409" not in refused, refused
    assert engine.inspect(spec.vault_url, spec.name).serial == third.serial


def test_a_replaces_another_account_cannot_use_falls_back(world, engine, proxy, caplog):
    spec = via(proxy.directory_url, world.spec([unique(AZURE_ZONE)]))
    old = engine.issue(spec)
    # The account changed (a new account key): the CA refuses to let it replace the old account's certificate.
    moved = replace(spec, acme=replace(spec.acme, account_key_secret=f"other-account-{uuid.uuid4().hex[:6]}"))
    with caplog.at_level(logging.WARNING, logger="keyvault_acme.acme"):
        renewed = engine.renew(moved)
    assert renewed.serial != old.serial
    [line] = [r.getMessage() for r in caplog.records if "refused to let this order replace" in r.getMessage()]
    assert "unauthorized" in line and "did not request the certificate" in line

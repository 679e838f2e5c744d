"""Revocation before a destroy: every unexpired version, each at the CA that issued it; expired ones skipped.

Two CAs: the session's Pebble, and one of this module whose certificates live a few seconds, so one
can expire during the test (a poll with a deadline; nothing is timed).
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from keyvault_acme.errors import CertificateExpired
from tests import services
from tests.engine.conftest import AZURE_ZONE, unique

pytestmark = pytest.mark.integration

SHORT_VALIDITY_S = 3


@pytest.fixture(scope="module")
def short_pebble(bind):
    with services.pebble_server(bind, validity_s=SHORT_VALIDITY_S) as pebble:
        yield pebble


@pytest.fixture
def both_cas(world, short_pebble, extra_ca_paths, tmp_path, monkeypatch):
    """The world, trusting the second CA's TLS too (as the environment of a real run would)."""
    bundle = services.write_ca_bundle(tmp_path / "bundle.pem", [*extra_ca_paths, short_pebble.tls_ca_pem_path])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    return world


def test_destroy_revokes_every_unexpired_version_not_only_the_current_one(world, engine, pebble):
    spec = world.spec([unique(AZURE_ZONE)])
    versions = [engine.issue(spec), engine.renew(spec), engine.renew(spec)]
    engine.revoke(spec, "superseded")  # the current one was revoked already: not again
    revoked = engine.revoke_all(spec, "cessationOfOperation")
    assert sorted(revoked) == sorted(v.serial for v in versions[:2])
    for facts in versions:
        assert pebble.cert_status(facts.serial) == "Revoked"
    reasons = {pebble.cert_status_details(v.serial).get("Reason") for v in versions[:2]}
    assert reasons == {5}  # cessationOfOperation, as RFC 5280 numbers it
    for facts in versions:  # each version records it and is disabled
        tagged = engine.wiring.vault(spec.vault_url).certificate(spec.name, facts.version)
        assert tagged.revoked_reason and not tagged.enabled
    assert engine.revoke_all(spec) == []  # a retried destroy has nothing left to revoke


def test_revocation_goes_to_the_ca_that_issued_the_version(both_cas, engine, pebble, short_pebble):
    spec = both_cas.spec([unique(AZURE_ZONE)])
    issued = engine.issue(spec)
    # The stack moved to another CA and lists the one it used before: revocation goes there.
    moved = replace(spec, acme=replace(spec.acme, directory_url=short_pebble.directory_url,
                                       previous_directories=(spec.acme.directory_url,)))
    assert engine.revoke_all(moved, "superseded") == [issued.serial]
    assert pebble.cert_status(issued.serial) == "Revoked"


def test_expired_versions_are_not_revoked_and_the_destroy_goes_on(both_cas, engine, short_pebble, caplog):
    spec = both_cas.spec([unique(AZURE_ZONE)])
    spec = replace(spec, acme=replace(spec.acme, directory_url=short_pebble.directory_url))
    issued = engine.issue(spec)
    deadline = time.monotonic() + SHORT_VALIDITY_S + 30
    while datetime.now(timezone.utc) < issued.not_after:
        assert time.monotonic() < deadline, "the certificate never expired"
        time.sleep(0.2)
    caplog.set_level(logging.INFO, logger="keyvault_acme")
    assert engine.revoke_all(spec) == []
    assert short_pebble.cert_status(issued.serial) == "Valid"  # nothing was sent to the CA
    assert any(f"serial {issued.serial}" in r.getMessage() and "expired" in r.getMessage() for r in caplog.records)
    with pytest.raises(CertificateExpired, match="do not revoke expired"):
        engine.revoke(spec)
    engine.delete(spec.vault_url, spec.name)
    assert engine.inspect(spec.vault_url, spec.name) is None


def test_a_certificate_with_more_versions_than_one_page(world, engine, pebble):
    """Key Vault lists 25 versions a page, in no chronological order: the current chain is still found, and a
    destroy still revokes every version."""
    spec = world.spec([unique(AZURE_ZONE)])
    versions = [engine.issue(spec)] + [engine.renew(spec) for _ in range(27)]
    current = engine.inspect(spec.vault_url, spec.name)
    assert current.version == versions[-1].version
    assert current.pem_chain == versions[-1].pem_chain and current.pem_chain.count("BEGIN CERTIFICATE") >= 2
    revoked = engine.revoke_all(spec, "cessationOfOperation")
    assert sorted(revoked) == sorted(v.serial for v in versions)
    assert {pebble.cert_status(v.serial) for v in versions} == {"Revoked"}

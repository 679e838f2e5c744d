"""Runs that die or fail half-way leave nothing that blocks or lingers (#11 items 1-5): a run killed with
SIGKILL in its own process, a merge Key Vault keeps refusing, a vault that turns read-only, a DNS clean-up that
keeps failing. Against Pebble, BIND 9 and the emulator with its fault injection."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from keyvault_acme.dns.propagation import Nameserver, query, txt_values
from keyvault_acme.errors import KeyVaultError
from keyvault_acme.keyvault import CHAIN_SUFFIX, same_public_key, split_pem_chain
from keyvault_acme.lifecycle import Engine
from keyvault_acme.names import challenge_name
from keyvault_acme.runs import RUN_TAG, RunRecord, creator_gone, leftover_order, process_alive, process_start
from tests.engine.conftest import AZURE_ZONE, faults, unique
from tests.engine.run_issue import spec_json
from tests.request_counts import counting
from tests.services import BIND_ZONE

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def child(spec, **settings) -> subprocess.Popen:
    """One engine run in its own process (the environment's credentials, as production)."""
    import json

    body = json.loads(spec_json(spec)) | settings
    return subprocess.Popen([sys.executable, "-m", "tests.engine.run_issue", json.dumps(body)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def served(world, name: str) -> set[str]:
    """The TXT values the zone's authoritative server has at ``name`` now (no resolver cache in between)."""
    if name.endswith(AZURE_ZONE):
        server = Nameserver(*world.emulator.dns_address)
    else:
        server = Nameserver(*world.bind.address)
    return txt_values(query(name, "TXT", server), name)


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- pure parts ----------------------------------------------------------------------------------------------


def test_the_run_record_round_trips_and_refuses_what_it_did_not_write():
    record = RunRecord("runner-7", 4242, "98765", "https://ca.example/acme/order/1/2")
    assert RunRecord.parse(record.tag()) == record
    assert RunRecord.parse(RunRecord("h", 1, "").tag()) == RunRecord("h", 1, "")
    for value in (None, "", "hello", "h x 1", "h 1 2 http://plain/order", "h 1 2 https://a b"):
        assert RunRecord.parse(value) is None, value
    # An order URL too long for a tag is left out, never cut: the values could not be found from half a URL.
    long = RunRecord("h", 1, "2", "https://ca.example/" + "o" * 300)
    assert len(long.tag()) <= 256 and RunRecord.parse(long.tag()).order_url is None


def test_a_creator_is_gone_only_when_that_is_certain():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    young, old = now - timedelta(seconds=5), now - timedelta(seconds=601)
    here, there = RunRecord("h1", 10, "7"), RunRecord("h2", 10, "7")

    def gone(record, created, alive):
        return creator_gone(record, created, now, 600, host="h1", alive=lambda pid, start: alive)

    assert gone(here, young, alive=False)  # this host, process gone
    assert not gone(here, young, alive=True)  # this host, still running
    assert not gone(there, young, alive=False)  # another host: cannot tell
    assert not gone(None, young, alive=False)  # no record: cannot tell
    assert not gone(None, None, alive=False)  # unknown age
    assert gone(there, old, alive=True) and gone(None, old, alive=True)  # older than any run may last


def test_a_reused_pid_is_not_the_creator():
    me = os.getpid()
    assert process_alive(me, process_start(me))
    assert not process_alive(me, "1")  # the same PID, started at another time: another process
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert not process_alive(int(dead.stdout), "")


# -- against the local world ---------------------------------------------------------------------------------


@pytest.mark.parametrize("zones, zone", [("azure", AZURE_ZONE), ("both", BIND_ZONE)])
def test_a_run_killed_mid_issue_is_cleaned_up_and_its_operation_reused_at_once(world, emulator, zones, zone):
    """SIGKILL while the challenge records are up: the next run (another process on this host) reuses the
    pending operation at once instead of waiting the operation timeout, removes exactly the values the
    killed run wrote (a foreign value at the same name stays), and `check` reports the leftovers first.

    The killed run is held in one Azure DNS write (a latency fault) while its other record is up already:
    another Azure DNS record, or an RFC 2136 record in BIND."""
    spec = world.spec([unique(zone), unique(AZURE_ZONE, "api")], zones=zones)
    records = [challenge_name(n) for n in spec.dns_names]
    engine = Engine(world_credential(world))
    foreign = "someone-elses-value"
    provider = engine.wiring.providers(spec, time.monotonic() + 30)[zone]
    provider.present(records[0], foreign, deadline=time.monotonic() + 30)
    held = {"kind": "latency", "latency_ms": 3000, "host": "management.azure.com", "path": "*/TXT/*",
            "method": "PUT", "count": 1, "skip": 2 if zone == AZURE_ZONE else 0}
    # (Azure DNS: the first record set exists already, so the child's blind create of it (If-None-Match) is
    # answered 412 and followed by a write with its ETag; the third PUT is always one that writes.)
    with faults(emulator, held) as [fault]:
        run = child(spec)
        # Held: its other record is up, and the held write has reached the emulator (the fault is used up).
        wait_for(lambda: (any(served(world, r) - {foreign} for r in records)
                          and fault["id"] not in {f["id"] for f in emulator.admin.faults()}) or run.poll() is not None,
                 "the child's first challenge record")
        assert run.poll() is None, run.communicate()
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
        # The write held in the emulator still lands after the kill, as a request in flight at Azure would.
        wait_for(lambda: all(served(world, r) - {foreign} for r in records), "the held write")
    vault = engine.wiring.vault(spec.vault_url)
    pending = vault.pending(spec.name)
    assert pending is not None, "the killed run left its pending operation"
    record = RunRecord.parse(vault.pending_properties(spec.name).tags[RUN_TAG])
    assert record.pid == run.pid and record.order_url

    # check: the leftovers, named.
    [leftovers] = [r for r in engine.check(spec) if r.step == "leftovers"]
    assert not leftovers.ok and all(r in leftovers.detail for r in records) and str(run.pid) in leftovers.detail

    started = time.monotonic()
    facts = engine.issue(spec)
    assert time.monotonic() - started < 60  # not the 600 s operation timeout
    assert same_public_key(split_pem_chain(facts.pem_chain)[0].public_key(), pending.csr.public_key())
    for r in records:
        assert served(world, r) - {foreign} == set(), f"stale values remain at {r}"
    assert foreign in served(world, records[0])  # never a value someone else wrote
    [after] = [r for r in engine.check(spec) if r.step == "leftovers"]
    assert after.ok
    provider.cleanup(records[0], foreign, deadline=time.monotonic() + 30)


def world_credential(world):
    import os

    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(os.environ["AZURE_TENANT_ID"], os.environ["AZURE_CLIENT_ID"],
                                  os.environ["AZURE_CLIENT_SECRET"])


def test_a_run_on_this_host_that_is_still_alive_keeps_its_claim(world, credential):
    """The other side of reuse-at-once: a pending operation whose creator process still runs is left alone."""
    from keyvault_acme.errors import CertificateBusy
    from keyvault_acme.lifecycle import managed_tags
    from keyvault_acme.runs import this_run

    spec = world.spec([unique(AZURE_ZONE)])
    vault = Engine(credential).wiring.vault(spec.vault_url)
    made = vault.create_pending(spec.name, spec.key, spec.dns_names, {**managed_tags(spec), RUN_TAG: this_run().tag()})
    with pytest.raises(CertificateBusy, match=f"process {os.getpid()}"):
        Engine(credential).issue(spec)
    assert vault.pending(spec.name).csr_der == made.csr_der


def test_a_merge_that_keeps_failing_is_merged_by_the_next_run_without_a_new_order(world, credential, emulator,
                                                                                  pebble):
    """Key Vault answers 500 to the merge until the run's deadline: the run fails saying the chain is kept, and
    the next run (another engine; the first one's process is still alive) merges that chain at once."""
    spec = world.spec([unique(AZURE_ZONE)])
    with faults(emulator, {"status": 500, "host": "*.vault.azure.net",
                           "path": f"/certificates/{spec.name}/pending/merge"}):
        with pytest.raises(KeyVaultError, match="next run merges it") as info:
            Engine(credential, timeout_s=8).issue(spec)
    assert info.value.retryable
    vault = Engine(credential).wiring.vault(spec.vault_url)
    kept = vault.stored_chain(spec.name)
    assert vault.pending(spec.name) is not None and kept
    facts = Engine(credential).issue(spec)  # no CertificateBusy, no second order
    assert facts.serial == format(kept[0].serial_number, "x")
    assert vault.pending(spec.name) is None and RUN_TAG not in facts.tags
    assert pebble.cert_status(facts.serial) == "Valid"


def test_a_vault_turning_read_only_mid_run_says_so_and_the_next_run_converges(world, credential, emulator):
    """The failover starts after the order (the chain cannot be kept, the operation cannot be discarded): the
    error says the vault is read-only and that the operation will be reused; after recovery the next run (a new
    process on this host) reuses it at once."""
    spec = world.spec([unique(AZURE_ZONE)])
    vault_host = spec.vault_url.split("//")[1]
    with faults(emulator, {"kind": "readonly", "host": vault_host, "path": f"/secrets/{spec.name}{CHAIN_SUFFIX}"},
                {"kind": "readonly", "host": vault_host, "path": f"/certificates/{spec.name}/pending"}):
        run = child(spec)
        _, err = run.communicate(timeout=120)
    assert run.returncode == 1
    assert "read-only" in err and "reuses it" in err and "another run" not in err, err
    vault = Engine(credential).wiring.vault(spec.vault_url)
    pending = vault.pending(spec.name)
    assert pending is not None
    started = time.monotonic()
    facts = Engine(credential).issue(spec)
    assert time.monotonic() - started < 60
    assert same_public_key(split_pem_chain(facts.pem_chain)[0].public_key(), pending.csr.public_key())


def test_a_failing_dns_clean_up_costs_seconds_not_the_certificate(world, credential, emulator, caplog):
    """ARM answers 503 to every TXT write after the challenge records went up: the certificate is still
    finalized, downloaded and merged; the records left are named in warnings."""
    spec = world.spec([unique(AZURE_ZONE)])
    record = challenge_name(spec.dns_names[0])
    engine = Engine(credential, timeout_s=40)
    caplog.set_level(logging.WARNING, logger="keyvault_acme")
    with faults(emulator, {"status": 503, "host": "management.azure.com", "path": "*/TXT/*", "method": "[PD]*",
                           "skip": 1}), counting() as counter:
        started = time.monotonic()
        facts = engine.issue(spec)
        took = time.monotonic() - started
    assert facts.names == spec.dns_names and took < 30
    # Finalized and downloaded before the clean-up was tried: the certificate never waited on DNS.
    sent = counter.take()
    download = next(i for i, (m, h, p) in enumerate(sent) if "/certZ/" in p)
    first_cleanup = next(i for i, (m, h, p) in enumerate(sent) if h == "management.azure.com" and m == "DELETE")
    assert download < first_cleanup
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(record in w and "left" in w for w in warnings), warnings
    # The value really is still there (the warning is true); the version records the order it came from...
    left = served(world, record)
    assert left and leftover_order(dict(facts.tags))
    # ...so check names it, and the next run on the certificate removes exactly it.
    [finding] = [r for r in engine.check(spec) if r.step == "leftovers"]
    assert not finding.ok and record in finding.detail and facts.version in finding.detail
    renewed = engine.renew(spec)
    assert served(world, record) == set()
    assert leftover_order(dict(renewed.tags)) is None
    [finding] = [r for r in engine.check(spec) if r.step == "leftovers"]
    assert finding.ok, finding

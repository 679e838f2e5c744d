"""No private key material anywhere we produce; Key Vault faults; crash leftovers; concurrency; delete."""
from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.secrets import SecretClient
from cryptography.hazmat.primitives import serialization

from keyvault_acme.account import earliest_second_is_over, first_version, key_from_secret, load_or_create_key
from keyvault_acme.errors import KeyVaultAcmeError, KeyVaultReadOnly
from keyvault_acme.lifecycle import Engine
from keyvault_acme.model import KeySpec
from tests.engine.conftest import AZURE_ZONE, authorization_states, faults, forbid_value_reads, unique
from tests.services import BIND_ZONE

pytestmark = pytest.mark.integration


def private_fragments(pem_secret: str, account_jwk: str) -> list[str]:
    """Pieces of the certificate's private key and of the account key that are private ONLY (an RSA key's
    DER also holds the public modulus, which the certificate and CSR rightly carry): the private exponent
    and primes in hex and decimal, their base64 at every byte alignment, the PEM lines that lie wholly
    inside the private exponent, and the account key's ``d``."""
    import json

    key = serialization.load_pem_private_key(pem_secret.encode(), None)
    numbers = key.private_numbers()
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fragments = [json.loads(account_jwk)["d"][:30]]
    for secret_int in (numbers.d, numbers.p, numbers.q):
        raw = secret_int.to_bytes((secret_int.bit_length() + 7) // 8, "big")
        fragments += [format(secret_int, "x")[:40], str(secret_int)[:40]]
        fragments += [base64.b64encode(raw[shift:shift + 60]).decode()[4:44] for shift in range(3)]
    raw_d = numbers.d.to_bytes((numbers.d.bit_length() + 7) // 8, "big")
    start = der.index(raw_d)
    lines = base64.b64encode(der).decode()
    for i in range(0, len(lines), 64):  # PEM lines, 48 bytes of DER each
        if start <= i * 3 // 4 and (i + 64) * 3 // 4 <= start + len(raw_d):
            fragments.append(lines[i:i + 64])
    assert len(fragments) > 12
    return fragments


def test_no_private_key_material_in_results_errors_or_logs(world, engine, credential, caplog, emulator):
    caplog.set_level(logging.DEBUG)  # everything: our loggers, azure.*, urllib3, acme
    for name in ("azure", "azure.core.pipeline.policies.http_logging_policy", "urllib3", "acme", "keyvault_acme"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    spec = world.spec([unique(AZURE_ZONE), f"*.{unique(BIND_ZONE)}"], zones="both",
                      key=KeySpec("RSA", 2048, exportable=True))
    texts = []
    issued = engine.issue(spec)
    renewed = engine.renew(spec)
    texts += [repr(issued), repr(renewed), repr(engine.inspect(spec.vault_url, spec.name))]
    revoked = engine.revoke(spec, "keyCompromise")
    texts.append(repr(revoked))
    # Failures too: an order that cannot validate (a name whose zone we cannot write).
    for failing in (lambda: engine.revoke(spec, "no-such-reason"),
                    lambda: engine.issue(world.spec(["www.nowhere.example"]))):
        with pytest.raises(KeyVaultAcmeError) as info:
            failing()
        texts += [str(info.value), repr(info.value)]
    # Now, as a test only, read what must never be read by the engine: the certificate's secret.
    secret = SecretClient(spec.vault_url, credential).get_secret(spec.name)
    assert "PRIVATE KEY" in secret.value  # exportable: the secret really holds the key
    account_jwk = SecretClient(spec.vault_url, credential).get_secret(spec.acme.account_key_secret).value
    caplog.set_level(logging.CRITICAL)  # the test's own secret reads are not the engine's logs
    fragments = private_fragments(secret.value, account_jwk)
    logs = [r.getMessage() for r in caplog.records] + [caplog.text]
    assert len(caplog.records) > 20, "the SDKs and the engine did log at DEBUG"
    for text in texts + logs:
        for fragment in fragments:
            assert fragment not in text
        assert "PRIVATE KEY" not in text


def test_the_certificate_secret_is_never_read(world, engine, emulator):
    spec = world.spec([unique(AZURE_ZONE)], key=KeySpec(exportable=True))
    with forbid_value_reads(emulator, spec.name):  # any read of the certificate's secret fails the run
        facts = engine.issue(spec)
        assert engine.inspect(spec.vault_url, spec.name) == facts
        engine.revoke(spec)


def exportable_certificate(credential, vault_url: str, name: str) -> None:
    """A certificate the engine did not make, whose secret holds its private key (Key Vault's default policy:
    self-signed, exportable)."""
    from azure.keyvault.certificates import CertificateContentType, CertificatePolicy

    policy = CertificatePolicy(issuer_name="Self", subject="CN=taken.example", exportable=True,
                               content_type=CertificateContentType.pem)
    CertificateClient(vault_url, credential).begin_create_certificate(name, policy).result()
    assert "PRIVATE KEY" in SecretClient(vault_url, credential).get_secret(name).value


def test_names_that_collide_with_chain_secrets_or_the_account_key_are_refused_offline(world, engine):
    from keyvault_acme.errors import SpecError

    spec = world.spec([unique(AZURE_ZONE)])
    for bad, field in (({"name": "www-chain"}, "name"), ({"name": "WWW-Chain"}, "name"),
                       ({"acme": replace(spec.acme, account_key_secret=spec.name)}, "acme.account_key_secret"),
                       ({"acme": replace(spec.acme, account_key_secret="www-chain")}, "acme.account_key_secret")):
        with pytest.raises(SpecError) as info:
            engine.check_spec(replace(spec, **bad))
        assert info.value.field == field and "-chain" in str(info.value)


def test_a_certificate_named_like_a_chain_secret_is_never_read(world, engine, emulator, credential):
    """Certificate ``X-chain`` (exportable, not ours) in the vault: issuing X must not store X's chain over it or
    read it, and inspecting an X whose chain secret is gone must not read the other certificate's secret."""
    from keyvault_acme.errors import SecretRefused

    spec = world.spec([unique(AZURE_ZONE)])
    chain = f"{spec.name}-chain"
    exportable_certificate(credential, spec.vault_url, chain)
    with forbid_value_reads(emulator, chain):
        with pytest.raises(SecretRefused, match=f"'{chain}' belongs to the certificate") as info:
            engine.issue(spec)
        assert "PRIVATE KEY" not in str(info.value)
        assert engine.inspect(spec.vault_url, spec.name) is None  # refused before anything was created
        assert engine.wiring.vault(spec.vault_url).pending(spec.name) is None

    # X issued while its chain secret was free; then the chain secret goes and a certificate takes the name.
    other = world.spec([unique(AZURE_ZONE)])
    engine.issue(other)
    secrets, other_chain = SecretClient(spec.vault_url, credential), f"{other.name}-chain"
    secrets.begin_delete_secret(other_chain).result()
    secrets.purge_deleted_secret(other_chain)
    exportable_certificate(credential, spec.vault_url, other_chain)
    with forbid_value_reads(emulator, other_chain):
        with pytest.raises(SecretRefused, match="belongs to the certificate"):
            engine.inspect(other.vault_url, other.name)


def test_an_account_key_secret_that_is_a_certificate_is_never_read(world, engine, emulator, credential):
    from keyvault_acme.errors import SecretRefused

    taken = f"cert-{uuid.uuid4().hex[:8]}"
    exportable_certificate(credential, world.vault_url, taken)
    spec = world.spec([unique(AZURE_ZONE)])
    spec = replace(spec, acme=replace(spec.acme, account_key_secret=taken))
    with forbid_value_reads(emulator, taken):
        with pytest.raises(SecretRefused, match=f"'{taken}' belongs to the certificate"):
            engine.issue(spec)
    assert engine.inspect(spec.vault_url, spec.name) is None


def test_an_untagged_secret_under_the_account_key_name_is_refused_not_used(world, engine, emulator, credential):
    """A secret someone else wrote under acme.account_key_secret is not the engine's: using it would sign as a
    stranger's account (or overwrite their secret), so the engine refuses until every version carries its tag."""
    from keyvault_acme.errors import SecretRefused
    from keyvault_acme.keyvault import MANAGED_BY, MANAGED_BY_TAG

    taken = f"someones-{uuid.uuid4().hex[:8]}"
    secrets = SecretClient(world.vault_url, credential)
    secrets.set_secret(taken, "not an account key")
    spec = world.spec([unique(AZURE_ZONE)])
    spec = replace(spec, acme=replace(spec.acme, account_key_secret=taken))
    with forbid_value_reads(emulator, taken):
        with pytest.raises(SecretRefused, match=f"{MANAGED_BY_TAG}={MANAGED_BY}"):
            engine.issue(spec)
    assert engine.inspect(spec.vault_url, spec.name) is None
    assert len(list(secrets.list_properties_of_secret_versions(taken))) == 1, \
        "the stranger's secret was not overwritten"


def test_the_eab_key_is_read_only_to_register_the_account(world, credential, emulator):
    from keyvault_acme.model import SecretRef

    SecretClient(world.vault_url, credential).set_secret("eab-hmac", "c2VjcmV0LWhtYWMta2V5")
    plain = world.spec([unique(AZURE_ZONE)])
    Engine(credential).issue(plain)  # the account key has its account at the CA
    engine = Engine(credential)  # a new process: registers (finds the account), reading the EAB key once
    spec = replace(plain, acme=replace(plain.acme, eab_kid="kid-1", eab_hmac=SecretRef(
        f"{world.vault_url}/secrets/eab-hmac")))
    engine.renew(spec)
    with forbid_value_reads(emulator, "eab-hmac"):  # from now on a read of it fails the call
        engine.renew(spec)
        engine.revoke(spec)


def test_key_vault_throttling_and_server_errors_are_retried(world, engine, emulator):
    spec = world.spec([unique(AZURE_ZONE)])
    with faults(emulator, {"status": 429, "retry_after": 0, "host": "*.vault.azure.net",
                           "path": f"/certificates/{spec.name}/create", "count": 2},
                {"status": 503, "host": "*.vault.azure.net", "path": f"/certificates/{spec.name}/pending/merge",
                 "count": 1}) as made:
        facts = engine.issue(spec)
        assert not [x for x in emulator.admin.faults() if x["id"] in {f["id"] for f in made}], "every fault was hit"
    assert facts.names == spec.dns_names


def test_read_only_failover_is_a_clear_retryable_error_and_leaves_nothing(world, engine, emulator, credential):
    spec = world.spec([unique(AZURE_ZONE)])
    engine.inspect(spec.vault_url, "warm-up")  # the vault client exists before the failover
    with faults(emulator, {"kind": "readonly", "host": world.vault_url.split("//")[1]}):
        with pytest.raises(KeyVaultReadOnly) as info:
            engine.issue(spec)
    assert info.value.retryable and "read-only" in str(info.value) and "retry" in str(info.value)
    assert spec.name not in [c.name for c in CertificateClient(spec.vault_url, credential)
                             .list_properties_of_certificates()]
    assert engine.issue(spec).names == spec.dns_names  # after the failover, the same call just works


def wait_until_older_than(vault, name: str, seconds: float) -> None:
    """Real time passes (a poll with a deadline) until the pending operation is ``seconds`` old by Key Vault."""
    from datetime import datetime, timezone

    deadline = time.monotonic() + seconds + 30
    while (datetime.now(timezone.utc) - vault.pending_properties(name).created_on).total_seconds() <= seconds:
        assert time.monotonic() < deadline, "the pending operation never aged"
        time.sleep(0.2)


def test_a_pending_operation_of_a_run_that_is_over_is_reused_and_a_stale_misfit_replaced(world, credential, pebble):
    from keyvault_acme.errors import CertificateBusy
    from keyvault_acme.keyvault import same_public_key, split_pem_chain
    from keyvault_acme.lifecycle import managed_tags

    engine = Engine(credential, timeout_s=4)  # a run lasts at most 4 s: older leftovers are a crashed run's
    spec = world.spec([unique(AZURE_ZONE)])
    vault = engine.wiring.vault(spec.vault_url)
    crashed = vault.create_pending(spec.name, spec.key, spec.dns_names, managed_tags(spec))  # then "crash"
    with pytest.raises(CertificateBusy):  # young: for all we know, its run is still working
        engine.issue(spec)
    assert vault.pending(spec.name).csr_der == crashed.csr_der  # and it was left alone
    wait_until_older_than(vault, spec.name, engine.timeout_s)
    facts = engine.issue(spec)
    assert vault.pending(spec.name) is None
    assert same_public_key(split_pem_chain(facts.pem_chain)[0].public_key(), crashed.csr.public_key())
    # A stale leftover for other names is discarded, not merged into the wrong certificate.
    other = world.spec([unique(AZURE_ZONE)], name=f"p-{uuid.uuid4().hex[:8]}")
    stale = vault.create_pending(other.name, other.key, [unique(AZURE_ZONE)], {})
    wait_until_older_than(vault, other.name, engine.timeout_s)
    renewed = engine.issue(other)
    assert not same_public_key(split_pem_chain(renewed.pem_chain)[0].public_key(), stale.csr.public_key())
    assert set(renewed.names) == set(other.dns_names)


def test_an_engine_reuses_its_own_pending_operation_at_once(world, engine, emulator):
    """A failed issuance whose clean-up failed too leaves the engine's own operation: the retry reuses it."""
    from keyvault_acme.keyvault import same_public_key, split_pem_chain

    spec = world.spec([unique(AZURE_ZONE)])
    with faults(emulator, {"status": 400, "host": "management.azure.com", "path": "*/TXT/*", "method": "PUT"}, {"status": 400, "host": "*.vault.azure.net",
                                "path": f"/certificates/{spec.name}/pending"}):
        with pytest.raises(KeyVaultAcmeError, match="Azure DNS"):
            engine.issue(spec)
    left = engine.wiring.vault(spec.vault_url).pending(spec.name)
    assert left is not None
    facts = engine.issue(spec)
    assert same_public_key(split_pem_chain(facts.pem_chain)[0].public_key(), left.csr.public_key())


def test_two_engines_issuing_one_certificate_do_not_share_a_pending_operation(world, credential, emulator, pebble):
    """A CLI `renew --due` next to a scheduled `pulumi up --refresh`: the second run stops with a retryable
    error and leaves the first one's operation alone; the first completes."""
    from keyvault_acme.errors import CertificateBusy

    first, second = Engine(credential), Engine(credential)
    spec = world.spec([unique(AZURE_ZONE)])
    vault = second.wiring.vault(spec.vault_url)
    # The first run is held in its DNS write for a moment, with its pending operation made.
    with faults(emulator, {"kind": "latency", "latency_ms": 1500, "host": "management.azure.com",
                           "path": "*/TXT/*", "method": "PUT", "count": 1}), ThreadPoolExecutor(1) as pool:
        running = pool.submit(first.issue, spec)
        deadline = time.monotonic() + 30
        while vault.pending(spec.name) is None:
            assert time.monotonic() < deadline and not running.done(), "the first run never started"
            time.sleep(0.02)
        with pytest.raises(CertificateBusy, match="another run is issuing this certificate") as info:
            second.issue(spec)
        assert info.value.retryable
        facts = running.result()
    assert facts.names == spec.dns_names and vault.pending(spec.name) is None
    assert second.issue(spec) == facts  # afterwards the second run just adopts it


def test_a_failed_order_discards_its_pending_operation(world, engine, emulator, credential, orders_made):
    spec = world.spec([unique(AZURE_ZONE)])
    with faults(emulator, {"status": 400, "host": "management.azure.com", "path": "*/TXT/*", "method": "PUT"}):
        with pytest.raises(KeyVaultAcmeError, match="Azure DNS"):
            engine.issue(spec)
    # The CA does not keep the order's authorization pending for a week either: it was never answered.
    [order] = orders_made
    assert authorization_states(engine, spec, order) == ["deactivated"]
    # Key Vault keeps the never-completed version (disabled, without a certificate), as the real service does:
    # nothing issued, no pending operation, and the next attempt simply creates a new version.
    assert engine.inspect(spec.vault_url, spec.name) is None
    assert engine.wiring.vault(spec.vault_url).pending(spec.name) is None
    assert engine.issue(spec).names == spec.dns_names


def test_many_certificates_at_once_share_one_account(world, credential, pebble, vault_url):
    engine = Engine(credential)  # a fresh process' worth of caches
    secret = f"account-{uuid.uuid4().hex[:8]}"  # no account key yet: the eight issuances race to make one
    specs = [world.spec([unique(AZURE_ZONE if i % 2 else BIND_ZONE)], zones="both") for i in range(8)]
    specs = [replace(s, acme=replace(s.acme, account_key_secret=secret)) for s in specs]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(engine.issue, specs))
    assert len({r.serial for r in results}) == 8
    assert all(pebble.cert_status(r.serial) == "Valid" for r in results)
    # One key: every version of the secret holds the same one (a racer may write the agreed key again) ...
    client = SecretClient(vault_url, credential)
    keys = {client.get_secret(secret, v.version).value for v in client.list_properties_of_secret_versions(secret)}
    assert len(keys) == 1
    # ... and one registered account: the engine holds one client for it, with one account URL at the CA.
    [account] = engine.wiring.accounts._entries.values()
    assert account.account_url().startswith(pebble.directory_url.rsplit("/dir", 1)[0])
    assert key_from_secret(keys.pop()).thumbprint() == account._key.thumbprint()


@pytest.mark.parametrize("round_", range(3))  # a few rounds: an unlucky interleaving is what this is about
def test_account_key_creation_race_converges_on_one_key(world, credential, round_):
    from keyvault_acme.keyvault import KeyVault, sdk_client_kwargs

    name = f"race-{uuid.uuid4().hex[:8]}"
    barrier = threading.Barrier(4)

    def one(_):
        vault = KeyVault(world.vault_url, credential, client_kwargs=sdk_client_kwargs())
        barrier.wait()
        return load_or_create_key(vault, name).thumbprint()

    with ThreadPoolExecutor(4) as pool:
        racers = set(pool.map(one, range(4)))
    # Every racer uses the same key, later readers get it too, and it is the first version's key.
    assert len(racers) == 1
    later = {load_or_create_key(KeyVault(world.vault_url, credential), name).thumbprint() for _ in range(3)}
    assert later == racers
    vault = KeyVault(world.vault_url, credential)
    first = first_version(vault.secret_versions(name))
    assert key_from_secret(vault.get_secret(name, first.version, ours=True)).thumbprint() in racers


def test_the_first_version_is_chosen_within_the_earliest_second_by_version_id():
    from datetime import datetime, timezone
    from types import SimpleNamespace

    def at(second, version, enabled=True):
        return SimpleNamespace(created_on=datetime.fromtimestamp(1_700_000_000 + second, timezone.utc),
                               version=version, enabled=enabled)

    # Written in the order c, a (same second): the lower id wins, whatever the write order.
    assert first_version([at(0, "c"), at(0, "a"), at(1, "b")]).version == "a"
    assert first_version([at(0, "a", enabled=False), at(1, "z"), at(1, "y")]).version == "y"
    assert first_version([at(0, "a", enabled=False)]) is None
    # Until a later stamp is seen, the earliest second may still gain a version that sorts first.
    assert not earliest_second_is_over([at(0, "c")])
    assert not earliest_second_is_over([at(0, "c"), at(0, "b")])
    assert earliest_second_is_over([at(0, "c"), at(1, "b")])
    assert not earliest_second_is_over([at(0, "a", enabled=False), at(1, "z")])


def test_delete_soft_deletes_purges_and_tolerates_gone(world, engine, credential):
    spec = world.spec([unique(AZURE_ZONE)])
    engine.issue(spec)
    engine.delete(spec.vault_url, spec.name)
    assert engine.inspect(spec.vault_url, spec.name) is None
    client = CertificateClient(spec.vault_url, credential)
    assert client.get_deleted_certificate(spec.name).name == spec.name
    engine.delete(spec.vault_url, spec.name, purge=True)  # already deleted: purge still happens
    assert spec.name not in [c.name for c in client.list_deleted_certificates()]
    engine.delete(spec.vault_url, spec.name)  # gone: not an error


def test_issuing_over_a_soft_deleted_name_says_recover_or_purge(world, engine):
    from keyvault_acme.errors import CertificateDeletedButRecoverable

    spec = world.spec([unique(AZURE_ZONE)])
    engine.issue(spec)
    engine.delete(spec.vault_url, spec.name)
    with pytest.raises(CertificateDeletedButRecoverable, match="recover.*purge"):
        engine.issue(spec)


def test_a_certificate_recovered_by_hand_renews_and_gets_its_chain_back(world, engine, credential):
    # The error above says "recover it"; the chain secret deleted with it stays soft-deleted until the engine
    # next writes it, which must not fail after the merge.
    spec = world.spec([unique(AZURE_ZONE)])
    first = engine.issue(spec)
    engine.delete(spec.vault_url, spec.name)
    CertificateClient(spec.vault_url, credential).begin_recover_deleted_certificate(spec.name).result()
    assert engine.inspect(spec.vault_url, spec.name).version == first.version
    renewed = engine.renew(spec)
    assert renewed.pem_chain.count("BEGIN CERTIFICATE") >= 2
    assert engine.inspect(spec.vault_url, spec.name).pem_chain == renewed.pem_chain
    chain = SecretClient(spec.vault_url, credential).list_properties_of_secret_versions(f"{spec.name}-chain")
    assert len(list(chain)) == 2  # the recovered version and the new one


def test_a_soft_deleted_secret_of_someone_else_under_the_chain_name_is_not_recovered(world, engine, credential):
    spec = world.spec([unique(AZURE_ZONE)])
    secrets = SecretClient(spec.vault_url, credential)
    secrets.set_secret(f"{spec.name}-chain", "not ours")
    secrets.begin_delete_secret(f"{spec.name}-chain").result()
    with pytest.raises(KeyVaultAcmeError, match="not written by keyvault-acme"):
        engine.issue(spec)
    assert secrets.get_deleted_secret(f"{spec.name}-chain").properties.tags in (None, {})  # left as it was
    # The chain is kept before the merge, so nothing was merged and no pending operation is left.
    assert engine.inspect(spec.vault_url, spec.name) is None
    assert engine.wiring.vault(spec.vault_url).pending(spec.name) is None


def test_purging_a_certificate_already_purged_returns_at_once(world, engine):
    spec = world.spec([unique(AZURE_ZONE)])
    engine.issue(spec)
    engine.delete(spec.vault_url, spec.name, purge=True)
    engine.delete(spec.vault_url, spec.name, purge=True)  # a retried destroy: nothing to wait for
    assert engine.inspect(spec.vault_url, spec.name) is None


def test_account_key_creation_logs_the_secret_id(world, credential, caplog):
    from keyvault_acme.keyvault import KeyVault

    name = f"logged-{uuid.uuid4().hex[:8]}"
    caplog.set_level(logging.INFO, logger="keyvault_acme.account")
    load_or_create_key(KeyVault(world.vault_url, credential), name)
    [line] = [r.getMessage() for r in caplog.records if r.name == "keyvault_acme.account"]
    assert line == f"created ACME account key in secret {world.vault_url}/secrets/{name}"

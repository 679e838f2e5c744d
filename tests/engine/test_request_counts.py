"""Request budgets (issue 12): a read of a certificate is one Key Vault request; a warm issuance makes only the
requests the protocols need. Counted at the emulator (Azure) and at requests' adapter (everything, ACME too)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from keyvault_acme.lifecycle import Engine
from tests.engine.conftest import AZURE_ZONE, unique
from tests.request_counts import counting, data_requests, vault_host

pytestmark = pytest.mark.integration


def test_reading_a_certificate_is_one_key_vault_request(world, engine):
    spec = world.spec([unique(AZURE_ZONE)])
    issued = engine.issue(spec)
    host = vault_host(spec.vault_url)

    mark = world.emulator.admin.request_mark()
    facts = engine.inspect(spec.vault_url, spec.name, with_chain=False)
    assert data_requests(world.emulator, mark, host) == [("GET", f"/certificates/{spec.name}/")]
    assert (facts.version, facts.thumbprint, facts.not_after) == (issued.version, issued.thumbprint, issued.not_after)

    # With the facts a caller already holds (Pulumi state), an unchanged certificate keeps its known chain.
    mark = world.emulator.admin.request_mark()
    again = engine.inspect(spec.vault_url, spec.name, known=issued)
    assert data_requests(world.emulator, mark, host) == [("GET", f"/certificates/{spec.name}/")]
    assert again == issued

    # A missing certificate is one request too.
    mark = world.emulator.admin.request_mark()
    assert engine.inspect(spec.vault_url, "never-issued", with_chain=False) is None
    assert len(data_requests(world.emulator, mark, host)) == 1


def test_a_chain_read_lists_the_chain_secret_once(world, engine):
    """When the chain must be read (the certificate changed since the caller last saw it): the certificate, one
    listing of the chain secret's versions (never a certificate's secret), the chain itself."""
    spec = world.spec([unique(AZURE_ZONE)])
    issued = engine.issue(spec)
    mark = world.emulator.admin.request_mark()
    facts = engine.inspect(spec.vault_url, spec.name)
    assert facts.pem_chain == issued.pem_chain and facts.pem_chain.count("BEGIN CERTIFICATE") >= 2
    reads = data_requests(world.emulator, mark, vault_host(spec.vault_url))
    assert [m for m, _ in reads] == ["GET"] * 3
    assert sum(path.endswith("/versions") for _, path in reads) == 1


def _described(sent) -> str:
    return "\n".join(f"{m} {h}{p}" for m, h, p in sent)


def test_a_warm_azure_dns_issuance_makes_only_the_requests_it_needs(world, credential, caplog):
    engine = Engine(credential)
    spec = world.spec([unique(AZURE_ZONE)], zones="azure")
    spec = replace(spec, zones=spec.zones[:1])  # one zone, as a 1-name certificate has
    with counting() as counter:
        warm = engine.issue(spec)  # warms the process: token, Key Vault challenge, account, directory, vetting
        first = counter.take()
        # A warm issuance: a new version of the same certificate, for a name the CA has not validated yet (Pebble,
        # like Let's Encrypt, may reuse a valid authorization, which would skip the challenge).
        engine.renew(replace(spec, dns_names=(unique(AZURE_ZONE),)), current=warm)  # as renew --due passes it
        sent = counter.take()
        fresh = world.spec([unique(AZURE_ZONE)])
        engine.issue(replace(fresh, zones=spec.zones))  # a new name in the warm process
        new_name = counter.take()
    # The renewal's names share none with the version it replaces: no `replaces` the CA would refuse (a wasted
    # order), a plain order at once.
    assert "refused to let this order replace" not in caplog.text
    arm = [(m, p) for m, h, p in sent if h == "management.azure.com"]
    # No GET before each PUT (ETags), no zone read per issuance: one PUT to publish, one DELETE to clean up.
    assert [m for m, _ in arm] == ["PUT", "DELETE"], _described(sent)
    # The chain secret was vetted by the first issuance of this process: not listed again.
    assert not any(p.endswith("-chain/versions") for _, _, p in sent), _described(sent)
    # One directory fetch per process and CA: the first issuance's, none since.
    directory_path = world.directory_url.split("://", 1)[1].split("/", 1)[1]
    fetches = [s for s in first + sent + new_name if s[0] == "GET" and s[2] == "/" + directory_path]
    assert len(fetches) == 1, _described(first)
    # What is left is what the protocols need. Key Vault: create, keep the chain, merge. ACME: order, its
    # authorization, the challenge answer, finalize, download, and the polls of the order in between (one
    # each with a fast CA). Azure DNS: publish, clean up.
    # (Distinct requests: a badNonce from the CA repeats one, which is the CA's doing, not ours.)
    polls = [s for s in sent if s[1] == "127.0.0.1" and "/my-order/" in s[2]]
    assert len({s for s in sent if s not in polls}) == 10 and 1 <= len(polls) <= 6, _described(sent)
    # A name this process has not seen: the certificate is looked up (adopt or refuse), its chain secret vetted.
    extra = [s for s in new_name if s[1].endswith(".vault.azure.net") and s[0] == "GET"]
    assert [p.rsplit("/", 1)[-1] or p.split("/")[-2] for _, _, p in extra] == [fresh.name, "versions"], \
        _described(new_name)
    # The emptied challenge record set is gone, not left behind.
    from azure.core.exceptions import ResourceNotFoundError

    from tests.engine.test_azure_dns import record_set
    with pytest.raises(ResourceNotFoundError):
        record_set(engine.wiring._azure_dns(), AZURE_ZONE, f"_acme-challenge.{spec.dns_names[0]}")


def test_a_process_opens_one_connection_to_the_ca(world, credential, monkeypatch):
    # The directory reader (preflight, ARI) and the account's client once had a session each: two TLS handshakes
    # with the CA in every process, a CLI run's included.
    import urllib3.connectionpool

    opened: list[str] = []
    original = urllib3.connectionpool.HTTPSConnectionPool._new_conn

    def new_conn(pool):
        opened.append(f"{pool.host}:{pool.port}")
        return original(pool)

    monkeypatch.setattr(urllib3.connectionpool.HTTPSConnectionPool, "_new_conn", new_conn)
    engine = Engine(credential)
    spec = world.spec([unique(AZURE_ZONE)])
    facts = engine.issue(spec)
    assert engine.decide(spec, facts).decided_by == "ari"  # the CA's renewal info, read by the directory reader
    ca = world.directory_url.split("/")[2]
    assert opened.count(ca) == 1, opened

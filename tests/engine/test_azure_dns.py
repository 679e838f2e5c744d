"""The Azure DNS provider against the emulator's ARM + authoritative DNS, through the unmodified SDK."""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import dns.message
import dns.query
import pytest

from keyvault_acme.dns.azure import AzureDnsClients, AzureDnsProvider, record_set_values, relative_name
from keyvault_acme.dns.base import DnsProvider
from keyvault_acme.errors import DnsError, DnsForbidden
from keyvault_acme.keyvault import sdk_client_kwargs
from keyvault_acme.model import AzureDnsZone
from tests import services
from tests.engine.conftest import AZURE_ZONE, OTHER_SUB_ZONE

pytestmark = pytest.mark.integration


@pytest.fixture
def clients(azure_env, credential) -> AzureDnsClients:
    return AzureDnsClients(credential, sdk_client_kwargs())


def provider(clients, zone=AZURE_ZONE) -> AzureDnsProvider:
    return AzureDnsProvider(AzureDnsZone(services.azure_zone_id(zone)), clients)


def served(emulator, fqdn: str) -> set[str]:
    """What the emulator's authoritative DNS server answers (what a CA would see)."""
    host, port = emulator.dns_address
    response = dns.query.udp(dns.message.make_query(fqdn, "TXT"), host, port=port, timeout=2)
    return {b"".join(rd.strings).decode() for rrset in response.answer for rd in rrset}


def record_set(clients, zone, fqdn):
    z = AzureDnsZone(services.azure_zone_id(zone))
    return clients.for_subscription(z.subscription_id).record_sets.get(
        z.resource_group, z.name, relative_name(fqdn, z.name), "TXT")


def test_relative_names():
    assert relative_name("_acme-challenge.www.azure.test", "azure.test") == "_acme-challenge.www"
    assert relative_name("azure.test.", "azure.test") == "@"
    with pytest.raises(DnsError):
        relative_name("_acme-challenge.other.test", "azure.test")


def test_present_shares_one_record_set_and_cleanup_deletes_the_set_it_created(clients, emulator):
    p = provider(clients)
    assert isinstance(p, DnsProvider)
    fqdn = f"_acme-challenge.s{uuid.uuid4().hex[:8]}.{AZURE_ZONE}"
    p.present(fqdn, "value-apex")
    p.present(fqdn, "value-wildcard")  # example.com and *.example.com share the record set
    p.present(fqdn, "value-wildcard")  # idempotent
    assert served(emulator, fqdn) == {"value-apex", "value-wildcard"}
    p.cleanup(fqdn, "value-apex")
    assert served(emulator, fqdn) == {"value-wildcard"}
    p.cleanup(fqdn, "value-wildcard")
    p.cleanup(fqdn, "value-wildcard")  # already gone: fine
    # The engine created it, so the emptied set goes: no empty record sets pile up in the zone.
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        record_set(clients, AZURE_ZONE, fqdn)
    assert served(emulator, fqdn) == set()


def test_a_record_set_that_existed_before_is_emptied_and_kept_with_its_metadata(clients, emulator):
    """The stack creates the _acme-challenge sets a least-privilege role assignment is scoped to: they outlive
    every challenge, metadata and all."""
    from azure.mgmt.dns.models import RecordSet

    fqdn = f"_acme-challenge.kept{uuid.uuid4().hex[:8]}.{AZURE_ZONE}"
    z = AzureDnsZone(services.azure_zone_id(AZURE_ZONE))
    stack_metadata = {"managed-by": "pulumi-keyvault-acme", "workload": "shop"}
    clients.for_subscription(z.subscription_id).record_sets.create_or_update(
        z.resource_group, z.name, relative_name(fqdn, z.name), "TXT",
        RecordSet(ttl=60, txt_records=[], metadata=stack_metadata))
    p = provider(clients)
    p.present(fqdn, "v1")
    assert served(emulator, fqdn) == {"v1"}
    p.cleanup(fqdn, "v1")
    rs = record_set(clients, AZURE_ZONE, fqdn)
    assert record_set_values(rs) == [] and rs.metadata == stack_metadata
    assert served(emulator, fqdn) == set()


def test_writes_send_etags_instead_of_reading_first(clients, emulator):
    """A challenge costs one PUT to publish and one DELETE to clean up: no read before a write (ETags)."""
    p = provider(clients)
    fqdn = f"_acme-challenge.etag{uuid.uuid4().hex[:8]}.{AZURE_ZONE}"
    mark = emulator.admin.request_mark()
    p.present(fqdn, "apex")
    p.present(fqdn, "wildcard")
    p.cleanup(fqdn, "apex")
    p.cleanup(fqdn, "wildcard")
    sent = [r["method"] for r in emulator.admin.requests(since=mark, host="management.azure.com")
            if "/TXT/" in r["path"] and r["status"] != 401]
    assert sent == ["PUT", "PUT", "PUT", "DELETE"]


def test_cleanup_of_a_name_never_written_creates_nothing(clients):
    p = provider(clients)
    fqdn = f"_acme-challenge.none{uuid.uuid4().hex[:8]}.{AZURE_ZONE}"
    p.cleanup(fqdn, "x")
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        record_set(clients, AZURE_ZONE, fqdn)


def test_concurrent_writers_keep_every_value(clients, emulator):
    """Optimistic concurrency: writers racing on one record set retry on 412 and nobody's value is lost."""
    fqdn = f"_acme-challenge.race{uuid.uuid4().hex[:8]}.{AZURE_ZONE}"
    values = [f"v{i}" for i in range(8)]
    barrier = threading.Barrier(len(values))

    def write(value):
        p = provider(AzureDnsClients(clients._credential, sdk_client_kwargs()))  # separate "processes"
        barrier.wait()
        p.present(fqdn, value)

    with ThreadPoolExecutor(len(values)) as pool:
        list(pool.map(write, values))
    assert served(emulator, fqdn) == set(values)
    with ThreadPoolExecutor(len(values)) as pool:
        list(pool.map(lambda v: provider(clients).cleanup(fqdn, v), values[:4]))
    assert served(emulator, fqdn) == set(values[4:])


def test_zone_in_another_subscription_by_resource_id(clients, emulator):
    p = provider(clients, OTHER_SUB_ZONE)
    assert p.zone.subscription_id == services.AZURE_ZONES[OTHER_SUB_ZONE]
    fqdn = f"_acme-challenge.x{uuid.uuid4().hex[:8]}.{OTHER_SUB_ZONE}"
    p.present(fqdn, "other")
    assert served(emulator, fqdn) == {"other"}
    p.cleanup(fqdn, "other")


def test_authoritative_servers_come_from_the_zones_name_servers(clients, monkeypatch):
    import socket

    p = provider(clients)
    names = p.nameservers()
    assert names and all(n.startswith("ns") and not n.endswith(".") for n in names)
    # Name resolution stays on this machine: the test answers for the name servers itself.
    addresses = {names[0]: [("192.0.2.1", 53), ("2001:db8::1", 53, 0, 0)]}
    asked = []

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        if host not in addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a[0] else socket.AF_INET, socket.SOCK_DGRAM, 17, "", a)
                for a in addresses[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    # Each name server with all its addresses (IPv4 and IPv6); a name without addresses is left out.
    assert p.authoritative_servers(AZURE_ZONE) == {names[0]: [("192.0.2.1", 53), ("2001:db8::1", 53)]}
    assert asked == names
    # When none of the names resolves here, the error says what to do instead.
    addresses.clear()
    with pytest.raises(DnsError, match="set resolvers"):
        p.authoritative_servers(AZURE_ZONE)


def test_throttling_is_retried(clients, emulator):
    fqdn = f"_acme-challenge.t{uuid.uuid4().hex[:8]}.{AZURE_ZONE}"
    fault = emulator.admin.add_fault(status=429, retry_after=0, host="management.azure.com", path="*/TXT/*",
                                     method="PUT", count=2)
    provider(clients).present(fqdn, "after-throttling")
    assert not [f for f in emulator.admin.faults() if f["id"] == fault["id"]]
    assert served(emulator, fqdn) == {"after-throttling"}


def test_missing_role_is_a_clear_error(azure_env, emulator):
    from azure.identity import ClientSecretCredential

    app = emulator.admin.add_client(name="no-dns-role")
    p = provider(AzureDnsClients(ClientSecretCredential(app["tenant_id"], app["client_id"], app["secret"]),
                                 sdk_client_kwargs()))
    with pytest.raises(DnsError, match="DNS Zone Contributor") as info:
        p.present(f"_acme-challenge.www.{AZURE_ZONE}", "x")
    assert not info.value.retryable and isinstance(info.value, DnsForbidden)
    with pytest.raises(DnsForbidden, match=AZURE_ZONE):  # kept a 403, which Engine.issue can wait out
        p.check_access()


def test_unknown_zone_says_check_the_resource_id(clients):
    missing = AzureDnsProvider(AzureDnsZone(
        f"/subscriptions/{services.AZURE_ZONES[AZURE_ZONE]}/resourceGroups/dns-rg/providers/Microsoft.Network/"
        "dnszones/missing.test"), clients)
    with pytest.raises(DnsError, match="resource id"):
        missing.present("_acme-challenge.missing.test", "x")

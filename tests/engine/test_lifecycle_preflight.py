"""Bad specs fail with a clear error and leave nothing behind: not in Key Vault, not in DNS, not at the CA."""
from __future__ import annotations

import uuid

import pytest
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.secrets import SecretClient

from keyvault_acme.config import certificate_spec_from_dict, spec_to_dict
from keyvault_acme.errors import CaaForbidsCa, CertificateMismatch, SpecError
from tests.engine.conftest import AZURE_ZONE, unique
from tests.services import BIND_ZONE

pytestmark = pytest.mark.integration


def ca_writes(pebble) -> list[str]:
    """Every state-changing request Pebble logged (accounts, orders, authorizations, revocations)."""
    return [line for line in pebble.log_path.read_text().splitlines() if " POST " in line]


def vault_objects(vault_url, credential) -> tuple[list[str], list[str]]:
    certs = [c.name for c in CertificateClient(vault_url, credential).list_properties_of_certificates()]
    secrets = [s.name for s in SecretClient(vault_url, credential).list_properties_of_secrets()]
    return certs, secrets


def azure_txt(emulator) -> list[str]:
    """Every TXT record set in the emulator's Azure DNS zones, with its values."""
    return sorted(str((rs["name"], rs["properties"].get("TXTRecords")))
                  for z in emulator.admin.zones()
                  for rs in emulator.admin.zone(z["name"]).get("recordSets", []) if rs["type"].endswith("/TXT"))


def bind_txt(bind) -> list[str]:
    """TXT records in BIND's zones (a zone transfer with the admin key)."""
    import dns.query
    import dns.tsigkeyring
    import dns.zone

    keyring = dns.tsigkeyring.from_text({bind.admin_key_name: bind.admin_secret_b64})
    out = []
    for zone in bind.zones:
        z = dns.zone.from_xfr(dns.query.xfr(bind.host, zone, port=bind.port, keyring=keyring,
                                            keyname=bind.admin_key_name))
        out += [f"{name}.{zone} {rdata}" for name, _, rdata in z.iterate_rdatas("TXT")]
    return sorted(out)


@pytest.fixture
def nothing_left(world, credential, pebble, bind, emulator):
    """Snapshot of everything that must not change, checked after the test body."""
    before = (vault_objects(world.vault_url, credential), len(ca_writes(pebble)), azure_txt(emulator), bind_txt(bind))
    yield
    after = (vault_objects(world.vault_url, credential), len(ca_writes(pebble)), azure_txt(emulator), bind_txt(bind))
    assert after == before, "a failed preflight created something"
    assert after[0][0] == [], "no certificate may exist in the vault"
    assert "acme-account-key" not in after[0][1], "no ACME account may be created"


def bad(world, field: str, value, **spec_kwargs):
    spec = world.spec([unique(AZURE_ZONE)], **spec_kwargs)
    data = spec_to_dict(spec)
    data[field] = value
    return data


@pytest.mark.parametrize("names,needle", [
    (["bad_name.azure.test"], "not letters, digits"),
    (["www.*.azure.test"], "leftmost label"),
    (["www.nowhere.example"], "in no configured zone"),
    ([f"n{i}.azure.test" for i in range(101)], "at most 100"),
    (["dup.azure.test", "DUP.azure.test"], "listed twice"),
])
def test_bad_names_fail_before_anything_is_created(world, engine, nothing_left, names, needle):
    spec = world.spec(names)
    for call in (engine.check_spec, engine.preflight, engine.issue, engine.renew):
        with pytest.raises(SpecError, match=needle) as info:
            call(spec)
        assert info.value.field == "dns_names" or info.value.field == "zones"


def test_unknown_key_type_is_refused_by_the_shared_parser(world, nothing_left):
    data = bad(world, "key", {"kty": "ED25519"})
    with pytest.raises(SpecError, match="unknown key type") as info:
        certificate_spec_from_dict(data)
    assert info.value.field == "key.kty" and "EC" in info.value.fix
    with pytest.raises(SpecError, match="RSA key size 1024"):
        certificate_spec_from_dict(bad(world, "key", {"kty": "RSA", "size": 1024}))


def test_caa_forbidding_every_ca_stops_issuance_before_the_order(world, engine, bind, pebble, nothing_left):
    host = f"caa-{uuid.uuid4().hex[:8]}.{BIND_ZONE}"
    bind.set_record(host, "CAA", '0 issue ";"')
    spec = world.spec([f"www.{host}"], zones="rfc2136")
    with pytest.raises(CaaForbidsCa, match=f"CAA at {host} forbids"):
        engine.issue(spec)
    with pytest.raises(CaaForbidsCa):
        engine.preflight(spec)


def test_caa_in_azure_dns_is_read_from_its_servers(world, engine, credential, nothing_left):
    from azure.mgmt.dns import DnsManagementClient
    from azure.mgmt.dns.models import CaaRecord, RecordSet

    from tests.services import AZURE_RESOURCE_GROUP, AZURE_ZONES

    host = f"caa-{uuid.uuid4().hex[:8]}"
    DnsManagementClient(credential, AZURE_ZONES[AZURE_ZONE]).record_sets.create_or_update(
        AZURE_RESOURCE_GROUP, AZURE_ZONE, host, "CAA",
        RecordSet(ttl=60, caa_records=[CaaRecord(flags=0, tag="issue", value="ca.invalid"),
                                       CaaRecord(flags=0, tag="issuewild", value=";")]))
    with pytest.raises(CaaForbidsCa, match="issuewild"):
        engine.issue(world.spec([f"*.{host}.{AZURE_ZONE}"]))


def test_unmanaged_certificate_of_the_same_name_is_not_taken_over(world, engine, credential):
    from azure.keyvault.certificates import CertificatePolicy

    name = f"u-{uuid.uuid4().hex[:8]}"
    CertificateClient(world.vault_url, credential).begin_create_certificate(
        name, CertificatePolicy.get_default()).result()
    with pytest.raises(CertificateMismatch, match="not managed by keyvault-acme"):
        engine.issue(world.spec([unique(AZURE_ZONE)], name=name))
    # Nor renewed (`keyvault-acme renew NAME`, renew --due): a new version would replace theirs.
    client = CertificateClient(world.vault_url, credential)
    before = [v.version for v in client.list_properties_of_certificate_versions(name)]
    with pytest.raises(CertificateMismatch, match="not managed by keyvault-acme"):
        engine.renew(world.spec([unique(AZURE_ZONE)], name=name))
    current = engine.inspect(world.vault_url, name)
    with pytest.raises(CertificateMismatch, match="not managed by keyvault-acme"):
        engine.renew(world.spec([unique(AZURE_ZONE)], name=name), current=current)
    assert [v.version for v in client.list_properties_of_certificate_versions(name)] == before

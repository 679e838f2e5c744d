"""Issue, renew, revoke, inspect and delete through the engine, against Pebble + BIND 9 + the emulator."""
from __future__ import annotations

import pytest
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.keys import KeyClient
from cryptography import x509

from keyvault_acme import keyvault as kv
from keyvault_acme.model import KeySpec
from tests.engine.conftest import AZURE_ZONE, OTHER_SUB_ZONE, unique
from tests.services import BIND_ZONE

pytestmark = pytest.mark.integration


def verify_chain(pem_chain: str, root_pem: str) -> list[x509.Certificate]:
    """Each certificate signed by the next, the last by Pebble's root."""
    certs = x509.load_pem_x509_certificates(pem_chain.encode()) + [x509.load_pem_x509_certificate(root_pem.encode())]
    for child, parent in zip(certs, certs[1:]):
        child.verify_directly_issued_by(parent)
    return certs


def key_vault_public_key(spec, version, credential):
    """The public half of the certificate's Key Vault key, read with the SDK's key client (keys/get)."""
    return kv.public_key_from_jwk(KeyClient(spec.vault_url, credential).get_key(spec.name, version).key)


def assert_issued(facts, spec, engine, pebble, credential):
    certs = verify_chain(facts.pem_chain, pebble.root_pem())
    leaf = certs[0]
    assert set(facts.names) == {n.lower() for n in spec.dns_names}
    assert facts.serial == format(leaf.serial_number, "x")
    assert pebble.cert_status(facts.serial) == "Valid"
    # The certificate's public key is Key Vault's key (public part, read with the key client).
    assert kv.same_public_key(key_vault_public_key(spec, facts.version, credential), leaf.public_key())
    assert kv.public_key_label(leaf.public_key()) == spec.key.label
    assert facts.tags["managed-by"] == "keyvault-acme"
    assert facts.id == f"{spec.vault_url}/certificates/{spec.name}"
    assert facts.versioned_id.endswith(f"/{facts.version}")
    # What Key Vault itself says agrees with the facts.
    kv_cert = CertificateClient(spec.vault_url, credential).get_certificate(spec.name)
    assert kv_cert.properties.version == facts.version
    assert kv.thumbprint(bytes(kv_cert.cer)) == facts.thumbprint


def test_issue_single_name_through_azure_dns(world, engine, pebble, credential):
    spec = world.spec([unique(AZURE_ZONE)])
    facts = engine.issue(spec)
    assert_issued(facts, spec, engine, pebble, credential)
    assert engine.inspect(spec.vault_url, spec.name) == facts


def test_issue_through_rfc2136(world, engine, pebble, credential):
    spec = world.spec([unique(BIND_ZONE)], zones="rfc2136", key=KeySpec("RSA", 2048))
    facts = engine.issue(spec)
    assert_issued(facts, spec, engine, pebble, credential)


def test_issue_again_adopts_instead_of_ordering(world, engine, pebble):
    spec = world.spec([unique(AZURE_ZONE)])
    first = engine.issue(spec)
    again = engine.issue(spec)
    assert again.version == first.version and again.serial == first.serial


def test_renew_makes_a_new_version_with_a_new_key(world, engine, pebble, credential):
    spec = world.spec([unique(AZURE_ZONE), unique(OTHER_SUB_ZONE)])
    first = engine.issue(spec)
    second = engine.renew(spec)
    assert second.version != first.version and second.serial != first.serial
    assert_issued(second, spec, engine, pebble, credential)
    assert not kv.same_public_key(key_vault_public_key(spec, first.version, credential),
                                  key_vault_public_key(spec, second.version, credential))
    assert engine.inspect(spec.vault_url, spec.name).version == second.version


def test_revoke_reports_revoked_at_the_ca_and_records_it(world, engine, pebble):
    spec = world.spec([unique(AZURE_ZONE)])
    facts = engine.issue(spec)
    revoked = engine.revoke(spec, "keyCompromise")
    assert pebble.cert_status(facts.serial) == "Revoked"
    assert revoked.revoked_reason == "keyCompromise" and not revoked.enabled
    seen = engine.inspect(spec.vault_url, spec.name)
    assert seen.revoked_reason == "keyCompromise" and not seen.enabled
    # A revoked certificate is not adopted: issuing again replaces it.
    again = engine.issue(spec)
    assert again.version != facts.version and again.revoked_reason is None


# One certificate per key type, spread over both DNS providers and every name shape (CI time matters):
# (key, zones, names) where names are built from labels; "*" makes a wildcard, "@" the bare random name.
MATRIX = [
    (KeySpec("RSA", 2048), "rfc2136", ["www"]),
    (KeySpec("RSA", 3072), "azure", ["*", "@"]),
    (KeySpec("RSA", 4096), "rfc2136", ["a", "b", "*"]),
    (KeySpec("EC", curve="P-256", exportable=True), "both", ["api", "azure:*", "rfc:www"]),
    (KeySpec("EC", curve="P-384"), "azure", ["*"]),
]


def matrix_names(zones: str, labels: list[str]) -> list[str]:
    import uuid

    base = {"rfc2136": BIND_ZONE, "azure": AZURE_ZONE}
    stem = uuid.uuid4().hex[:8]
    out = []
    for label in labels:
        zone = base.get(zones)
        if ":" in label:
            which, label = label.split(":")
            zone = {"azure": AZURE_ZONE, "rfc": BIND_ZONE}[which]
        zone = zone or AZURE_ZONE
        host = f"s{stem}.{zone}"
        out.append(host if label == "@" else f"*.{host}" if label == "*" else f"{label}.{host}")
    return out


@pytest.mark.parametrize("key,zones,labels", MATRIX, ids=[f"{k.label}-{z}-{'+'.join(labels)}" for k, z, labels in MATRIX])
def test_issue_renew_revoke_every_key_type(world, engine, pebble, credential, key, zones, labels):
    spec = world.spec(matrix_names(zones, labels), zones=zones, key=key)
    issued = engine.issue(spec)
    assert_issued(issued, spec, engine, pebble, credential)
    renewed = engine.renew(spec)
    assert_issued(renewed, spec, engine, pebble, credential)
    assert renewed.version != issued.version
    engine.revoke(spec, "superseded", disable=False)
    assert pebble.cert_status(renewed.serial) == "Revoked"
    assert pebble.cert_status(issued.serial) == "Valid"  # only the version asked for
    seen = engine.inspect(spec.vault_url, spec.name)
    assert seen.revoked_reason == "superseded" and seen.enabled


def test_one_hundred_names_in_one_certificate(world, engine, pebble, credential):
    import uuid

    stem = uuid.uuid4().hex[:6]
    names = [f"n{i}-{stem}.{AZURE_ZONE}" for i in range(99)] + [f"*.w-{stem}.{BIND_ZONE}"]
    spec = world.spec(names, zones="both")
    facts = engine.issue(spec)
    assert len(facts.names) == 100
    assert_issued(facts, spec, engine, pebble, credential)
    engine.revoke(spec)
    assert pebble.cert_status(facts.serial) == "Revoked"


def test_waiting_is_announced_once_at_info(world, engine, caplog):
    """Propagation and validation can take minutes at a real CA: one INFO line when each wait starts (and
    when validation ends), for the CLI's progress; none per poll."""
    import logging

    names = [unique(AZURE_ZONE), unique(AZURE_ZONE, "api")]
    spec = world.spec(names)
    caplog.set_level(logging.INFO, logger="keyvault_acme")
    engine.issue(spec)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    server = spec.resolvers[0]
    [propagation] = [line for line in lines if "propagation" in line]
    assert "2 TXT records" in propagation and server in propagation
    assert all(f"_acme-challenge.{n}" in propagation for n in names)
    [started] = [line for line in lines if line.startswith("the CA is validating")]
    [ended] = [line for line in lines if line.startswith("the CA validated")]
    assert all(n in started and n in ended for n in names)
    order = [lines.index(propagation), lines.index(started), lines.index(ended)]
    assert order == sorted(order) and len(lines) == len(set(lines))


def test_update_tags_changes_the_current_version_without_a_new_one(world, engine, credential):
    from dataclasses import replace

    spec = world.spec([unique(AZURE_ZONE)], tags={"team": "web", "cost-center": "42"})
    issued = engine.issue(spec)
    retagged = replace(spec, tags={"team": "payments"})  # one changed, one removed
    facts = engine.update_tags(retagged)
    assert (facts.version, facts.serial) == (issued.version, issued.serial)
    kv_tags = CertificateClient(spec.vault_url, credential).get_certificate(spec.name).properties.tags
    assert kv_tags == facts.tags == {**{k: v for k, v in issued.tags.items() if k != "cost-center"}, "team": "payments"}
    assert engine.inspect(spec.vault_url, spec.name).version == issued.version
    # The engine's own tags cannot be overridden by a user tag of the same name.
    assert engine.update_tags(replace(spec, tags={"managed-by": "someone-else"})).tags["managed-by"] == "keyvault-acme"
    assert engine.update_tags(world.spec([unique(AZURE_ZONE)])) is None  # nothing issued under that name


def test_cname_delegation_from_one_azure_zone_into_another(world, engine, pebble, credential):
    """``_acme-challenge.<name>`` in azure.test is a CNAME into other-sub.test (another zone, another
    subscription): the engine writes the TXT value where the CNAME points, and the CA follows it."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.mgmt.dns import DnsManagementClient
    from azure.mgmt.dns.models import CnameRecord, RecordSet

    from tests import services

    name = unique(AZURE_ZONE, "cname")
    label = name.split(".")[0]
    target = f"_acme-challenge.{label}.{OTHER_SUB_ZONE}"

    def client(zone):
        return DnsManagementClient(credential, services.AZURE_ZONES[zone])

    rg = services.AZURE_RESOURCE_GROUP
    client(AZURE_ZONE).record_sets.create_or_update(rg, AZURE_ZONE, f"_acme-challenge.{label}", "CNAME",
                                                    RecordSet(ttl=60, cname_record=CnameRecord(cname=target)))
    try:
        spec = world.spec([name])
        facts = engine.issue(spec)
        assert facts.names == (name,) and pebble.cert_status(facts.serial) == "Valid"
        # Written (and cleaned up: the set the engine created is deleted) in the zone the CNAME points into;
        # nothing written beside the CNAME.
        assert pebble.cert_status(facts.serial) == "Valid"
        with pytest.raises(ResourceNotFoundError):
            client(OTHER_SUB_ZONE).record_sets.get(rg, OTHER_SUB_ZONE, f"_acme-challenge.{label}", "TXT")
        with pytest.raises(ResourceNotFoundError):
            client(AZURE_ZONE).record_sets.get(rg, AZURE_ZONE, f"_acme-challenge.{label}", "TXT")
    finally:
        client(AZURE_ZONE).record_sets.delete(rg, AZURE_ZONE, f"_acme-challenge.{label}", "CNAME")


def test_log_lines_count_one_name_in_the_singular(world, engine, caplog):
    import logging

    spec = world.spec([unique(AZURE_ZONE)])
    with caplog.at_level(logging.DEBUG):
        engine.issue(spec)
    text = caplog.text
    assert "1 names" not in text
    assert "1 name," in text  # "issued ... (serial ..., 1 name, EC P-256) in ..."

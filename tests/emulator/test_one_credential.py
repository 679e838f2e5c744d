"""The issue's headline claim: one unmodified DefaultAzureCredential drives Key Vault and Azure DNS through the
proxy, with nothing but HTTPS_PROXY / NO_PROXY / REQUESTS_CA_BUNDLE and the AZURE_* variables in the environment."""
from __future__ import annotations

import uuid

import dns.message
import dns.query
from azure.identity import DefaultAzureCredential
from azure.keyvault.certificates import CertificateClient, CertificatePolicy
from azure.mgmt.dns import DnsManagementClient
from azure.mgmt.dns.models import RecordSet, TxtRecord


def test_default_credential_with_certificate_and_dns_clients(azure_env, monkeypatch, vault_url):
    emu = azure_env
    subscription, group, zone_name = str(uuid.uuid4()), "rg-web", f"z{uuid.uuid4().hex[:8]}.example"
    zone = emu.admin.add_zone(zone_name, subscription, group)
    vault = emu.admin.register_vault(vault_url.split("//")[1].split(".")[0], subscription, group)
    app = emu.admin.add_client(roles=[("Key Vault Certificates Officer", vault["id"]),
                                      ("DNS Zone Contributor", zone["id"])])
    monkeypatch.setenv("AZURE_TENANT_ID", app["tenant_id"])
    monkeypatch.setenv("AZURE_CLIENT_ID", app["client_id"])
    monkeypatch.setenv("AZURE_CLIENT_SECRET", app["secret"])
    credential = DefaultAzureCredential()

    certs = CertificateClient(vault_url, credential)
    operation = certs.begin_create_certificate("web", CertificatePolicy(
        issuer_name="Unknown", subject=f"CN={zone_name}", san_dns_names=[zone_name])).result()
    assert operation.csr

    with DnsManagementClient(credential, subscription) as dns_client:
        dns_client.record_sets.create_or_update(group, zone_name, "_acme-challenge", "TXT",
                                                RecordSet(ttl=60, txt_records=[TxtRecord(value=["proof"])]))
    host, port = emu.dns_address
    answer = dns.query.udp(dns.message.make_query(f"_acme-challenge.{zone_name}", "TXT"), host, port=port, timeout=5)
    assert [r.to_text() for r in answer.answer[0]] == ['"proof"']

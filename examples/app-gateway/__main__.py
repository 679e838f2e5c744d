"""Shop's edge: an Application Gateway identity that reads the certificates keyvault-acme keeps in Key Vault.

The identity does not exist yet when the program runs, so its principal id is an Output; the component takes
it as a consumer (Key Vault Secrets User on each certificate's own secret, nothing else) and the role
assignments wait for it. The Teams webhook URL is a stack secret (`pulumi config set --secret teams_webhook`)
and stays one in state.
"""
import pulumi
from pulumi_azure_native import managedidentity, resources

from components import edge_tags  # this project's own folder, no clash with keyvault-acme
from keyvault_acme_pulumi import (
    AlertsArgs,
    CertificateWorkload,
    CertificateWorkloadArgs,
    ConsumerArgs,
    WebhookArgs,
)

config = pulumi.Config()
network = resources.ResourceGroup("edge", resource_group_name="rg-shop-edge", location="westeurope",
                                  tags=edge_tags("shop"))
appgw = managedidentity.UserAssignedIdentity("appgw", resource_name_="id-shop-appgw",
                                             resource_group_name=network.name, location=network.location)

certificates = CertificateWorkload("shop-prod", CertificateWorkloadArgs(
    workload="shop",
    environment="prod",
    location="westeurope",
    subscription_id=config.require("subscription_id"),
    tenant_id=config.require("tenant_id"),
    zones=[{"name": "shop.example.com"}],
    allowlist={"suffixes": ["shop.example.com"]},
    acme={"directory_url": "https://acme-v02.api.letsencrypt.org/directory", "contact": ["oncall@example.com"]},
    certificates=[{"name": "www", "dns_names": ["www.shop.example.com", "shop.example.com"]}],
    consumers=[ConsumerArgs("appgw", appgw.principal_id)],
    alerts=AlertsArgs(emails=["oncall@example.com"],
                      webhooks=[WebhookArgs("teams", config.require_secret("teams_webhook"))]),
    tags=edge_tags("shop"),
))

# The App Gateway's sslCertificates[].keyVaultSecretId: versionless, so it picks up every renewal.
pulumi.export("www_secret_id", certificates.certificates["www"].secret_id)
pulumi.export("appgw_identity_id", appgw.id)
pulumi.export("zone_name_servers", certificates.zone_name_servers)

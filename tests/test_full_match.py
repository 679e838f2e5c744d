"""Every name and id pattern matches the whole value: ``$`` alone also matches before a trailing newline, so
``"www\\n"`` used to pass a ``^...$`` check with ``re.match`` and reach Key Vault, ARM or the CA."""
from __future__ import annotations

import pytest

from keyvault_acme.config import acme_from_dict, email, server_address
from keyvault_acme.errors import SpecError
from keyvault_acme.lifecycle import Engine
from keyvault_acme.model import AcmeAccount, AzureDnsZone, CertificateSpec, SecretRef
from keyvault_acme.names import normalize_name
from keyvault_acme_stack.workload import parse_workload_config

ZONE_ID = "/subscriptions/00000000-0000-0000-0000-00000000a001/resourceGroups/dns-rg/providers/Microsoft.Network/dnszones/example.com"
STACK = {
    "workload": "shop", "environment": "dev", "location": "westeurope",
    "subscription_id": "11111111-1111-1111-1111-111111111111", "tenant_id": "22222222-2222-2222-2222-222222222222",
    "zones": [{"name": "shop.example.com"}], "allowlist": {"suffixes": ["shop.example.com"]},
    "certificates": [{"name": "www", "dns_names": ["www.shop.example.com"]}],
}
RG = "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg"


def _spec(**kwargs) -> CertificateSpec:
    base = dict(vault_url="https://kv.vault.azure.net", name="www", dns_names=("www.example.com",),
                zones=(AzureDnsZone(ZONE_ID),))
    return CertificateSpec(**{**base, **kwargs})


ENGINE_CASES = {
    "secret reference": lambda: SecretRef("https://kv.vault.azure.net/secrets/tsig\n"),
    "zone resource id": lambda: AzureDnsZone(ZONE_ID + "\n"),
    "contact": lambda: email("ops@example.com\n", "acme.contact[0]"),
    "account key secret (config)": lambda: acme_from_dict({"account_key_secret": "acme-key\n"}),
    "server host label": lambda: server_address("ns1\n.example.com", "zones[0].server"),
    "dns name label": lambda: normalize_name("www\n.example.com"),
    "certificate name (engine)": lambda: Engine(credential=object()).check_spec(_spec(name="www\n")),
    "account key secret (engine)": lambda: Engine(credential=object()).check_spec(
        _spec(acme=AcmeAccount(account_key_secret="acme-key\n"))),
}

STACK_CASES = {
    "subscription_id": {"subscription_id": STACK["subscription_id"] + "\n"},
    "workload": {"workload": "shop\n"},
    "environment": {"environment": "dev\n"},
    "vault.name": {"vault": {"name": "kv-shop-dev\n"}},
    "certificates[0].name": {"certificates": [{"name": "www\n", "dns_names": ["www.shop.example.com"]}]},
    "resource_group.resource_id": {"resource_group": {"resource_id": RG + "\n"}},
    "vault.resource_id": {"vault": {"resource_id": RG + "/providers/Microsoft.KeyVault/vaults/kv-shop-dev\n"}},
}


@pytest.mark.parametrize("case", ENGINE_CASES)
def test_a_trailing_newline_is_refused_by_the_engine(case):
    with pytest.raises(SpecError):
        ENGINE_CASES[case]()


@pytest.mark.parametrize("key", STACK_CASES)
def test_a_trailing_newline_is_refused_in_a_stack(key):
    with pytest.raises(SpecError):
        parse_workload_config({**STACK, **STACK_CASES[key]})


def test_the_same_values_without_the_newline_pass():
    SecretRef("https://kv.vault.azure.net/secrets/tsig")
    AzureDnsZone(ZONE_ID)
    assert normalize_name("www.example.com") == "www.example.com"
    Engine(credential=object()).check_spec(_spec())
    parse_workload_config({**STACK, "vault": {"name": "kv-shop-dev"}})

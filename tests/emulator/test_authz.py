"""RBAC: built-in and custom roles at vault, object and zone scope; default deny; Key Vault's 403 shape."""
from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.keyvault.certificates import CertificateClient, CertificatePolicy
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from azure.keyvault.secrets import SecretClient

from emulator.authz import Authorizer

from .helpers import API, LocalCA, bearer

SUB, RG = "11111111-2222-3333-4444-555555555555", "rg-certs"


def _vault(emu, vault_url: str) -> str:
    """Registers the test vault in a subscription/resource group; returns its ARM id (the RBAC scope)."""
    return emu.admin.register_vault(vault_url.split("//")[1].split(".")[0], SUB, RG)["id"]


def _app(emu, *roles: tuple[str, str]) -> ClientSecretCredential:
    app = emu.admin.add_client(roles=roles)
    return ClientSecretCredential(app["tenant_id"], app["client_id"], app["secret"])


def _status(call) -> int:
    try:
        call()
    except HttpResponseError as exc:
        return exc.status_code or 0
    return 200


def test_unknown_principals_are_denied_everything(azure_env, vault_url):
    nobody = _app(azure_env)
    certs = CertificateClient(vault_url, nobody)
    assert _status(lambda: certs.get_certificate("x")) == 403
    assert _status(lambda: certs.begin_create_certificate(
        "x", CertificatePolicy(issuer_name="Unknown", subject="CN=x"))) == 403


def test_certificates_officer_and_secrets_user_split_issuance_from_export(azure_env, credential, vault_url):
    vault_scope = _vault(azure_env, vault_url)
    officer = _app(azure_env, ("Key Vault Certificates Officer", vault_scope))
    reader = _app(azure_env, ("Key Vault Secrets User", vault_scope))
    certs = CertificateClient(vault_url, officer)
    certs.begin_create_certificate("web", CertificatePolicy(issuer_name="Unknown", subject="CN=web")).result()
    certs.merge_certificate("web", LocalCA().chain_der(certs.get_certificate_operation("web").csr))

    assert _status(lambda: SecretClient(vault_url, officer).get_secret("web")) == 403
    assert SecretClient(vault_url, reader).get_secret("web").value
    assert _status(lambda: CertificateClient(vault_url, reader).begin_create_certificate(
        "web", CertificatePolicy(issuer_name="Unknown", subject="CN=web"))) == 403


def test_an_assignment_on_one_vault_does_not_reach_another(azure_env, vault_url):
    officer = _app(azure_env, ("Key Vault Certificates Officer", _vault(azure_env, vault_url)))
    other = vault_url.replace("https://t", "https://o")
    _vault(azure_env, other)
    policy = CertificatePolicy(issuer_name="Unknown", subject="CN=x")
    assert _status(lambda: CertificateClient(vault_url, officer).begin_create_certificate("x", policy)) == 200
    assert _status(lambda: CertificateClient(other, officer).begin_create_certificate("x", policy)) == 403


def test_object_scope_and_crypto_user(azure_env, credential, vault_url):
    vault_scope = _vault(azure_env, vault_url)
    key = KeyClient(vault_url, credential).create_ec_key("account", curve="P-256")
    KeyClient(vault_url, credential).create_ec_key("other", curve="P-256")
    signer = _app(azure_env, ("Key Vault Crypto User", f"{vault_scope}/keys/account"))
    assert CryptographyClient(key.id, signer).sign(SignatureAlgorithm.es256, b"\1" * 32).signature
    other_id = key.id.replace("/keys/account/", "/keys/other/")
    assert _status(lambda: CryptographyClient(other_id, signer).sign(SignatureAlgorithm.es256, b"\1" * 32)) == 403
    assert _status(lambda: KeyClient(vault_url, signer).create_ec_key("account", curve="P-256")) == 403


def test_custom_role_by_action_list(azure_env, credential, vault_url):
    vault_scope = _vault(azure_env, vault_url)
    azure_env.admin.define_role("Cert Reader Only", data_actions=["Microsoft.KeyVault/vaults/certificates/read"])
    certs = CertificateClient(vault_url, credential)
    certs.begin_create_certificate("c", CertificatePolicy(issuer_name="Unknown", subject="CN=c")).result()
    reader = _app(azure_env, ("Cert Reader Only", vault_scope))
    assert CertificateClient(vault_url, reader).get_certificate_operation("c").status == "inProgress"
    assert _status(lambda: CertificateClient(vault_url, reader).cancel_certificate_operation("c")) == 403


def test_forbidden_has_key_vaults_shape(raw, azure_env, vault_url):
    scope = _vault(azure_env, vault_url)
    app = azure_env.admin.add_client()
    response = raw.get(f"{vault_url}certificates/x/", params=API, headers=bearer(azure_env, app["client_id"]))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "Forbidden" and error["innererror"] == {"code": "ForbiddenByRbac"}
    assert "Microsoft.KeyVault/vaults/certificates/read" in error["message"]
    assert f"{scope}/certificates/x".lower() in error["message"]


@pytest.mark.parametrize("assigned,target,expected", [
    ("/", "/subscriptions/s/resourceGroups/rg", True),
    ("/subscriptions/S/resourceGroups/RG", "/subscriptions/s/resourcegroups/rg/providers/x", True),
    ("/subscriptions/s/resourceGroups/rg", "/subscriptions/s/resourceGroups/rg2", False),
    ("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/dnszones/example.com/TXT/_acme-challenge",
     "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/dnszones/example.com/TXT/_acme-challenge.www",
     False),
])
def test_scope_coverage(assigned, target, expected):
    authz = Authorizer()
    authz.assign("app", "DNS Zone Contributor", assigned)
    assert authz.allowed("app", "Microsoft.Network/dnszones/TXT/write", target) is expected


def test_data_and_control_plane_grants_are_separate():
    authz = Authorizer()
    authz.assign("owner", "Owner", "/")
    authz.assign("reader", "Reader", "/")
    assert authz.allowed("owner", "Microsoft.Network/dnszones/TXT/write", "/x")
    assert not authz.allowed("owner", "Microsoft.KeyVault/vaults/secrets/getSecret/action", "/x")
    assert authz.allowed("reader", "Microsoft.Network/dnszones/read", "/x")
    assert not authz.allowed("reader", "Microsoft.Network/dnszones/TXT/write", "/x")


# -- ARM's permissions API: what the caller may do at a scope, without doing it ------------------------------

_ZONE = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/dns-rg/providers/Microsoft.Network/dnszones/perm.test"
_PERMISSIONS = {"api-version": "2022-04-01"}


def _permissions(raw, emu, client_id: str, scope: str, **params):
    return raw.get(f"https://management.azure.com{scope}/providers/Microsoft.Authorization/permissions",
                   params=params or _PERMISSIONS, headers=bearer(emu, client_id, "https://management.azure.com"))


def test_permissions_api_lists_the_roles_held_at_a_record_set_scope(raw, azure_env):
    record_set = f"{_ZONE}/TXT/_acme-challenge.www"
    emu = azure_env
    azure_env.admin.define_role("TXT writer no delete", actions=["Microsoft.Network/dnszones/TXT/*"],
                                not_actions=["Microsoft.Network/dnszones/TXT/delete"])
    zone_app = emu.admin.add_client(roles=[("DNS Zone Contributor", _ZONE)])
    record_app = emu.admin.add_client(roles=[("TXT writer no delete", record_set)])
    nobody = emu.admin.add_client()

    response = _permissions(raw, emu, zone_app["client_id"], record_set)
    assert response.status_code == 200
    [entry] = response.json()["value"]
    assert "Microsoft.Network/dnsZones/*" in entry["actions"] and entry["dataActions"] == []
    [entry] = _permissions(raw, emu, record_app["client_id"], record_set).json()["value"]
    assert entry["actions"] == ["Microsoft.Network/dnszones/TXT/*"]
    assert entry["notActions"] == ["Microsoft.Network/dnszones/TXT/delete"]
    # Not at a sibling record set, nor above it; and nothing at all for an app without roles.
    assert _permissions(raw, emu, record_app["client_id"], f"{_ZONE}/TXT/_acme-challenge.api").json() == {"value": []}
    assert _permissions(raw, emu, record_app["client_id"], _ZONE).json() == {"value": []}
    assert _permissions(raw, emu, nobody["client_id"], record_set).json() == {"value": []}


def test_permissions_api_wants_a_token_and_an_api_version(raw, azure_env):
    app = azure_env.admin.add_client()
    url = f"https://management.azure.com{_ZONE}/providers/Microsoft.Authorization/permissions"
    assert raw.get(url, params=_PERMISSIONS).status_code == 401
    response = _permissions(raw, azure_env, app["client_id"], _ZONE, **{"api-version": "1999-01-01"})
    assert response.status_code == 400 and "api-version" in response.json()["error"]["message"]


def test_a_new_assignment_takes_effect_only_after_its_propagation_time():
    now = [1000.0]
    authz = Authorizer(clock=lambda: now[0])
    scope = "/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/v"
    action = "Microsoft.KeyVault/vaults/secrets/getSecret/action"
    made = authz.assign("app", "Key Vault Secrets User", scope, propagation_s=90)
    assert made.created_on == "1970-01-01T00:16:40+00:00"  # ARM's createdOn: when it was made
    assert not authz.allowed("app", action, scope)
    now[0] += 89
    assert not authz.allowed("app", action, scope)
    now[0] += 1
    assert authz.allowed("app", action, scope)

"""role_plan as a pure function of the config: what each account-key kind grants the issuer."""
from __future__ import annotations

from keyvault_acme_pulumi.components.workload import (
    ACCOUNT_KEY_DATA_ACTIONS,
    KEY_VAULT_SECRETS_OFFICER,
    AccountKeyTarget,
    grants_for_certificate,
    role_plan,
)
from keyvault_acme_stack.workload import parse_workload_config

SUB = "11111111-1111-1111-1111-111111111111"


def config(**acme):
    return parse_workload_config({
        "workload": "shop", "environment": "dev", "location": "westeurope", "subscription_id": SUB,
        "tenant_id": "22222222-2222-2222-2222-222222222222", "zones": [{"name": "shop.example.com"}],
        "allowlist": {"suffixes": ["shop.example.com"]}, "acme": acme,
        "certificates": [{"name": "www", "dns_names": ["www.shop.example.com"]}],
    })


def issuer_vault_grants(cfg):
    return {(g.role, g.scope_kind, getattr(g.target, "name", None))
            for g in role_plan(cfg) if g.principal == "issuer" and g.scope_kind in ("vault", "secret", "key")}


def test_secret_held_account_key_gets_secrets_officer_on_the_account_secret_and_no_key_role():
    grants = issuer_vault_grants(config())
    assert (KEY_VAULT_SECRETS_OFFICER, "secret", "acme-account-key") in grants
    assert not any(kind == "key" for _, kind, _ in grants)


def test_key_vault_account_key_gets_read_and_sign_on_that_key_and_nothing_on_the_account_secret():
    cfg = config(account_key={"kind": "key", "name": "acct"})
    grants = issuer_vault_grants(cfg)
    assert ("account-key-signer", "key", "acct") in grants
    assert not any(target == "acme-account-key" for _, _, target in grants)
    assert ACCOUNT_KEY_DATA_ACTIONS == ("Microsoft.KeyVault/vaults/keys/read",
                                        "Microsoft.KeyVault/vaults/keys/sign/action")
    (key_grant,) = [g for g in role_plan(cfg) if g.scope_kind == "key"]
    assert key_grant.target == AccountKeyTarget("acct", SUB, "rg-shop-dev")
    # The certificate waits for that grant before its first issuance.
    assert key_grant in grants_for_certificate(role_plan(cfg), cfg.certificates[0])


def persist_config(**cert):
    return parse_workload_config({
        "workload": "shop", "environment": "dev", "location": "westeurope", "subscription_id": SUB,
        "tenant_id": "22222222-2222-2222-2222-222222222222", "zones": [{"name": "shop.example.com"}],
        "allowlist": {"suffixes": ["shop.example.com"]},
        "certificates": [{"name": "www", "dns_names": ["shop.example.com", "*.shop.example.com"],
                          "challenge": "dns-persist-01", **cert},
                         {"name": "api", "dns_names": ["api.shop.example.com"]}],
    })


def test_dns_persist_01_gives_the_issuer_no_dns_role_for_its_names():
    cfg = persist_config()
    www, api = cfg.certificates
    assert www.challenge_record_sets == () and [rs.fqdn for rs in www.persist_record_sets] == [
        "_validation-persist.shop.example.com"]  # one record for the name and its wildcard
    dns_grants = [g for g in role_plan(cfg) if g.scope_kind in ("record_set", "zone")]
    assert {g.target.fqdn for g in dns_grants if g.scope_kind == "record_set"} == {"_acme-challenge.api.shop.example.com"}
    assert [g for g in grants_for_certificate(role_plan(cfg), www) if g.scope_kind in ("record_set", "zone")] == []
    only_persist = parse_workload_config({**{k: v for k, v in {
        "workload": "shop", "environment": "dev", "location": "westeurope", "subscription_id": SUB,
        "tenant_id": "22222222-2222-2222-2222-222222222222", "zones": [{"name": "shop.example.com"}],
        "allowlist": {"suffixes": ["shop.example.com"]}}.items()},
        "certificates": [{"name": "www", "dns_names": ["www.shop.example.com"], "challenge": "dns-persist-01"}]})
    assert [g for g in role_plan(only_persist) if g.scope_kind in ("record_set", "zone")] == []


def test_each_scope_has_one_target_class():
    # RoleGrant.target was "a record set, a zone, a key, a secret name or None" behind a scope_kind string; every
    # reader had to know which went with which. Now the target's class is the scope, and scope_kind follows it.
    from keyvault_acme_pulumi.components.workload import SecretScope, VaultScope
    from keyvault_acme_stack.workload import ChallengeRecordSet, DnsZoneConfig

    cfg = parse_workload_config({
        "workload": "shop", "environment": "dev", "location": "westeurope", "subscription_id": SUB,
        "tenant_id": "22222222-2222-2222-2222-222222222222",
        "zones": [{"name": "shop.example.com"}, {"name": "zone.example.com", "challenge_scope": "zone"}],
        "consumers": [{"name": "app", "principal_id": "33333333-3333-3333-3333-333333333333"}],
        "allowlist": {"suffixes": ["shop.example.com", "zone.example.com"]},
        "acme": {"account_key": {"kind": "key", "name": "acct"}},
        "certificates": [{"name": "www", "dns_names": ["www.shop.example.com", "www.zone.example.com"]}],
    })
    classes = {kind: {type(g.target) for g in role_plan(cfg) if g.scope_kind == kind}
               for kind in {g.scope_kind for g in role_plan(cfg)}}
    assert classes == {"vault": {VaultScope}, "secret": {SecretScope}, "key": {AccountKeyTarget},
                       "record_set": {ChallengeRecordSet}, "zone": {DnsZoneConfig}}


def test_tsig_and_eab_secrets_in_the_workload_vault_get_secrets_user_on_exactly_those():
    from keyvault_acme_pulumi.components.workload import KEY_VAULT_SECRETS_USER, SecretScope

    vault = config().vault.url.rstrip("/")

    def rfc2136(tsig_vault: str, **acme):
        return parse_workload_config({
            "workload": "shop", "environment": "dev", "location": "westeurope", "subscription_id": SUB,
            "tenant_id": "22222222-2222-2222-2222-222222222222",
            "zones": [{"name": "shop.example.com"},
                      {"zone": "corp.example.net", "server": "10.0.0.53", "tsig_key_name": "acme",
                       "tsig_secret": f"{tsig_vault}/secrets/tsig-corp"}],
            "allowlist": {"suffixes": ["shop.example.com", "corp.example.net"]}, "acme": acme,
            "certificates": [{"name": "www", "dns_names": ["www.shop.example.com", "api.corp.example.net"]}],
        })

    cfg = rfc2136(vault, eab_kid="kid-1", eab_hmac=f"{vault}/secrets/eab-hmac")
    users = [g for g in role_plan(cfg) if g.role == KEY_VAULT_SECRETS_USER and g.principal == "issuer"]
    assert {g.target for g in users} == {SecretScope("tsig-corp", SUB, "rg-shop-dev"),
                                         SecretScope("eab-hmac", SUB, "rg-shop-dev")}
    # The certificate waits for those grants before its first issuance, like for its other roles.
    assert set(users) <= set(grants_for_certificate(role_plan(cfg), cfg.certificates[0]))
    # A secret kept in another vault is that vault's keeper's to grant: the stack grants nothing there.
    other = rfc2136("https://corp-secrets.vault.azure.net")
    assert not [g for g in role_plan(other) if g.role == KEY_VAULT_SECRETS_USER and g.principal == "issuer"]


def test_a_cloudflare_api_token_in_the_workload_vault_gets_secrets_user_on_that_secret_only():
    from keyvault_acme_pulumi.components.workload import KEY_VAULT_SECRETS_USER, SecretScope

    vault = config().vault.url.rstrip("/")
    cfg = parse_workload_config({
        "workload": "shop", "environment": "dev", "location": "westeurope", "subscription_id": SUB,
        "tenant_id": "22222222-2222-2222-2222-222222222222",
        "zones": [{"type": "cloudflare", "zone": "web.example.net", "api_token_secret": f"{vault}/secrets/cf-token"}],
        "allowlist": {"suffixes": ["web.example.net"]},
        "certificates": [{"name": "www", "dns_names": ["www.web.example.net"]}],
    })
    users = [g.target for g in role_plan(cfg) if g.role == KEY_VAULT_SECRETS_USER and g.principal == "issuer"]
    assert users == [SecretScope("cf-token", SUB, "rg-shop-dev")]

"""Least privilege, proved both ways, with the role assignments the component really registers.

The component runs under set_mocks; its RoleDefinitions and RoleAssignments are then applied to the
Azure emulator (same scopes, same actions; the emulator enforces RBAC with default deny). With exactly
those, the issuer identity can preflight, issue, renew and revoke through the real engine against Pebble,
and a consumer can read the certificate's secret and nothing more. Removing any one assignment makes
some step fail with 403.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.keyvault.certificates import CertificateClient, CertificatePolicy
from azure.keyvault.keys import KeyClient
from azure.keyvault.secrets import SecretClient
from azure.mgmt.dns import DnsManagementClient

from keyvault_acme.errors import KeyVaultAcmeError
from keyvault_acme.lifecycle import Engine
from keyvault_acme_pulumi.components import CertificateWorkload
from keyvault_acme_pulumi.components.workload import BUILTIN_ROLE_NAMES
from keyvault_acme_stack.workload import parse_workload_config
from tests import services

from . import harness

pytestmark = pytest.mark.integration

ZONE = "azure.test"
DEPLOY_SUBSCRIPTION = "00000000-0000-0000-0000-00000000c0de"


@dataclass
class App:
    client_id: str
    secret: str
    tenant_id: str

    def credential(self) -> ClientSecretCredential:
        return ClientSecretCredential(self.tenant_id, self.client_id, self.secret)


def _app(emulator, name: str) -> App:
    created = emulator.admin.add_client(name=name)
    return App(created["client_id"], created["secret"], created["tenant_id"])


@pytest.fixture(scope="module")
def make_world(emulator, bind, pebble, ca_bundle):
    """Builds a fresh workload (new apps, vault, names, hence a new ACME account and fresh authorizations)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**emulator.environ(ca_bundle), "SSL_CERT_FILE": ca_bundle}.items():
            mp.setenv(key, value)
        root = emulator.admin.add_root_client(name="least-privilege-deployer")
        root_credential = ClientSecretCredential(root["tenant_id"], root["client_id"], root["secret"])
        yield lambda **kw: _world(emulator, pebble, root_credential, bind=bind, **kw)


@pytest.fixture(scope="module")
def world(make_world):
    return make_world()


def _world(emulator, pebble, root_credential, *, bind=None, rfc2136: bool = False, eab: bool = False,
           cert: dict | None = None, **acme) -> "World":
    """``rfc2136``: the certificate's names are in BIND's zone, updated with a TSIG key kept in the workload's
    vault; ``eab``: the account is bound with an EAB key kept there too. Both secrets are the operator's.
    ``cert``: settings of the one certificate (``challenge: dns-persist-01``, say)."""
    label = f"lp{uuid.uuid4().hex[:6]}"
    issuer, consumer = _app(emulator, f"{label}-issuer"), _app(emulator, f"{label}-consumer")

    def document(vault_url: str = "https://placeholder.vault.azure.net") -> dict:
        zone, resolver = ZONE, f"{emulator.dns_address[0]}:{emulator.dns_address[1]}"
        zones: list[dict] = [{"resource_id": services.azure_zone_id(ZONE)}]
        if rfc2136:
            zone, resolver = services.BIND_ZONE, bind.server
            zones = [{"zone": zone, "server": bind.server, "tsig_key_name": bind.tsig_key_name,
                          "tsig_secret": f"{vault_url}/secrets/tsig-bind"}]
        extra = {"eab_kid": services.EAB_KID, "eab_hmac": f"{vault_url}/secrets/eab-hmac"} if eab else {}
        return {
            "workload": label, "environment": "test", "location": "westeurope", "subscription_id": DEPLOY_SUBSCRIPTION,
            "tenant_id": issuer.tenant_id, "zones": zones,
            "issuer": {"principal_id": issuer.client_id, "client_id": issuer.client_id},
            "consumers": [{"name": "app", "principal_id": consumer.client_id}],
            "allowlist": {"suffixes": [f"{label}.{zone}"]},
            "acme": {"directory_url": pebble.directory_url, "contact": [f"ops@{label}.{ZONE}"], **extra, **acme},
            "certificates": [{"name": "www", "dns_names": [f"{label}.{zone}", f"www.{label}.{zone}"],
                              "resolvers": [resolver], "propagation_timeout_s": 30, **(cert or {})}],
        }

    cfg = parse_workload_config(document())
    if rfc2136 or eab:  # the secrets' references name the workload's vault, known once the config is read
        cfg = parse_workload_config(document(cfg.vault.url.rstrip("/")))
    run = harness.run(lambda: CertificateWorkload(cfg.stack_name, cfg).outputs, stack=cfg.stack_name, config={},
                      subscription_id=cfg.subscription_id)
    emulator.admin.register_vault(cfg.vault.name, subscription_id=cfg.subscription_id,
                                  resource_group=cfg.resource_group.name, tenant_id=issuer.tenant_id)
    # The operator's secrets the issuer reads (stored by someone who may write secrets, as the README says).
    operator = SecretClient(cfg.vault.url, root_credential)
    if rfc2136:
        operator.set_secret("tsig-bind", bind.tsig_secret_b64)
    if eab:
        operator.set_secret("eab-hmac", services.EAB_HMAC)
    # What `pulumi up` would have created before any certificate: the empty challenge record sets.
    dns = DnsManagementClient(root_credential, services.AZURE_ZONES[ZONE])
    persist_values: dict[str, str] = {}
    for spec in (c.spec for c in cfg.certificates if c.persist_record_sets):
        # PersistRecords' create (the deployer's engine: it registers the account the records name).
        persist_values.update(Engine(root_credential, timeout_s=60).persist_records(spec))
    for rs in run.of_type("azure-native:dns:RecordSet"):
        assert rs.id.startswith(services.azure_zone_id(ZONE) + "/TXT/")
        fqdn = f"{rs.inputs['relativeRecordSetName']}.{ZONE}"
        records = [{"value": [persist_values[fqdn]]}] if fqdn in persist_values else []
        dns.record_sets.create_or_update(rs.inputs["resourceGroupName"], rs.inputs["zoneName"],
                                         rs.inputs["relativeRecordSetName"], "TXT", {"ttl": 60, "txt_records": records})
    # ... and the ACME account keys kept as Key Vault keys (ARM creates them; here the deployer, with the same inputs).
    keys = KeyClient(cfg.vault.url, root_credential)
    for key in run.of_type("azure-native:keyvault:Key"):
        props = key.inputs["properties"]
        assert (props["kty"], props["curveName"], props["keyOps"]) == ("EC", "P-256", ["sign", "verify"])
        keys.create_ec_key(key.inputs["keyName"], curve=props["curveName"], key_operations=props["keyOps"])
    return World(emulator, cfg, run, run.one("azure-native:keyvault:Vault").id, issuer, consumer, root_credential)


class World:
    def __init__(self, emulator, cfg, run, vault_id, issuer: App, consumer: App, root_credential) -> None:
        self.emulator, self.cfg, self.run, self.vault_id = emulator, cfg, run, vault_id
        self.issuer, self.consumer, self.root_credential = issuer, consumer, root_credential
        self.spec = cfg.certificates[0].spec
        self.applied: dict[str, str] = {}  # Pulumi resource name -> emulator assignment id

    def assignments(self):
        return self.run.of_type("azure-native:authorization:RoleAssignment")

    def kind(self, assignment) -> str:
        """The assignment's name without this world's label: the same for every world."""
        return assignment.name.replace(self.cfg.workload, "<label>")

    def apply(self, skip: str | None = None) -> None:
        """Make the emulator's assignments for our two apps exactly the registered ones (minus ``skip``)."""
        for app in (self.issuer, self.consumer):
            for existing in self.emulator.admin.role_assignments(app.client_id):
                self.emulator.admin.unassign_role(existing["id"])
        roles = {d.id: d for d in self.run.of_type("azure-native:authorization:RoleDefinition")}
        for d in roles.values():
            perms = d.inputs["permissions"][0]
            self.emulator.admin.define_role(d.inputs["roleName"], perms.get("actions", []), perms.get("dataActions", []))
        for a in self.assignments():
            if a.name == skip:
                continue
            role_id = a.inputs["roleDefinitionId"]
            role = roles[role_id].inputs["roleName"] if role_id in roles else BUILTIN_ROLE_NAMES[role_id.rsplit("/", 1)[-1]]
            self.emulator.admin.assign_role(a.inputs["principalId"], role, a.inputs["scope"])

    # -- what each identity does --------------------------------------------------------------------------

    def issuer_flow(self) -> None:
        engine = Engine(self.issuer.credential(), timeout_s=60)
        engine.preflight(self.spec)
        first = engine.issue(self.spec)
        second = engine.renew(self.spec)
        assert second.version != first.version and second.serial != first.serial
        revoked = engine.revoke(self.spec, "superseded")
        assert revoked.revoked_reason == "superseded"

    def consumer_reads(self) -> str:
        secret = SecretClient(self.cfg.vault.url, self.consumer.credential()).get_secret(self.spec.name)
        return secret.value


def _status(error: BaseException) -> int | None:
    for e in (error, error.__cause__, error.__context__):
        status = getattr(e, "status_code", None) or getattr(e, "status", None)
        if status:
            return status
    # Preflight errors wrap the DNS error's text, not its status: Azure's "[403]" is in the message.
    match = re.search(r"\[(\d{3})[\] ]", str(error))
    return int(match.group(1)) if match else None


def test_with_exactly_the_registered_assignments_the_issuer_issues_renews_and_revokes(world):
    world.apply()
    world.issuer_flow()
    # The consumer reads the certificate as a secret (the public chain; the key is not exportable) ...
    assert "BEGIN CERTIFICATE" in world.consumer_reads()
    # ... and nothing more: not the ACME account key the issuer's CA account hangs on, not the engine's chain
    # companion, not another secret kept in the same vault (a TSIG key, another team's certificate).
    for name, value in (("tsig-corp", "c2VjcmV0LXRzaWc="), ("other-cert", "-----BEGIN CERTIFICATE-----")):
        SecretClient(world.cfg.vault.url, world.root_credential).set_secret(name, value)
    consumer = world.consumer.credential()
    readers = SecretClient(world.cfg.vault.url, consumer)
    denied = [
        lambda: readers.get_secret(world.spec.acme.account_key_secret),
        lambda: readers.get_secret(f"{world.spec.name}-chain"),
        lambda: readers.get_secret("tsig-corp"),
        lambda: readers.get_secret("other-cert"),
        lambda: list(readers.list_properties_of_secrets()),
        lambda: CertificateClient(world.cfg.vault.url, consumer).get_certificate(world.spec.name),
        lambda: SecretClient(world.cfg.vault.url, consumer).set_secret("planted", "x"),
        lambda: SecretClient(world.cfg.vault.url, consumer).begin_delete_secret(world.spec.name),
        lambda: CertificateClient(world.cfg.vault.url, consumer).begin_create_certificate(
            "rogue", CertificatePolicy.get_default()),
        lambda: DnsManagementClient(consumer, services.AZURE_ZONES[ZONE]).record_sets.create_or_update(
            "dns-rg", ZONE, f"_acme-challenge.{world.cfg.workload}", "TXT", {"ttl": 60, "txt_records": [{"value": ["x"]}]}),
    ]
    for i, attempt in enumerate(denied):
        with pytest.raises(HttpResponseError) as e:
            attempt()
        assert e.value.status_code == 403, i


def test_rfc2136_and_eab_stacks_check_and_issue_with_exactly_the_registered_assignments(make_world):
    """grant_roles: the issuer reads the TSIG and EAB secrets (Secrets User on exactly those two): check passes,
    and it issues, renews and revokes; without either grant a step fails with 403."""
    world = make_world(rfc2136=True, eab=True)
    readers = {a.name for a in world.assignments()
               if a.inputs["scope"] in {f"{world.vault_id}/secrets/tsig-bind", f"{world.vault_id}/secrets/eab-hmac"}}
    assert len(readers) == 2
    world.apply()
    assert [r for r in Engine(world.issuer.credential(), timeout_s=60).check(world.spec) if not r.ok] == []
    world.issuer_flow()
    for name in sorted(readers):
        fresh = make_world(rfc2136=True, eab=True)
        (removed,) = [a.name for a in fresh.assignments() if fresh.kind(a) == name.replace(world.cfg.workload, "<label>")]
        fresh.apply(skip=removed)
        with pytest.raises((HttpResponseError, KeyVaultAcmeError)) as e:
            fresh.issuer_flow()
        assert _status(e.value) == 403, f"without {name}: {e.value!r}"


def test_the_grants_are_the_narrow_ones(world):
    # Belt and braces next to the graph tests: every scope is the vault (the issuer's Certificates Officer
    # only), one of the engine's own secrets, the certificate's secret (the consumer's), a challenge record
    # set or the zone.
    engine_secrets = {f"{world.vault_id}/secrets/acme-account-key", f"{world.vault_id}/secrets/www-chain"}
    certificate_secret = f"{world.vault_id}/secrets/www"
    for a in world.assignments():
        scope = a.inputs["scope"]
        if a.inputs["principalId"] == world.consumer.client_id:
            assert scope == certificate_secret, (a.name, scope)
        else:
            assert scope in {world.vault_id, *engine_secrets} or scope.startswith(services.azure_zone_id(ZONE)), (a.name, scope)


def test_removing_any_one_assignment_makes_a_step_fail_with_403(world, make_world):
    not_needed = []
    for kind in sorted(world.kind(a) for a in world.assignments()):
        fresh = make_world()  # no authorization or account left over from another round
        (removed,) = [a.name for a in fresh.assignments() if fresh.kind(a) == kind]
        fresh.apply(skip=removed)
        try:
            fresh.issuer_flow()
            fresh.consumer_reads()
        except (HttpResponseError, KeyVaultAcmeError) as e:
            assert _status(e) == 403, f"without {kind}: {e!r}"
        else:
            not_needed.append(kind)
    assert not_needed == [], "assignments nothing needs (so not least privilege)"


def test_the_preview_identitys_documented_reads_refresh_the_certificate_and_nothing_more(world, emulator):
    # The pipelines' read-only preview identity (pipelines/*): Key Vault Reader on the vault and Secrets User
    # on the public chain companion are enough for the provider's read (what `pulumi preview --refresh` does)...
    world.apply()
    engine = Engine(world.issuer.credential(), timeout_s=60)
    if engine.inspect(world.cfg.vault.url, world.spec.name) is None:
        engine.issue(world.spec)
    preview = _app(emulator, f"{world.cfg.workload}-preview")
    emulator.admin.assign_role(preview.client_id, "Key Vault Reader", world.vault_id)
    emulator.admin.assign_role(preview.client_id, "Key Vault Secrets User", f"{world.vault_id}/secrets/{world.spec.name}-chain")
    facts = Engine(preview.credential(), timeout_s=60).inspect(world.cfg.vault.url, world.spec.name)
    assert facts is not None and facts.pem_chain.count("BEGIN CERTIFICATE") >= 2  # the chain, not only the leaf
    # ... and read no secret value that matters, nor change anything.
    readers = SecretClient(world.cfg.vault.url, preview.credential())
    denied = [
        lambda: readers.get_secret(world.spec.name),
        lambda: readers.get_secret(world.spec.acme.account_key_secret),
        lambda: readers.set_secret("planted", "x"),
        lambda: CertificateClient(world.cfg.vault.url, preview.credential()).begin_create_certificate(
            "rogue", CertificatePolicy.get_default()),
    ]
    for i, attempt in enumerate(denied):
        with pytest.raises(HttpResponseError) as e:
            attempt()
        assert e.value.status_code == 403, i


# -- the ACME account key kept as a Key Vault key (acme.account_key: {kind: key}) ------------------------------


@pytest.fixture(scope="module")
def key_world(make_world):
    return make_world(account_key={"kind": "key"})


def test_with_a_key_vault_account_key_the_issuer_reads_and_signs_with_that_key_and_no_account_secret(key_world):
    w = key_world
    by_scope = {a.inputs["scope"]: a for a in w.assignments() if a.inputs["principalId"] == w.issuer.client_id}
    key_scope = f"{w.vault_id}/keys/acme-account-key"
    assert f"{w.vault_id}/secrets/acme-account-key" not in by_scope  # no secret for the account key
    roles = {d.id: d for d in w.run.of_type("azure-native:authorization:RoleDefinition")}
    signer = roles[by_scope[key_scope].inputs["roleDefinitionId"]]
    assert signer.inputs["permissions"] == [{"actions": [], "dataActions": [
        "Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/sign/action"]}]
    w.apply()
    w.issuer_flow()
    # Key Vault signed every JWS: the account secret was never written.
    names = [p.name for p in SecretClient(w.cfg.vault.url, w.root_credential).list_properties_of_secrets()]
    assert "acme-account-key" not in names
    # The issuer signs with the key and reads its public half, and does nothing else with keys.
    issuer_keys = KeyClient(w.cfg.vault.url, w.issuer.credential())
    for attempt in (lambda: issuer_keys.create_ec_key("rogue"),
                    lambda: issuer_keys.begin_delete_key("acme-account-key"),
                    lambda: issuer_keys.update_key_properties("acme-account-key", enabled=False)):
        with pytest.raises(HttpResponseError) as e:
            attempt()
        assert e.value.status_code == 403


def test_without_the_key_signer_assignment_the_issuer_cannot_act_for_the_account(make_world):
    fresh = make_world(account_key={"kind": "key"})
    (removed,) = [a.name for a in fresh.assignments() if a.inputs["scope"].endswith("/keys/acme-account-key")]
    fresh.apply(skip=removed)
    with pytest.raises(KeyVaultAcmeError) as e:
        fresh.issuer_flow()
    assert _status(e.value) == 403


# -- dns-persist-01: the stack writes the records, the issuer has no DNS role -----------------------------------


def test_with_dns_persist_01_the_issuer_has_no_dns_role_and_still_issues_renews_and_revokes(make_world, emulator):
    w = make_world(cert={"challenge": "dns-persist-01"})
    issuer_scopes = [a.inputs["scope"] for a in w.assignments() if a.inputs["principalId"] == w.issuer.client_id]
    assert issuer_scopes and all(s.startswith(w.vault_id) for s in issuer_scopes)  # Key Vault only, no DNS
    w.apply()
    assert not [a for a in emulator.admin.role_assignments(w.issuer.client_id) if "Microsoft.Network" in a["scope"]]
    w.issuer_flow()
    # check, as the issuer, verifies the records on every server and needs no DNS right either.
    results = Engine(w.issuer.credential(), timeout_s=60).check(w.spec)
    assert [r for r in results if not r.ok] == []
    assert any(r.step == "dns-persist-01 record" and r.ok for r in results)

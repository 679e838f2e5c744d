"""A DNS provider the engine has never heard of, plugged in as another package would: its zone type comes from
an entry point (or ``register``), configuration parses it and writes it back, errors name its settings, the stack
grants its secret, and an issuance from Pebble goes through it to BIND. Nothing in keyvault_acme is edited."""
from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import dns.query
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from keyvault_acme.config import certificate_spec_from_dict, require, secret_ref_from, spec_to_dict
from keyvault_acme.dns import registry
from keyvault_acme.errors import SpecError
from keyvault_acme.model import AcmeAccount, CertificateSpec, SecretRef
from tests import services


@dataclass(frozen=True)
class NsupdateZone:
    """A zone updated with plain TSIG-signed UPDATE messages: a provider written outside the engine."""

    zone: str
    server: str
    key_name: str
    key: SecretRef

    @property
    def name(self) -> str:
        return self.zone.lower().rstrip(".")

    @property
    def secrets(self) -> tuple[SecretRef, ...]:
        return (self.key,)


class NsupdateProvider:
    propagation_timeout = 20.0

    def __init__(self, zone: NsupdateZone, secret: str) -> None:
        self.zone = zone
        self.keyring = dns.tsigkeyring.from_text({zone.key_name: secret})
        self.calls: list[tuple[str, str]] = []

    def _send(self, op: str, fqdn: str, value: str) -> None:
        update = dns.update.UpdateMessage(self.zone.name, keyring=self.keyring, keyalgorithm=dns.tsig.HMAC_SHA256)
        getattr(update, op)(f"{fqdn}.", *((60,) if op == "add" else ()), "TXT", f'"{value}"')
        host, port = self.zone.server.rsplit(":", 1)
        response = dns.query.tcp(update, host, port=int(port), timeout=5)
        assert response.rcode() == 0, response
        PROVIDERS_USED.append((op, fqdn))

    def present(self, fqdn: str, value: str, *, deadline: float | None = None) -> None:
        self._send("add", fqdn, value)

    def cleanup(self, fqdn: str, value: str, *, deadline: float | None = None) -> None:
        self._send("delete", fqdn, value)


PROVIDERS_USED: list[tuple[str, str]] = []


def _parse(data: Mapping[str, Any], field: str) -> NsupdateZone:
    return NsupdateZone(zone=str(require(data, "zone", f"{field}.")), server=str(require(data, "server", f"{field}.")),
                        key_name=str(require(data, "key_name", f"{field}.")),
                        key=secret_ref_from(require(data, "key_secret", f"{field}."), f"{field}.key_secret"))


def _build(zone: NsupdateZone, context: registry.ProviderContext, deadline: float, propagation_timeout: float):
    return NsupdateProvider(zone, context.secret(zone.key, f"zones[{zone.name}].key_secret", deadline))


NSUPDATE = registry.ZoneType(
    "nsupdate", NsupdateZone, _build, _parse,
    lambda z: {"zone": z.zone, "server": z.server, "key_name": z.key_name, "key_secret": z.key.secret_id},
    settings=("zone", "server", "key_name", "key_secret"), described="an nsupdate zone (zone, server, key_*)")


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """This module's zone type, declared the way an installed package declares it: an entry point in a
    dist-info folder on sys.path. The registry's tables are this test's own, so no other test sees it."""
    dist = tmp_path / "keyvault_acme_nsupdate-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: keyvault-acme-nsupdate\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\nnsupdate = {__name__}:NSUPDATE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.known(plugins=False)  # the built-in types are in the tables this test copies
    monkeypatch.setattr(registry, "_BY_NAME", dict(registry._BY_NAME))
    monkeypatch.setattr(registry, "_BY_CLASS", dict(registry._BY_CLASS))
    monkeypatch.setattr(registry, "_loaded", {**registry._loaded, "plugins": False})
    return NSUPDATE


def spec_data(zone: dict) -> dict:
    return {"vault_url": "https://kv.vault.azure.net", "name": "www", "dns_names": ["www.plug.test"],
            "zones": [zone]}


ZONE = {"type": "nsupdate", "zone": "plug.test", "server": "127.0.0.1:53", "key_name": "k",
        "key_secret": "https://kv.vault.azure.net/secrets/nsupdate-key"}


def test_a_plugin_zone_type_parses_writes_back_and_names_its_settings(plugin):
    spec = certificate_spec_from_dict(spec_data(ZONE))
    assert spec.zones == (NsupdateZone("plug.test", "127.0.0.1:53", "k",
                                       SecretRef("https://kv.vault.azure.net/secrets/nsupdate-key")),)
    assert spec_to_dict(spec)["zones"] == [ZONE]  # a type no setting implies is written with its type
    assert certificate_spec_from_dict(spec_to_dict(spec)) == spec
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict(spec_data({**ZONE, "tsig_secret": "x"}))
    assert (err.value.field, err.value.problem) == ("zones[0].tsig_secret", "is not a setting of an nsupdate zone "
                                                    "(zone, server, key_*)")
    assert "zone, server, key_name, key_secret" in err.value.fix
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict(spec_data({k: v for k, v in ZONE.items() if k != "key_name"}))
    assert err.value.field == "zones[0].key_name"
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict(spec_data({**ZONE, "type": "route53"}))
    assert err.value.field == "zones[0].type" and err.value.fix == "use one of azure, rfc2136, cloudflare, nsupdate"


def test_without_the_plugin_its_type_is_unknown_and_built_in_zones_never_look_for_plugins(monkeypatch):
    looked: list[str] = []
    real = registry.metadata.entry_points
    monkeypatch.setattr(registry.metadata, "entry_points", lambda **kw: looked.append(kw["group"]) or real(**kw))
    monkeypatch.setattr(registry, "_loaded", {**registry._loaded, "plugins": False})
    certificate_spec_from_dict(spec_data({"resource_id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/"
                                                    "providers/Microsoft.Network/dnszones/plug.test"}))
    certificate_spec_from_dict(spec_data({"type": "cloudflare", "zone": "x.test",
                                          "api_token_secret": "https://kv.vault.azure.net/secrets/t"}))
    assert looked == []  # parsing built-in zones costs no scan of installed packages
    with pytest.raises(SpecError) as err:
        certificate_spec_from_dict(spec_data(ZONE))
    assert looked == [registry.ENTRY_POINT_GROUP]
    assert (err.value.field, err.value.fix) == ("zones[0].type", "use one of azure, rfc2136, cloudflare")


def test_a_second_type_of_the_same_name_is_refused(plugin):
    registry.register(plugin)  # the same type again is no clash
    with pytest.raises(ValueError, match="'azure'"):
        registry.register(registry.ZoneType("azure", NsupdateZone, _build, _parse, dict, settings=(), described=""))


def test_the_stack_grants_a_plugin_zones_secret(plugin):
    from components.workload import operator_secrets
    from keyvault_acme_stack.workload import CertificateConfig

    spec = certificate_spec_from_dict(spec_data(ZONE))
    assert operator_secrets(CertificateConfig(spec)) == ("nsupdate-key",)


@pytest.mark.integration
def test_issue_through_a_plugin_provider(plugin, world, engine, pebble, bind, credential):
    from azure.keyvault.secrets import SecretClient

    SecretClient(world.vault_url, credential).set_secret("nsupdate-key", bind.tsig_secret_b64)
    name = f"www-{uuid.uuid4().hex[:8]}.{services.BIND_ZONE}"
    zone = {"type": "nsupdate", "zone": services.BIND_ZONE, "server": bind.server, "key_name": bind.tsig_key_name,
            "key_secret": f"{world.vault_url}/secrets/nsupdate-key"}
    spec = certificate_spec_from_dict({"vault_url": world.vault_url, "name": f"np-{uuid.uuid4().hex[:8]}",
                                       "dns_names": [name], "zones": [zone], "resolvers": [bind.server],
                                       "acme": {"directory_url": world.directory_url}, "propagation_timeout_s": 20})
    assert isinstance(spec, CertificateSpec) and isinstance(spec.zones[0], NsupdateZone)
    assert spec.acme == AcmeAccount(directory_url=world.directory_url)
    # `check` asks only the contract: a provider without the optional capabilities is reported, not an error.
    results = {r.step: r for r in engine.check(spec)}
    assert results["zones writable"].ok and "not checked" in results["zones writable"].detail
    PROVIDERS_USED.clear()
    facts = engine.issue(spec)
    assert facts.names == (name,) and pebble.cert_status(facts.serial) == "Valid"
    assert PROVIDERS_USED == [("add", f"_acme-challenge.{name}"), ("delete", f"_acme-challenge.{name}")]


def test_the_engine_names_no_zone_type():
    # Zone types are the registry's: nothing else in the engine names a provider or a zone class, so a plug-in
    # needs no edit of it.
    engine = Path(registry.__file__).parents[1]
    for path in sorted(engine.rglob("*.py")):
        if path.parent.name == "dns" or path.name == "model.py":
            continue
        text = path.read_text()
        for word in ("AzureDnsZone", "Rfc2136Zone", "CloudflareZone", "Rfc2136Provider", "AzureDnsProvider",
                     "CloudflareProvider"):
            assert word not in text, f"{path.relative_to(engine)} names {word}"


def test_threads_parsing_their_first_zones_at_once_all_see_the_built_in_types():
    # keyvault_acme.bulk's workers parse specs in several threads of a fresh process: a thread that found the
    # built-in types "being loaded" once went on with an empty table and refused an RFC 2136 zone.
    probe = f"""
import threading
from keyvault_acme.config import certificate_spec_from_dict
spec = {spec_data({"zone": "plug.test", "server": "127.0.0.1:53", "tsig_key_name": "k",
                   "tsig_secret": "https://kv.vault.azure.net/secrets/t"})!r}
start, errors = threading.Barrier(16), []
def parse():
    start.wait()
    try:
        certificate_spec_from_dict(spec)
    except Exception as e:
        errors.append(e)
threads = [threading.Thread(target=parse) for _ in range(16)]
[t.start() for t in threads]
[t.join() for t in threads]
assert not errors, errors
"""
    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr[-600:]


def test_a_stack_file_takes_a_plugin_zone_and_grants_its_secret(plugin):
    from components.workload import operator_secrets
    from keyvault_acme_stack.workload import parse_workload_config

    sub = "11111111-1111-1111-1111-111111111111"
    values = {"workload": "shop", "environment": "dev", "location": "westeurope", "subscription_id": sub,
              "tenant_id": "22222222-2222-2222-2222-222222222222",
              "zones": [{**ZONE, "key_secret": "https://kv-shop-dev.vault.azure.net/secrets/nsupdate-key"}],
              "allowlist": {"suffixes": ["plug.test"]},
              "certificates": [{"name": "www", "dns_names": ["www.plug.test"]}]}
    config = parse_workload_config(values)
    [cert] = config.certificates
    assert isinstance(cert.spec.zones[0], NsupdateZone) and operator_secrets(cert) == ("nsupdate-key",)
    with pytest.raises(SpecError) as err:
        parse_workload_config({**values, "zones": [{**ZONE, "tsig_secret": "x"}]})
    assert err.value.field == "zones[0].tsig_secret" and "nsupdate zone" in err.value.problem

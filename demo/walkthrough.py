"""``make demo``: the local stack's certificates through their whole lifecycle, on this machine.

Starts the real Pebble (Let's Encrypt's test CA) and the Azure emulator on loopback, creates in the
emulator what the ``local`` stack expects to exist (its vault, DNS zone and issuer identity, with exactly
the roles the CertificateWorkload component grants), then drives the ``keyvault-acme`` CLI: check, issue,
status, a renewal that comes due within seconds because this Pebble issues certificates valid for
``--validity`` seconds (nothing fakes the clock), and revoke. Where the ``pulumi`` CLI is installed it also
runs ``pulumi up``, ``refresh`` and ``destroy`` on the local stack with a local file backend.

The demo lives outside the engine because it wires the emulator, the component's role plan and the engine together;
it changes no production code path: clients only see HTTPS_PROXY, NO_PROXY, a CA bundle and AZURE_*
variables, exactly as in CI. Everything it starts is stopped, and its files are removed, on any exit.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TextIO

import yaml

from keyvault_acme_cli import cli
from keyvault_acme_stack.workload import NAMESPACE, WorkloadConfig, load_stack_file

ROOT = Path(__file__).resolve().parents[1]
LOCAL_STACK = ROOT / "stacks" / "Pulumi.local.yaml"
DEFAULT_VALIDITY_S = 30
MIN_VALIDITY_S = 6
ENV_KEYS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE",
            "SSL_CERT_FILE", "CURL_CA_BUNDLE", "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")


class Demo:
    def __init__(self, out: TextIO, *, validity_s: int, stack_file: Path = LOCAL_STACK) -> None:
        self.out, self.validity_s, self.stack_file = out, validity_s, stack_file

    # -- printing ----------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.out.write(f"\n==> {text}\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self.out.write(f"    {text}\n")
        self.out.flush()

    def keyvault_acme(self, *argv: str, expect: Sequence[int] = (0,)) -> int:
        """Run the CLI in this process (one engine, so one token and one ACME account for the whole demo)."""
        shown = " ".join(a if " " not in a else repr(a) for a in argv)
        self.out.write(f"$ keyvault-acme {shown}\n")
        self.out.flush()
        with contextlib.redirect_stdout(self.out):
            code = cli.main(["--config", str(self.runtime_stack), *argv], engine=self.engine)
        if code not in expect:
            raise DemoFailed(f"'keyvault-acme {shown}' exited with {code}")
        return code

    # -- the world ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def world(self) -> Iterator[None]:
        from emulator.pebble import Pebble
        from emulator.server import Emulator

        self.workload = load_stack_file(self.stack_file)
        with contextlib.ExitStack() as stack:
            self.tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="keyvault-acme-demo-")))
            self.say("Starting the Azure emulator (Entra ID, Key Vault, Azure DNS) on loopback")
            self.emulator = stack.enter_context(Emulator())
            self.note(f"HTTPS proxy {self.emulator.proxy_url}; authoritative DNS {_hostport(self.emulator.dns_address)}")
            self.say(f"Starting Pebble (certificates valid for {self.validity_s} s), resolving through the emulator's DNS")
            self.pebble = stack.enter_context(Pebble(dns_server=self.emulator.dns_address, validity_s=self.validity_s))
            self.note(f"ACME directory {self.pebble.directory_url}")
            app = self.create_azure_resources(self.workload)
            self.runtime_stack = self.render_stack()
            stack.enter_context(_environment(self.client_environment(app)))
            from keyvault_acme.lifecycle import Engine
            self.engine = Engine(timeout_s=120)
            yield

    def create_azure_resources(self, cfg: WorkloadConfig) -> dict[str, Any]:
        """What the local stack references as existing: vault, zones, and the issuer with its least privileges."""
        from keyvault_acme_pulumi.components.workload import (
            BUILTIN_ROLE_NAMES,
            CUSTOM_ROLES,
            AccountKeyTarget,
            SecretScope,
            VaultScope,
            role_plan,
        )
        from keyvault_acme_stack.workload import ChallengeRecordSet, DnsZoneConfig

        admin = self.emulator.admin
        self.say("Creating the local stack's existing resources in the emulator")
        vault = admin.register_vault(cfg.vault.name, cfg.subscription_id, cfg.resource_group.name)
        vault_id = vault.get("id") or cfg.vault.existing_id
        self.note(f"Key Vault {cfg.vault.url}")
        for zone in cfg.zones:
            admin.add_zone(zone.name, zone.subscription_id, zone.resource_group)
            self.note(f"Azure DNS zone {zone.name}")
        app = admin.add_client(client_id=cfg.issuer.client_id, name=f"{cfg.stack_name}-issuer")
        self.note(f"issuer identity {app['client_id']} (a service principal with a client secret, emulator only)")
        for title, actions in CUSTOM_ROLES.values():
            admin.define_role(title, actions=actions)
        for grant in role_plan(cfg):
            if grant.principal != "issuer":
                continue
            match grant.target:
                case VaultScope():
                    scope = vault_id
                case SecretScope(name=name):
                    scope = f"{vault_id}/secrets/{name}"
                case AccountKeyTarget(name=name):
                    scope = f"{vault_id}/keys/{name}"
                case ChallengeRecordSet(resource_id=resource_id) | DnsZoneConfig(resource_id=resource_id):
                    scope = resource_id
            role = BUILTIN_ROLE_NAMES.get(grant.role) or CUSTOM_ROLES[grant.role][0]
            admin.assign_role(app["client_id"], role, scope)
            self.note(f"role {role!r} on {_short_scope(scope)}")
        return app

    def render_stack(self) -> Path:
        """The local stack file with this run's Pebble directory and the emulator's DNS server filled in."""
        document = yaml.safe_load(self.stack_file.read_text())
        config = document["config"]
        acme = dict(config.get(f"{NAMESPACE}:acme") or {})
        acme["directory_url"] = self.pebble.directory_url
        config[f"{NAMESPACE}:acme"] = acme
        resolver = _hostport(self.emulator.dns_address)
        # Azure DNS name servers (ns1-*.azure-dns.com) do not resolve here: check propagation on the emulator's
        # authoritative server instead, as a stack would name its own resolvers.
        config[f"{NAMESPACE}:certificates"] = [
            {**entry, "resolvers": [resolver], "propagation_timeout_s": 30}
            for entry in config[f"{NAMESPACE}:certificates"]]
        path = self.tmp / "Pulumi.local.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        self.note(f"stack file for this run: {path} (stacks/Pulumi.local.yaml with Pebble's port and DNS resolver)")
        return path

    def client_environment(self, app: Mapping[str, str]) -> dict[str, str]:
        bundle = self.tmp / "ca-bundle.pem"
        import certifi
        parts = [Path(certifi.where()).read_text(), Path(self.emulator.ca_bundle_path).read_text(),
                 Path(self.pebble.tls_ca_pem_path).read_text()]
        bundle.write_text("\n".join(p.strip() + "\n" for p in parts))
        return {"HTTPS_PROXY": self.emulator.proxy_url, "NO_PROXY": "127.0.0.1,localhost,::1",
                "REQUESTS_CA_BUNDLE": str(bundle), "SSL_CERT_FILE": str(bundle),
                "AZURE_TENANT_ID": app["tenant_id"], "AZURE_CLIENT_ID": app["client_id"],
                "AZURE_CLIENT_SECRET": app["secret"]}

    # -- the lifecycle -----------------------------------------------------------------------------------
    def lifecycle(self) -> None:
        names = [c.name for c in self.workload.certificates]
        self.say("Preflight: spec, credentials, vault, zones, CAA and the CA's directory; nothing is created")
        self.keyvault_acme("check")
        self.say("Issue: Key Vault makes each key pair and CSR; Pebble validates DNS-01; the chain is merged back")
        for name in names:
            self.keyvault_acme("issue", name)
        self.keyvault_acme("status")
        first = {n: self.engine.inspect(self.spec(n).vault_url, n) for n in names}

        self.say("Waiting until renewal is due (inside the CA's ARI window; a third of the lifetime left for a CA "
                 "without ARI), then: renew --due")
        self.keyvault_acme("renew", "--due")  # nothing is due yet: it says so and renews nothing
        due_at = max(cli.status_row(n, self.run_spec(n), first[n], _now(),
                                    self.engine.decide(self.run_spec(n), first[n])).renew_after for n in names)
        self.wait_until(due_at)
        self.keyvault_acme("renew", "--due")
        renewed = {n: self.engine.inspect(self.spec(n).vault_url, n) for n in names}
        for n in names:
            if renewed[n].version == first[n].version:
                raise DemoFailed(f"{n} was not renewed")
            self.note(f"{n}: version {first[n].version[:8]} -> {renewed[n].version[:8]}, "
                      f"serial {first[n].serial} -> {renewed[n].serial}")
        self.keyvault_acme("status")

        self.say("Revoke: at the CA with a reason, recorded in Key Vault, version disabled")
        for n in names:
            self.keyvault_acme("revoke", n, "--reason", "cessationOfOperation")
            self.note(f"Pebble says serial {renewed[n].serial} is {self.pebble.cert_status(renewed[n].serial)}")
        self.keyvault_acme("status", "--fail-within", "0", expect=(cli.EXIT_ATTENTION,))
        self.note("status --fail-within exits 3: revoked certificates need attention (a pipeline would fail here)")

    def spec(self, name: str):
        return next(c.spec for c in self.workload.certificates if c.name == name)

    def run_spec(self, name: str):
        """The spec as this run's stack file has it (this run's Pebble), which the CLI's decisions use."""
        spec = self.spec(name)
        return dataclasses.replace(spec, acme=dataclasses.replace(spec.acme, directory_url=self.pebble.directory_url))

    def wait_until(self, when: datetime) -> None:
        """Real time passes: the certificates were issued short-lived; poll until the due moment is past."""
        while True:
            left = (when - _now()).total_seconds()
            if left <= 0:
                return
            self.note(f"renewal due in {left:.1f} s")
            time.sleep(min(left + 0.05, 5.0))

    # -- pulumi ------------------------------------------------------------------------------------------
    def pulumi(self) -> None:
        pulumi = shutil.which("pulumi")
        if pulumi is None:
            self.say("Pulumi: skipped (the pulumi CLI is not installed; with it the demo also runs "
                     "'pulumi up', 'pulumi refresh' and 'pulumi destroy' on the local stack)")
            return
        self.say("Pulumi: up, refresh and destroy on the local stack with a local file backend")
        project = self.pulumi_project()
        env = {**os.environ, "PULUMI_BACKEND_URL": f"file://{self.tmp / 'pulumi-state'}",
               "PULUMI_CONFIG_PASSPHRASE": "demo", "PULUMI_SKIP_UPDATE_CHECK": "true",
               # pulumi-azure-native signs in as the same issuer app, through the same proxy and CA bundle.
               "ARM_CLIENT_ID": os.environ["AZURE_CLIENT_ID"], "ARM_CLIENT_SECRET": os.environ["AZURE_CLIENT_SECRET"],
               "ARM_TENANT_ID": os.environ["AZURE_TENANT_ID"], "ARM_SUBSCRIPTION_ID": self.workload.subscription_id}
        (self.tmp / "pulumi-state").mkdir()
        for argv in (["stack", "init", "local"], ["up", "--yes", "--skip-preview", "--stack", "local"],
                     ["refresh", "--yes", "--stack", "local"], ["destroy", "--yes", "--stack", "local"],
                     ["stack", "rm", "--yes", "local"]):
            self.out.write(f"$ pulumi {' '.join(argv)}\n")
            self.out.flush()
            result = subprocess.run([pulumi, *argv, "--non-interactive"], cwd=project, env=env, capture_output=True,
                                    text=True, timeout=900)
            self.out.write(result.stdout[-4000:])
            if result.returncode != 0:
                raise DemoFailed(f"pulumi {argv[0]} failed: {result.stderr.strip()[-2000:]}")

    def pulumi_project(self) -> Path:
        """A copy of the project whose only stack file is this run's, so the repository is never written to."""
        project = self.tmp / "project"
        (project / "stacks").mkdir(parents=True)
        settings = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
        settings.setdefault("runtime", {}).setdefault("options", {})["virtualenv"] = sys.prefix
        (project / "Pulumi.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
        shutil.copy(ROOT / "__main__.py", project / "__main__.py")
        shutil.copy(self.runtime_stack, project / "stacks" / "Pulumi.local.yaml")
        return project


class DemoFailed(Exception):
    pass


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _hostport(address: tuple[str, int] | None) -> str:
    assert address is not None, "the emulator serves no DNS"
    return f"{address[0]}:{address[1]}"


def _short_scope(scope: str) -> str:
    return scope.split("/providers/", 1)[-1] if "/providers/" in scope else scope


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Exactly ``values`` for the Azure/HTTP variables while the demo runs; the caller's environment after."""
    saved = {k: os.environ.get(k) for k in (*ENV_KEYS, *values)}
    for key in ENV_KEYS:
        os.environ.pop(key, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _validity(text: str) -> int:
    # Shorter and the renewed certificate could expire before the demo revokes it.
    if not text.isdigit() or int(text) < MIN_VALIDITY_S:
        raise argparse.ArgumentTypeError(f"use a whole number of seconds, at least {MIN_VALIDITY_S}")
    return int(text)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo",
                                     description="make demo: the local stack's certificates through their whole "
                                                 "lifecycle, on this machine (Pebble + the Azure emulator).")
    parser.add_argument("--validity", type=_validity, default=DEFAULT_VALIDITY_S, metavar="SECONDS",
                        help=f"lifetime of the certificates Pebble issues (default {DEFAULT_VALIDITY_S})")
    parser.add_argument("--no-pulumi", action="store_true", help="skip the pulumi up/refresh/destroy part")
    args = parser.parse_args(argv)
    out = out or sys.stdout
    demo = Demo(out, validity_s=args.validity)
    started = time.monotonic()
    try:
        with demo.world():
            demo.lifecycle()
            if not args.no_pulumi:
                demo.pulumi()
    except (DemoFailed, cli.UsageError) as e:
        out.write(f"\ndemo failed: {e}\n")
        return 1
    except FileNotFoundError as e:  # a missing binary: pebble, named
        out.write(f"\ndemo failed: {e}; run 'make demo', which installs the Debian packages it needs\n")
        return 1
    demo.say(f"Done in {time.monotonic() - started:.1f} s; Pebble and the emulator are stopped, nothing is left running")
    return 0


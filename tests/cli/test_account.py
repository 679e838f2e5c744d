"""`keyvault-acme account move-to-key`: the documented migration of an existing account (its key in a secret) to a
non-exportable Key Vault key, by ACME key rollover, run as an operator runs it: a process, a stack file."""
from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from keyvault_acme.account import key_from_secret
from keyvault_acme.acme_client import AcmeClient
from keyvault_acme.lifecycle import Engine
from keyvault_acme_stack.workload import load_stack_file
from tests.cli.conftest import ZONE, write_stack

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).parent / "keyvault-acme"


def run(stack: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), "--config", str(stack), *argv], capture_output=True, text=True, timeout=120)


def with_acme(stack: Path, **acme) -> Path:
    document = yaml.safe_load(stack.read_text())
    key = next(k for k in document["config"] if k.endswith(":acme"))
    document["config"][key] = {**document["config"][key], **acme}
    stack.write_text(yaml.safe_dump(document, sort_keys=False))
    return stack


def test_move_to_key_keeps_the_account_and_the_next_issuance_signs_with_the_key(tmp_path, cli_env, emulator,
                                                                                short_pebble):
    label = uuid.uuid4().hex[:8]
    host, port = emulator.dns_address
    stack = write_stack(tmp_path / "Pulumi.account-test.yaml", vault=f"kvacct{label}",
                        directory_url=short_pebble.directory_url, resolver=f"{host}:{port}",
                        certificates=[{"name": n, "dns_names": [f"{n}-{label}.{ZONE}"]} for n in ("one", "two")])
    assert run(stack, "issue", "one").returncode == 0
    spec = load_stack_file(stack).certificates[0].spec
    credential = ClientSecretCredential(cli_env["AZURE_TENANT_ID"], cli_env["AZURE_CLIENT_ID"],
                                        cli_env["AZURE_CLIENT_SECRET"])
    old_key = key_from_secret(SecretClient(spec.vault_url, credential).get_secret(spec.acme.account_key_secret).value)
    url = AcmeClient(spec.acme.directory_url, old_key).find_account()
    assert url

    # Without kind: key there is nothing to move to: exit 2 naming the setting, before anything changes.
    refused = run(stack, "account", "move-to-key")
    assert refused.returncode == 2 and "acme.account_key.kind" in refused.stderr, refused.stderr
    assert AcmeClient(spec.acme.directory_url, old_key).find_account() == url

    with_acme(stack, account_key={"kind": "key", "name": f"acct-{label}"})
    moved = run(stack, "account", "move-to-key")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.count(url) == 1 and f"/keys/acct-{label}" in moved.stdout  # one account, both certificates
    assert AcmeClient(spec.acme.directory_url, old_key).find_account() is None  # the CA let go of the old key
    again = run(stack, "account", "move-to-key")  # idempotent
    assert again.returncode == 0 and url in again.stdout, again.stderr

    # The next issuance is by the same account, signed by Key Vault.
    assert run(stack, "issue", "two").returncode == 0
    moved_spec = load_stack_file(stack).certificates[1].spec
    engine = Engine(credential)
    assert engine.wiring.account(moved_spec, engine.wiring.vault(moved_spec.vault_url), 1e12).account_url() == url

"""`status` shows the CA's ARI decision: a window forced into the past on Pebble 2.10's management port makes the
certificate due at once, with reason CARequestedRenewal, and `renew --due` renews it."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from keyvault_acme.lifecycle import Engine
from keyvault_acme_cli import cli
from keyvault_acme_stack.workload import load_stack_file
from tests.cli.conftest import ZONE, write_stack

pytestmark = pytest.mark.integration


def run(capsys, stack, *argv) -> tuple[int, str]:
    code = cli.main(["--config", str(stack), *argv])
    return code, capsys.readouterr().out


def test_status_and_renew_due_follow_a_renewal_the_ca_asked_for(capsys, tmp_path, cli_env, emulator, short_pebble):
    from azure.identity import ClientSecretCredential

    label = uuid.uuid4().hex[:8]
    host, port = emulator.dns_address
    stack = write_stack(tmp_path / "Pulumi.ari-test.yaml", vault=f"kvari{label}", resolver=f"{host}:{port}",
                        directory_url=short_pebble.directory_url,
                        certificates=[{"name": "ari", "dns_names": [f"ari-{label}.{ZONE}"]}])
    assert run(capsys, stack, "issue", "ari")[0] == 0
    [row] = json.loads(run(capsys, stack, "status", "--json")[1])
    assert (row["state"], row["renewal_reason"], row["decided_by"]) == ("valid", "UpToDate", "ari")

    # status cached the CA's answer for that version (for its Retry-After): renew, so the CA's early-renewal request
    # below concerns a version whose answer nobody has read yet (else it is seen once the Retry-After is over).
    spec = load_stack_file(stack).certificates[0].spec
    engine = Engine(ClientSecretCredential(cli_env["AZURE_TENANT_ID"], cli_env["AZURE_CLIENT_ID"],
                                           cli_env["AZURE_CLIENT_SECRET"]))
    first = engine.inspect(spec.vault_url, spec.name)
    renewed = engine.renew(spec)  # (the CLI's renew would read and cache the new version's answer at once)
    assert renewed.serial != first.serial
    now = datetime.now(timezone.utc)
    short_pebble.set_renewal_info(renewed.pem_chain, (now - timedelta(hours=2), now - timedelta(hours=1)))

    [row] = json.loads(run(capsys, stack, "status", "--json")[1])
    assert (row["state"], row["renewal_reason"], row["decided_by"]) == ("due", "CARequestedRenewal", "ari")
    assert "the CA asked for renewal now" in row["reason"]
    code, out = run(capsys, stack, "renew", "--due")
    assert code == 0 and out.startswith("renewed ari:")
    assert engine.inspect(spec.vault_url, spec.name).serial != renewed.serial

"""examples/app-gateway: a separate Pulumi project using the component, its App Gateway identity an Output."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pulumi.runtime import rpc

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "app-gateway"
SUB = "11111111-1111-1111-1111-111111111111"
WEBHOOK = "https://hooks.example.com/services/T0/B0/s3cret"

# Run in its own process, from the example's directory, as Pulumi would: its own `components` folder comes first
# on sys.path; this repository is only appended, for the ARM-shaped mocks of tests/component/harness.py.
DRIVER = textwrap.dedent(f'''
    import json, runpy, sys
    sys.path.append({str(ROOT)!r})
    import pulumi
    from pulumi.runtime import rpc
    from tests.component import harness

    config = {{"shop-edge:subscription_id": {SUB!r}, "shop-edge:tenant_id": "22222222-2222-2222-2222-222222222222",
              "shop-edge:teams_webhook": {WEBHOOK!r}}}
    mocks = harness.AzureMocks({SUB!r})
    monitor = harness.RecordingMonitor(mocks)
    pulumi.runtime.set_all_config(config, ["shop-edge:teams_webhook"])
    pulumi.runtime.set_mocks(mocks, project="shop-edge", stack="prod", preview=False, monitor=monitor)
    exports = {{}}
    pulumi.export = lambda name, value: exports.__setitem__(name, value)

    @pulumi.runtime.test
    def program():
        runpy.run_path("__main__.py", run_name="__main__")
        return pulumi.Output.all(**exports).apply(lambda v: exports.update(v))

    program()
    import components
    print(json.dumps({{
        "components": components.__file__,
        "exports": exports,
        "registered": [dict(type=r.type, name=r.name, inputs=r.inputs, state=r.state, urn=r.urn,
                            dependencies=r.dependencies) for r in monitor.registered],
    }}, default=str))
''')


@pytest.fixture(scope="module")
def example() -> dict:
    done = subprocess.run([sys.executable, "-c", DRIVER], cwd=EXAMPLE, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_app_gateway_example_grants_its_identity_read_on_the_certificates_secret_only(example):
    result = example
    assert result["components"] == str(EXAMPLE / "components" / "__init__.py")  # the project's own folder
    registered = result["registered"]
    [appgw] = [r for r in registered if r["type"] == "azure-native:managedidentity:UserAssignedIdentity"
               and r["name"] == "appgw"]
    consumer = [r for r in registered if r["type"] == "azure-native:authorization:RoleAssignment"
                and "-consumer-appgw-" in r["name"]]
    assert [r["inputs"]["scope"].rsplit("/secrets/", 1)[1] for r in consumer] == ["www"]
    assert consumer[0]["inputs"]["principalId"] == appgw["state"]["principalId"]
    assert appgw["urn"] in consumer[0]["dependencies"]
    assert result["exports"]["www_secret_id"] == "https://kv-shop-prod.vault.azure.net/secrets/www"


def test_the_examples_webhook_secret_stays_secret(example):
    result = example
    [group] = [r for r in result["registered"] if r["type"] == "azure-native:monitor:ActionGroup"]
    hooks = group["inputs"]["webhookReceivers"]
    assert hooks[rpc._special_sig_key] == rpc._special_secret_sig  # how Pulumi marks a secret on the wire
    assert hooks["value"][0]["serviceUri"] == WEBHOOK

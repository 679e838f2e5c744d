"""README's "In your own Pulumi program" snippet, run as a program under Pulumi mocks."""
from __future__ import annotations

import re
from pathlib import Path

from tests.component import harness

ROOT = Path(__file__).resolve().parents[2]


def snippet() -> str:
    section = (ROOT / "README.md").read_text().split("### In your own Pulumi program", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_quick_start_is_about_ten_lines_and_builds_the_workload_with_the_app_gateway_as_consumer():
    code = snippet()
    assert len(code.strip().splitlines()) <= 14
    exports: dict[str, object] = {}

    def program():
        import pulumi

        real = pulumi.export
        pulumi.export = lambda name, value: exports.__setitem__(name, value)
        try:
            exec(compile(code, "README.md", "exec"), {"__name__": "__main__"})
        finally:
            pulumi.export = real
        return exports

    run = harness.run(program, stack="prod", config={}, subscription_id="11111111-1111-1111-1111-111111111111")
    [appgw] = run.of_type("azure-native:managedidentity:UserAssignedIdentity")[:1]
    assert appgw.name == "appgw"
    [grant] = [a for a in run.of_type("azure-native:authorization:RoleAssignment") if "-consumer-appgw-" in a.name]
    assert grant.inputs["principalId"] == appgw.state["principalId"] and grant.inputs["scope"].endswith("/secrets/www")
    assert run.result["www_secret_id"] == "https://kv-shop-prod.vault.azure.net/secrets/www"

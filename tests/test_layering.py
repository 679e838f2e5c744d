"""The layering rule: program -> components -> providers -> engine, never the reverse."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import
PULUMI = {"pulumi", "pulumi_azure_native", "pulumi_policy"}
FORBIDDEN = {
    # The engine issues, renews, revokes and inspects one certificate from a CertificateSpec: no stack files
    # (yaml), no command line (argparse), nothing of the layers above it.
    "keyvault_acme": PULUMI | {"yaml", "argparse", "keyvault_acme_cli", "keyvault_acme_stack", "providers",
                               "components", "emulator", "tests"},
    # The stack-file model serves the program, the component and the CLI; it knows none of them.
    "keyvault_acme_stack": PULUMI | {"argparse", "keyvault_acme_cli", "providers", "components", "emulator", "tests"},
    "keyvault_acme_cli": PULUMI | {"providers", "components", "emulator", "tests"},
    "providers": {"keyvault_acme_cli", "components", "emulator", "tests"},
    "components": {"keyvault_acme_cli", "emulator", "tests"},
    "emulator": {"keyvault_acme", "keyvault_acme_cli", "keyvault_acme_stack", "providers", "components", "pulumi", "tests"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_layer_imports_upwards(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    offences = {str(f.relative_to(ROOT)): sorted(imported_roots(f) & FORBIDDEN[package]) for f in files}
    assert not {f: bad for f, bad in offences.items() if bad}


def test_the_rule_sees_a_lazy_import(tmp_path):
    # The engine imported yaml lazily inside a function before the stack model moved out; the rule must see it.
    module = tmp_path / "m.py"
    module.write_text("def load():\n    import yaml\n    from argparse import ArgumentParser\n")
    assert imported_roots(module) == {"yaml", "argparse"}

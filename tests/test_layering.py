"""The layering rule: program -> components -> providers -> engine, never the reverse."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import
FORBIDDEN = {
    "keyvault_acme": {"pulumi", "pulumi_azure_native", "pulumi_policy", "providers", "components", "emulator", "tests"},
    "keyvault_acme_cli": {"pulumi", "pulumi_azure_native", "pulumi_policy", "providers", "components", "emulator",
                          "tests"},
    "providers": {"components", "emulator", "tests"},
    "components": {"emulator", "tests"},
    "emulator": {"keyvault_acme", "providers", "components", "pulumi", "tests"},
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

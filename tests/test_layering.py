"""The layering rule: program -> components -> providers -> engine, never the reverse."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# folder -> modules (and their sub-modules) it must never import. components/ and providers/ are installed as
# keyvault_acme_pulumi.components and keyvault_acme_pulumi.providers, so both spellings count.
PULUMI = {"pulumi", "pulumi_azure_native", "pulumi_policy", "keyvault_acme_pulumi"}
_COMPONENTS = {"components", "keyvault_acme_pulumi.components"}
_PROVIDERS = {"providers", "keyvault_acme_pulumi.providers"}
FORBIDDEN = {
    # The engine issues, renews, revokes and inspects one certificate from a CertificateSpec: no stack files
    # (yaml), no command line (argparse), nothing of the layers above it.
    "keyvault_acme": PULUMI | {"yaml", "argparse", "keyvault_acme_cli", "keyvault_acme_stack", "emulator", "tests",
                               *_PROVIDERS, *_COMPONENTS},
    # The stack-file model serves the program, the component and the CLI; it knows none of them.
    "keyvault_acme_stack": PULUMI | {"argparse", "keyvault_acme_cli", "emulator", "tests", *_PROVIDERS, *_COMPONENTS},
    "keyvault_acme_cli": PULUMI | {"emulator", "tests", *_PROVIDERS, *_COMPONENTS},
    "providers": {"keyvault_acme_cli", "emulator", "tests", *_COMPONENTS},
    "components": {"keyvault_acme_cli", "emulator", "tests"},
    "pulumi_package": {"keyvault_acme_cli", "emulator", "tests"},  # installed as keyvault_acme_pulumi
    "emulator": {"keyvault_acme", "keyvault_acme_cli", "keyvault_acme_stack", "keyvault_acme_pulumi", "providers",
                 "components", "pulumi", "tests"},
}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def _offending(modules: set[str], forbidden: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_layer_imports_upwards(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    offences = {str(f.relative_to(ROOT)): _offending(imported_modules(f), FORBIDDEN[package]) for f in files}
    assert not {f: bad for f, bad in offences.items() if bad}


@pytest.mark.parametrize("package", ["components", "providers"])
def test_installed_folders_import_each_other_through_the_namespace(package):
    # A bare `import providers` works in this repository only; installed, the folder is keyvault_acme_pulumi.providers.
    offences = {str(f.relative_to(ROOT)): _offending(imported_modules(f), {"components", "providers"})
                for f in sorted((ROOT / package).rglob("*.py"))}
    assert not {f: bad for f, bad in offences.items() if bad}


def test_the_rule_sees_a_lazy_import(tmp_path):
    # The engine imported yaml lazily inside a function before the stack model moved out; the rule must see it.
    module = tmp_path / "m.py"
    module.write_text("def load():\n    import yaml\n    from argparse import ArgumentParser\n")
    assert imported_modules(module) == {"yaml", "argparse"}

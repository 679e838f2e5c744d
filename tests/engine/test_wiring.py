"""Engine and Checks share one Wiring (credential, vault clients, accounts, directory readers, DNS providers);
the checks reach nothing private of the engine, and the offline spec checks are preflight's, in one place."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from keyvault_acme import checks as checks_module
from keyvault_acme import lifecycle
from keyvault_acme.checks import Checks
from keyvault_acme.errors import SpecError
from keyvault_acme.lifecycle import Engine
from keyvault_acme.model import CertificateSpec, Rfc2136Zone, SecretRef
from keyvault_acme.preflight import check_spec

CHECKS = Path(lifecycle.__file__).with_name("checks.py")
SPEC = CertificateSpec(vault_url="https://kv.vault.azure.net", name="www", dns_names=("www.example.com",),
                       zones=(Rfc2136Zone("example.com", "127.0.0.1:5353", "k",
                                          SecretRef("https://kv.vault.azure.net/secrets/tsig")),))


def test_checks_touch_nothing_private_but_their_own_and_do_not_import_the_engine():
    tree = ast.parse(CHECKS.read_text())
    foreign = sorted({f"{ast.unparse(node.value)}.{node.attr}" for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                      and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))})
    assert foreign == []
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "lifecycle" not in imported and "keyvault_acme.lifecycle" not in imported  # no cycle, not even for types


def test_engine_hands_its_own_wiring_to_the_checks(monkeypatch):
    seen = []

    class Spy(Checks):
        def __init__(self, wiring, spec, deadline):
            seen.append(wiring)
            super().__init__(wiring, spec, deadline)

    # The engine imports the checks when it first runs them (they bring the issuance stack): patch them there.
    monkeypatch.setattr(checks_module, "Checks", Spy)
    engine = Engine(credential=object())
    # A spec the offline step refuses: nothing is reached over the network.
    [result] = engine.check(dataclasses.replace(SPEC, name="www-chain"))
    assert (result.step, result.ok) == ("spec", False)
    assert seen == [engine.wiring]
    assert engine.wiring.vault(SPEC.vault_url) is engine.wiring.vault(SPEC.vault_url + "/")  # one client per vault


@pytest.mark.parametrize("change, field", [
    ({"name": "www-chain"}, "name"),
    ({"vault_url": "http://kv.vault.azure.net"}, "vault_url"),
    ({"tags": {f"t{i}": "v" for i in range(14)}}, "tags"),
])
def test_preflight_check_spec_holds_every_offline_check(change, field):
    # These were Engine._checked_names; preflight.check_spec alone checked only names and zones.
    with pytest.raises(SpecError) as err:
        check_spec(dataclasses.replace(SPEC, **change))
    assert err.value.field == field


def test_the_engine_stays_a_facade_over_modules_with_one_job_each():
    """Issue 15: Engine had grown to 435 lines and 32 methods, then back to 662 and 36 as features landed in it.
    ARI (ari.py), claims (claims.py) and revocation (revocation.py) live beside it; new features go beside too."""
    import ast
    from pathlib import Path

    import keyvault_acme.lifecycle as lifecycle

    tree = ast.parse(Path(lifecycle.__file__).read_text())
    [engine] = [c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == "Engine"]
    methods = [f for f in engine.body if isinstance(f, ast.FunctionDef)]
    assert engine.end_lineno is not None
    assert engine.end_lineno - engine.lineno + 1 <= 450
    assert len(methods) <= 30, [f.name for f in methods]

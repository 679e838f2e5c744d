"""The configuration docs cannot drift from the parser: every key it accepts is documented, every documented
key is accepted, and every example parses."""
from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from keyvault_acme import config as spec_config
from keyvault_acme.errors import SpecError
from keyvault_acme.model import KeySpec, RenewalPolicy
from keyvault_acme_stack.authorization import Allowlist
from keyvault_acme_stack.workload import (
    CERTIFICATE_RESOURCE_KEYS,
    KEYS,
    NAMESPACE,
    SETTINGS,
    parse_workload_config,
)

from .harness import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIGURATION = ROOT / "docs" / "configuration.md"
DOCS = CONFIGURATION.read_text(encoding="utf-8")
# The workload fills these in for every certificate; an entry that sets them is refused.
WORKLOAD_SET = {"vault_url", "zones"}

MINIMAL_STACK = {
    "workload": "shop", "environment": "dev", "location": "westeurope",
    "subscription_id": "11111111-1111-1111-1111-111111111111", "tenant_id": "22222222-2222-2222-2222-222222222222",
    "zones": [{"name": "shop.example.com"}], "allowlist": {"suffixes": ["shop.example.com"]},
    "certificates": [{"name": "www", "dns_names": ["www.shop.example.com"]}],
}


def accepted_keys() -> set[str]:
    """Every key path the parser accepts, read from the parser's own key sets (and the engine's spec types)."""
    keys = set(KEYS)
    keys |= {f"{section}.{key}" for section, allowed in SETTINGS.items() for key in allowed}
    keys |= {f"allowlist.{f.name}" for f in dataclasses.fields(Allowlist)}
    certificate = (set(spec_config._SPEC_KEYS) - WORKLOAD_SET) | set(CERTIFICATE_RESOURCE_KEYS)
    keys |= {f"certificates[].{key}" for key in certificate}
    keys |= {f"certificates[].key.{f.name}" for f in dataclasses.fields(KeySpec)}
    keys |= {f"certificates[].renewal.{f.name}" for f in dataclasses.fields(RenewalPolicy)}
    keys |= {f"certificates[].acme.{key}" for key in SETTINGS["acme"]}
    return keys


def reference_rows() -> set[str]:
    section = DOCS.split("## Every key", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.MULTILINE))


def yaml_examples() -> list[dict]:
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", DOCS, re.DOTALL)]


def paths(value, prefix: str = "") -> set[str]:
    """The key paths a parsed YAML example uses, in the reference's notation (``zones[].name``)."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out |= {path} | paths(item, path)
    elif isinstance(value, list):
        for item in value:
            out |= paths(item, f"{prefix}[]")
    return out


def example_values(example: dict) -> dict:
    prefix = NAMESPACE + ":"
    assert all(k.startswith(prefix) for k in example), f"example keys are stack config keys: {sorted(example)}"
    return {k[len(prefix):]: v for k, v in example.items()}


def test_the_key_set_is_read_from_the_parser():
    keys = accepted_keys()
    # Sanity: the derivation reaches every level the parser checks.
    assert {"vault.private_dns_zone_id", "zones[].tsig_algorithm", "alerts.emails[].address", "allowlist.suffixes",
            "certificates[].propagation_timeout_s", "certificates[].key.exportable", "certificates[].revoke_reason",
            "certificates[].acme.eab_hmac", "certificates[].renewal.days_before_expiry"} <= keys
    assert not {"certificates[].vault_url", "certificates[].zones"} & keys


def test_every_accepted_key_is_in_the_reference_and_every_reference_key_is_accepted():
    documented, accepted = reference_rows(), accepted_keys()
    assert accepted - documented == set(), "accepted by the parser but missing from docs/configuration.md"
    assert documented - accepted == set(), "documented in docs/configuration.md but refused by the parser"


def test_every_key_has_an_example():
    used = set().union(*(paths(example_values(e)) for e in yaml_examples()))
    # A certificate's own acme settings are the workload's acme settings: one example serves both.
    needed = {k.replace("certificates[].acme.", "acme.") for k in accepted_keys()}
    assert needed - used == set()


@pytest.mark.parametrize("example", yaml_examples(), ids=lambda e: ",".join(example_values(e)))
def test_each_example_parses_over_a_minimal_stack(example):
    parse_workload_config({**MINIMAL_STACK, **example_values(example)})


def test_a_stale_key_in_an_example_would_be_refused():
    # What the two tests above rely on: the parser refuses keys it does not know, at every level.
    for values in ({**MINIMAL_STACK, "vault": {"sku_name": "standard"}},
                   {**MINIMAL_STACK, "certificates": [{"name": "www", "dns_names": ["www.shop.example.com"], "ttl": 1}]}):
        with pytest.raises(SpecError, match="unknown setting"):
            parse_workload_config(values)


def test_readme_summarises_every_top_level_key_and_links_the_reference():
    configuration = README.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `([^`]+)` \|", configuration, re.MULTILINE))
    assert rows == set(KEYS)
    assert "(docs/configuration.md)" in configuration


@pytest.mark.parametrize("section", ["Quick start", "Architecture", "Configuration", "Operations", "Monitoring",
                                     "Security model", "Limits"])
def test_readme_has_the_sections_a_newcomer_and_an_operator_need(section):
    assert re.search(rf"^##+ {section}\b", README, re.MULTILINE), section


def test_readme_opens_with_make_demo_and_make_test():
    quick_start = README.split("## Quick start", 1)[1]
    first_block = re.search(r"```sh\n(.*?)```", quick_start, re.DOTALL).group(1)
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "demo"], ["make", "test"]]


def test_readme_links_resolve():
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", README):
        assert (ROOT / target).exists(), target
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", DOCS):
        assert (CONFIGURATION.parent / target).resolve().exists(), target


# ------------------------------------------------------------------------------------- README vs the code

SECURITY = README.split("\n## Security model", 1)[1].split("\n## ", 1)[0]


def security_claims() -> list[str]:
    """The bullets of the Security model, whitespace-normalised (the permissions table is not a claim list)."""
    body = SECURITY.split("**Permissions**", 1)[0]
    return [" ".join(claim.split()) for claim in re.split(r"\n- ", body)[1:]]


def test_every_security_claim_names_tests_that_exist():
    claims = security_claims()
    assert len(claims) >= 10, "the Security model lost its claims"
    for claim in claims:
        files = re.findall(r"`(tests/[\w/]+\.py)`", claim)
        assert files, f"a Security model claim names no test file: {claim[:80]}"
        sources = []
        for name in files:
            path = ROOT / name
            assert path.is_file(), name
            sources.append(path.read_text(encoding="utf-8"))
            assert re.search(r"^def test_\w+\(", sources[-1], re.MULTILINE), f"{name} holds no test"
        for test in re.findall(r"`(test_\w+)`", claim):
            assert any(re.search(rf"^def {test}\(", s, re.MULTILINE) for s in sources), \
                f"{test} is not a test in {', '.join(files)}"


def test_the_runbook_names_every_step_check_runs():
    from keyvault_acme.checks import STEPS

    operations = README.split("\n## Operations", 1)[1].split("\n## ", 1)[0]
    assert [step for step in STEPS if f"`{step}`" not in operations] == []


def test_the_documented_name_rules_and_timeout_are_the_engines():
    from keyvault_acme.keyvault import CHAIN_SUFFIX, MANAGED_BY, MANAGED_BY_TAG
    from keyvault_acme.lifecycle import DEFAULT_TIMEOUT_S

    for text in (README, DOCS):
        assert f"`<name>{CHAIN_SUFFIX}`" in text and f"`{MANAGED_BY_TAG}={MANAGED_BY}`" in text
    assert f"{DEFAULT_TIMEOUT_S:.0f} s" in README.split("(`CertificateBusy`)", 1)[1]


def test_make_demo_runs_the_top_level_demo_package():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    demo_recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "-m demo" in demo_recipe and (ROOT / "demo" / "__main__.py").is_file()
    assert "`python -m demo`" in README


def test_the_rate_limit_exemption_is_claimed_only_with_the_replaces_that_earns_it():
    # Let's Encrypt exempts an order from its rate limits only when it sends ARI's `replaces` inside the window
    # (issue 10 made renewals send it): the docs may say so only in the same breath as `replaces`.
    for text in (README, DOCS):
        for paragraph in re.split(r"\n\s*\n", text):
            if re.search(r"exempt", paragraph, re.IGNORECASE):
                assert "replaces" in paragraph, paragraph

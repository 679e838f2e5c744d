"""Hostile or mistaken stack files and arguments: one line on stderr, exit code 2, the key and the fix, nothing
run. A YAML alias bomb is refused while parsing, in bounded time and memory."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from keyvault_acme.config import certificate_spec_from_dict
from keyvault_acme.errors import SpecError
from keyvault_acme_cli import cli

ROOT = Path(__file__).resolve().parents[2]
DEV_STACK = ROOT / "stacks" / "Pulumi.shop-dev.yaml"


def run_main(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    _, err = capsys.readouterr()
    return code, err


def stack_with(tmp_path: Path, old: str, new: str) -> Path:
    text = DEV_STACK.read_text()
    assert old in text, old
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


# -- 10: a YAML alias bomb ------------------------------------------------------------------------------------
BOMB = """config:
  keyvault-acme:workload: shop
  keyvault-acme:environment: dev
  keyvault-acme:subscription_id: 11111111-1111-1111-1111-111111111111
  keyvault-acme:zones: [{name: shop.example.com}]
  keyvault-acme:allowlist: {suffixes: [shop.example.com]}
  keyvault-acme:certificates:
    - name: www
      dns_names: &l9 [*l8, *l8, *l8, *l8, *l8, *l8, *l8, *l8, *l8]
"""
LEVELS = "".join(f"x{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 9))
BOMB_FILE = "x0: &l0 [www.shop.example.com, www.shop.example.com, www.shop.example.com]\n" + LEVELS + BOMB


def _limit_memory() -> None:
    limit = 1 << 30  # 1 GiB of address space: the bomb needed 4 GB and more
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_an_alias_bomb_is_refused_fast_and_in_bounded_memory(tmp_path):
    path = tmp_path / "Pulumi.bomb.yaml"
    path.write_text(BOMB_FILE)
    result = subprocess.run([sys.executable, "-m", "keyvault_acme_cli", "--config", str(path), "status"],
                            capture_output=True, text=True, timeout=120, preexec_fn=_limit_memory, cwd=ROOT,
                            env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = result.stderr.splitlines()
    assert "aliases" in line and "50000 values" in line and len(line) < 600, line


def test_a_large_value_is_never_repeated_whole_in_an_error():
    with pytest.raises(SpecError) as caught:
        certificate_spec_from_dict({"vault_url": "https://kv.vault.azure.net", "name": "www",
                                    "dns_names": [["a" * 100_000] * 1000], "propagation_timeout_s": [1] * 100_000})
    assert len(str(caught.value)) < 1000


# -- 11: a stack file that is no mapping -------------------------------------------------------------------------
@pytest.mark.parametrize("content, words", [
    ("config: hello\n", ["config", "must be a mapping", "string"]),
    ("- a\n- b\n", ["not a Pulumi stack file", "list"]),
    ("just text\n", ["not a Pulumi stack file", "string"]),
])
def test_a_stack_file_that_is_not_a_mapping_is_one_line_and_exit_2(tmp_path, capsys, content, words):
    path = tmp_path / "Pulumi.odd.yaml"
    path.write_text(content)
    code, err = run_main(capsys, "--config", str(path), "status")
    assert code == 2
    [line] = err.splitlines()
    assert all(w in line for w in words), line


# -- 12: values that are not what they look like -----------------------------------------------------------------
ANCHOR = "    - name: www-dev\n"  # a certificate entry of the dev stack; keys added right after its name
@pytest.mark.parametrize("old, new, words", [
    (ANCHOR, ANCHOR + "      propagation_timeout_s: true\n",
     ["propagation_timeout_s", "boolean", "write propagation_timeout_s as a number"]),
    (ANCHOR, ANCHOR + "      propagation_timeout_s: 1e300\n",
     ["propagation_timeout_s", "out of range", "at most 3600"]),
    (ANCHOR, ANCHOR + "      renewal: {days_before_expiry: 1e300}\n",
     ["renewal.days_before_expiry", "out of range"]),
    (ANCHOR, ANCHOR + "      dns_names: [evil.example.com]\n",
     ["dns_names", "given twice", "lines", "remove one"]),
])
def test_misleading_values_are_refused_naming_the_key_and_the_fix(tmp_path, capsys, old, new, words):
    code, err = run_main(capsys, "--config", str(stack_with(tmp_path, old, new)), "status")
    assert code == 2, err
    [line] = err.splitlines()
    assert all(w in line for w in words), line


def test_a_zone_with_both_resource_id_and_zone_is_refused():
    zone = {"resource_id": "/subscriptions/00000000-0000-0000-0000-00000000a001/resourceGroups/rg/providers/"
                           "Microsoft.Network/dnszones/example.com", "zone": "other.example",
            "server": "10.0.0.53", "tsig_key_name": "k", "tsig_secret": "https://kv.vault.azure.net/secrets/t"}
    with pytest.raises(SpecError, match=r"zones\[0\].server: does not go with resource_id.*not both"):
        certificate_spec_from_dict({"vault_url": "https://kv.vault.azure.net", "name": "www",
                                    "dns_names": ["www.example.com"], "zones": [zone]})


def test_a_stack_zone_with_both_resource_id_and_zone_is_exit_2(tmp_path, capsys):
    values = "zone: corp.example, server: 10.0.0.53, tsig_key_name: k, " \
             "tsig_secret: https://kv-shop-dev.vault.azure.net/secrets/tsig"
    text = DEV_STACK.read_text()
    path = tmp_path / "Pulumi.both.yaml"
    path.write_text(text.replace("  keyvault-acme:zones:\n", "  keyvault-acme:zones:\n    - {resource_id: "
                                 "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg/providers/"
                                 f"Microsoft.Network/dnszones/corp.example, {values}}}\n", 1))
    assert path.read_text() != text
    code, err = run_main(capsys, "--config", str(path), "status")
    assert code == 2 and "does not go with resource_id" in err, err


@pytest.mark.parametrize("days", ["nan", "inf", "-inf", "NaN"])
def test_fail_within_must_be_a_finite_number(capsys, days):
    with pytest.raises(SystemExit) as caught:
        cli.main(["--config", str(DEV_STACK), "status", f"--fail-within={days}"])
    assert caught.value.code == 2
    assert "not a finite number of days" in capsys.readouterr().err


# -- 13: --config naming something that is not a file ------------------------------------------------------------
def test_a_directory_as_config_says_so(tmp_path, capsys):
    code, err = run_main(capsys, "--config", str(tmp_path), "status")
    assert code == 2
    assert err.splitlines() == [f"keyvault-acme: error: stack file {tmp_path} is a directory; give the path of a "
                                "stack file (stacks/Pulumi.<stack>.yaml)"]


def test_a_fifo_as_config_says_so_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "stack.fifo"
    os.mkfifo(fifo)
    code, err = run_main(capsys, "--config", str(fifo), "status")
    assert code == 2 and "is a named pipe (FIFO)" in err, err

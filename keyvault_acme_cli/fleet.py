"""The fleet: every stack file of a stacks directory, read at once, as rows for ``fleet status`` and ``report``.

Each certificate's row is made exactly as ``status`` makes it (:func:`keyvault_acme_cli.cli.read_row`: the
engine reads Key Vault, the engine's renewal decision gives the state); this module only finds the stack
files, reads them in parallel with one engine, and keeps going when one stack or one vault fails, so one
broken stack never hides the other 119.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .report import FleetRow

if TYPE_CHECKING:
    from keyvault_acme.lifecycle import Engine
    from keyvault_acme.model import CertificateSpec

    from .cli import Row

CONCURRENCY = 8  # certificates read at once across the fleet: reads are light, and a fleet has hundreds


@dataclass(frozen=True)
class StackFile:
    """One stack file: its certificates, or why it could not be read."""

    name: str  # the Pulumi stack name: Pulumi.<name>.yaml
    path: Path
    workload: str = ""
    environment: str = ""
    certificates: dict[str, "CertificateSpec"] = field(default_factory=dict)
    error: str = ""  # set: a bad stack file (one line, with the key and the fix)


def stack_files(directory: Path) -> list[Path]:
    from .cli import UsageError
    if not directory.is_dir():
        raise UsageError(f"stacks directory {directory} not found (pass --stacks-dir DIR)")
    paths = sorted(directory.glob("Pulumi.*.yaml"))
    if not paths:
        raise UsageError(f"no stack files (Pulumi.<stack>.yaml) in {directory}")
    return paths


def read_stack(path: Path) -> StackFile:
    from .cli import load_stack
    name = path.name[len("Pulumi."):-len(".yaml")]
    try:
        stack = load_stack(path)  # the same reading, checks and messages as every other command
    except Exception as e:  # noqa: BLE001 - a bad stack file is a row of the fleet, not the end of it
        from .cli import _one_line
        return StackFile(name, path, error=_one_line(e))
    # The label is <workload>-<environment>, and a workload name has no hyphen.
    workload, environment = stack.label.split("-", 1)
    return StackFile(name, path, workload, environment, dict(stack.certificates))


def fleet_rows(stacks: Sequence[StackFile], engine: "Engine", now: Callable[[], datetime],
               read_row: Callable[["Engine", str, "CertificateSpec", datetime], "Row"]) -> list[FleetRow]:
    """Every certificate of every stack, read in parallel; a read failure is that certificate's row."""
    from .cli import _explain

    def one(item: tuple[StackFile, str, "CertificateSpec"]) -> FleetRow:
        stack, name, spec = item
        try:
            row = read_row(engine, name, spec, now())
        except Exception as e:  # noqa: BLE001 - one unreachable vault must not hide the rest of the fleet
            return FleetRow(stack.name, stack.workload, stack.environment, name, "error", _explain(e), "")
        return from_status(stack, row)

    work = [(s, n, spec) for s in stacks if not s.error for n, spec in s.certificates.items()]
    with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="fleet") as pool:
        rows = list(pool.map(one, work))
    broken = [FleetRow(s.name, s.workload, s.environment, "-", "error", s.error, "") for s in stacks if s.error]
    return broken + rows


def from_status(stack: StackFile, row: "Row") -> FleetRow:
    from .cli import _short_issuer
    f = row.facts
    return FleetRow(stack.name, stack.workload, stack.environment, row.name, row.state, row.reason,
                    row.decided_by, f.not_before if f else None, f.not_after if f else None,
                    row.renew_after, _short_issuer(f.issuer) if f else "", f.version if f else "",
                    row.spec.vault_url)


def fleet_exit(rows: Sequence[FleetRow], fail_within: float | None, now: datetime) -> tuple[int, str]:
    """status's exit codes over the fleet: 2 a stack file is bad, 1 a certificate could not be read, 3 with
    ``--fail-within`` a certificate needs attention, else 0; and the line that says which."""
    from .cli import ATTENTION, EXIT_ATTENTION, EXIT_FAILED, EXIT_OK, EXIT_USAGE
    bad_stacks = [r for r in rows if r.state == "error" and r.name == "-"]
    if bad_stacks:
        return EXIT_USAGE, (f"error: {len(bad_stacks)} stack file(s) cannot be used: "
                            + "; ".join(r.reason for r in bad_stacks))
    unread = [r for r in rows if r.state == "error"]
    if unread:
        return EXIT_FAILED, (f"error: {len(unread)} certificate(s) could not be read: "
                             + ", ".join(f"{r.stack}/{r.name}" for r in unread))
    if fail_within is not None:
        bad = [r for r in rows if r.state in ATTENTION
               or (r.days_left(now) is not None and r.days_left(now) < fail_within)]  # type: ignore[operator]
        if bad:
            return EXIT_ATTENTION, (f"{len(bad)} certificate(s) need attention within {fail_within:g} days: "
                                    + ", ".join(f"{r.stack}/{r.name} ({r.state})" for r in bad))
    return EXIT_OK, ""

"""``keyvault-acme``: the operator's command line over the same engine and stack files as the Pulumi program.

Every decision (is it due, what is valid, how to issue) is the engine's; this module only parses
arguments, picks certificates out of a stack file, calls :class:`keyvault_acme.lifecycle.Engine` and
prints. Exit codes: 0 success, 1 an operation failed, 2 bad usage or configuration, 3 ``status
--fail-within`` found a certificate that needs attention.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import stat
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence, TextIO

from keyvault_acme import bulk
from keyvault_acme.errors import CREDENTIALS_HINT, KeyVaultAcmeError, SpecError
from keyvault_acme.model import REVOCATION_REASONS
from keyvault_acme.renewal import Reason

if TYPE_CHECKING:  # imported lazily at run time: `--help` and usage errors stay fast
    from keyvault_acme.lifecycle import Engine
    from keyvault_acme.model import CertificateFacts, CertificateSpec
    from keyvault_acme.renewal import Decision

    from .report import FleetRow

PROG = "keyvault-acme"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ATTENTION = 0, 1, 2, 3
CONCURRENCY = 4  # certificates handled at once, as the Pulumi provider host runs them

DESCRIPTION = """\
Issue, renew, revoke and inspect ACME certificates whose private keys are generated inside
Azure Key Vault, using the same stack files as the Pulumi program (stacks/Pulumi.<stack>.yaml).
Azure credentials come from the environment (workload identity, managed identity, Azure CLI)."""

EPILOG = """\
exit codes:
  0  success
  1  an operation failed (the message says what to do)
  2  bad usage or configuration
  3  status --fail-within: a certificate is missing, revoked, disabled or expires too soon

examples:
  keyvault-acme --stack web-prod status
  keyvault-acme --stack web-prod status --fail-within 14     # for cron and pipelines
  keyvault-acme --stack web-prod check                       # preflight, issues nothing
  keyvault-acme --stack web-prod renew --due                 # renew what is due, nothing else
  keyvault-acme --config my-stack.yaml revoke www --reason superseded
  keyvault-acme fleet status --stacks-dir stacks/ --fail-within 14   # every stack at once
  keyvault-acme report --out report.html                     # the fleet as one HTML page
  keyvault-acme --stack web-prod --metrics-file /var/lib/node_exporter/keyvault-acme.prom renew --due"""


class UsageError(Exception):
    """Bad flags, a missing stack file or unusable configuration: one line, exit code 2."""


# -- argument parsing ---------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse prints the whole usage block on errors; operators asked for one line they can act on."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _common_options(suppress: bool) -> "_Parser":
    # The same options are accepted before and after the subcommand. Defaults live on the top-level
    # parser only, so a subcommand's unset option does not overwrite a value given before it.
    default = argparse.SUPPRESS if suppress else None
    common = _Parser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--stack", metavar="NAME", default=default,
                       help="read stacks/Pulumi.NAME.yaml of the project in or above the current directory")
    where.add_argument("--config", metavar="FILE", default=default, type=Path,
                       help="read this stack file instead")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="show every step, also when the output is not a terminal")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="show no progress, only results and errors")
    common.add_argument("--timeout", type=_seconds, metavar="SECONDS", default=default,
                        help="give up each certificate's operation after SECONDS (default 600); also how old a "
                             "pending operation left by a crashed run on another host must be before it is reused")
    common.add_argument("--metrics-file", metavar="PATH", type=Path, default=default,
                        help="also write Prometheus metrics to PATH (node-exporter textfile collector format; "
                             "counters add up across runs)")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=DESCRIPTION, epilog=EPILOG, parents=[_common_options(False)],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    common = _common_options(True)

    def command(name: str, summary: str, details: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=f"{summary}\n\n{details}", parents=[common],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

    def group(name: str, summary: str, details: str) -> Callable[[str, str, str], argparse.ArgumentParser]:
        """A command of subcommands (``fleet status``); returns how to add one: (name, summary, description)."""
        subcommands = command(name, summary, details).add_subparsers(dest=f"{name}_command", metavar="COMMAND",
                                                                     parser_class=_Parser)
        subcommands.required = True
        return lambda sub, help_, description: subcommands.add_parser(
            sub, help=help_, description=description, parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter)

    status = command(
        "status", "show every certificate of the stack: version, expiry, when it renews, state",
        "Reads Key Vault only; changes nothing. State is one of:\n"
        "  valid     up to date; RENEW AFTER says when it becomes due\n"
        "  due       renewal is due: 'pulumi up --refresh' or 'keyvault-acme renew --due' renews it\n"
        "  outdated  names, key, CA or profile in the stack file changed since it was issued\n"
        "  missing, revoked, disabled, expired: re-issued by the next 'pulumi up' or 'renew --due'")
    status.add_argument("names", nargs="*", metavar="NAME", help="only these certificates (default: all)")
    status.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    status.add_argument("--fail-within", type=_days, metavar="DAYS",
                        help="exit 3 when a certificate is missing, revoked, disabled or expires within DAYS days")
    status.set_defaults(run=cmd_status)

    issue = command(
        "issue", "issue a certificate (adopts a matching one already in the vault)",
        "Key Vault creates the key pair and the CSR; the CA validates every name over DNS-01; the chain is\n"
        "merged back into Key Vault. The private key never leaves Key Vault.")
    issue.add_argument("name", metavar="NAME", help="certificate name from the stack file")
    issue.set_defaults(run=cmd_issue)

    renew = command(
        "renew", "renew one certificate now, or every certificate that is due",
        "Creates a new version of the same Key Vault certificate: consumers that reference the versionless\n"
        "secret id (App Gateway, Front Door, App Service) pick it up. With --due, a certificate renews only\n"
        "when its renewal is due (the same rule 'pulumi up --refresh' applies), and a missing one is issued:\n"
        "the fallback for a scheduler when nobody runs 'pulumi up'. Up to 4 certificates renew at once; one\n"
        "failure does not stop the others, and the exit code is 1 if any failed.")
    which = renew.add_mutually_exclusive_group(required=True)
    which.add_argument("name", nargs="?", metavar="NAME", help="certificate name from the stack file")
    which.add_argument("--due", action="store_true", help="renew every certificate of the stack that is due")
    renew.add_argument("--processes", type=_processes, metavar="N",
                       help="with --due: renew in N processes (default: one per 25 due certificates, at most one "
                            "per idle CPU; one when metrics are collected)")
    renew.add_argument("--json", action="store_true",
                       help="print one JSON object per certificate and line (for log workspaces), not text")
    renew.set_defaults(run=cmd_renew)

    revoke = command(
        "revoke", "revoke a certificate at the CA and mark it in Key Vault",
        "Revokes the current version at the CA with an RFC 5280 reason, records the reason in the\n"
        "certificate's tags and disables that version. Issue a replacement first ('renew NAME') unless the\n"
        "key is compromised: consumers keep serving the revoked certificate until they get a new one.")
    revoke.add_argument("name", metavar="NAME", help="certificate name from the stack file")
    revoke.add_argument("--reason", required=True, choices=sorted(REVOCATION_REASONS, key=REVOCATION_REASONS.__getitem__),
                        metavar="REASON", help=f"one of: {', '.join(sorted(REVOCATION_REASONS, key=REVOCATION_REASONS.__getitem__))}")
    revoke.add_argument("--keep-enabled", action="store_true",
                        help="leave the revoked version enabled in Key Vault (default: disable it)")
    revoke.add_argument("--yes", action="store_true",
                        help="do not ask for confirmation (keyCompromise asks, as consumers lose a working "
                             "certificate at once)")
    revoke.set_defaults(run=cmd_revoke)

    check = command(
        "check", "preflight every certificate without issuing anything",
        "For each certificate, one line per finding: the spec (names, zones, key, tags); Azure credentials;\n"
        "the vault (reachable, and this identity may read the certificate and the ACME account key); the\n"
        "CA's directory and profile; every zone writable (Azure DNS: ARM's permissions API for the\n"
        "_acme-challenge record sets; RFC 2136: the server's SOA and a TSIG-signed no-op update); every\n"
        "zone's NS delegation (as the resolvers, or public DNS, serve it, against Azure's nameServers or the\n"
        "RFC 2136 primary); CAA against the CA's identities. A failure says what to fix. Creates and changes\n"
        "nothing in Key Vault, DNS or at the CA.")
    check.add_argument("names", nargs="*", metavar="NAME", help="only these certificates (default: all)")
    check.set_defaults(run=cmd_check)

    account = group("account", "the stack's ACME account: move-to-key",
                    "The CA account the stack's certificates are issued with.")
    move = account(
        "move-to-key", "move the account from its key secret to the Key Vault key (acme.account_key kind key)",
        "Moves the stack's existing ACME account, held by the key in acme.account_key_secret, to the\n"
        "non-exportable Key Vault key that acme.account_key {kind: key} names, by account key rollover\n"
        "(RFC 8555 keyChange): the account keeps its URL, history and bindings, and from then on Key\n"
        "Vault signs for it. Run it once after setting kind: key and before the next issuance (which\n"
        "would otherwise register a new account for the key). Idempotent. The old secret stays: delete\n"
        "it once every engine uses the key.")
    move.set_defaults(run=cmd_account_move_to_key)

    fleet = group("fleet", "every stack at once: fleet status",
                  "Reads every stack file of a stacks directory (default: the project's, as --stack does).")
    fleet_status = fleet(
        "status", "every certificate of every stack in one table",
        "Every certificate of every stack file in one table, read in parallel: stack, workload,\n"
        "environment, name, state, days left, renew after, and what decided the renewal date (the\n"
        "CA's ARI window or the stack's policy). States and --fail-within as for status; a stack file\n"
        "that cannot be read is a row in state 'error' (exit 2), a certificate that cannot be read\n"
        "too (exit 1), and the other stacks are still shown.")
    _fleet_options(fleet_status)
    fleet_status.add_argument("--json", action="store_true", help="print a JSON array; each row carries its stack")
    fleet_status.add_argument("--fail-within", type=_days, metavar="DAYS",
                              help="exit 3 when a certificate is missing, revoked, disabled or expires within DAYS days")
    fleet_status.set_defaults(run=cmd_fleet_status, needs_stack=False)

    report = command(
        "report", "write the fleet as one self-contained HTML page",
        "One HTML file, nothing fetched when it is opened: the fleet table (click a column to sort), an\n"
        "expiry timeline (each certificate from issue to expiry, its renewal point, today), failing and\n"
        "overdue certificates first. Reads the same rows as 'fleet status'.")
    _fleet_options(report)
    report.add_argument("--out", type=Path, required=True, metavar="FILE", help="where to write the page")
    report.set_defaults(run=cmd_report, needs_stack=False)
    return parser


def _processes(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes") from None
    if count < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return count


def _seconds(text: str) -> float:
    import math

    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return seconds


def _fleet_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stacks-dir", type=Path, metavar="DIR",
                        help="the directory of Pulumi.<stack>.yaml files (default: the project's stacks)")


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not math.isfinite(days):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of days; give e.g. 14")
    if days < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return days


class _VersionAction(argparse.Action):
    """``--version``, with the version looked up only when asked for (package metadata costs every start)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        sys.stdout.write(f"{parser.prog} {_version()}\n")
        parser.exit()


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("keyvault-acme")
    except Exception:  # noqa: BLE001 - running from a source tree without metadata
        return "unknown"


# -- stack files --------------------------------------------------------------------------------------


def stack_path(stack: str | None, config: Path | None, cwd: Path | None = None) -> Path:
    """The stack file to read: ``--config FILE`` as given, or ``--stack NAME`` in the project's stacks dir."""
    if config is not None:
        if not config.is_file():
            what = _not_a_file(config)
            raise UsageError(f"stack file {config} {what}" + ("" if what == "not found" else
                             "; give the path of a stack file (stacks/Pulumi.<stack>.yaml)"))
        return config
    if not stack:
        raise UsageError("no stack given: pass --stack NAME (reads stacks/Pulumi.NAME.yaml) or --config FILE")
    stacks = _stacks_dir(cwd or Path.cwd())
    path = stacks / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stacks.glob("Pulumi.*.yaml"))
        hint = f"known stacks: {', '.join(known)}" if known else "no stack files there"
        raise UsageError(f"stack {stack!r} not found: no {path} ({hint})")
    return path


def _not_a_file(path: Path) -> str:
    """What ``path`` is when it is not a regular file (never opened: a FIFO would block the read)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "not found"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    kinds = ((stat.S_ISDIR, "is a directory"), (stat.S_ISFIFO, "is a named pipe (FIFO)"),
             (stat.S_ISSOCK, "is a socket"), (stat.S_ISCHR, "is a character device"),
             (stat.S_ISBLK, "is a block device"))
    return next((text for test, text in kinds if test(mode)), "is not a regular file")


def _stacks_dir(cwd: Path) -> Path:
    # Like the pulumi CLI: the project is the nearest directory with a Pulumi.yaml, and its
    # stackConfigDir (default: the project directory itself) holds the stack files.
    for directory in (cwd, *cwd.parents):
        project = directory / "Pulumi.yaml"
        if project.is_file():
            from keyvault_acme_stack.stack_yaml import load_yaml

            settings = load_yaml(project) or {}
            if not isinstance(settings, dict):
                raise UsageError(f"{project} is not a Pulumi project file: its top level is not a mapping")
            return directory / str(settings.get("stackConfigDir") or ".")
    return cwd / "stacks"


@dataclass(frozen=True)
class Stack:
    """The certificates of one stack file, by the names an operator types."""

    path: Path
    certificates: dict[str, "CertificateSpec"]
    label: str = ""  # <workload>-<environment>: the name the component gives the stack's resources

    def select(self, names: Iterable[str]) -> list[tuple[str, "CertificateSpec"]]:
        names = list(names)
        unknown = [n for n in names if n not in self.certificates]
        if unknown:
            known = ", ".join(self.certificates) or "none"
            raise UsageError(f"no certificate {unknown[0]!r} in {self.path} (certificates: {known})")
        return [(n, self.certificates[n]) for n in (names or self.certificates)]


def load_stack(path: Path) -> Stack:
    from keyvault_acme_stack.workload import parse_certificates, read_stack_file
    try:
        values = read_stack_file(path)
        certificates = parse_certificates(values)
    except SpecError as e:
        text = _one_line(e)  # YAML errors span lines; an operator gets one
        raise UsageError(text if text.startswith(str(path)) else f"{path}: {text}") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:  # YAML errors and other malformed content
        raise UsageError(f"{path}: {_one_line(e)}") from None
    # Operators name a certificate by its Key Vault name, the same name the stack file gives it. Only the
    # certificates are read: a command on certificates has no use for the stack's deployment settings.
    return Stack(path, {certificate.name: certificate.spec for certificate in certificates},
                 f"{values['workload']}-{values['environment']}")


# -- output -------------------------------------------------------------------------------------------


class Progress:
    """Progress lines on stderr for long steps. Quiet when stderr is not a terminal, unless --verbose;
    the engine's warnings are shown either way (they are about things an operator should fix)."""

    def __init__(self, stream: TextIO, *, enabled: bool) -> None:
        self.stream, self.enabled = stream, enabled
        self._start = time.monotonic()
        self._lock = threading.Lock()  # the engine logs from its worker threads

    def __call__(self, message: str) -> None:
        if self.enabled:
            self._write(message)

    def _write(self, message: str) -> None:
        with self._lock:
            self.stream.write(f"[{time.monotonic() - self._start:6.2f}s] {message}\n")
            self.stream.flush()

    @contextlib.contextmanager
    def step(self, message: str, every_s: float = 10.0) -> Iterator[None]:
        """Announce a long step, then say it is still running every ``every_s`` seconds (DNS propagation
        and validation can take minutes with a real CA and real name servers)."""
        self(message)
        if not self.enabled:
            yield
            return
        done, started = threading.Event(), time.monotonic()

        def heartbeat() -> None:
            while not done.wait(every_s):
                self(f"{message}: still running after {time.monotonic() - started:.0f} s")

        thread = threading.Thread(target=heartbeat, name="keyvault-acme-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def handler(self) -> logging.Handler:
        """A logging handler that shows the engine's INFO steps (propagation, validation, ...) as progress."""
        progress = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    if record.levelno >= logging.WARNING:
                        progress._write(f"{record.levelname.lower()}: {record.getMessage()}")
                    else:
                        progress(record.getMessage())
                except Exception:  # noqa: BLE001 - progress must never break an operation
                    self.handleError(record)

        return _Handler(logging.DEBUG if self.enabled else logging.WARNING)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _utc(value: datetime) -> str:
    from .output import when  # the one date format of every table, message and the HTML report
    return when(value)


@dataclass(frozen=True)
class Row:
    """One certificate's status, computed by the engine's renewal rules."""

    name: str
    spec: "CertificateSpec"
    facts: "CertificateFacts | None"
    state: str
    reason: str
    renew_after: datetime | None
    now: datetime
    decided_by: str = ""  # who set renew_after: "ari" (the CA's window), "policy" (the spec's), "" (n/a)
    renewal_reason: str = ""  # the renewal decision's code: Renewing, CARequestedRenewal, NamesChanged, UpToDate...

    @property
    def days_left(self) -> float | None:
        return None if self.facts is None else (self.facts.not_after - self.now).total_seconds() / 86400

    def needs_attention(self, within_days: float) -> bool:
        if self.state in ATTENTION:
            return True
        return self.days_left is not None and self.days_left < within_days

    def as_json(self) -> dict[str, Any]:
        f = self.facts
        return {
            "name": self.name, "certificate": self.spec.name, "vault_url": self.spec.vault_url,
            "dns_names": list(self.spec.dns_names), "state": self.state, "reason": self.reason,
            "version": f.version if f else None, "not_before": f.not_before.isoformat() if f else None,
            "not_after": f.not_after.isoformat() if f else None,
            "days_left": round(self.days_left, 6) if self.days_left is not None else None,
            "renew_after": self.renew_after.isoformat() if self.renew_after else None,
            "issuer": f.issuer if f else None, "serial": f.serial if f else None,
            "thumbprint": f.thumbprint if f else None, "id": f.id if f else None,
            "secret_id": f.secret_id if f else None, "enabled": f.enabled if f else None,
            "revoked_reason": f.revoked_reason if f else None,
            "decided_by": self.decided_by or None, "renewal_reason": self.renewal_reason or None,
        }


# The renewal chain's reason, as the one word the status table shows; every reason has one.
STATE_OF: Mapping[Reason, str] = {
    Reason.DOES_NOT_EXIST: "missing", Reason.REVOKED: "revoked", Reason.DISABLED: "disabled", Reason.EXPIRED: "expired",
    Reason.RENEWING: "due", Reason.CA_REQUESTED_RENEWAL: "due", Reason.UP_TO_DATE: "valid",
    # The spec changed since the version was issued (or, for the resource's own reasons, will have):
    Reason.NAMES_CHANGED: "outdated", Reason.KEY_CHANGED: "outdated", Reason.ISSUER_CHANGED: "outdated",
    Reason.PROFILE_CHANGED: "outdated", Reason.MOVED: "outdated", Reason.UNKNOWN: "outdated",
    Reason.SETTINGS_CHANGED: "outdated",
}
ATTENTION = ("missing", "revoked", "disabled", "expired")


def status_row(name: str, spec: "CertificateSpec", facts: "CertificateFacts | None", now: datetime,
               decision: "Decision | None" = None) -> Row:
    """One row; ``decision`` is the engine's (``Engine.decide``: with the CA's ARI window), else the policy's."""
    from keyvault_acme.renewal import due_at, renewal_decision
    if decision is None:
        decision = renewal_decision(facts, spec, now)
    state = STATE_OF[decision.reason]
    # A revoked, disabled or expired version is replaced by the next run, whatever its renewal time says.
    renew_after = (decision.renew_at or due_at(facts, spec)) if facts and state not in ATTENTION else None
    return Row(name, spec, facts, state, decision.message if decision.reissue else "", renew_after, now,
               decision.decided_by, str(decision.reason))


def read_row(engine: "Engine", name: str, spec: "CertificateSpec", now: datetime) -> Row:
    """One certificate's status as the engine sees it: what ``status`` and ``fleet status`` both show (the
    renewal moment with the CA's ARI window, cached, and who decided it). One Key Vault request: no chain."""
    facts = engine.inspect(spec.vault_url, spec.name, with_chain=False)
    return status_row(name, spec, facts, now, engine.decide(spec, facts, now=now))


def format_table(rows: Sequence[Row], *, width: int = 100, colour: bool = False) -> str:
    """The status table in ``width`` columns: DNS names are shortened first, then ISSUER, VERSION, DNS NAMES
    and NOT AFTER (DAYS LEFT says it too) are left out, in that order, until it fits."""
    from .output import fit_table
    header = ("NAME", "DNS NAMES", "VERSION", "NOT AFTER", "DAYS LEFT", "RENEW AFTER", "ISSUER", "STATE")
    cells = []
    for r in rows:
        f = r.facts
        cells.append((
            r.name, ",".join(r.spec.dns_names), f.version[:8] if f else "-", _utc(f.not_after) if f else "-",
            _days_left(r.days_left) if r.days_left is not None else "-",
            _utc(r.renew_after) if r.renew_after else "-", _short_issuer(f.issuer) if f else "-", r.state,
        ))
    return fit_table(header, cells, width=width, shorten=("DNS NAMES",),
                     drop=("ISSUER", "VERSION", "DNS NAMES", "NOT AFTER"),
                     state_column="STATE", colour=colour)


def _days_left(days: float) -> str:
    # Days for real certificates; short-lived ones (6 days, or seconds in the demo) also get a finer unit.
    if abs(days) >= 2:
        return f"{days:.1f}"
    seconds = days * 86400
    finer = f"{seconds / 3600:.1f}h" if abs(seconds) >= 3600 else f"{seconds:.0f}s"
    return f"{days:.2f} ({finer})"


def _short_issuer(issuer: str) -> str:
    # "CN=R11, O=Let's Encrypt, C=US" -> "R11"; anything else as given.
    for part in issuer.split(","):
        key, _, value = part.strip().partition("=")
        if key.upper() == "CN" and value:
            return value
    return issuer


# -- commands -----------------------------------------------------------------------------------------


class Context:
    """What a command needs. The engine is built on first use, so usage errors never wait for Azure SDKs."""

    def __init__(self, args: argparse.Namespace, stack: "Stack | None", progress: Progress, out: TextIO,
                 now: Callable[[], datetime], engine: "Engine | None" = None,
                 logger: logging.Logger | None = None, observer: Any = None,
                 started: Callable[[], None] | None = None) -> None:
        self.args, self.stack, self.progress, self.out, self.now = args, stack, progress, out, now
        self._started = started  # called once the engine is built: the process's start-up is over
        self._engine, self._logger, self.observer = engine, logger, observer
        self.engine_given = engine is not None  # a caller's engine (the demo's): used for everything
        self._engine_lock = threading.Lock()
        self.seen: list[tuple[str, Row]] = []  # (stack, row) of every certificate looked at: the metrics' gauges
        self.fleet: list["FleetRow"] = []  # the rows of fleet status and report
        self.metrics_written = False

    @property
    def engine(self) -> "Engine":
        """One engine per process, built once even when the first uses race in worker threads: one credential,
        one token, one Key Vault challenge per vault."""
        with self._engine_lock:
            if self._engine is None:
                from keyvault_acme.lifecycle import Engine
                timeout = getattr(self.args, "timeout", None)
                self._engine = Engine(logger=self._logger, observer=self.observer) if timeout is None else \
                    Engine(logger=self._logger, observer=self.observer, timeout_s=timeout)
                if self._started is not None:
                    self._started()
            elif self.observer is not None and self._engine.observer is None:
                self._engine.observer = self.observer  # a shared engine (the demo's) reports to this run too
            return self._engine

    @property
    def stack_label(self) -> str:
        return self.stack.label if self.stack is not None else ""

    def saw(self, rows: Iterable[Row]) -> None:
        self.seen.extend((self.stack_label, r) for r in rows)


def cmd_status(ctx: Context) -> int:
    from concurrent.futures import ThreadPoolExecutor

    def row(item: tuple[str, "CertificateSpec"]) -> Row:
        name, spec = item
        ctx.progress(f"{name}: reading {spec.vault_url}/certificates/{spec.name}")
        return read_row(ctx.engine, name, spec, ctx.now())

    assert ctx.stack is not None
    selected = ctx.stack.select(ctx.args.names)
    # The first read alone: it gets the token and the vault's challenge that all the others then reuse.
    rows = [row(item) for item in selected[:1]]
    with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="status") as pool:
        rows += pool.map(row, selected[1:])
    ctx.saw(rows)
    if ctx.args.json:
        ctx.out.write(json.dumps([r.as_json() for r in rows], indent=2) + "\n")
    else:
        from .output import colours_for, width_of
        ctx.out.write(format_table(rows, width=width_of(ctx.out), colour=colours_for(ctx.out)) + "\n")
    if ctx.args.fail_within is not None:
        bad = [r for r in rows if r.needs_attention(ctx.args.fail_within)]
        if bad:
            print(f"{PROG}: {len(bad)} certificate(s) need attention within {ctx.args.fail_within:g} days: "
                  + ", ".join(f"{r.name} ({r.state})" for r in bad), file=sys.stderr)
            return EXIT_ATTENTION
    return EXIT_OK


def _reported(verb: str, name: str, facts: "CertificateFacts") -> str:
    return (f"{verb} {name}: version {facts.version}, serial {facts.serial}, "
            f"valid until {_utc(facts.not_after)}\n  secret id: {facts.secret_id}\n")


def _report(ctx: Context, verb: str, name: str, facts: "CertificateFacts") -> None:
    ctx.out.write(_reported(verb, name, facts))


def cmd_issue(ctx: Context) -> int:
    assert ctx.stack is not None
    [(name, spec)] = ctx.stack.select([ctx.args.name])
    with ctx.progress.step(f"{name}: issuing for {', '.join(spec.dns_names)}"):
        facts = ctx.engine.issue(spec)
    ctx.saw([status_row(name, spec, facts, ctx.now())])
    _report(ctx, "issued", name, facts)
    return EXIT_OK


def renewal_line(stack: str, name: str, result: str, row: "Row | None", error: str = "") -> str:
    """One certificate's outcome of ``renew --json`` as one line of JSON: a log workspace keeps a line as a
    record, and the renewal-overdue alert reads ``renew_after`` from it (components/renewer.py)."""
    f = row.facts if row else None
    return json.dumps({
        "keyvault-acme": "renew", "stack": stack, "certificate": name, "result": result,
        "state": row.state if row else None, "version": f.version if f else None,
        "not_after": f.not_after.isoformat() if f else None,
        "renew_after": row.renew_after.isoformat() if row and row.renew_after else None,
        "error": error or None}) + "\n"


def cmd_renew(ctx: Context) -> int:
    assert ctx.stack is not None
    stack = ctx.stack.label
    if not ctx.args.due:
        [(name, spec)] = ctx.stack.select([ctx.args.name])
        with ctx.progress.step(f"{name}: renewing"):
            facts = ctx.engine.renew(spec)
        row = status_row(name, spec, facts, ctx.now(), ctx.engine.decide(spec, facts, now=ctx.now()))
        ctx.saw([row])
        if ctx.args.json:
            ctx.out.write(renewal_line(stack, name, "renewed", row))
        else:
            _report(ctx, "renewed", name, facts)
        return EXIT_OK
    from concurrent.futures import ThreadPoolExecutor


    def read(item: tuple[str, "CertificateSpec"]) -> "tuple[CertificateFacts | None, Decision | None, Row | None, str]":
        """(facts, decision, row, error or "") for one certificate; one Key Vault request (the CA's ARI answer is
        cached by the engine); never raises."""
        name, spec = item
        try:
            facts = ctx.engine.inspect(spec.vault_url, spec.name, with_chain=False)
            decision = ctx.engine.decide(spec, facts, now=ctx.now())
            return facts, decision, status_row(name, spec, facts, ctx.now(), decision), ""
        except Exception as e:  # noqa: BLE001 - one failure must not stop the others from renewing
            return None, None, None, _explain(e)

    # First every certificate is read (the first alone: it gets the token the others reuse), then the due ones
    # renew. Results print in stack order, whatever order they finish in.
    selected = ctx.stack.select([])
    reads = [read(item) for item in selected[:1]]
    with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="read") as pool:
        reads += pool.map(read, selected[1:])
    due = [(name, spec, facts is None, decision.message, facts)
           for (name, spec), (facts, decision, _, _) in zip(selected, reads)
           if decision is not None and decision.reissue]
    renewed = dict(zip((name for name, *_ in due), _renew_all_due(ctx, stack, due)))
    results: list[tuple[str, str, Row | None]] = []
    for (name, _), (_, decision, before, error) in zip(selected, reads):
        if error or decision is None:
            text = renewal_line(stack, name, "failed", before, error) if ctx.args.json else ""
            results.append((text, f"{PROG}: error: {name}: {error}", before))
        elif not decision.reissue:
            text = renewal_line(stack, name, "not-due", before) if ctx.args.json else \
                f"{name}: not due ({decision.message})\n"
            results.append((text, "", before))
        else:
            text, failure, new_row = renewed[name]
            if failure:
                text = renewal_line(stack, name, "failed", before, failure) if ctx.args.json else ""
                results.append((text, f"{PROG}: error: {name}: {failure}", before))
            else:
                results.append((text, "", new_row))
    ctx.saw(row for _, _, row in results if row is not None)
    for text, error, _ in results:
        ctx.out.write(text)
        if error:
            print(error, file=sys.stderr)
    return EXIT_FAILED if any(error for _, error, _ in results) else EXIT_OK


def _confirmed(ctx: Context, name: str) -> bool:
    """keyCompromise revocation breaks every consumer at once and cannot be undone: say so and ask, unless --yes."""
    if ctx.args.yes or ctx.args.reason != "keyCompromise":
        return True
    if not sys.stdin.isatty():
        raise UsageError("revoke --reason keyCompromise needs confirmation: rerun with --yes (no terminal to ask on)")
    print(f"Revoke {name} for keyCompromise? The CA revokes it at once, for good, and consumers keep serving a "
          f"revoked certificate until they get a new one (issue it first: 'renew {name}').", file=sys.stderr)
    try:
        answer = input(f"Type the certificate name ({name}) to revoke it: ")
    except EOFError:
        answer = ""
    return answer.strip() == name


def _renew_all_due(ctx: Context, stack: str,
                   due: list[tuple[str, "CertificateSpec", bool, str, "CertificateFacts | None"]]
                   ) -> list[tuple[str, str, "Row | None"]]:
    """:func:`_renew_due` for each, in order: in this process, or spread over processes when there are enough to
    pay for starting them (:mod:`keyvault_acme.bulk`); the output is the same either way. Not when a caller gave
    its engine (the demo's), nor when this run collects metrics: its observer sees this process's operations."""
    assert ctx.stack is not None
    json_lines = bool(getattr(ctx.args, "json", False))
    alone = ctx.engine_given or ctx.observer is not None
    processes = 1 if alone else (ctx.args.processes or bulk.processes_for(len(due)))
    if processes <= 1:
        return bulk.run(lambda d: _renew_due(ctx.engine, ctx.progress, ctx.now, stack, json_lines, *d), due,
                        threads=CONCURRENCY)
    ctx.progress(f"renewing {len(due)} certificates in {processes} processes")
    done = bulk.run(_renew_in_child, [(name, missing, why) for name, _, missing, why, _ in due], threads=CONCURRENCY,
                    processes=processes, initializer=_start_renewer,
                    initargs=(str(ctx.stack.path), stack, json_lines, ctx.progress.enabled,
                              bool(getattr(ctx.args, "verbose", False)), getattr(ctx.args, "timeout", None)))
    return [(text, error, None) for text, error in done]  # rows stay in the children: nothing collects them


# One per child process of a bulk renewal: the stack, progress and engine it renews with, and how it reports.
_child: Context | None = None
_child_output: tuple[str, bool] = ("", False)


def _start_renewer(stack_path: str, stack: str, json_lines: bool, progress_enabled: bool, verbose: bool,
                   timeout: float | None) -> None:
    global _child, _child_output
    progress = Progress(sys.stderr, enabled=progress_enabled)
    log = logging.getLogger("keyvault_acme")
    log.addHandler(progress.handler())
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    _child = Context(argparse.Namespace(timeout=timeout), load_stack(Path(stack_path)), progress, sys.stdout,
                     lambda: datetime.now(timezone.utc), logger=log)
    _child_output = (stack, json_lines)


def _renew_in_child(item: tuple[str, bool, str]) -> tuple[str, str]:
    name, missing, why = item
    assert _child is not None and _child.stack is not None, "_start_renewer runs first in every child"
    text, error, _ = _renew_due(_child.engine, _child.progress, _child.now, *_child_output, name,
                                _child.stack.certificates[name], missing, why)
    return text, error


def _renew_due(engine: "Engine", progress: Progress, now: Callable[[], datetime], stack: str, json_lines: bool,
               name: str, spec: "CertificateSpec", missing: bool, why: str,
               current: "CertificateFacts | None" = None) -> tuple[str, str, "Row | None"]:
    """Issue (``missing``) or renew one due certificate: (what to print on stdout, why it failed or "", its new
    row); never raises."""
    try:
        with progress.step(f"{name}: {why}"):
            new = engine.issue(spec) if missing else engine.renew(spec, current=current)
    except Exception as e:  # noqa: BLE001 - one failure must not stop the others from renewing
        return "", _explain(e), None  # the caller reports it, with what it read before
    verb = "issued" if missing else "renewed"
    # The new version's renewal moment as every later run will see it (the CA's ARI answer, then cached).
    row = status_row(name, spec, new, now(), engine.decide(spec, new, now=now()))
    return (renewal_line(stack, name, verb, row) if json_lines else _reported(verb, name, new)), "", row


def cmd_revoke(ctx: Context) -> int:
    assert ctx.stack is not None
    [(name, spec)] = ctx.stack.select([ctx.args.name])
    if not _confirmed(ctx, name):
        print(f"{PROG}: not revoked: confirmation did not match", file=sys.stderr)
        return EXIT_USAGE
    with ctx.progress.step(f"{name}: revoking ({ctx.args.reason})"):
        facts = ctx.engine.revoke(spec, ctx.args.reason, disable=not ctx.args.keep_enabled)
    ctx.saw([status_row(name, spec, facts, ctx.now())])
    disabled = '' if ctx.args.keep_enabled else ', version disabled in Key Vault'
    if facts.already_revoked:
        ctx.out.write(f"{name}: serial {facts.serial} was already revoked by the CA; the reason recorded at the "
                      f"first revocation ({facts.revoked_reason}) is kept, not {ctx.args.reason}{disabled}\n")
    else:
        ctx.out.write(f"revoked {name}: serial {facts.serial} ({ctx.args.reason}){disabled}\n")
    return EXIT_OK


def cmd_check(ctx: Context) -> int:
    """The engine's checks for each certificate, one line per finding; nothing is created anywhere."""
    assert ctx.stack is not None
    failed = 0
    for name, spec in ctx.stack.select(ctx.args.names):
        try:
            with ctx.progress.step(f"{name}: checking"):
                results = ctx.engine.check(spec)
        except Exception as e:  # noqa: BLE001 - the checks report their own failures; this is anything else
            results = ()
            ctx.out.write(f"FAIL {name}: check: {_explain(e)}\n")
            failed += 1
        for r in results:
            fix = f"; fix: {r.fix}" if r.fix and not r.ok else ""
            ctx.out.write(f"{'ok  ' if r.ok else 'FAIL'} {name}: {r.step}: {r.detail}{fix}\n")
        failed += any(not r.ok for r in results)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_account_move_to_key(ctx: Context) -> int:
    """Each distinct account of the stack (vault, CA and key) moves once, whichever certificate names it."""
    assert ctx.stack is not None
    accounts: dict[tuple[str, ...], "CertificateSpec"] = {}
    for _, spec in ctx.stack.select([]):
        a = spec.acme
        accounts.setdefault((spec.vault_url, a.directory_url, a.account_key_secret, a.account_key_name or ""), spec)
    for spec in accounts.values():
        where = f"{spec.vault_url.rstrip('/')}/keys/{spec.acme.account_key_name}"
        with ctx.progress.step(f"moving the account at {spec.acme.directory_url} to {where}"):
            url = ctx.engine.move_account_to_key(spec)
        ctx.out.write(f"account {url}: signed by the Key Vault key {where}; the secret "
                      f"{spec.acme.account_key_secret!r} no longer holds it and can be deleted\n")
    return EXIT_OK


def _fleet(ctx: Context) -> list["FleetRow"]:
    from .fleet import fleet_rows, read_stack, stack_files
    directory = ctx.args.stacks_dir or _stacks_dir(Path.cwd())
    stacks = [read_stack(p) for p in stack_files(directory)]
    ctx.progress(f"reading {sum(len(s.certificates) for s in stacks)} certificates of {len(stacks)} stacks")
    rows = fleet_rows(stacks, ctx.engine, ctx.now, read_row)
    ctx.fleet = rows
    return rows


def cmd_fleet_status(ctx: Context) -> int:
    from .fleet import fleet_exit
    from .output import colours_for, fit_table, width_of
    from .report import attention_order
    now = ctx.now()
    rows = attention_order(_fleet(ctx), now)
    if ctx.args.json:
        ctx.out.write(json.dumps([r.as_json(now) for r in rows], indent=2) + "\n")
    else:
        header = ("STACK", "WORKLOAD", "ENV", "NAME", "STATE", "DAYS LEFT", "RENEW AFTER", "DECIDED BY", "REASON")
        cells = []
        for r in rows:
            days = r.days_left(now)
            cells.append((r.stack, r.workload or "-", r.environment or "-", r.name, r.state,
                          _days_left(days) if days is not None else "-",
                          _utc(r.renew_after) if r.renew_after else "-", r.decided_by or "-", r.reason or "-"))
        ctx.out.write(fit_table(header, cells, width=width_of(ctx.out), shorten=("REASON",),
                                drop=("REASON", "WORKLOAD", "ENV", "DECIDED BY"), state_column="STATE",
                                colour=colours_for(ctx.out)) + "\n")
    code, message = fleet_exit(rows, ctx.args.fail_within, now)
    if message:
        print(f"{PROG}: {message}", file=sys.stderr)
    return code


def cmd_report(ctx: Context) -> int:
    from .report import render_report
    rows = _fleet(ctx)
    page = render_report(rows, ctx.now())
    try:
        ctx.args.out.write_text(page, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {ctx.args.out}: {e.strerror or e}") from None
    failing = sum(r.state in ATTENTION + ("error",) for r in rows)
    ctx.out.write(f"wrote {ctx.args.out}: {len(rows)} certificates, {failing} failing\n")
    return EXIT_OK


# -- entry point --------------------------------------------------------------------------------------




def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _explain(error: BaseException) -> str:
    """One line saying what failed and what to do; credential problems get the ways to sign in."""
    text = _one_line(error)
    if any(type(e).__name__ in ("ClientAuthenticationError", "CredentialUnavailableError") for e in _causes(error)):
        return f"{text}; no usable Azure credentials: {CREDENTIALS_HINT}"
    if isinstance(error, KeyVaultAcmeError):
        return text
    if type(error).__name__ in ("ServiceRequestError", "ConnectionError"):
        return f"{text}; cannot reach the service: check the network, proxy and URLs in the stack file"
    return f"{text} ({type(error).__name__}; rerun with --verbose for the traceback)"


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def _interrupted(_signum: int, _frame: Any) -> None:
    """Ctrl-C: stop now. Worker threads may be deep in an HTTP call or a DNS wait; a KeyboardInterrupt would
    only reach the main thread, which then waits for them (minutes). A pending Key Vault operation left behind
    is reused or discarded by the next run, like after any crash."""
    import os

    try:
        bulk.stop_children()
        sys.stderr.write(f"\n{PROG}: interrupted\n")
        sys.stderr.flush()
        sys.stdout.flush()
    finally:
        os._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def _ctrl_c_exits() -> Iterator[None]:
    """While a command runs from the main thread, one Ctrl-C ends the process at once with 130."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None, *, engine: "Engine | None" = None,
         now: Callable[[], datetime] | None = None) -> int:
    """Run the CLI; returns the exit code. ``engine`` lets a caller (the demo) share one engine."""
    started = _command_line_gc() if argv is None else None  # the command line itself (console script, python -m)
    try:
        with _ctrl_c_exits():
            return _main(argv, engine=engine, now=now, started=started)
    finally:
        if started is not None:
            started()  # a command that built no engine (usage errors, --help) collects again here


def _command_line_gc() -> Callable[[], None]:
    """Garbage collection for the command line's own process: none while it starts, none at exit.

    Starting up, a run imports ~800 modules (the engine's are most of them) and the collector traverses that
    growing, permanent heap again and again; at exit, shutdown collects all of it more than once while tearing
    the modules down. Together 70-110 ms of a half-second ``keyvault-acme issue``. So the collector is off until
    the engine is built; then what exists is frozen (gc.freeze: out of the collector's sight for good, a few
    hundred kilobytes of start-up garbage included) and collection resumes for the run's own objects, however
    many certificates it handles. At exit the same freeze spares the shutdown its collections: the other exit
    handlers still run (logging's flush among them), modules are torn down and output is flushed; only
    finalizers of objects nothing but a collection would free are skipped, which Python runs at exit on a
    best-effort basis anyway (this package writes and closes its files in ``with`` blocks).

    Returns what ends the start-up: freeze, collect again; a no-op after its first call. Only for the process's
    command line (main() reading sys.argv): a caller passing arguments lives on, and keeps its collector as is.
    """
    import atexit
    import gc

    atexit.register(gc.freeze)
    gc.disable()
    pending = [True]

    def started() -> None:
        if pending:
            pending.clear()
            gc.freeze()
            gc.enable()

    return started


def _main(argv: Sequence[str] | None, *, engine: "Engine | None", now: Callable[[], datetime] | None,
          started: Callable[[], None] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stack and args.config:  # given on both sides of the subcommand, so argparse cannot see it
        parser.error("argument --config: not allowed with argument --stack")
    out, err = sys.stdout, sys.stderr
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    progress = Progress(err, enabled=not quiet and (verbose or err.isatty()))
    log = logging.getLogger("keyvault_acme")
    handler = progress.handler()
    log.addHandler(handler)
    previous_level = log.level
    # A terminal sees the engine's steps; --verbose also its details (phase timings, retries).
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    ctx: Context | None = None
    recorder, otel = None, None
    try:
        if getattr(args, "metrics_file", None) is not None:
            from .metrics import Recorder
            recorder = Recorder()
        otel = _otel_observer()
        observer = _observers(recorder, otel)
        stack = load_stack(stack_path(args.stack, args.config)) if getattr(args, "needs_stack", True) else None
        ctx = Context(args, stack, progress, out, now or (lambda: datetime.now(timezone.utc)), engine, log,
                      observer, started=started)
        code = args.run(ctx)
        return _write_metrics(ctx, recorder, code)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=err)
        return EXIT_USAGE
    except SpecError as e:
        print(f"{PROG}: error: {e}", file=err)
        return EXIT_USAGE
    except KeyVaultAcmeError as e:
        print(f"{PROG}: error: {_explain(e)}", file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:  # raised before our handler was in place, or by code that catches signals itself
        print(f"{PROG}: interrupted", file=err)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - an operator gets one actionable line, not a traceback
        if verbose:
            import traceback
            traceback.print_exc(file=err)
        print(f"{PROG}: error: {_explain(e)}", file=err)
        return EXIT_FAILED
    finally:
        if ctx is not None and recorder is not None and not ctx.metrics_written:
            _write_metrics(ctx, recorder, EXIT_FAILED)  # a failed run's counters matter most
        if otel is not None:
            otel.shutdown()  # export before the process ends: a batch run lives for seconds
        log.removeHandler(handler)
        log.setLevel(previous_level)


def _otel_observer() -> Any:
    import os
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None  # OpenTelemetry is not even imported
    from .telemetry import TelemetryError, observer_from_environment
    try:
        return observer_from_environment()
    except TelemetryError as e:
        raise UsageError(str(e)) from None


def _observers(*observers: Any) -> Any:
    present = [o for o in observers if o is not None]
    if len(present) < 2:
        return present[0] if present else None
    from keyvault_acme.observe import Observers
    return Observers(*present)


def _write_metrics(ctx: Context, recorder: Any, code: int) -> int:
    """The metrics file of this run: gauges of every certificate it looked at, counters of what it did."""
    if recorder is None:
        return code
    from .metrics import CertificateMetric, ready_condition, write_metrics_file
    ctx.metrics_written = True
    certificates = [CertificateMetric(r.name, stack, r.spec.vault_url, _short_issuer(r.facts.issuer) if r.facts else "",
                                      r.facts.not_after if r.facts else None, r.renew_after,
                                      ready_condition(r.state)) for stack, r in ctx.seen]
    certificates += [CertificateMetric(r.name, r.stack, r.vault, r.issuer, r.not_after, r.renew_after,
                                       ready_condition(r.state)) for r in ctx.fleet if r.name != "-"]
    try:
        write_metrics_file(ctx.args.metrics_file, certificates, recorder.operations, ctx.now())
    except OSError as e:
        print(f"{PROG}: error: cannot write the metrics file {ctx.args.metrics_file}: {e.strerror or e}",
              file=sys.stderr)
        return code or EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())

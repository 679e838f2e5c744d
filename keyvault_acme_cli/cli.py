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
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, TextIO

from keyvault_acme import bulk
from keyvault_acme.errors import CREDENTIALS_HINT, KeyVaultAcmeError, SpecError
from keyvault_acme.model import REVOCATION_REASONS

if TYPE_CHECKING:  # imported lazily at run time: `--help` and usage errors stay fast
    from keyvault_acme.lifecycle import Engine
    from keyvault_acme.model import CertificateFacts, CertificateSpec

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
  keyvault-acme --config my-stack.yaml revoke www --reason superseded"""


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
                            "per CPU)")
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
    return parser


def _processes(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes") from None
    if count < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return count


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
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
            raise UsageError(f"stack file {config} not found")
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


def _stacks_dir(cwd: Path) -> Path:
    # Like the pulumi CLI: the project is the nearest directory with a Pulumi.yaml, and its
    # stackConfigDir (default: the project directory itself) holds the stack files.
    for directory in (cwd, *cwd.parents):
        project = directory / "Pulumi.yaml"
        if project.is_file():
            import yaml
            try:
                settings = yaml.safe_load(project.read_text()) or {}
            except yaml.YAMLError as e:
                raise UsageError(f"{project} is not valid YAML: {_one_line(e)}") from None
            return directory / str(settings.get("stackConfigDir") or ".")
    return cwd / "stacks"


@dataclass(frozen=True)
class Stack:
    """The certificates of one stack file, by the names an operator types."""

    path: Path
    certificates: dict[str, "CertificateSpec"]

    def select(self, names: Iterable[str]) -> list[tuple[str, "CertificateSpec"]]:
        names = list(names)
        unknown = [n for n in names if n not in self.certificates]
        if unknown:
            known = ", ".join(self.certificates) or "none"
            raise UsageError(f"no certificate {unknown[0]!r} in {self.path} (certificates: {known})")
        return [(n, self.certificates[n]) for n in (names or self.certificates)]


def load_stack(path: Path) -> Stack:
    from keyvault_acme_stack.workload import load_stack_certificates
    try:
        certificates = load_stack_certificates(path)
    except SpecError as e:
        text = _one_line(e)  # YAML errors span lines; an operator gets one
        raise UsageError(text if text.startswith(str(path)) else f"{path}: {text}") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:  # YAML errors and other malformed content
        raise UsageError(f"{path}: {_one_line(e)}") from None
    # Operators name a certificate by its Key Vault name, the same name the stack file gives it. Only the
    # certificates are read: a command on certificates has no use for the stack's deployment settings.
    return Stack(path, {certificate.name: certificate.spec for certificate in certificates})


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
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


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
        }


# The renewal chain's reason, as the one word the status table shows.
_STATE = {"DoesNotExist": "missing", "Revoked": "revoked", "Disabled": "disabled", "Expired": "expired",
          "Renewing": "due", "UpToDate": "valid"}  # anything else: the spec changed since it was issued
ATTENTION = ("missing", "revoked", "disabled", "expired")


def status_row(name: str, spec: "CertificateSpec", facts: "CertificateFacts | None", now: datetime) -> Row:
    from keyvault_acme.renewal import due_at, renewal_decision
    decision = renewal_decision(facts, spec, now)
    state = _STATE.get(decision.reason, "outdated")
    return Row(name, spec, facts, state, decision.message if decision.reissue else "",
               due_at(facts, spec) if facts else None, now)


def format_table(rows: Sequence[Row]) -> str:
    header = ("NAME", "DNS NAMES", "VERSION", "NOT AFTER", "DAYS LEFT", "RENEW AFTER", "ISSUER", "STATE")
    lines = [header]
    for r in rows:
        f = r.facts
        names = ",".join(r.spec.dns_names)
        lines.append((
            r.name, names if len(names) <= 40 else names[:37] + "...",
            f.version[:8] if f else "-", _utc(f.not_after) if f else "-",
            _days_left(r.days_left) if r.days_left is not None else "-",
            _utc(r.renew_after) if r.renew_after else "-",
            _short_issuer(f.issuer) if f else "-", r.state,
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


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

    def __init__(self, args: argparse.Namespace, stack: Stack, progress: Progress, out: TextIO,
                 now: Callable[[], datetime], engine: "Engine | None" = None,
                 logger: logging.Logger | None = None) -> None:
        self.args, self.stack, self.progress, self.out, self.now = args, stack, progress, out, now
        self._engine, self._logger = engine, logger
        self.engine_given = engine is not None  # a caller's engine (the demo's): used for everything
        self._engine_lock = threading.Lock()

    @property
    def engine(self) -> "Engine":
        """One engine per process, built once even when the first uses race in worker threads: one credential,
        one token, one Key Vault challenge per vault."""
        with self._engine_lock:
            if self._engine is None:
                from keyvault_acme.lifecycle import Engine
                self._engine = Engine(logger=self._logger)
            return self._engine


def cmd_status(ctx: Context) -> int:
    from concurrent.futures import ThreadPoolExecutor

    def row(item: tuple[str, "CertificateSpec"]) -> Row:
        name, spec = item
        ctx.progress(f"{name}: reading {spec.vault_url}/certificates/{spec.name}")
        # One Key Vault request per certificate: the table needs no chain.
        return status_row(name, spec, ctx.engine.inspect(spec.vault_url, spec.name, with_chain=False), ctx.now())

    selected = ctx.stack.select(ctx.args.names)
    # The first read alone: it gets the token and the vault's challenge that all the others then reuse.
    rows = [row(item) for item in selected[:1]]
    with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="status") as pool:
        rows += pool.map(row, selected[1:])
    if ctx.args.json:
        ctx.out.write(json.dumps([r.as_json() for r in rows], indent=2) + "\n")
    else:
        ctx.out.write(format_table(rows) + "\n")
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
    [(name, spec)] = ctx.stack.select([ctx.args.name])
    with ctx.progress.step(f"{name}: issuing for {', '.join(spec.dns_names)}"):
        facts = ctx.engine.issue(spec)
    _report(ctx, "issued", name, facts)
    return EXIT_OK


def cmd_renew(ctx: Context) -> int:
    if not ctx.args.due:
        [(name, spec)] = ctx.stack.select([ctx.args.name])
        with ctx.progress.step(f"{name}: renewing"):
            facts = ctx.engine.renew(spec)
        _report(ctx, "renewed", name, facts)
        return EXIT_OK
    from concurrent.futures import ThreadPoolExecutor

    from keyvault_acme.renewal import Decision, renewal_decision

    def read(item: tuple[str, "CertificateSpec"]) -> "tuple[CertificateFacts | None, Decision | None, str]":
        """(facts, decision, error line or "") for one certificate; one Key Vault request; never raises."""
        name, spec = item
        try:
            facts = ctx.engine.inspect(spec.vault_url, spec.name, with_chain=False)
            return facts, renewal_decision(facts, spec, ctx.now()), ""
        except Exception as e:  # noqa: BLE001 - one failure must not stop the others from renewing
            return None, None, f"{PROG}: error: {name}: {_explain(e)}"

    # First every certificate is read (the first alone: it gets the token the others reuse), then the due ones
    # renew. Results print in stack order, whatever order they finish in.
    selected = ctx.stack.select([])
    reads = [read(item) for item in selected[:1]]
    with ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="read") as pool:
        reads += pool.map(read, selected[1:])
    due = [(name, spec, facts is None, decision.message)
           for (name, spec), (facts, decision, _) in zip(selected, reads) if decision is not None and decision.reissue]
    renewed = dict(zip((name for name, *_ in due), _renew_all_due(ctx, due)))
    results = []
    for (name, _), (_, decision, error) in zip(selected, reads):
        if error or decision is None:
            results.append(("", error))
        elif not decision.reissue:
            results.append((f"{name}: not due ({decision.message})\n", ""))
        else:
            results.append(renewed[name])
    for text, error in results:
        ctx.out.write(text)
        if error:
            print(error, file=sys.stderr)
    return EXIT_FAILED if any(error for _, error in results) else EXIT_OK


def _renew_all_due(ctx: Context, due: list[tuple[str, "CertificateSpec", bool, str]]) -> list[tuple[str, str]]:
    """:func:`_renew_due` for each, in order: in this process, or spread over processes when there are enough to
    pay for starting them (:mod:`keyvault_acme.bulk`); the output is the same either way."""
    processes = 1 if ctx.engine_given else (ctx.args.processes or bulk.processes_for(len(due)))
    if processes <= 1:
        return bulk.run(lambda d: _renew_due(ctx.engine, ctx.progress, *d), due, threads=CONCURRENCY)
    ctx.progress(f"renewing {len(due)} certificates in {processes} processes")
    return bulk.run(_renew_in_child, [(name, missing, why) for name, _, missing, why in due], threads=CONCURRENCY,
                    processes=processes, initializer=_start_renewer,
                    initargs=(str(ctx.stack.path), ctx.progress.enabled, bool(getattr(ctx.args, "verbose", False))))


# One per child process of a bulk renewal: the stack, progress and engine it renews with.
_child: Context | None = None


def _start_renewer(stack_path: str, progress_enabled: bool, verbose: bool) -> None:
    global _child
    progress = Progress(sys.stderr, enabled=progress_enabled)
    log = logging.getLogger("keyvault_acme")
    log.addHandler(progress.handler())
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    _child = Context(argparse.Namespace(), load_stack(Path(stack_path)), progress, sys.stdout,
                     lambda: datetime.now(timezone.utc), logger=log)


def _renew_in_child(item: tuple[str, bool, str]) -> tuple[str, str]:
    name, missing, why = item
    assert _child is not None, "_start_renewer runs first in every child"
    return _renew_due(_child.engine, _child.progress, name, _child.stack.certificates[name], missing, why)


def _renew_due(engine: "Engine", progress: Progress, name: str, spec: "CertificateSpec", missing: bool,
               why: str) -> tuple[str, str]:
    """Issue (``missing``) or renew one due certificate: (what to print on stdout, error line or ""); never
    raises."""
    try:
        with progress.step(f"{name}: {why}"):
            new = engine.issue(spec) if missing else engine.renew(spec)
        return _reported("issued" if missing else "renewed", name, new), ""
    except Exception as e:  # noqa: BLE001 - one failure must not stop the others from renewing
        return "", f"{PROG}: error: {name}: {_explain(e)}"


def cmd_revoke(ctx: Context) -> int:
    [(name, spec)] = ctx.stack.select([ctx.args.name])
    with ctx.progress.step(f"{name}: revoking ({ctx.args.reason})"):
        facts = ctx.engine.revoke(spec, ctx.args.reason, disable=not ctx.args.keep_enabled)
    ctx.out.write(f"revoked {name}: serial {facts.serial} ({ctx.args.reason})"
                  f"{'' if ctx.args.keep_enabled else ', version disabled in Key Vault'}\n")
    return EXIT_OK


def cmd_check(ctx: Context) -> int:
    """The engine's checks for each certificate, one line per finding; nothing is created anywhere."""
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
    with _ctrl_c_exits():
        return _main(argv, engine=engine, now=now)


def _main(argv: Sequence[str] | None, *, engine: "Engine | None", now: Callable[[], datetime] | None) -> int:
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
    try:
        stack = load_stack(stack_path(args.stack, args.config))
        ctx = Context(args, stack, progress, out, now or (lambda: datetime.now(timezone.utc)), engine, log)
        return args.run(ctx)
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
        log.removeHandler(handler)
        log.setLevel(previous_level)


if __name__ == "__main__":
    sys.exit(main())

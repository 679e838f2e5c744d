"""Who is issuing a certificate: the run record kept in a tag on Key Vault's pending version.

Key Vault allows one pending operation per certificate, and creating it is a run's claim on issuing. A run
that dies (SIGKILL, OOM, a cancelled CI job) leaves that claim behind, and without knowing who made it the
next run can only wait until no run could still be working (the operation timeout). So each run writes,
in the pending version's tags (the only place Key Vault keeps with the operation, and written in the same
create call):

* its creator: host name, process id and the process' start time (so a reused PID is not taken for the
  creator), which lets a run on the same host see at once that the creator is gone;
* the ACME order it created for the certificate: with the account key, the order's authorizations give the
  DNS-01 tokens, and so exactly the TXT values this engine wrote (``base64url(SHA-256(token "." account
  key thumbprint))``, which no other client can produce). The next run removes those values, and
  ``check`` reports them, without ever touching a value someone else wrote.

A run that finished but could not remove its values (a DNS API failing at clean-up time) has no pending
operation left to record its order, so it records the order on the version it leaves current instead
(:data:`LEFTOVER_TAG`); the next run on the certificate removes those values, and ``check`` reports them.

Pure parsing and decisions here; the process probes are the only I/O (local ``/proc`` and ``kill(pid, 0)``).
"""
from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

RUN_TAG = "keyvault-acme-run"
LEFTOVER_TAG = "acme-leftover"  # on a version: the ACME order whose challenge values its run could not remove
MAX_TAG_VALUE = 256  # Key Vault's limit on a tag value


def leftover_tags(order_url: str) -> dict[str, str]:
    """The tag recording ``order_url``'s leftover values; none when the URL does not fit in a tag."""
    return {LEFTOVER_TAG: order_url} if len(order_url) <= MAX_TAG_VALUE else {}


def leftover_order(tags: "dict[str, str] | None") -> str | None:
    """The order whose values a run left behind, from a version's tags; None for anything else."""
    value = (tags or {}).get(LEFTOVER_TAG, "")
    return value if value.startswith("https://") and " " not in value else None


@dataclass(frozen=True)
class RunRecord:
    """One run's claim: where it runs and the ACME order it made (None when the URL did not fit in a tag)."""

    host: str
    pid: int
    start: str  # the process' start time as the OS counts it ("" when unknown): tells a reused PID apart
    order_url: str | None = None

    def tag(self) -> str:
        """The tag value: ``host pid start [order]``; the order is left out when it would not fit."""
        base = f"{self.host} {self.pid} {self.start or '-'}"
        full = f"{base} {self.order_url}" if self.order_url else base
        return full if len(full) <= MAX_TAG_VALUE else base[:MAX_TAG_VALUE]

    @classmethod
    def parse(cls, value: str | None) -> "RunRecord | None":
        """The record in a tag value; None for anything else (a tag written by hand is no proof of anything)."""
        parts = (value or "").split(" ")
        if len(parts) not in (3, 4) or not parts[1].isdigit() or not parts[0]:
            return None
        order = parts[3] if len(parts) == 4 else None
        if order is not None and not order.startswith("https://"):
            return None
        return cls(parts[0], int(parts[1]), "" if parts[2] == "-" else parts[2], order)

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}"


def creator_gone(record: RunRecord | None, created: datetime | None, now: datetime, timeout_s: float, *,
                 host: str, alive: Callable[[int, str], bool]) -> bool:
    """Whether the run that created a pending operation is certainly over: it is older than any run may last
    (``timeout_s``), or it was made on this host by a process that no longer exists (``alive(pid, start)``
    false). Anything else (another host, no record, unknown age) may still be working."""
    if created is not None and (now - created).total_seconds() >= timeout_s:
        return True
    return record is not None and record.host == host and not alive(record.pid, record.start)


def this_run(order_url: str | None = None) -> RunRecord:
    return RunRecord(socket.gethostname(), os.getpid(), process_start(os.getpid()), order_url)


def process_start(pid: int) -> str:
    """The process' start time in clock ticks since boot (Linux ``/proc``), "" where there is no ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return ""
    # Fields after the command name (which may hold spaces and parentheses): starttime is field 22 overall.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else ""


def process_alive(pid: int, start: str) -> bool:
    """Whether process ``pid`` runs here and is the one that started at ``start`` (when that is known)."""
    try:
        os.kill(pid, 0)
    except OSError as e:
        if e.errno == errno.ESRCH:
            return False
        # EPERM: it exists, owned by someone else.
    if start and process_start(pid) not in ("", start):
        return False  # the PID was reused by a process started later
    return True

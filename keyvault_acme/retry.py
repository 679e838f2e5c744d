"""One way to wait: a backoff that starts short, grows to a cap, honours Retry-After and never
passes a deadline.

Starting short keeps us fast against a quick CA (Pebble validates in milliseconds); growing and
honouring Retry-After keeps us polite to production CAs and to Key Vault's throttling. Every wait
in the engine (ACME polling, DNS propagation, Key Vault retries) goes through here, so a deadline
always ends in :class:`~keyvault_acme.errors.Deadline` naming what we were waiting for.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, TypeVar

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from .errors import Deadline

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Delays ``initial, initial*factor, ...`` up to ``cap`` seconds, each stretched by up to ``jitter``."""

    initial: float = 0.02
    factor: float = 1.6
    cap: float = 5.0
    jitter: float = 0.1

    def delays(self):
        delay = self.initial
        while True:
            yield delay * (1 + random.uniform(0, self.jitter))
            delay = min(delay * self.factor, self.cap)


DEFAULT_BACKOFF = Backoff()


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


class Waiter:
    """Sleeps between attempts of one wait; raises :class:`Deadline` instead of sleeping past it.

    ``timeout`` starts a deadline now; ``deadline`` (a ``clock()`` value) shares one with the caller.
    ``clock`` and ``sleep`` are injectable so decisions can be tested without real time passing.
    """

    def __init__(self, what: str, *, timeout: float | None = None, deadline: float | None = None,
                 backoff: Backoff = DEFAULT_BACKOFF, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if timeout is None and deadline is None:
            raise ValueError("give timeout or deadline")
        self.what = what
        self._clock, self._sleep = clock, sleep
        self.deadline = deadline if deadline is not None else clock() + float(timeout)  # type: ignore[arg-type]
        if timeout is not None and deadline is not None:
            self.deadline = min(deadline, clock() + timeout)
        self._delays = backoff.delays()
        self.attempts = 0

    @property
    def remaining(self) -> float:
        return self.deadline - self._clock()

    def sleep(self, retry_after: float | None = None, *, last_error: BaseException | None = None) -> None:
        """Wait before the next attempt: the next backoff delay, or longer when the server asked for it."""
        self.attempts += 1
        remaining = self.remaining
        if remaining <= 0:
            raise self._deadline(last_error)
        delay = next(self._delays)
        if retry_after is not None:
            if retry_after > remaining:
                raise Deadline(f"{self.what}: the server asked to retry in {retry_after:.0f} s, "
                               f"after the deadline ({remaining:.1f} s left)") from last_error
            delay = max(delay, retry_after)
        self._sleep(min(delay, remaining))

    def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (no longer than the deadline allows), outside the backoff: a wait learnt from the
        server's recent pace, before the first attempt."""
        if seconds > 0:
            self._sleep(min(seconds, max(0.0, self.remaining)))

    def _deadline(self, last_error: BaseException | None) -> Deadline:
        detail = f"; last error: {last_error}" if last_error else ""
        err = Deadline(f"{self.what}: gave up at the deadline after {self.attempts} attempts{detail}")
        err.__cause__ = last_error
        return err


# Statuses Azure documents as transient (timeout, throttling, service trouble), for Key Vault and ARM alike.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def azure_verdict(error: BaseException) -> float | bool:
    """For :func:`retry_call` around an Azure SDK call: True / seconds (its Retry-After) to retry a transient
    status or a connection failure, False to raise."""
    if isinstance(error, (ServiceRequestError, ServiceResponseError)):
        return True
    if not isinstance(error, HttpResponseError) or getattr(error, "status_code", None) not in RETRYABLE_STATUS:
        return False
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    after = parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"))
    return after if after is not None else True


def retry_call(fn: Callable[[], T], *, what: str, retry_after: Callable[[BaseException], float | None | bool],
               timeout: float | None = None, deadline: float | None = None, backoff: Backoff = DEFAULT_BACKOFF,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn`` until it returns, retrying errors that ``retry_after(error)`` accepts.

    ``retry_after`` returns False (or None) to re-raise at once, True to retry after the backoff, or
    a number of seconds the server asked us to wait.
    """
    waiter = Waiter(what, timeout=timeout, deadline=deadline, backoff=backoff, clock=clock, sleep=sleep)
    while True:
        try:
            return fn()
        except Exception as error:
            verdict = retry_after(error)
            if verdict is False or verdict is None:
                raise
            waiter.sleep(None if verdict is True else float(verdict), last_error=error)

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from keyvault_acme.errors import Deadline
from keyvault_acme.retry import Backoff, Waiter, parse_retry_after, retry_call


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


NO_JITTER = Backoff(initial=0.02, factor=2, cap=0.1, jitter=0)


def test_backoff_starts_short_and_grows_to_the_cap():
    clock = FakeClock()
    w = Waiter("poll", timeout=10, backoff=NO_JITTER, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        w.sleep()
    assert clock.sleeps == pytest.approx([0.02, 0.04, 0.08, 0.1, 0.1])


def test_retry_after_is_honoured_when_longer_than_the_backoff():
    clock = FakeClock()
    w = Waiter("poll", timeout=10, backoff=NO_JITTER, clock=clock, sleep=clock.sleep)
    w.sleep(retry_after=3)
    w.sleep(retry_after=0)
    assert clock.sleeps == pytest.approx([3, 0.04])


def test_retry_after_beyond_the_deadline_fails_now():
    clock = FakeClock()
    w = Waiter("order", timeout=5, backoff=NO_JITTER, clock=clock, sleep=clock.sleep)
    with pytest.raises(Deadline, match="retry in 60 s"):
        w.sleep(retry_after=60)
    assert clock.sleeps == []


def test_never_sleeps_past_the_deadline():
    clock = FakeClock()
    w = Waiter("propagation", timeout=0.25, backoff=NO_JITTER, clock=clock, sleep=clock.sleep)
    with pytest.raises(Deadline, match="propagation"):
        for _ in range(100):
            w.sleep()
    assert clock.now == pytest.approx(0.25)


def test_jitter_only_stretches():
    delays = Backoff(initial=1, factor=1, cap=1, jitter=0.1).delays()
    for _ in range(50):
        assert 1 <= next(delays) <= 1.1


def test_parse_retry_after():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_retry_call_retries_what_the_classifier_accepts():
    clock = FakeClock()
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "ok"

    assert retry_call(flaky, what="x", retry_after=lambda e: isinstance(e, ConnectionError), timeout=5,
                      backoff=NO_JITTER, clock=clock, sleep=clock.sleep) == "ok"
    assert len(calls) == 3


def test_retry_call_reraises_other_errors_and_chains_the_last_at_the_deadline():
    clock = FakeClock()
    with pytest.raises(KeyError):
        retry_call(lambda: {}["k"], what="x", retry_after=lambda e: False, timeout=5, clock=clock,
                   sleep=clock.sleep)

    def always():
        raise ConnectionError("reset")

    with pytest.raises(Deadline) as e:
        retry_call(always, what="key vault", retry_after=lambda e: True, timeout=1, backoff=NO_JITTER,
                   clock=clock, sleep=clock.sleep)
    assert isinstance(e.value.__cause__, ConnectionError)
    assert "reset" in str(e.value)


def test_the_validation_pace_follows_the_ca_up_and_down_and_is_capped():
    from keyvault_acme.acme_client import Pace

    pace, ca = Pace(), "https://ca.test/dir"
    assert pace.expected(ca) is None  # nothing known: the first poll goes at once
    pace.observed(ca, 2.0, first_poll_done=False)
    assert pace.expected(ca) == 2.0 and pace.expected("https://other.test/dir") is None  # per CA
    for _ in range(100):
        # A CA that got fast: each first poll, after the whole expected wait, finds the order done, so all we
        # see is the wait itself; the estimate still comes down.
        waited = pace.expected(ca)
        assert waited is not None
        pace.observed(ca, waited, first_poll_done=True, waited=waited)
    assert (pace.expected(ca) or 0) < 0.1
    for _ in range(20):  # slower again: polls found it pending, the real time is learnt
        pace.observed(ca, 3.0, first_poll_done=False)
    assert 2.9 < pace.expected(ca) <= 3.0
    pace.observed(ca, 600.0, first_poll_done=False)
    assert pace.expected(ca) == Pace.CAP_S


def test_a_polls_own_round_trip_does_not_hold_the_validation_pace_up():
    # What validate() sees when the first poll finds the order done is the wait plus that poll's round trip (a
    # signed POST, ~4 ms to Pebble). Taking that as the CA's time held the estimate near 6 round trips (~25 ms)
    # for a CA that validates in 1 ms: the whole of the benchmark's "validation" phase.
    from keyvault_acme.acme_client import Pace

    pace, ca, round_trip, validates_in = Pace(), "https://ca.test/dir", 0.004, 0.001
    pace.observed(ca, 0.030, first_poll_done=False)
    for _ in range(200):
        waited = pace.expected(ca) or 0.0
        done = waited >= validates_in
        pace.observed(ca, (waited if done else validates_in + 0.005) + round_trip, first_poll_done=done,
                      waited=waited)
    assert (pace.expected(ca) or 0) < 0.004

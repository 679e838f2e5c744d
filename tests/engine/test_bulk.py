"""Bulk work over processes (keyvault_acme.bulk): when it pays, and that results keep the items' order."""
from __future__ import annotations

import os

import pytest

from keyvault_acme import bulk


@pytest.mark.parametrize("count,cpus,expected", [(0, 2, 1), (10, 2, 1), (49, 2, 1), (50, 2, 2), (100, 2, 2),
                                                 (100, 8, 4), (1000, 8, 8), (1000, 1, 1)])
def test_a_process_is_added_only_for_enough_work(count, cpus, expected):
    assert bulk.processes_for(count, cpus, load=0.2) == expected


@pytest.mark.parametrize("load,expected", [(0.0, 8), (1.0, 8), (3.0, 6), (7.4, 2), (9.0, 1), (40.0, 1)])
def test_a_busy_machine_gets_no_more_processes_than_it_has_idle_cpus(load, expected):
    assert bulk.processes_for(1000, 8, load=load) == expected


def _pid_and_square(n: int) -> tuple[int, int]:
    return os.getpid(), n * n


def test_results_come_back_in_the_items_order_from_several_processes():
    items = list(range(23))
    results = bulk.run(_pid_and_square, items, threads=3, processes=2)
    assert [square for _, square in results] == [n * n for n in items]
    pids = {pid for pid, _ in results}
    assert len(pids) == 2 and os.getpid() not in pids


def test_one_process_runs_here_in_threads():
    results = bulk.run(_pid_and_square, [1, 2, 3], threads=2, processes=1)
    assert results == [(os.getpid(), 1), (os.getpid(), 4), (os.getpid(), 9)]


def _raise_spec_error(n: int) -> int:
    from keyvault_acme.errors import SpecError

    raise SpecError(f"certificates[{n}].name", "is bad", "fix it")


def test_an_error_in_another_process_arrives_as_itself():
    # The default pickling of an exception calls cls(*args): SpecError(field, problem, fix) could not come back,
    # and the pool reported "a process was terminated abruptly" instead of the error.
    from keyvault_acme.errors import SpecError

    with pytest.raises(SpecError) as err:
        bulk.run(_raise_spec_error, [7, 8], threads=1, processes=2)
    assert (err.value.field, err.value.problem, err.value.fix) in {
        ("certificates[7].name", "is bad", "fix it"), ("certificates[8].name", "is bad", "fix it")}


def _every_error_class():
    from keyvault_acme import errors

    seen, todo = [], [errors.KeyVaultAcmeError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen


SAMPLE_ARGUMENTS = {"SpecError": ("zones[0].x", "is bad", "fix"), "InsecureUrl": ("http://x/",),
                    "ResponseTooLarge": ("https://x/", 10)}


def _sample(cls):
    from datetime import datetime, timezone

    from keyvault_acme.errors import RateLimited

    for base in cls.__mro__:
        if base.__name__ in SAMPLE_ARGUMENTS:
            return cls(*SAMPLE_ARGUMENTS[base.__name__])
    if issubclass(cls, RateLimited):
        return cls("slow down", retry_after=datetime(2027, 1, 1, tzinfo=timezone.utc), status=429)
    return cls("went wrong")


@pytest.mark.parametrize("cls", _every_error_class(), ids=lambda c: c.__name__)
def test_every_error_survives_pickling_with_its_message_and_facts(cls):
    import pickle

    error = _sample(cls)
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is cls and str(back) == str(error) and back.__dict__ == error.__dict__

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

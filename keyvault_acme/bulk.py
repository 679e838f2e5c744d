"""Bulk work over more than one core: ``renew --due`` over a fleet, or a hundred issuances at once.

One interpreter issues about as fast as one core signs, parses and hashes (the waits overlap in threads;
the CPU does not, because of the GIL). Past a few dozen certificates a second process pays for its start
(imports, a token, the account: about half a second), so the work is dealt round-robin to
:func:`processes_for` spawned processes, each running a few at a time in threads as one process would.
Results come back in the order of the items, whatever order they finish in, so callers print the same
output either way.

A machine busy with other work has no core to give: the automatic choice counts the CPUs left idle (the
load average), so on a shared or saturated host it stays in one process rather than pay start-ups for
nothing.

Spawned, not forked: the parent already runs threads (SDK sessions, executors), and a fork copies their
locks in whatever state they are. ``fn``, the items and the results cross a pipe, so they must pickle (a
function at module level, plain data).
"""
from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Items per process below which another process costs more than it saves (start-up vs CPU per certificate).
MIN_PER_PROCESS = 25

_pools: set[Executor] = set()
_pools_lock = threading.Lock()


def processes_for(count: int, cpus: int | None = None, load: float | None = None) -> int:
    """How many processes ``count`` items are worth here: one per MIN_PER_PROCESS items, at most one per idle
    CPU. ``cpus`` defaults to the CPUs this process may use, ``load`` to the 1-minute load average (this process,
    about to wait for its children, is one of that load)."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    idle = int(cpus - max(0.0, load - 1.0) + 0.5)
    return max(1, min(idle, count // MIN_PER_PROCESS))


def run(fn: Callable[[T], R], items: Sequence[T], *, threads: int, processes: int = 1,
        initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()) -> list[R]:
    """``[fn(item) for item in items]``, ``threads`` at a time in each of ``processes`` processes (this one when
    1). ``initializer(*initargs)`` runs once in each new process before its first item (build its engine)."""
    items = list(items)
    processes = max(1, min(processes, len(items)))
    if processes == 1:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bulk") as pool:
            return list(pool.map(fn, items))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunks = [items[i::processes] for i in range(processes)]
    processes_pool = ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_child, initargs=(initializer, initargs))
    with _pools_lock:
        _pools.add(processes_pool)
    try:
        futures = [processes_pool.submit(_run_chunk, fn, chunk, threads) for chunk in chunks]
        done = [f.result() for f in futures]
    finally:
        processes_pool.shutdown(wait=True)
        with _pools_lock:
            _pools.discard(processes_pool)
    results: list[Any] = [None] * len(items)
    for i, chunk_results in enumerate(done):
        results[i::processes] = chunk_results
    return results


def stop_children() -> None:
    """Kill the processes of every pool still running (Ctrl-C in the parent: they must not go on issuing)."""
    with _pools_lock:
        pools = list(_pools)
    for pool in pools:
        for process in list(getattr(pool, "_processes", {}).values()):
            try:
                process.kill()
            except (OSError, ValueError):  # already gone
                pass


def _start_child(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    # Ctrl-C reaches the whole process group; the parent reports it once, a child just stops.
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    if initializer is not None:
        initializer(*initargs)


def _run_chunk(fn: Callable[[T], R], chunk: Sequence[T], threads: int) -> list[R]:
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bulk") as pool:
        return list(pool.map(fn, chunk))

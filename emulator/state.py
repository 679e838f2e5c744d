"""Persistence of the emulator's state to one JSON file in the state directory, written in the background.

Writes are coalesced: a change marks the state dirty and a writer thread saves at most every `interval`
seconds, so a burst of Key Vault calls costs one write; `flush` (and `stop`) save synchronously. The whole state
is written each time, so the pause between writes grows with what a write costs: saving never takes more than
about a twentieth of a core, however many certificates a long test run leaves behind (Key Vault does not slow
down as a vault fills, and neither may its emulator).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("emulator.state")

STATE_FILE = "state.json"
WRITE_SHARE = 0.05  # at most this share of one core goes to saving state


def plain(obj: Any) -> Any:
    """A deep copy of ``obj`` made of JSON types only (dataclasses become dicts of their fields).

    Through the C JSON codec: an order of magnitude faster than ``dataclasses.asdict``, which matters
    because the copy is taken under the lock that Key Vault requests wait for."""
    return json.loads(json.dumps(obj, default=vars))


class StateFile:
    def __init__(self, directory: Path | None, snapshot: Callable[[], dict[str, Any]], interval: float = 0.2, *,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.path = directory / STATE_FILE if directory is not None else None
        self._snapshot = snapshot
        self._interval = interval
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._write_lock = threading.Lock()
        self._clock = clock
        self._last_write_s = 0.0
        self._thread: threading.Thread | None = None

    def load(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return {}
        return json.loads(self.path.read_text())

    def start(self) -> None:
        if self.path is None or self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="emulator-state", daemon=True)
        self._thread.start()

    def mark_dirty(self) -> None:
        if self.path is not None:
            self._dirty.set()

    def flush(self) -> None:
        if self.path is None:
            return
        with self._write_lock:
            started = self._clock()
            self._dirty.clear()
            data = json.dumps(self._snapshot(), sort_keys=True)
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds private keys
            with os.fdopen(fd, "w") as f:
                f.write(data)
            os.replace(tmp, self.path)
            self._last_write_s = self._clock() - started

    def pause(self) -> float:
        """Seconds to wait after a change before writing: coalesces a burst of changes into one write, and
        stretches with the cost of the last write so that a large state stays cheap to keep."""
        return max(self._interval, self._last_write_s / WRITE_SHARE)

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._dirty.set()
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait()
            if self._stopping.is_set():
                return
            self._stopping.wait(self.pause())
            try:
                self.flush()
            except OSError:
                log.exception("could not save emulator state to %s", self.path)

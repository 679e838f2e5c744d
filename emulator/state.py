"""Persistence of the emulator's state to one JSON file in the state directory, written in the background.

Writes are coalesced: a change marks the state dirty and a writer thread saves at most every `interval`
seconds, so a burst of Key Vault calls costs one write; `flush` (and `stop`) save synchronously.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("emulator.state")

STATE_FILE = "state.json"


class StateFile:
    def __init__(self, directory: Path | None, snapshot: Callable[[], dict[str, Any]], interval: float = 0.2) -> None:
        self.path = directory / STATE_FILE if directory is not None else None
        self._snapshot = snapshot
        self._interval = interval
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._write_lock = threading.Lock()
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
            self._dirty.clear()
            data = json.dumps(self._snapshot(), indent=1, sort_keys=True)
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds private keys
            with os.fdopen(fd, "w") as f:
                f.write(data)
            os.replace(tmp, self.path)

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
            self._stopping.wait(self._interval)  # coalesce a burst of changes into one write
            try:
                self.flush()
            except OSError:
                log.exception("could not save emulator state to %s", self.path)

"""Every request the emulator answered through its proxy, in order: what tests count (requests per
certificate read, per issuance) without instrumenting the client. Bounded: the oldest entries drop off."""
from __future__ import annotations

import fnmatch
import threading
from collections import deque
from typing import Any

MAX_ENTRIES = 200_000


class RequestLog:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)
        self._seq = 0

    def record(self, method: str, host: str, path: str, status: int) -> None:
        with self._lock:
            self._seq += 1
            self._entries.append({"seq": self._seq, "method": method, "host": host, "path": path,
                                  "status": status})

    @property
    def last(self) -> int:
        """The sequence number of the latest request (0 before any): a mark to count from."""
        with self._lock:
            return self._seq

    def since(self, seq: int = 0, host: str = "*") -> list[dict[str, Any]]:
        """Requests after the mark ``seq`` whose host matches the glob ``host``, oldest first."""
        with self._lock:
            entries = [e for e in self._entries if e["seq"] > seq]
        return [e for e in entries if fnmatch.fnmatchcase(e["host"], host.lower())]

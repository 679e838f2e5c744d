"""Counting HTTP requests, for the tests and the benchmark that hold the engine to a request budget.

Two views: the emulator's own log (:meth:`emulator.admin_client.AdminClient.requests`) sees every Azure request
of any process, the CLI's too; :class:`HttpCounter` sees every HTTP request this process sends through
``requests`` (ACME to Pebble as well as Azure), by wrapping requests' adapter: the engine is not touched.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Iterator
from urllib.parse import urlsplit

import requests


@dataclass
class HttpCounter:
    """(method, host, path) of each request sent while :func:`counting` is active, in order."""

    sent: list[tuple[str, str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, url: str) -> None:
        parts = urlsplit(url)
        with self._lock:
            self.sent.append((method, parts.hostname or "", parts.path))

    def take(self) -> list[tuple[str, str, str]]:
        with self._lock:
            sent, self.sent = self.sent, []
        return sent


@contextlib.contextmanager
def counting() -> Iterator[HttpCounter]:
    """Count every request sent through any ``requests`` adapter (every session, every thread) in the block."""
    counter = HttpCounter()
    original = requests.adapters.HTTPAdapter.send

    def send(self, request, *args, **kwargs):
        counter.add(request.method, request.url)
        return original(self, request, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = send
    try:
        yield counter
    finally:
        requests.adapters.HTTPAdapter.send = original


def vault_host(vault_url: str) -> str:
    return urlsplit(vault_url).hostname or ""


def data_requests(emulator, mark: int, host: str) -> list[tuple[str, str]]:
    """(method, path) of the requests to ``host`` after ``mark`` that were answered with data, not with the
    one-time 401 authentication challenge a client gets on its first request."""
    return [(r["method"], r["path"]) for r in emulator.admin.requests(since=mark, host=host) if r["status"] != 401]

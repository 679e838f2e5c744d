"""Small helpers shared by the launchers of real local services (Pebble, BIND 9): free loopback ports,
waiting for readiness under a deadline, and stopping a child process so nothing is left running."""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
import weakref
from pathlib import Path
from typing import Callable


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out on loopback. For DNS, pass both kinds via ``free_dns_port``."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_dns_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP (a DNS server listens on both)."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM, host)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free for both UDP and TCP on loopback")


def wait_until(ready: Callable[[], bool], *, timeout: float, what: str, proc: subprocess.Popen,
               log: Path | None = None) -> None:
    """Poll ``ready()`` with a short growing interval until it is true; fail early if the process died."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready{_tail(log)}")
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - "not ready yet" looks like any connection error
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready within {timeout:.0f} s{_tail(log)}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    lines = log.read_text(errors="replace").splitlines()[-20:]
    return "; last log lines:\n" + "\n".join(lines)


class ChildProcess:
    """A child process that is stopped on ``stop()``, on garbage collection and at interpreter exit."""

    def __init__(self, argv: list[str], *, log: Path, env: dict[str, str] | None = None,
                 cwd: str | None = None) -> None:
        self.log = log
        self._log_file = open(log, "ab")
        self.proc = subprocess.Popen(
            argv, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True, preexec_fn=_die_with_parent,
        )
        # weakref.finalize also runs at interpreter exit, so a crashed test run leaves nothing behind.
        self._finalizer = weakref.finalize(self, _terminate, self.proc, self._log_file)

    def stop(self) -> None:
        self._finalizer()


class Daemon:
    """A local service run as a child process with a temporary directory of its own: ``start()`` (in the
    subclass) makes both, ``stop()`` ends both; a context manager."""

    _dir: Path | None = None
    _child: ChildProcess | None = None

    def start(self):  # pragma: no cover - each service starts its own way
        raise NotImplementedError

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the thread that started it dies, even by SIGKILL or os._exit,
    where no finalizer runs (a killed test run, pytest-timeout's thread method). Start services from a
    long-lived thread (the main thread, a session fixture)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _terminate(proc: subprocess.Popen, log_file) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    log_file.close()

"""The emulator in a process of its own (``python -m emulator``), with the same attributes as
:class:`emulator.server.Emulator`.

Key Vault and Azure DNS are remote services: a benchmark that runs them inside its own interpreter makes
them share one GIL with the client under test, so concurrent issuances cannot overlap. This runs them
where they belong, on another core.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from .admin_client import AdminClient
from .process import ChildProcess, Daemon, free_dns_port, wait_until
from .server import client_environ


class EmulatorProcess(Daemon):
    def __init__(self, *, startup_timeout_s: float = 30.0) -> None:
        self.startup_timeout_s = startup_timeout_s
        self._where: dict | None = None

    def start(self) -> "EmulatorProcess":
        self._dir = Path(tempfile.mkdtemp(prefix="emulator-"))
        log = self._dir / "emulator.log"
        self._child = ChildProcess(
            [sys.executable, "-m", "emulator", "--state-dir", str(self._dir / "state"),
             "--dns-port", str(free_dns_port())],
            log=log, cwd=str(Path(__file__).resolve().parents[1]))
        # The emulator prints one JSON line saying where it listens once it serves.
        wait_until(lambda: self._read_where(log), timeout=self.startup_timeout_s, what="the emulator",
                   proc=self._child.proc, log=log)
        return self

    def _read_where(self, log: Path) -> bool:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                self._where = json.loads(line)
                return True
        return False

    def stop(self) -> None:
        super().stop()
        self._where = None

    def _get(self, key: str):
        if self._where is None:
            raise RuntimeError("the emulator is not started")
        return self._where[key]

    @property
    def proxy_url(self) -> str:
        return self._get("proxy_url")

    @property
    def ca_bundle_path(self) -> str:
        return self._get("ca_bundle_path")

    @property
    def dns_address(self) -> tuple[str, int] | None:
        where = self._get("dns_address")
        return (where[0], int(where[1])) if where else None

    @property
    def admin(self) -> AdminClient:
        return AdminClient(self.proxy_url)

    def environ(self, ca_bundle: str | None = None, no_proxy: str = "127.0.0.1,localhost,::1") -> dict[str, str]:
        return client_environ(self.proxy_url, ca_bundle or self.ca_bundle_path, no_proxy)

"""The emulator as one object: proxy + Entra ID + Key Vault + Azure DNS (ARM and authoritative DNS) + admin API."""
from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from .admin import Admin
from .admin_client import AdminClient
from .authz import Authorizer
from .cloudflare import Cloudflare
from .entra import Entra
from .faults import FaultInjector
from .keyvault import KeyVault
from .proxy import ProxyServer
from .router import Router, serves
from .state import StateFile
from .tls import TestCA
from .wire import Request, Response

log = logging.getLogger("emulator")


def client_environ(proxy_url: str, ca_bundle: str, no_proxy: str) -> dict[str, str]:
    """The only environment a client needs: the proxy, what bypasses it, and the CA bundle to trust."""
    return {"HTTPS_PROXY": proxy_url, "NO_PROXY": no_proxy, "REQUESTS_CA_BUNDLE": ca_bundle}

try:  # Azure DNS is built separately; the Key Vault core works without it.
    from .arm_dns import ArmDns
    from .dns_server import DnsServer
    from .dns_store import ZoneStore
except ImportError:  # pragma: no cover - only while the DNS modules are missing
    ArmDns = DnsServer = ZoneStore = None  # type: ignore[assignment,misc]


class Emulator:
    """`with Emulator() as emu:` serves on loopback; point clients at it with `emu.environ()`."""

    def __init__(self, state_dir: str | Path | None = None, proxy_port: int = 0, dns_port: int = 0,
                 host: str = "127.0.0.1") -> None:
        self._tmp: str | None = None
        if state_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="kv-acme-emulator-")
        self.state_dir = Path(state_dir or self._tmp or "")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.persistent = state_dir is not None
        self.host, self._proxy_port, self._dns_port = host, proxy_port, dns_port

        self.ca = TestCA(self.state_dir)
        self.authorizer = Authorizer()
        self.entra = Entra(self.state_dir)
        self.keyvault = KeyVault(self.entra, self.authorizer)
        self.faults = FaultInjector()
        self.zones = ZoneStore() if ZoneStore is not None else None
        self.arm_dns = ArmDns(self.zones, self.authorizer) if ArmDns is not None and self.zones is not None else None
        self.cloudflare = Cloudflare(self.zones) if self.zones is not None else None
        self._state = StateFile(self.state_dir if self.persistent else None, self._snapshot)
        self._load(self._state.load())

        self.router = Router(self.entra, self.keyvault, self.faults,
                             self.arm_dns.handle if self.arm_dns else None, self._state.mark_dirty, self.authorizer,
                             self.cloudflare.handle if self.cloudflare else None)
        self._admin = Admin(self.entra, self.authorizer, self.keyvault, self.faults,
                            self.arm_dns.handle_admin if self.arm_dns else None, self._health,
                            requests=self.router.log)
        self._proxy: ProxyServer | None = None
        self._proxy_thread: threading.Thread | None = None
        self._dns: Any = None

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> "Emulator":
        if self._proxy is not None:
            return self
        self._proxy = ProxyServer((self.host, self._proxy_port), self.router, self._handle_admin, self._tls_for)
        self._proxy_thread = threading.Thread(target=self._proxy.serve_forever, kwargs={"poll_interval": 0.2},
                                              name="emulator-proxy", daemon=True)
        self._proxy_thread.start()
        if DnsServer is not None and self.zones is not None:
            self._dns = DnsServer(self.zones, self.host, self._dns_port).start()
        self._state.start()
        log.info("emulator proxy on %s, DNS on %s, state in %s", self.proxy_url, self.dns_address, self.state_dir)
        return self

    def stop(self) -> None:
        if self._proxy is not None:
            self._proxy.shutdown()
            self._proxy.close_all()
            self._proxy.server_close()
            if self._proxy_thread is not None:
                self._proxy_thread.join(timeout=5)
            self._proxy = self._proxy_thread = None
        if self._dns is not None:
            self._dns.stop()
            self._dns = None
        self._state.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- where it is --------------------------------------------------------------------------------------
    @property
    def proxy_port(self) -> int:
        if self._proxy is None:
            raise RuntimeError("the emulator is not started")
        return int(self._proxy.server_address[1])

    @property
    def proxy_url(self) -> str:
        return f"http://{self.host}:{self.proxy_port}"

    @property
    def ca_bundle_path(self) -> str:
        """PEM of the emulator's test CA (stable across restarts with the same state_dir)."""
        return str(self.ca.bundle_path)

    @property
    def dns_address(self) -> tuple[str, int] | None:
        """(host, port) of the authoritative DNS server for the emulated Azure DNS zones (UDP and TCP)."""
        return (self.host, self._dns.port) if self._dns is not None else None

    @property
    def admin(self) -> AdminClient:
        return AdminClient(self.proxy_url)

    def environ(self, ca_bundle: str | None = None, no_proxy: str = "127.0.0.1,localhost,::1") -> dict[str, str]:
        return client_environ(self.proxy_url, ca_bundle or self.ca_bundle_path, no_proxy)

    # -- internals ----------------------------------------------------------------------------------------
    def _tls_for(self, host: str) -> Any:
        return self.ca.context_for(host) if serves(host) else None

    def _handle_admin(self, request: Request) -> Response:
        if request.path.startswith("/admin/cloudflare/") and self.cloudflare is not None:
            return self.cloudflare.handle_admin(request)  # its zones and tokens live for the process only
        response = self._admin.handle(request)
        if request.method not in ("GET", "HEAD") and response.status < 300:
            self._state.mark_dirty()
        return response

    def _health(self) -> dict[str, Any]:
        return {"ok": True, "proxy_url": self.proxy_url, "ca_bundle_path": self.ca_bundle_path,
                "dns_address": list(self.dns_address) if self.dns_address else None,
                "state_dir": str(self.state_dir) if self.persistent else None}

    def _snapshot(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": 1, "entra": self.entra.to_dict(), "authz": self.authorizer.to_dict(),
                                "keyvault": self.keyvault.to_dict()}
        if self.zones is not None:
            data["dns"] = self.zones.to_dict()
        return data

    def _load(self, data: dict[str, Any]) -> None:
        if not data:
            return
        self.entra.load_dict(data.get("entra", {}))
        self.authorizer.load_dict(data.get("authz", {}))
        self.keyvault.load_dict(data.get("keyvault", {}))
        if self.zones is not None and "dns" in data:
            self.zones.load_dict(data["dns"])

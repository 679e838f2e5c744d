"""Run the real Pebble (Let's Encrypt's test CA) on free loopback ports.

Used by the tests, the demo and the benchmark::

    with Bind(zones=["example.test"]) as bind, Pebble(dns_server=("127.0.0.1", bind.port)) as pebble:
        pebble.directory_url, pebble.tls_ca_pem_path, pebble.root_pem(), pebble.cert_status(serial_hex)

Two Pebbles exist here. The default is the current one (:data:`PEBBLE_BINARY`, 2.10 from Debian unstable,
fetched into ``.cache/pebble-2.10/`` by ``scripts/install-system-deps.sh``): ARI (``renewalInfo``, and
:meth:`Pebble.set_renewal_info` to force a window), profiles (``profiles=``), ``alreadyReplaced``,
dns-persist-01, and a User-Agent required on every request. :data:`PEBBLE_24_BINARY` is Debian 12's own package
(2.4: none of those), kept for the tests that prove the engine degrades cleanly against an older CA.

Pebble resolves DNS-01 records through exactly one DNS server (``-dnsserver``). To validate names
in several DNS worlds (BIND zones and the Azure emulator's zones), either run one Pebble per world
or let BIND forward the other world's zones (``Bind(forward_zones=...)``), which is what the test
fixtures do.
"""
from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import ssl
import tempfile
import urllib.request
from pathlib import Path
from typing import Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .process import ChildProcess, Daemon, free_port, wait_until

PEBBLE_BINARY = str(Path(__file__).resolve().parents[1] / ".cache" / "pebble-2.10" / "usr" / "bin" / "pebble")
PEBBLE_24_BINARY = "/usr/bin/pebble"
DEFAULT_VALIDITY_S = 90 * 24 * 3600  # Pebble's own default, Let's Encrypt's classic profile


class Pebble(Daemon):
    """A running Pebble. Restarting forgets accounts, orders and roots, so keep one per test session."""

    def __init__(self, dns_server: tuple[str, int] | None = None, *, validity_s: int | None = None,
                 profiles: Mapping[str, int] | None = None, eab_keys: Mapping[str, str] | None = None,
                 eab_required: bool = False,
                 nonce_reject_percent: int | None = None, authz_reuse_percent: int | None = None,
                 env: dict[str, str] | None = None, binary: str = PEBBLE_BINARY) -> None:
        """``validity_s``: certificate lifetime in seconds (all profiles). ``profiles``: name -> lifetime in
        seconds, what the directory's ``meta.profiles`` offers (2.7+; 2.4 ignores it). Without ``profiles`` the
        CA offers one, ``default``. Pebble picks a RANDOM profile for an order that names none, so give
        profiles of different lifetimes only to tests whose orders name one."""
        self.dns_server = dns_server
        self.validity_s = validity_s
        self.profiles = dict(profiles) if profiles else {"default": validity_s or DEFAULT_VALIDITY_S}
        # External account binding: kid -> base64url HMAC key, and whether new accounts must present one.
        self.eab_keys, self.eab_required = dict(eab_keys or {}), eab_required
        self.binary = binary
        # No random validation delay: the ACME wire is fast, our polling must show it.
        self.env = {"PEBBLE_VA_NOSLEEP": "1"}
        if nonce_reject_percent is not None:  # default stays Pebble's 5 %, which exercises badNonce retries
            self.env["PEBBLE_WFE_NONCEREJECT"] = str(nonce_reject_percent)
        if authz_reuse_percent is not None:
            self.env["PEBBLE_AUTHZREUSE"] = str(authz_reuse_percent)
        self.env.update(env or {})
        self.port = self.management_port = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "Pebble":
        if not Path(self.binary).exists():
            raise RuntimeError(f"{self.binary} is missing: run `make system-deps` (scripts/install-system-deps.sh)")
        self._dir = Path(tempfile.mkdtemp(prefix="pebble-"))
        try:
            write_loopback_tls(self._dir)
            self.port, self.management_port = free_port(), free_port()
            config = {"pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(self._dir / "tls-cert.pem"),
                "privateKey": str(self._dir / "tls-key.pem"),
                # http-01 / tls-alpn-01 are unused (DNS-01 only) but Pebble wants ports for them.
                "httpPort": free_port(),
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": self.eab_required,
                "externalAccountMACKeys": self.eab_keys,
            }}
            # 2.7+ read each profile's validityPeriod and ignore certificateValidityPeriod; 2.4 the reverse.
            config["pebble"]["profiles"] = {
                name: {"description": f"{name} ({validity} s)", "validityPeriod": int(validity)}
                for name, validity in self.profiles.items()}
            if self.validity_s is not None:
                config["pebble"]["certificateValidityPeriod"] = int(self.validity_s)
            (self._dir / "pebble.json").write_text(json.dumps(config, indent=2))
            self._launch()
            return self
        except BaseException:
            self.stop()
            raise

    def restart(self) -> None:
        """Stop and start the same CA on the same ports: it forgets every account, order and certificate (as a CA
        reset would), while clients keep its URLs."""
        assert self._child is not None, "Pebble is not running"
        self._child.stop()
        self._launch()

    def _launch(self) -> None:
        assert self._dir is not None
        argv = [self.binary, "-config", str(self._dir / "pebble.json")]
        if self.dns_server:
            argv += ["-dnsserver", f"{self.dns_server[0]}:{self.dns_server[1]}"]
        self._child = ChildProcess(argv, log=self._dir / "pebble.log", env=self.env)
        wait_until(lambda: bool(self._get(self.directory_url)), timeout=20, what="pebble",
                   proc=self._child.proc, log=self._child.log)

    # -- what clients need ---------------------------------------------------------------------------
    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def management_url(self) -> str:
        return f"https://127.0.0.1:{self.management_port}"

    @property
    def tls_ca_pem_path(self) -> str:
        """The CA that signed Pebble's HTTPS certificate (one per process, shared by every Pebble)."""
        assert self._dir is not None, "Pebble is not running"
        return str(self._dir / "tls-ca.pem")

    @property
    def log_path(self) -> Path | None:
        return self._child.log if self._child else None

    def root_pem(self, index: int = 0) -> str:
        """The root that signs issued chains (a new one per Pebble run)."""
        return self._get(f"{self.management_url}/roots/{index}")

    def intermediate_pem(self, index: int = 0) -> str:
        return self._get(f"{self.management_url}/intermediates/{index}")

    def cert_status(self, serial_hex: str) -> str:
        """``"Valid"`` or ``"Revoked"`` for an issued certificate's serial (hex, any case)."""
        body = self._get(f"{self.management_url}/cert-status-by-serial/{serial_hex.lower()}")
        return json.loads(body)["Status"]

    def cert_status_details(self, serial_hex: str) -> dict:
        """Pebble's whole status document (Status, Serial, Reason, RevokedAt, ...)."""
        return json.loads(self._get(f"{self.management_url}/cert-status-by-serial/{serial_hex.lower()}"))

    def directory(self) -> dict:
        """The ACME directory as the CA serves it (``renewalInfo``, ``meta.profiles`` where offered)."""
        return json.loads(self._get(self.directory_url))

    def set_renewal_info(self, certificate_pem: str, window: tuple[dt.datetime, dt.datetime] | None = None, *,
                         raw: str | None = None) -> None:
        """Make the CA's ARI answer for ``certificate_pem`` the suggested ``window`` (start, end), or the
        literal ``raw`` body (it may be malformed on purpose). Pebble 2.8+ (management port)."""
        if raw is None:
            assert window is not None, "give a window or a raw answer"
            start, end = (t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") for t in window)
            raw = json.dumps({"suggestedWindow": {"start": start, "end": end}})
        self._post(f"{self.management_url}/set-renewal-info/",
                   json.dumps({"certificate": certificate_pem, "ariResponse": raw}))

    def _opener(self) -> urllib.request.OpenerDirector:
        ctx = ssl.create_default_context(cafile=self.tls_ca_pem_path)
        # Pebble is on loopback: never route it through a proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=ctx))
        # Pebble 2.10 refuses any request without a User-Agent (RFC 8555 6.1).
        opener.addheaders = [("User-Agent", "keyvault-acme-tests")]
        return opener

    def _get(self, url: str) -> str:
        with self._opener().open(url, timeout=10) as response:
            return response.read().decode()

    def _post(self, url: str, body: str) -> str:
        request = urllib.request.Request(url, data=body.encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with self._opener().open(request, timeout=10) as response:
            return response.read().decode()

def write_loopback_tls(directory: Path) -> None:
    """``tls-ca.pem``, and ``tls-cert.pem`` / ``tls-key.pem`` for 127.0.0.1, ::1 and localhost, signed by the
    process's loopback CA (:func:`_tls_ca`): what a local HTTPS server (Pebble, acme2certifier) presents."""
    ca_key, ca = _tls_ca()
    now = dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (directory / "tls-ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "tls-cert.pem").write_bytes(leaf.public_bytes(pem))
    key_path = directory / "tls-key.pem"
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@functools.lru_cache(maxsize=1)
def _tls_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """One TLS CA per process for every Pebble, so one CA bundle trusts all of them."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyvault-acme test Pebble TLS CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    return ca_key, ca

"""Run the real Pebble (Let's Encrypt's test CA, Debian package ``pebble``) on free loopback ports.

Used by the tests and by the demo::

    with Bind(zones=["example.test"]) as bind, Pebble(dns_server=("127.0.0.1", bind.port)) as pebble:
        pebble.directory_url, pebble.tls_ca_pem_path, pebble.root_pem(), pebble.cert_status(serial_hex)

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

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .process import ChildProcess, Daemon, free_port, wait_until

PEBBLE_BINARY = "/usr/bin/pebble"


class Pebble(Daemon):
    """A running Pebble. Restarting forgets accounts, orders and roots, so keep one per test session."""

    def __init__(self, dns_server: tuple[str, int] | None = None, *, validity_s: int | None = None,
                 nonce_reject_percent: int | None = None, authz_reuse_percent: int | None = None,
                 env: dict[str, str] | None = None, binary: str = PEBBLE_BINARY,
                 eab_keys: dict[str, str] | None = None) -> None:
        self.dns_server = dns_server
        # External account binding keys (kid -> base64url HMAC key) Pebble knows; binding stays optional.
        self.eab_keys = dict(eab_keys or {})
        self.validity_s = validity_s
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
        self._dir = Path(tempfile.mkdtemp(prefix="pebble-"))
        try:
            self._write_tls()
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
                "externalAccountBindingRequired": False,
                "externalAccountMACKeys": self.eab_keys,
            }}
            if self.validity_s is not None:
                config["pebble"]["certificateValidityPeriod"] = int(self.validity_s)
            (self._dir / "pebble.json").write_text(json.dumps(config, indent=2))
            argv = [self.binary, "-config", str(self._dir / "pebble.json")]
            if self.dns_server:
                argv += ["-dnsserver", f"{self.dns_server[0]}:{self.dns_server[1]}"]
            self._child = ChildProcess(argv, log=self._dir / "pebble.log", env=self.env)
            wait_until(lambda: bool(self._get(self.directory_url)), timeout=20, what="pebble",
                       proc=self._child.proc, log=self._child.log)
            return self
        except BaseException:
            self.stop()
            raise

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

    def _get(self, url: str) -> str:
        ctx = ssl.create_default_context(cafile=self.tls_ca_pem_path)
        # Pebble is on loopback: never route it through a proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=ctx))
        with opener.open(url, timeout=10) as response:
            return response.read().decode()

    def _write_tls(self) -> None:
        assert self._dir is not None
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
        (self._dir / "tls-ca.pem").write_bytes(ca.public_bytes(pem))
        (self._dir / "tls-cert.pem").write_bytes(leaf.public_bytes(pem))
        key_path = self._dir / "tls-key.pem"
        key_path.touch(mode=0o600)
        key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))


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

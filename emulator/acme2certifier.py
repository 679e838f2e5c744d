"""Run acme2certifier (PyPI ``acme2certifier``), an ACME server independent of Pebble, on a loopback port.

A second, independent implementation of the server side for interop tests: ARI (``renewalInfo``), external
account binding (its JSON EAB handler) and real DNS-01 validation through our DNS server. acme2certifier signs
with its ``openssl_ca_handler`` from a CA made here; it is served by the WSGI application the package ships
(``acme2certifier.share.acme2certifier_wsgi``) under ``wsgiref`` with TLS from the same loopback CA as every
Pebble (so one CA bundle trusts both)::

    with Acme2Certifier(dns_server=("127.0.0.1", bind.port), eab_keys={"kid-1": HMAC}) as a2c:
        a2c.directory_url

Two adaptations, both test-world only: acme2certifier validates DNS-01 with dnspython against a list of name
server addresses on port 53, so its resolver is pointed at ``dns_server``'s port; and it runs in its own process
(its configuration is read from ``ACME_SRV_CONFIGFILE`` when its WSGI module is imported).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .pebble import write_loopback_tls
from .process import ChildProcess, Daemon, free_port, wait_until


class Acme2Certifier(Daemon):
    """A running acme2certifier; ``eab_keys`` (kid -> base64url HMAC) makes external account binding required."""

    def __init__(self, dns_server: tuple[str, int], *, eab_keys: Mapping[str, str] | None = None,
                 validity_days: int = 90) -> None:
        self.dns_server = dns_server
        self.eab_keys = dict(eab_keys or {})
        self.validity_days = validity_days
        self.port = 0

    def start(self) -> "Acme2Certifier":
        self._dir = Path(tempfile.mkdtemp(prefix="a2c-"))
        try:
            write_loopback_tls(self._dir)
            self._write_ca()
            (self._dir / "certs").mkdir()
            self.port = free_port()
            (self._dir / "acme_srv.cfg").write_text(self._config())
            argv = [sys.executable, "-m", "emulator.acme2certifier", str(self._dir), str(self.port),
                    str(self.dns_server[1])]
            env = {"ACME_SRV_CONFIGFILE": str(self._dir / "acme_srv.cfg"), "ACME2CERTIFIER_BASE_DIR": str(self._dir)}
            self._child = ChildProcess(argv, log=self._dir / "a2c.log", env=env,
                                       cwd=str(Path(__file__).resolve().parents[1]))
            wait_until(lambda: bool(self._get(self.directory_url)), timeout=30, what="acme2certifier",
                       proc=self._child.proc, log=self._child.log)
            return self
        except BaseException:
            self.stop()
            raise

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/directory"

    @property
    def tls_ca_pem_path(self) -> str:
        assert self._dir is not None
        return str(self._dir / "tls-ca.pem")

    @property
    def ca_cert_pem(self) -> str:
        """The CA that signs what acme2certifier issues."""
        assert self._dir is not None
        return (self._dir / "ca-cert.pem").read_text()

    def directory(self) -> dict:
        return json.loads(self._get(self.directory_url))

    def _get(self, url: str) -> str:
        ctx = ssl.create_default_context(cafile=self.tls_ca_pem_path)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
        opener.addheaders = [("User-Agent", "keyvault-acme-tests")]
        with opener.open(url, timeout=10) as response:
            return response.read().decode()

    def _config(self) -> str:
        d = self._dir
        assert d is not None
        lines = [
            "[DEFAULT]", "debug: False", 'dns_server_list: ["127.0.0.1"]',
            "[Nonce]", "nonce_check_disable: False",
            "[CAhandler]", "handler_module: acme2certifier.cahandlers.openssl_ca_handler",
            f"issuing_ca_key: {d / 'ca-key.pem'}", f"issuing_ca_cert: {d / 'ca-cert.pem'}",
            f"issuing_ca_crl: {d / 'ca.crl'}", f"cert_save_path: {d / 'certs'}",
            f"cert_validity_days: {self.validity_days}", f'ca_cert_chain_list: ["{d / "ca-cert.pem"}"]',
            "[DBhandler]", "handler_module: acme2certifier.dbhandlers.wsgi_handler", f"dbfile: {d / 'acme_srv.db'}",
            "[Challenge]", "dns_validation_pause_timer: 0",
            "[Order]", "tnauthlist_support: False",
        ]
        if self.eab_keys:
            (d / "eab.json").write_text(json.dumps(self.eab_keys))
            lines += ["[EABhandler]", "eab_handler_module: acme2certifier.eabhandlers.json_handler",
                      f"key_file: {d / 'eab.json'}"]
        return "\n".join(lines) + "\n"

    def _write_ca(self) -> None:
        assert self._dir is not None
        now = dt.datetime.now(dt.timezone.utc)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme2certifier test CA")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                               critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        crl = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(now)
               .next_update(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        (self._dir / "ca-cert.pem").write_bytes(cert.public_bytes(pem))
        (self._dir / "ca.crl").write_bytes(crl.public_bytes(pem))
        key_path = self._dir / "ca-key.pem"
        key_path.touch(mode=0o600)
        key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _serve(directory: str, port: int, dns_port: int) -> None:
    """The child process: acme2certifier's WSGI application over HTTPS on 127.0.0.1:``port``."""
    import dns.resolver

    reset = dns.resolver.Resolver.reset

    def reset_to_our_port(self) -> None:  # acme2certifier's name servers are addresses on port 53
        reset(self)
        self.port = dns_port

    dns.resolver.Resolver.reset = reset_to_our_port  # type: ignore[method-assign]
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIServer, make_server

    from acme2certifier.share import acme2certifier_wsgi as a2c

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Handler(a2c.get_handler_cls()):  # type: ignore[misc]
        def get_environ(self):  # served over TLS: the URLs acme2certifier writes must say https
            return {**super().get_environ(), "HTTPS": "on"}

    server = make_server("127.0.0.1", port, a2c.application, server_class=Server, handler_class=Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(directory, "tls-cert.pem"), os.path.join(directory, "tls-key.pem"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))

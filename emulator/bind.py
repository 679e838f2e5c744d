"""Run the real BIND 9 (``named``) as the authoritative server of test zones on a free loopback port.

Two TSIG keys: ``tsig_key_name`` may write only TXT records (the least privilege the product needs
for DNS-01), ``admin_key_name`` may write anything (tests use it to set up CNAME and CAA records).
Zones in another DNS world (the Azure emulator's) can be forwarded, so one Pebble resolving through
this BIND sees both worlds.
"""
from __future__ import annotations

import base64
import re
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from .process import ChildProcess, Daemon, free_dns_port, wait_until

NAMED_BINARY = "/usr/sbin/named"
TSIG_KEYGEN = "/usr/sbin/tsig-keygen"


class Bind(Daemon):
    """A running ``named`` serving ``zones`` (primary, dynamic) on 127.0.0.1:``port``."""

    tsig_algorithm = "hmac-sha256"

    def __init__(self, zones: Iterable[str] = ("example.test",), port: int = 0, *,
                 forward_zones: Mapping[str, tuple[str, int]] | None = None,
                 tsig_key_name: str = "acme-update", admin_key_name: str = "test-admin",
                 binary: str = NAMED_BINARY) -> None:
        self.zones = tuple(z.lower().rstrip(".") for z in zones)
        self.forward_zones = dict(forward_zones or {})
        self.port = port
        self.host = "127.0.0.1"
        self.tsig_key_name = tsig_key_name
        self.admin_key_name = admin_key_name
        self.tsig_secret_b64 = ""
        self.admin_secret_b64 = ""
        self.binary = binary

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def server(self) -> str:
        """``host:port`` as an ``Rfc2136Zone.server`` value."""
        return f"{self.host}:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> "Bind":
        self._dir = Path(tempfile.mkdtemp(prefix="named-"))
        try:
            self.port = self.port or free_dns_port()
            self.tsig_secret_b64 = _keygen(self.tsig_key_name)
            self.admin_secret_b64 = _keygen(self.admin_key_name)
            for zone in self.zones:
                (self._dir / f"{zone}.zone").write_text(_zone_file(zone))
            # The forwarded zones are delegated from it, so BIND recurses (and forwards) instead of answering NXDOMAIN.
            (self._dir / "root.zone").write_text(_zone_file("") + "".join(
                f"{zone}. IN NS ns1.root.\n" for zone in self.forward_zones))
            conf = self._dir / "named.conf"
            conf.write_text(self._named_conf())
            self._child = ChildProcess([self.binary, "-g", "-c", str(conf), "-u", "root"],
                                       log=self._dir / "named.log", cwd=str(self._dir))
            wait_until(self._serves_all_zones, timeout=20, what="named", proc=self._child.proc,
                       log=self._child.log)
            return self
        except BaseException:
            self.stop()
            raise

    def _serves_all_zones(self) -> bool:
        return all(self.query(zone, "SOA", timeout=0.1).rcode() == dns.rcode.NOERROR for zone in self.zones)

    def _named_conf(self) -> str:
        assert self._dir is not None
        keys = "".join(
            f'key "{name}" {{ algorithm {self.tsig_algorithm}; secret "{secret}"; }};\n'
            for name, secret in ((self.tsig_key_name, self.tsig_secret_b64),
                                 (self.admin_key_name, self.admin_secret_b64)))
        zones = "".join(
            f'zone "{zone}" {{ type primary; file "{zone}.zone"; notify no;\n'
            f'  update-policy {{ grant {self.tsig_key_name} zonesub TXT; grant {self.admin_key_name} zonesub ANY; }};\n}};\n'
            for zone in self.zones)
        zones += "".join(
            f'zone "{zone}" {{ type forward; forward only; forwarders {{ {host} port {port}; }}; }};\n'
            for zone, (host, port) in self.forward_zones.items())
        # A root of our own: a name in none of the zones is NXDOMAIN here, and recursion never leaves loopback.
        zones += 'zone "." { type primary; file "root.zone"; notify no; };\n'
        # Recursion (for loopback only) makes BIND chase CNAMEs from one of its zones into another and
        # into forwarded zones, as a CA's resolver does; Pebble's own DNS client does not chase them.
        recursion = "yes"
        allow_recursion = "  allow-recursion { 127.0.0.1; };\n"
        return (
            f'options {{\n  directory "{self._dir}";\n  pid-file "{self._dir}/named.pid";\n'
            f'  session-keyfile "{self._dir}/session.key";\n'
            f'  listen-on port {self.port} {{ {self.host}; }};\n  listen-on-v6 {{ none; }};\n'
            f'  recursion {recursion};\n{allow_recursion}  dnssec-validation no;\n'
            # No caching: BIND stands in for the CA's resolver, and a cached challenge value from the last
            # issuance would fail the next one for the same name (renewals) until its TTL ran out.
            f'  allow-query {{ any; }};\n  notify no;\n  max-journal-size 1m;\n'
            f'  max-cache-ttl 0;\n  max-ncache-ttl 0;\n}};\n'
            'controls { };\n' + keys + zones
        )

    # -- helpers for tests -------------------------------------------------------------------------
    def query(self, name: str, rdtype: str, *, recursive: bool = False, timeout: float = 2) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype)
        if not recursive:
            q.flags &= ~dns.flags.RD
        return dns.query.udp(q, self.host, port=self.port, timeout=timeout)

    def txt_values(self, name: str) -> set[str]:
        """The TXT strings served at ``name`` (empty when none)."""
        answer = self.query(name, "TXT")
        return {b"".join(rd.strings).decode() for rrset in answer.answer
                if rrset.rdtype == dns.rdatatype.TXT for rd in rrset}

    def set_record(self, name: str, rdtype: str, *values: str, ttl: int = 60) -> None:
        """Replace the RRset ``name``/``rdtype`` with ``values`` (admin key), e.g. CNAME or CAA."""
        update = self._update_for(name)
        update.replace(name + ".", ttl, rdtype, *values)
        self._send(update)

    def delete_record(self, name: str, rdtype: str) -> None:
        update = self._update_for(name)
        update.delete(name + ".", rdtype)
        self._send(update)

    def _update_for(self, name: str) -> dns.update.UpdateMessage:
        zone = max((z for z in self.zones if name == z or name.endswith("." + z)), key=len, default=None)
        if zone is None:
            raise ValueError(f"{name} is in none of this server's zones {self.zones}")
        keyring = dns.tsigkeyring.from_text({self.admin_key_name: self.admin_secret_b64})
        return dns.update.UpdateMessage(zone + ".", keyring=keyring, keyname=self.admin_key_name,
                                        keyalgorithm=dns.tsig.HMAC_SHA256)

    def _send(self, update: dns.update.UpdateMessage) -> None:
        response = dns.query.tcp(update, self.host, port=self.port, timeout=5)
        if response.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"update refused: {dns.rcode.to_text(response.rcode())}")


def _keygen(name: str) -> str:
    """A fresh HMAC-SHA256 TSIG secret from BIND's own tsig-keygen (base64)."""
    try:
        out = subprocess.run([TSIG_KEYGEN, "-a", "hmac-sha256", name], check=True, capture_output=True,
                             text=True).stdout
        return re.search(r'secret "([^"]+)"', out).group(1)  # type: ignore[union-attr]
    except FileNotFoundError:  # same format, when bind9-utils is absent
        return base64.b64encode(secrets.token_bytes(32)).decode()


def _zone_file(zone: str) -> str:
    origin = f"{zone}." if zone else "."  # "" is the root
    return (
        f"$ORIGIN {origin}\n$TTL 60\n"
        f"@ IN SOA ns1.{zone or 'root'}. hostmaster.{zone or 'root'}. ( 1 60 60 3600 30 )\n"
        f"@ IN NS ns1.{zone or 'root'}.\n"
        f"ns1{'' if zone else '.root'} IN A 127.0.0.1\n"
    )

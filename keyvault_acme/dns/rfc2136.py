"""RFC 2136 dynamic updates signed with TSIG: BIND, PowerDNS, Knot, Windows DNS.

The TSIG secret is handed in as a value by the caller, who reads it from Key Vault; it is never read
from config here and never appears in errors or logs.
"""
from __future__ import annotations

import logging
from typing import Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.tsigkeyring
import dns.update

from ..errors import DnsError
from ..model import Rfc2136Zone
from ..retry import retry_call
from .base import DEFAULT_PROPAGATION_TIMEOUT, Finding
from .propagation import Nameserver, ns_names, query
from .servers import Server, parse_server, server_addresses

log = logging.getLogger("keyvault_acme.dns.rfc2136")

TXT_TTL = 60

_REFUSALS = {
    dns.rcode.REFUSED: "the server refused the update; the TSIG key may not write TXT records here "
                       "(BIND: update-policy { grant <key> zonesub TXT; })",
    dns.rcode.NOTAUTH: "the server rejected the TSIG signature or is not authoritative for the zone; "
                       "check the key name, algorithm and secret",
    dns.rcode.NOTZONE: "the name is outside the zone; check the zone name",
}


class Rfc2136Provider:
    """DNS-01 TXT records in one zone on an RFC 2136 server."""

    def __init__(self, zone: str, server: str | Server, key_name: str, secret_b64: str, *,
                 algorithm: str = "hmac-sha256", ttl: int = TXT_TTL, timeout: float = 10.0,
                 propagation_timeout: float = DEFAULT_PROPAGATION_TIMEOUT) -> None:
        self.zone = zone.lower().rstrip(".")
        self.server: Server = parse_server(server) if isinstance(server, str) else (server[0], server[1])
        self.ttl = ttl
        self.timeout = timeout
        self.propagation_timeout = propagation_timeout
        self._key_name = key_name
        self._algorithm = algorithm
        self._keyring = dns.tsigkeyring.from_text({key_name: secret_b64})

    @classmethod
    def from_zone(cls, zone: Rfc2136Zone, secret_b64: str, **kwargs) -> "Rfc2136Provider":
        """Build from the spec's zone and the TSIG secret the caller fetched from Key Vault."""
        return cls(zone.name, zone.server, zone.tsig_key_name, secret_b64, algorithm=zone.tsig_algorithm, **kwargs)

    def __repr__(self) -> str:
        return f"Rfc2136Provider({self.zone} at {self.server[0]}:{self.server[1]}, key {self._key_name})"

    def addresses(self) -> list[Server]:
        """The server's addresses, resolved at each use (a host name may move); DnsError when it does not resolve."""
        return server_addresses(self.server, f"zones[].server of zone {self.zone}")

    def authoritative_servers(self, zone: str) -> dict[str, list[Server]]:
        """The primary we update answers for the zone; configure resolvers to also check secondaries."""
        return {f"{self.server[0]}:{self.server[1]}": self.addresses()}

    def delegation(self, zone: str, *, deadline: float | None = None) -> tuple[list[str], str]:
        """The NS set the primary serves for the zone, which its parent must delegate to."""
        host, port = self.server
        return sorted(ns_names(zone, [Nameserver(*address) for address in self.addresses()])), f"the primary {host}:{port}"

    def writable(self, zone: str, records: Sequence[str], *, deadline: float | None = None) -> Finding:
        host, port = self.server
        try:
            serial = self.check_writable()
        except DnsError as e:
            return Finding(False, f"{zone}: {' '.join(str(e).split())}",  # as one line, like every check result
                           "check the server address, the zone name and the TSIG key (name, algorithm, secret)")
        return Finding(True, f"{zone} at {host}:{port}: SOA serial {serial}; the TSIG key is accepted (a no-op "
                             "update); its TXT rights show at the first challenge")

    def check_writable(self) -> int:
        """Preflight without changing the zone: the server answers the zone's SOA with authority, and accepts a
        TSIG-signed update whose only content is a prerequisite (the SOA exists). Returns the SOA serial.

        That proves the server, the zone and the key; whether the key's update policy lets it write TXT
        records is proven only by the first challenge (no RFC 2136 message can ask without writing).
        """
        host, port = self.server
        problems = []
        for address in self.addresses():
            try:
                response = query(self.zone, "SOA", Nameserver(*address), timeout=self.timeout)
                break
            except (dns.exception.DNSException, OSError) as e:
                problems.append(f"{_shown(address)}: {type(e).__name__}: {e}")
        else:
            raise DnsError(f"{host}:{port} did not answer the SOA query for {self.zone} ({'; '.join(problems)})")
        soa = [rd for rrset in response.answer if rrset.rdtype == dns.rdatatype.SOA for rd in rrset]
        if response.rcode() != dns.rcode.NOERROR or not soa or not response.flags & dns.flags.AA:
            raise DnsError(f"{host}:{port} is not authoritative for {self.zone} (answered "
                           f"{dns.rcode.to_text(response.rcode())} without its SOA); check the zone and server")
        update = self._update()
        update.present(self.zone + ".", "SOA")  # a prerequisite only: nothing to change
        self._send(update, f"TSIG-signed no-op update of {self.zone}", None)
        return soa[0].serial

    def present(self, fqdn: str, value: str, *, deadline: float | None = None) -> None:
        update = self._update()
        update.add(self._name(fqdn), self.ttl, _txt(value))  # RFC 2136 add: joins the RRset, keeps other values
        self._send(update, f"add TXT {fqdn}", deadline)

    def cleanup(self, fqdn: str, value: str, *, deadline: float | None = None) -> None:
        update = self._update()
        update.delete(self._name(fqdn), _txt(value))  # only this value; deleting a missing RR is not an error
        self._send(update, f"remove TXT {fqdn}", deadline)

    def _name(self, fqdn: str) -> dns.name.Name:
        name = dns.name.from_text(fqdn)
        if not name.is_subdomain(dns.name.from_text(self.zone)):
            raise DnsError(f"{fqdn} is not in the zone {self.zone} served by {self.server[0]}:{self.server[1]}")
        return name

    def _update(self) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(self.zone + ".", keyring=self._keyring, keyname=dns.name.from_text(self._key_name),
                                        keyalgorithm=self._algorithm)

    def _send(self, update: dns.update.UpdateMessage, what: str, deadline: float | None) -> None:
        host, port = self.server
        addresses = self.addresses()

        def attempt() -> dns.message.Message:
            # The addresses in order until one answers: a name's IPv6 address may be unreachable from here.
            # UDP first, as nsupdate does (TCP when the answer is truncated): an update answered twice after
            # a retry is harmless, since adding a record that exists and deleting one that does not are no-ops.
            failure: Exception | None = None
            for address in addresses:
                try:
                    response, _ = dns.query.udp_with_fallback(update, address[0], port=address[1],
                                                              timeout=self.timeout)
                    return response
                except (dns.exception.Timeout, OSError) as e:
                    log.debug("%s at %s: %s", what, _shown(address), type(e).__name__)
                    failure = e
            assert failure is not None  # server_addresses returns at least one address
            raise failure

        try:
            response = retry_call(attempt, what=f"{what} at {host}:{port}", timeout=self.timeout * 3, deadline=deadline,
                                  retry_after=lambda e: isinstance(e, (dns.exception.Timeout, OSError)))
        except dns.tsig.PeerError as e:
            raise DnsError(f"{what} at {host}:{port}: TSIG rejected ({type(e).__name__}); "
                           f"check the key name, algorithm and secret") from None
        except (dns.exception.DNSException, OSError) as e:
            raise DnsError(f"{what} at {host}:{port}: {e}") from e
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            hint = _REFUSALS.get(rcode, "")
            raise DnsError(f"{what} at {host}:{port}: {dns.rcode.to_text(rcode)}" + (f"; {hint}" if hint else ""))
        log.debug("%s at %s:%s: done", what, host, port)


def _shown(address: Server) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _txt(value: str) -> dns.rdtypes.ANY.TXT.TXT:
    # Built from bytes, not zone-file text, so a value needs no quoting rules.
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [value.encode()])

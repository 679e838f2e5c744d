"""Configured DNS servers (``resolvers``, an RFC 2136 zone's ``server``) as the addresses dnspython can ask.

Configuration takes ``host``, ``host:port``, an IP address or ``[IPv6]:port``, and the host may be a name
(``ns1.example.com``); dnspython only sends to IP addresses. A name is resolved by this machine's
resolver (``getaddrinfo``: /etc/hosts, then DNS), into every address it has, IPv4 and IPv6.
"""
from __future__ import annotations

import ipaddress
import socket

from ..errors import DnsError

Server = tuple[str, int]  # (host or address, port)

DNS_PORT = 53


def parse_server(text: str, default_port: int = DNS_PORT) -> Server:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, default_port


def is_address(host: str) -> bool:
    """Whether ``host`` is an IP address (as opposed to a host name)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_addresses(host: str, port: int = DNS_PORT) -> list[Server]:
    """Every address of the host name ``host`` (IPv4 and IPv6, in the resolver's order, each once), with
    ``port``. Raises OSError (``socket.gaierror``) when the name does not resolve here."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    return list(dict.fromkeys((str(info[4][0]), port) for info in infos))


def server_addresses(server: str | Server, field: str) -> list[Server]:
    """The addresses of one configured server; an IP address is its own. ``field`` says where it was
    configured (``resolvers[0]``), for the DnsError raised when a host name does not resolve."""
    host, port = parse_server(server) if isinstance(server, str) else server
    if is_address(host):
        return [(host, port)]
    try:
        addresses = host_addresses(host, port)
    except (OSError, UnicodeError) as e:
        shown = server.strip() if isinstance(server, str) else f"{host}:{port}"
        raise DnsError(f"{field} {shown!r}: the host name {host!r} does not resolve on this machine "
                       f"({e.args[-1] if e.args else type(e).__name__}); write the server's IP address there, "
                       f"or a host name this machine can resolve") from None
    return addresses

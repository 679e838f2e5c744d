"""The authoritative DNS server for the emulated Azure DNS zones: UDP and TCP on loopback, built on dnspython.

Every query reads the live `ZoneStore`, so a record set is served the moment ARM writes it (Azure DNS takes
seconds; tests then never wait). Pebble uses this server as its resolver, so it also answers the way a resolver
would need: CNAMEs inside the served zones are followed, a name above the zones (``test`` for ``azure.test``:
it exists in the local world, holding the delegation) has no records, and other names are REFUSED.
"""
from __future__ import annotations

import logging
import socket
import socketserver
import threading
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from emulator.dns_store import RecordSet, Zone, ZoneStore, soa_of

log = logging.getLogger(__name__)

MAX_CNAME_CHAIN = 16
_UDP_DEFAULT_PAYLOAD = 512


@dataclass(frozen=True)
class _Answer:
    rrsets: tuple[dns.rrset.RRset, ...]


@dataclass(frozen=True)
class _Cname:
    rrset: dns.rrset.RRset
    target: dns.name.Name


@dataclass(frozen=True)
class _Referral:
    ns: dns.rrset.RRset


@dataclass(frozen=True)
class _Negative:
    nxdomain: bool


def _rrset(zone: Zone, rs: RecordSet, owner: dns.name.Name | None = None) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(owner or zone.absolute_name(rs.name), rs.ttl, list(rs.records))


def _node(zone: Zone, name: dns.name.Name) -> dict[str, RecordSet]:
    rel = zone.relative_name(name)
    return {t: rs for (n, t), rs in zone.record_sets.items() if n == rel}


def _exists(zone: Zone, name: dns.name.Name) -> bool:
    """The name owns a record set (even an empty one) or is an empty non-terminal (RFC 8020) above one."""
    return name == zone.origin or any(zone.absolute_name(n).is_subdomain(name) for (n, _t) in zone.record_sets)


def _answer_from(zone: Zone, node: dict[str, RecordSet], owner: dns.name.Name,
                 qtype: dns.rdatatype.RdataType) -> _Answer | _Cname | None:
    if qtype == dns.rdatatype.ANY:
        found = tuple(_rrset(zone, rs, owner) for rs in node.values() if rs.records)
        return _Answer(found) if found else None
    wanted = node.get(dns.rdatatype.to_text(qtype))
    if wanted is not None and wanted.records:
        return _Answer((_rrset(zone, wanted, owner),))
    cname = node.get("CNAME")
    if cname is not None and cname.records and qtype != dns.rdatatype.CNAME:
        rrset = _rrset(zone, cname, owner)
        return _Cname(rrset, rrset[0].target)
    return None


def _lookup(zone: Zone, qname: dns.name.Name, qtype: dns.rdatatype.RdataType) -> _Answer | _Cname | _Referral | _Negative:
    """One step of authoritative resolution of `qname` inside `zone` (RFC 1034 4.3.2; wildcards per RFC 4592)."""
    origin = zone.origin
    # A non-empty NS record set below the apex is a delegation: everything at or under it is the child's.
    for depth in range(len(origin) + 1, len(qname) + 1):
        ns = zone.record_set(zone.relative_name(qname.split(depth)[1]), "NS")
        if ns is not None and ns.records:
            return _Referral(_rrset(zone, ns))

    if _exists(zone, qname):
        node = _node(zone, qname)
        return _answer_from(zone, node, qname, qtype) or _Negative(nxdomain=False)
    # The name does not exist: a wildcard at the closest encloser answers for it, with the query's name as owner.
    encloser = qname.parent()
    while not _exists(zone, encloser):
        encloser = encloser.parent()
    wildcard = _node(zone, dns.name.from_text("*", encloser))
    if not wildcard:
        return _Negative(nxdomain=True)
    return _answer_from(zone, wildcard, qname, qtype) or _Negative(nxdomain=False)


def _negative_soa(zone: Zone) -> dns.rrset.RRset:
    soa_set, soa = soa_of(zone)
    # RFC 2308 section 5: negative answers are cached for min(SOA TTL, SOA MINIMUM).
    return dns.rrset.from_rdata_list(zone.origin, min(soa_set.ttl, soa.minimum), [soa])


def resolve(store: ZoneStore, query: dns.message.Message) -> dns.message.Message:
    """The authoritative response to `query` from the zones in `store` as they are right now."""
    response = dns.message.make_response(query)
    if query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
        return response
    if len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return response
    question = query.question[0]
    zone = store.zone_for(question.name) if question.rdclass == dns.rdataclass.IN else None
    if zone is None:
        if not any(z.origin.is_subdomain(question.name) for z in store.list_zones()):
            response.set_rcode(dns.rcode.REFUSED)
        return response  # above our zones: the name exists (it delegates to them) and has nothing else

    response.flags |= dns.flags.AA
    name, seen = question.name, {question.name}
    for _ in range(MAX_CNAME_CHAIN):
        step = _lookup(zone, name, question.rdtype)
        if isinstance(step, _Answer):
            response.answer.extend(step.rrsets)
            return response
        if isinstance(step, _Referral):
            if not response.answer:
                response.flags &= ~dns.flags.AA
            response.authority.append(step.ns)
            return response
        if isinstance(step, _Negative):
            if step.nxdomain:
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(_negative_soa(zone))
            return response
        response.answer.append(step.rrset)
        next_zone = store.zone_for(step.target)
        if next_zone is None or step.target in seen:
            return response  # the target is someone else's (or a loop): the resolver takes it from here
        zone, name = next_zone, step.target
        seen.add(name)
    return response


def _formerr_for(wire: bytes) -> bytes | None:
    """A FORMERR reply for a packet dnspython cannot parse, if it has at least an id to answer to."""
    if len(wire) < 2:
        return None
    reply = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
    reply.flags = dns.flags.QR
    reply.set_rcode(dns.rcode.FORMERR)
    return reply.to_wire()


class _UdpHandler(socketserver.BaseRequestHandler):
    server: "_UdpServer"

    def handle(self) -> None:
        wire, sock = self.request
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            reply = _formerr_for(wire)
            if reply:
                sock.sendto(reply, self.client_address)
            return
        response = resolve(self.server.store, query)
        limit = max(query.payload, _UDP_DEFAULT_PAYLOAD) if query.edns >= 0 else _UDP_DEFAULT_PAYLOAD
        try:
            out = response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            # Tell the client to come back over TCP (RFC 7766), where the whole answer fits.
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.TC | (response.flags & dns.flags.AA)
            truncated.set_rcode(response.rcode())
            out = truncated.to_wire()
        sock.sendto(out, self.client_address)


class _TcpHandler(socketserver.BaseRequestHandler):
    server: "_TcpServer"

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        while True:  # RFC 7766: a client may send several queries on one connection
            try:
                query, _ = dns.query.receive_tcp(sock)
            except (EOFError, OSError, dns.exception.DNSException):
                return
            try:
                dns.query.send_tcp(sock, resolve(self.server.store, query))
            except OSError:
                return


class _UdpServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, address: tuple[str, int], store: ZoneStore, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.store = store
        super().__init__(address, _UdpHandler)


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: ZoneStore, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.store = store
        super().__init__(address, _TcpHandler)


class DnsServer:
    """Serves `store` on host:port over UDP and TCP (same port). port=0 picks a free one; see `.port`."""

    def __init__(self, store: ZoneStore, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = store
        self.host = host
        self._wanted_port = port
        self._udp: _UdpServer | None = None
        self._tcp: _TcpServer | None = None
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        if self._udp is None:
            raise RuntimeError("the DNS server is not started")
        return int(self._udp.server_address[1])

    @property
    def address(self) -> str:
        """host:port, as Pebble's -dnsserver flag wants it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def start(self) -> "DnsServer":
        if self._udp is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # With port 0 the UDP port the kernel picks may be taken for TCP; try a few times for one free on both.
        for _attempt in range(20):
            udp = _UdpServer((self.host, self._wanted_port), self.store, family)
            try:
                tcp = _TcpServer((self.host, int(udp.server_address[1])), self.store, family)
            except OSError:
                udp.server_close()
                if self._wanted_port:
                    raise
                continue
            break
        else:
            raise OSError("no port free for both UDP and TCP")
        self._udp, self._tcp = udp, tcp
        for server, kind in ((udp, "udp"), (tcp, "tcp")):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      name=f"emulator-dns-{kind}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("DNS server listening on %s (udp+tcp)", self.address)
        return self

    def stop(self) -> None:
        for server in (self._udp, self._tcp):
            if server is not None:
                server.shutdown()
                server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._udp = self._tcp = None
        self._threads = []

    def __enter__(self) -> "DnsServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""DNS-01 over pluggable DNS providers: the provider contract (:mod:`.base`), RFC 2136 (:mod:`.rfc2136`),
Azure DNS (:mod:`.azure`), propagation checks (:mod:`.propagation`) and the orchestration that always
cleans up (:mod:`.challenges`)."""
from .base import Challenge, DnsProvider, Server, parse_server

__all__ = ["Challenge", "DnsProvider", "Server", "parse_server"]

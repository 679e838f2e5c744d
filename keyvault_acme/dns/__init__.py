"""DNS-01 over pluggable DNS providers: the provider contract (:mod:`.base`), RFC 2136 (:mod:`.rfc2136`),
Azure DNS (:mod:`.azure`), configured servers as addresses (:mod:`.servers`), propagation checks
(:mod:`.propagation`) and the orchestration that always cleans up (:mod:`.challenges`)."""
from .base import Challenge, DnsProvider
from .servers import Server, parse_server, server_addresses

__all__ = ["Challenge", "DnsProvider", "Server", "parse_server", "server_addresses"]

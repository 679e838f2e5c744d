"""CAs that lie, on loopback: a fake ACME endpoint that records what reaches it, and a proxy in front of the real
Pebble that forwards everything unchanged except the answers a test chooses to rewrite.

The proxy keeps the client's Host header, so Pebble builds every URL it hands out (directory, orders, the
certificate) with the proxy's address and checks the JWS ``url`` against it: the client talks only to the proxy.
"""
from __future__ import annotations

import http.client
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class LoopbackServer:
    """HTTP, or HTTPS with ``tls``, on a free loopback port; ``handle(seen)`` answers, every request is recorded."""

    handle: Callable[[Seen], Answer]
    tls: Optional[ssl.SSLContext] = None
    seen: list[Seen] = field(default_factory=list)

    def __enter__(self) -> "LoopbackServer":
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
                server_self.seen.append(seen)
                status, headers, body = server_self.handle(seen)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _any

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._server.server_address[1]}"


def server_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


class LyingProxy(LoopbackServer):
    """Forwards every request to ``upstream`` (host, port; HTTPS verified with ``upstream_ca``) and returns its
    answers, except that ``rewrite(seen, status, body)`` may replace an answer's body."""

    def __init__(self, upstream: tuple[str, int], upstream_ca: str, tls: ssl.SSLContext,
                 rewrite: Callable[[Seen, int, bytes], bytes]) -> None:
        self.upstream, self.rewrite = upstream, rewrite
        self._client_tls = ssl.create_default_context(cafile=upstream_ca)
        super().__init__(self._forward, tls)

    def _forward(self, seen: Seen) -> Answer:
        connection = http.client.HTTPSConnection(*self.upstream, context=self._client_tls, timeout=30)
        try:
            headers = {k: v for k, v in seen.headers.items() if k.lower() not in ("connection", "accept-encoding")}
            connection.request(seen.method, seen.path, body=seen.body or None, headers=headers)
            response = connection.getresponse()
            body = response.read()
            out = {k: v for k, v in response.getheaders()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection")}
            return response.status, out, self.rewrite(seen, response.status, body)
        finally:
            connection.close()

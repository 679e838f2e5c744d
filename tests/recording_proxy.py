"""A recording HTTPS reverse proxy in front of a Pebble: what the CA saw, request by request.

Pebble writes its directory's URLs from the request's Host header, so a client pointed at the proxy's
``directory_url`` sends every later request (nonces, accounts, orders, ARI) through the proxy too. Each
request is recorded (method, path, headers, JSON body of a JWS payload) before it is forwarded unchanged.
Tests assert on what a client sent on the wire (User-Agent, ``replaces``, how many ARI lookups) without any
hook in the code under test. ``fail`` lets a test answer some requests itself (e.g. an ARI outage).
"""
from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    payload: Any = None  # the decoded JWS payload of a POST ("" for POST-as-GET), None for GET/HEAD
    status: Optional[int] = None  # of the answer, once sent
    problem: Optional[str] = None  # the answer's ACME problem type, when it was one

    @property
    def nonce_refused(self) -> bool:
        """Pebble refuses a share of good nonces on purpose; the client sends the same request again."""
        return self.problem == "urn:ietf:params:acme:error:badNonce"


@dataclass
class RecordingProxy:
    """``with RecordingProxy(pebble) as proxy: client(proxy.directory_url)``; then ``proxy.seen``."""

    pebble: Any
    seen: list[Seen] = field(default_factory=list)
    # (method, path) -> (status, headers, body) to answer instead of Pebble; None forwards.
    fail: Optional[Callable[[str, str], Optional[tuple[int, dict[str, str], bytes]]]] = None

    def __enter__(self) -> "RecordingProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = proxy._record(self.command, self.path, dict(self.headers.items()), body)
                answer = proxy.fail(self.command, self.path) if proxy.fail else None
                if answer is None:
                    conn = http.client.HTTPSConnection("127.0.0.1", proxy.pebble.port, timeout=30,
                                                       context=ssl.create_default_context(
                                                           cafile=proxy.pebble.tls_ca_pem_path))
                    try:
                        conn.request(self.command, self.path, body=body or None, headers=dict(self.headers.items()))
                        response = conn.getresponse()
                        answer = (response.status, dict(response.getheaders()), response.read())
                    finally:
                        conn.close()
                status, headers, data = answer
                seen.status, seen.problem = status, _problem_type(data) if status >= 400 else None
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # Pebble's own TLS certificate is valid for 127.0.0.1 and signed by the CA the tests trust.
        context.load_cert_chain(self.pebble._dir / "tls-cert.pem", self.pebble._dir / "tls-key.pem")
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}/dir"

    def _record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Seen:
        payload = None
        if method == "POST" and body:
            try:
                raw = json.loads(body)["payload"]
                decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)) if raw else b""
                payload = json.loads(decoded) if decoded else ""
            except (ValueError, KeyError):
                payload = None
        seen = Seen(method, path, headers, payload)
        self.seen.append(seen)
        return seen

    def requests_to(self, fragment: str) -> list[Seen]:
        return [s for s in self.seen if fragment in s.path]


def _problem_type(body: bytes) -> Optional[str]:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document.get("type") if isinstance(document, dict) else None

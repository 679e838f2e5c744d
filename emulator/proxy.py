"""The HTTP plumbing: a threading HTTP/1.1 server that is both a CONNECT proxy (terminating TLS for the hosts it
serves) and a plain-HTTP endpoint for the admin API. It parses and frames; it knows nothing about Azure."""
from __future__ import annotations

import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from .wire import Request, Response

log = logging.getLogger("emulator.proxy")

Handler = Callable[[Request], Response]
TlsContextFor = Callable[[str], "ssl.SSLContext | None"]

MAX_BODY = 1024 * 1024  # Key Vault and ARM reject far smaller bodies; this only protects the emulator.
_DRAIN_LIMIT = 16 * MAX_BODY  # bodies up to this size are read and dropped so the client sees the 413


class _BodyTooLarge(Exception):
    def __init__(self, drained: bool) -> None:
        super().__init__("body too large")
        self.drained = drained


def _error(status: int, code: str, message: str) -> Response:
    return Response.of_json(status, {"error": {"code": code, "message": message}})


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: Handler, admin: Handler, tls_for: TlsContextFor) -> None:
        self.app, self.admin, self.tls_for = app, admin, tls_for
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _ProxyHandler)

    def track(self, sock: socket.socket, open_: bool) -> None:
        with self._open_lock:
            (self._open.add if open_ else self._open.discard)(sock)

    def close_all(self) -> None:
        """Drop kept-alive client connections so their threads end with the server."""
        with self._open_lock:
            socks, self._open = list(self._open), set()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ProxyServer
    timeout = 600
    tunnel_host: str | None = None

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.close()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # -- CONNECT: become a TLS server for the requested host on the same connection ------------------
    def do_CONNECT(self) -> None:
        if self.tunnel_host is not None:
            self._send(_error(400, "BadRequest", "CONNECT inside a tunnel"))
            self.close_connection = True
            return
        host = self.path.rsplit(":", 1)[0].strip("[]").lower()
        ctx = self.server.tls_for(host)
        if ctx is None:
            self.send_response(403, "Host not served by the emulator")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.close_connection = True
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        self.wfile.flush()
        plain = self.connection
        try:
            tls = ctx.wrap_socket(plain, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake for %s failed: %s", host, exc)
            self.close_connection = True
            return
        self.server.track(plain, False)
        self.server.track(tls, True)
        self.connection = self.request = tls
        self.rfile = tls.makefile("rb")
        self.wfile = tls.makefile("wb")
        self.tunnel_host = host
        self.close_connection = False  # BaseHTTPRequestHandler.handle keeps reading requests, now over TLS

    # -- every other method: one request, one response ------------------------------------------------
    def _dispatch(self) -> None:
        try:
            request = self._read_request()
        except _BodyTooLarge as exc:
            self.close_connection = not exc.drained
            self._send(_error(413, "RequestEntityTooLarge", f"The request body exceeds {MAX_BODY} bytes."))
            return
        except ValueError as exc:
            self.close_connection = True
            self._send(_error(400, "BadRequest", str(exc)))
            return
        handler = self.server.app if self.tunnel_host is not None else self.server.admin
        try:
            response = handler(request)
        except Exception:  # the emulator must keep serving whatever a handler does
            log.exception("handler failed for %s %s", request.method, request.path)
            response = _error(500, "InternalServerError", "The emulator failed to handle the request.")
        self._send(response, head=request.method == "HEAD")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _read_request(self) -> Request:
        target = self.path
        host = self.tunnel_host
        if host is None:
            parsed = urlsplit(target)
            if parsed.scheme:  # absolute-form, as a plain HTTP proxy client would send to the admin API
                target = parsed.path + ("?" + parsed.query if parsed.query else "")
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        raw_path, _, raw_query = target.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        return Request(
            method=self.command,
            host=host,
            path=unquote(raw_path),
            query=dict(parse_qsl(raw_query, keep_blank_values=True)),
            headers=headers,
            body=self._read_body(headers),
        )

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise _BodyTooLarge(drained=False)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise ValueError("invalid Content-Length") from None
        if length < 0:
            raise ValueError("invalid Content-Length")
        if length > MAX_BODY:
            if length > _DRAIN_LIMIT:
                raise _BodyTooLarge(drained=False)
            while length > 0:
                chunk = self.rfile.read(min(length, 65536))
                if not chunk:
                    break
                length -= len(chunk)
            raise _BodyTooLarge(drained=True)
        return self.rfile.read(length) if length else b""

    def _send(self, response: Response, head: bool = False) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head and response.body:
            self.wfile.write(response.body)
        self.wfile.flush()


"""The HTTP session behind every client the engine builds: ACME, Key Vault, Azure DNS.

The fixes here matter in volume (a pipeline issuing a hundred certificates, where issuing is bound by the CPU of
one interpreter, not by the network) and at start-up (the CLI's whole run):

- requests reads the environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) on every request,
  walking all of ``os.environ`` twice; that was a tenth of the engine's CPU per issuance. :class:`Session` asks
  once per origin and remembers the answer, so the environment a process starts with is the one it uses.
- requests builds proxy connection pools without urllib3's socket options, so Nagle's algorithm holds back a
  request body sent after its headers until the proxy ACKs them: 40 ms per write through any corporate proxy
  (measured). :class:`Adapter` keeps TCP_NODELAY on them.
- with a CA bundle in REQUESTS_CA_BUNDLE (a corporate TLS-inspecting proxy's root, say), every new connection
  parsed the whole bundle again: 16 ms each, five connections in one CLI run. :class:`Adapter` loads each
  bundle once per process into one verifying TLS context.

The ACME client's session is also strict (:class:`Adapter` with ``https_only`` and ``max_body``): every request
it sends, redirects included, goes to an https URL, and no answer is read beyond a bound. A CA (or whoever sits
on its path) cannot turn a request into cleartext or hand us an answer of unbounded size.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any, Hashable, Mapping
from urllib.parse import urlsplit

import requests
from urllib3.connection import HTTPConnection
from urllib3.util.ssl_ import create_urllib3_context

from .errors import InsecureUrl, ResponseTooLarge


class Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter, keeping TCP_NODELAY through proxies and loading a CA bundle once (see the module).

    ``https_only`` refuses to send to a URL that is not https; ``max_body`` stops reading an answer past that
    many bytes. Every hop goes through the adapter, each redirect requests follows included, so these checks
    hold for all of them, before a byte leaves for the URL and before a redirect's body is read.
    """

    def __init__(self, *args: Any, https_only: bool = False, max_body: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.https_only, self.max_body = https_only, max_body

    def send(self, request, stream=False, *args, **kwargs):
        if self.https_only and urlsplit(request.url).scheme.lower() != "https":
            raise InsecureUrl(request.url)
        if self.max_body is None or stream:
            return super().send(request, stream, *args, **kwargs)
        response = super().send(request, True, *args, **kwargs)
        response._content = _bounded_body(response, self.max_body)
        return response

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        proxy_kwargs.setdefault("socket_options", HTTPConnection.default_socket_options)
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        # The way requests documents for using an SSLContext of one's own: set it, drop what it replaces.
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        bundle = pool_kwargs.get("ca_certs")
        if bundle and "ssl_context" not in pool_kwargs and pool_kwargs.get("cert_reqs") == "CERT_REQUIRED":
            pool_kwargs["ssl_context"] = verifying_context(bundle)
            del pool_kwargs["ca_certs"]
        return host_params, pool_kwargs

    def cert_verify(self, conn, url, verify, cert):
        # requests sets the bundle on the pool again before every send, and urllib3 loads a pool's ca_certs into
        # the connection's context at each new connection: into our shared context, which holds that bundle
        # already (16 ms a connection, five in a CLI run). The pool keeps its context; the duplicate load goes.
        super().cert_verify(conn, url, verify, cert)
        context = getattr(conn, "conn_kw", {}).get("ssl_context")
        if context is not None and conn.ca_certs and context is verifying_context(conn.ca_certs):
            conn.ca_certs = None


@functools.lru_cache(maxsize=8)
def verifying_context(bundle: str) -> ssl.SSLContext:
    """A TLS client context that verifies certificates and host names against the CA bundle file ``bundle``."""
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.load_verify_locations(cafile=bundle)
    return context


class Session(requests.Session):
    """A requests session that resolves its environment settings once per origin and set of arguments.

    The answer is what requests itself would compute (proxies after NO_PROXY, the CA bundle, stream and
    client certificate), so behaviour is unchanged except that a change to the environment after the first
    request to an origin is not seen. Safe to share between threads: a race computes the same answer twice.
    """

    def __init__(self) -> None:
        super().__init__()
        self._settings: dict[Hashable, Mapping[str, Any]] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, _frozen(proxies), stream, _frozen(verify), _frozen(cert))
        settings = self._settings.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._settings[key] = settings
        # The caller owns what it gets back (requests passes the proxies dict on to the adapter).
        return {**settings, "proxies": dict(settings["proxies"])}


def _bounded_body(response: requests.Response, limit: int) -> bytes:
    """The whole (decoded) body, read in chunks; ResponseTooLarge as soon as it passes ``limit`` bytes."""
    body = bytearray()
    try:
        for chunk in response.iter_content(64 * 1024):
            body += chunk
            if len(body) > limit:
                raise ResponseTooLarge(response.url, limit)
    finally:
        response.close()
    return bytes(body)


def _frozen(value: Any) -> Hashable:
    if isinstance(value, Mapping):
        return frozenset(value.items())
    if isinstance(value, list):
        return tuple(value)
    return value


def new_session(*, pool_maxsize: int = 10, https_only: bool = False, max_body: int | None = None) -> Session:
    """A :class:`Session` with :class:`Adapter` for HTTP and HTTPS; ``https_only`` refuses to send anything to a
    URL that is not https, ``max_body`` refuses answers longer than that many bytes (see :class:`Session`)."""
    session = Session()
    adapter = Adapter(pool_connections=16, pool_maxsize=pool_maxsize, https_only=https_only, max_body=max_body)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session

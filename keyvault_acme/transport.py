"""The HTTP session behind every client the engine builds: ACME, Key Vault, Azure DNS.

Both fixes here matter only in volume (a pipeline issuing a hundred certificates), where issuing is bound by the
CPU of one interpreter, not by the network:

- requests reads the environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) on every request,
  walking all of ``os.environ`` twice; that was a tenth of the engine's CPU per issuance. :class:`Session` asks
  once per origin and remembers the answer, so the environment a process starts with is the one it uses.
- requests builds proxy connection pools without urllib3's socket options, so Nagle's algorithm holds back a
  request body sent after its headers until the proxy ACKs them: 40 ms per write through any corporate proxy
  (measured). :class:`ProxyNoDelayAdapter` keeps TCP_NODELAY on them.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping
from urllib.parse import urlsplit

import requests
from urllib3.connection import HTTPConnection


class ProxyNoDelayAdapter(requests.adapters.HTTPAdapter):
    """An adapter whose connections through an HTTPS proxy keep TCP_NODELAY (see the module's docstring)."""

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        proxy_kwargs.setdefault("socket_options", HTTPConnection.default_socket_options)
        return super().proxy_manager_for(proxy, **proxy_kwargs)


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


def _frozen(value: Any) -> Hashable:
    if isinstance(value, Mapping):
        return frozenset(value.items())
    if isinstance(value, list):
        return tuple(value)
    return value


def new_session(*, pool_maxsize: int = 10) -> Session:
    """A :class:`Session` with :class:`ProxyNoDelayAdapter` for HTTP and HTTPS."""
    session = Session()
    adapter = ProxyNoDelayAdapter(pool_connections=16, pool_maxsize=pool_maxsize)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session

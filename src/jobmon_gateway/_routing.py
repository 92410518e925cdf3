"""How a request reaches its server: directly or through an HTTP proxy, with or without TLS.

httpx honours ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY`` only
when it builds the transport itself; the gateway's transports are its own,
so the environment is read here, by the standard library's public
``urllib.request.getproxies``/``proxy_bypass``, the way httpx reads it.
Decided once per origin (a gateway talks to one server).
"""

from __future__ import annotations

import base64
import threading
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httpcore

from .errors import ConfigurationError

__all__ = ["Proxy", "Route", "Routing", "UnresolvedHost", "parse_proxy"]


class UnresolvedHost(httpcore.ConnectError):
    """A pool could not look up ``host`` (the server's, or the proxy's); the resolver's
    error is its cause. httpx re-raises it as its own ``ConnectError``, chained to this."""

    def __init__(self, host: str) -> None:
        super().__init__(f"could not resolve host {host}")
        self.host = host


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP forward proxy: where it listens and the credentials it wants."""

    host: str
    port: int
    authorization: bytes | None
    shown: str

    def __repr__(self) -> str:
        return f"Proxy({self.shown!r})"


@dataclass(frozen=True, slots=True)
class Route:
    """How to reach one origin.

    ``address`` is where the TCP connection goes (the server, or the proxy);
    ``tunnel`` asks the proxy for a ``CONNECT`` tunnel (https through a
    proxy); ``absolute`` sends absolute-form targets (http through a proxy).
    """

    address: tuple[str, int]
    tls: bool
    server_hostname: str
    tunnel: bytes | None
    absolute: bool
    proxy: Proxy | None


def parse_proxy(url: str, *, source: str) -> Proxy:
    """Check a proxy URL (``http://[user:password@]host:port``); the password is never shown.

    Raises:
        ConfigurationError: not an http:// proxy URL with a host.
    """
    shown = _masked(url)
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigurationError(f"{source} is not a valid proxy URL: {shown!r}") from None
    if parts.scheme != "http" or not host:
        # An https:// proxy would need TLS inside TLS, a socks one a library
        # the SDK does not carry: refused at once, not at the first call.
        raise ConfigurationError(
            f"{source} must be an http:// proxy URL (https and socks proxies are not"
            f" supported), got {shown!r}"
        )
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = b"Basic " + base64.b64encode(pair.encode("utf-8"))
    return Proxy(host, port or 80, authorization, shown)


def _masked(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    userinfo, _, hostport = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:[secure]@{hostport}"


class Routing:
    """Chooses the route of each origin, once: the given proxy, the environment's, or none."""

    def __init__(self, proxy: Proxy | None, *, trust_env: bool) -> None:
        self._proxy = proxy
        self._trust_env = trust_env
        self._routes: dict[tuple[bytes, bytes, int], Route] = {}
        self._lock = threading.Lock()

    def route(self, scheme: bytes, host: bytes, port: int) -> Route:
        """The route to ``scheme://host:port``.

        Raises:
            ConfigurationError: a proxy named in the environment is malformed.
        """
        key = (scheme, host, port)
        found = self._routes.get(key)
        if found is None:
            found = self._choose(scheme.decode("ascii"), host.decode("ascii"), port)
            with self._lock:
                self._routes[key] = found
        return found

    def _choose(self, scheme: str, host: str, port: int) -> Route:
        tls = scheme == "https"
        bare = host.strip("[]")
        proxy = self._proxy if self._proxy is not None else self._from_env(scheme, bare, port)
        if proxy is None:
            return Route((bare, port), tls, bare, None, False, None)
        if tls:
            authority = (f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}").encode("ascii")
            return Route((proxy.host, proxy.port), True, bare, authority, False, proxy)
        return Route((proxy.host, proxy.port), False, bare, None, True, proxy)

    def _from_env(self, scheme: str, host: str, port: int) -> Proxy | None:
        if not self._trust_env:
            return None
        proxies = urllib.request.getproxies()
        url = proxies.get(scheme) or proxies.get("all")
        if not url or urllib.request.proxy_bypass(f"{host}:{port}") or _bypassed(host):
            return None
        name = f"{scheme.upper()}_PROXY" if proxies.get(scheme) else "ALL_PROXY"
        return parse_proxy(url, source=name)


def _bypassed(host: str) -> bool:
    # proxy_bypass matches "host:port" entries; the bare host is checked too.
    return bool(urllib.request.proxy_bypass(host))

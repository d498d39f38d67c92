"""Total deadlines for HTTP exchanges, and the one way a failed exchange is described.

Socket timeouts only bound each ``recv``: a server dripping a byte every half second (in the
headers or the body) would hold the process forever. A :class:`Watchdog` is the total deadline of
one exchange: when it passes, it shuts down the exchange's sockets, which ends any blocked read at
once. The watched socket is a duplicate descriptor the watchdog owns, so it can never touch a
socket that was closed and reused meanwhile. Connections report their socket to the watchdog of
the exchange in progress (a context variable) when they are about to read an answer; the
connection, pool and adapter classes here are requests' and urllib3's with that one addition.

A streamed blob's deadline depends on its size, which may only be known from the answer's
headers: :meth:`Watchdog.extend` moves the deadline once, measured from the same start.

:class:`TransportError` is the funnel's only failure; :func:`translate` maps requests', urllib3's
and socket errors onto it with a fixed phrase (:func:`reason`), never text a server sent.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from contextvars import ContextVar
from typing import Any

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions


class TransportError(Exception):
    """No usable answer: ``kind`` is timeout, tls, unreachable, too_large, broken, foreign_link,
    digest (streamed bytes that do not match the digest that named them) or data (an upload's
    own data is shorter or longer than declared, or cannot be sent again).

    Internal: the registry and forge clients turn it into their typed errors. ``reason`` is short
    and holds nothing the server sent but fixed phrases (and digests computed here).
    """

    def __init__(self, kind: str, reason: str, limit: float = 0):
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason
        self.limit = limit  # seconds (timeout) or bytes (too_large)


class Watchdog:
    """Shuts down the sockets of one exchange when its total deadline passes."""

    def __init__(self, seconds: float, ceiling: float | None = None):
        self.seconds = seconds
        self.ceiling = max(ceiling or seconds, seconds)  # the most :meth:`extend` may grant
        self.started = time.monotonic()
        self.expires = self.started + seconds
        self.fired = False
        self._done = False
        self._generation = 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer = self._arm(seconds)

    def _arm(self, delay: float) -> threading.Timer:
        timer = threading.Timer(delay, self._fire, args=(self._generation,))
        timer.daemon = True
        timer.start()
        return timer

    def remaining(self) -> float:
        return max(self.expires - time.monotonic(), 0.001)

    def read_timeout(self) -> float:
        """A per-read socket timeout that never ends a read the deadline (extended or not) allows:
        the watchdog is the real limit; this only bounds a socket it could not watch."""
        return max(self.started + self.ceiling - time.monotonic(), 0.001)

    def extend(self, seconds: float) -> None:
        """Make the deadline ``seconds`` after the start, if that is later than it is now."""
        with self._lock:
            seconds = min(seconds, self.ceiling)
            if self.fired or self._done or self.started + seconds <= self.expires:
                return
            self._timer.cancel()
            self._generation += 1  # a timer already waiting for the lock must not fire
            self.seconds, self.expires = seconds, self.started + seconds
            self._timer = self._arm(self.remaining())

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None or sock.fileno() < 0:
            return
        dup = socket.fromfd(sock.fileno(), sock.family, sock.type)  # ours to shut down and close
        with self._lock:
            self._socks.append(dup)
            if self.fired:
                self._shutdown(dup)

    def _fire(self, generation: int) -> None:
        with self._lock:
            if self._done or generation != self._generation:
                return
            self.fired = True
            for sock in self._socks:
                self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            socks, self._socks = self._socks, []
        for sock in socks:
            sock.close()


WATCH: ContextVar[Watchdog | None] = ContextVar("imgforge_http_watchdog", default=None)


class _Watched:
    """Connection mix-in: the current exchange's watchdog learns the socket when the connection is
    about to read an answer. (Connecting and the TLS handshake are bounded by the connect timeout,
    which is never above the deadline: CPython applies a socket's timeout to a whole handshake.)"""

    sock: socket.socket | None

    def getresponse(self) -> Any:
        watch = WATCH.get()
        if watch is not None:
            watch.watch(self.sock)
        return super().getresponse()  # type: ignore[misc]


class _Conn(_Watched, urllib3.connection.HTTPConnection):
    pass


class _TLSConn(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _Pool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _Conn


class _TLSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _TLSConn


class WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter with the watched connection classes in every pool it makes."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
        return manager


_MARKERS = (
    "CERTIFICATE_VERIFY_FAILED",
    "certificate verify failed",
    "hostname mismatch",
    "WRONG_VERSION_NUMBER",
    "Connection refused",
    "Connection reset",
    "No route to host",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "timed out",
)


def reason(e: BaseException) -> str:
    """A short, fixed phrase for a connection failure (never text a server sent, never a URL)."""
    text = ""
    seen: BaseException | None = e
    while seen is not None and len(text) < 10_000:
        text += f" {seen!s}"
        seen = seen.__cause__ or seen.__context__
    for marker in _MARKERS:
        if marker in text:
            return marker.lower().replace("_", " ")
    return type(e).__name__


def translate(e: BaseException, watch: Watchdog) -> TransportError:
    """The TransportError for an exception raised while ``watch`` was running."""
    if isinstance(e, TransportError):
        return e
    if watch.fired or isinstance(e, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        return TransportError("timeout", "the deadline passed", watch.seconds)
    if isinstance(e, requests.exceptions.SSLError):
        return TransportError("tls", reason(e))
    if isinstance(e, requests.ConnectionError):
        return TransportError("unreachable", reason(e))
    return TransportError("broken", reason(e))

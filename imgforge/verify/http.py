"""The loopback HTTP client the checks use: raw request targets, keep-alive per thread, no proxies.

Every request goes to ``LOOPBACK`` on a port the engine published for a test container, and
http.client sends the target exactly as given, so traversal probes reach nginx unnormalised.
"""

from __future__ import annotations

import hashlib
import http.client
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"  # the only address any request of ours goes to


def url_path(rel: str) -> str:
    return "/" + urllib.parse.quote(rel)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def sha(self) -> str:
        return sha256_hex(self.body)

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


class Http:
    """GETs to one published loopback port, one keep-alive connection per thread."""

    def __init__(self, port: int, timeout: float = 3.0):
        self.port = port
        self.timeout = timeout
        self._local = threading.local()

    def get(self, path: str, retry: bool = True) -> Response:
        conn = getattr(self._local, "conn", None) or http.client.HTTPConnection(
            LOOPBACK, self.port, timeout=self.timeout
        )
        self._local.conn = None
        try:
            conn.request("GET", path, headers={"Host": "localhost"})
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            if retry:  # a kept-alive connection the server had closed gets one fresh try
                return self.get(path, retry=False)
            raise
        self._local.conn = None if resp.will_close else conn
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)

    def get_many(self, paths: list[str], workers: int = 4) -> dict[str, Response | Exception]:
        def one(path: str) -> Response | Exception:
            try:
                return self.get(path)
            except (OSError, http.client.HTTPException) as e:
                return e

        with ThreadPoolExecutor(workers) as pool:
            return dict(zip(paths, pool.map(one, paths), strict=True))


def try_get(web: Http, path: str) -> Response | str:
    """The response, or why there is none (a line for a check's detail)."""
    try:
        return web.get(path)
    except (OSError, http.client.HTTPException) as e:
        return f"{path}: no HTTP answer ({type(e).__name__}: {e})"

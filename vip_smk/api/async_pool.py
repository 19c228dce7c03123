"""The connections under `AsyncVipClient`: at most `max_connections` HTTP/1.1 connections to VIP
(as the sync pool), callers beyond wait their turn; and the replies our code reads of them.

- The pools are httpcore's (httpx's own engine), on asyncio's streams (`vip_smk.api.async_net`),
  in small pools of `SHARD`: httpcore 1.0 re-examines every connection of a pool at each
  request's start and end, so one pool of 32 busy connections costs milliseconds of CPU per
  request (500 concurrent `GET executions/{id}` at 30 ms of latency: 3.5 s, against 0.55 s for
  the sync client's 32 threads; in pools of 1: 0.65 s). A request waits for one of
  `max_connections` slots here, then goes to a pool with a free connection.
- Our calls use these pools directly (`SplitPool.exchange`, replies as `AsyncReply`), as the
  sync transport uses urllib3's pool under requests: httpx's request and response models cost
  the event loop ~0.25 ms of CPU per call, and a tree of small files is bound by that CPU
  (bench/async_client.py). Upload bodies and redirects go through `httpx.AsyncClient`, over
  the same pools: `SplitPool` is also its transport.
"""

from __future__ import annotations

import asyncio
import urllib.request
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from vip_smk.api.async_net import AsyncioBackend
from vip_smk.api.wire import BodyNames

SHARD = 1  # connections per small pool (1, 2, 4 measured: 1 the cheapest, tree uploads 10-20% faster than 4)
KEEPALIVE = 5.0  # seconds an idle connection is kept (httpx's default)


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY``), as requests reads it for the sync client."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(parts.netloc):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


class Headers(dict):
    """A reply's headers, names case-insensitive (repeated ones joined by ", ", as httpx does)."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


def _headers(raw: list[tuple[bytes, bytes]]) -> Headers:
    out = Headers()
    for k, v in raw:
        name, value = k.decode("latin-1").lower(), v.decode("latin-1")
        prev = dict.get(out, name)
        dict.__setitem__(out, name, value if prev is None else f"{prev}, {value}")
    return out


class AsyncReply(BodyNames):
    """A reply read from one of the pools, with the names our code reads (those of
    `httpx.Response`: status_code, reason, headers, content, text, json(), aread(), aiter_raw(),
    aclose()). Not streamed: read whole, its connection already given back."""

    def __init__(self, response: httpcore.Response, release: Callable[[], None]):
        self.status_code = response.status
        self.reason = response.extensions.get("reason_phrase", b"").decode("latin-1")
        self.headers = _headers(response.headers)
        self._stream: Any = response.stream
        self._release: Callable[[], None] | None = release
        self._content: bytes | None = None

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise RuntimeError("a streamed reply's body is read with aread() or aiter_raw()")
        return self._content

    async def aread(self) -> bytes:
        """The whole body (decoded if the server compressed it although asked not to)."""
        if self._content is None:
            try:
                data = b"".join([chunk async for chunk in self._stream])
            finally:
                await self.aclose()
            coding = self.headers.get("content-encoding", "").strip().lower()
            if coding in ("gzip", "x-gzip", "deflate"):
                data = zlib.decompress(data, 47)  # gzip or zlib framing, told apart by zlib
            self._content = data
        return self._content

    async def aiter_raw(self, size: int) -> AsyncIterator[bytes]:
        """The body as it comes, in pieces of `size` bytes (the last one shorter)."""
        buf = bytearray()
        async for chunk in self._stream:
            if not buf and len(chunk) == size:
                yield chunk
                continue
            buf += chunk
            while len(buf) >= size:
                yield bytes(buf[:size])
                del buf[:size]
        if buf:
            yield bytes(buf)

    async def aclose(self) -> None:
        """Give the connection back (kept if the body was read to its end, else dropped)."""
        release, self._release = self._release, None
        if release is None:
            return
        try:
            closer = getattr(self._stream, "aclose", None)
            if closer is not None:
                await closer()
        finally:
            release()


class _Body(httpx.AsyncByteStream):
    """A body read from httpcore for httpx (uploads, redirects); gives its slot back when closed."""

    def __init__(self, inner: Any, release: Callable[[], None]):
        self._inner, self._release = inner, release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            closer = getattr(self._inner, "aclose", None)
            if closer is not None:
                await closer()
        finally:
            self._release()


def _core_url(url: str | httpx.URL, target: bytes | None = None) -> httpcore.URL:
    u = httpx.URL(url) if isinstance(url, str) else url
    return httpcore.URL(scheme=u.raw_scheme, host=u.raw_host, port=u.port,
                        target=u.raw_path if target is None else target)


def _make_pool(n: int, tls: Any, backend: AsyncioBackend, proxy: str | None) -> Any:
    kw: dict[str, Any] = dict(ssl_context=tls, max_connections=n, max_keepalive_connections=n,
                              keepalive_expiry=KEEPALIVE, network_backend=backend)
    if proxy is None:
        return httpcore.AsyncConnectionPool(**kw)
    url = httpx.URL(proxy)
    auth = (url.username, url.password) if url.username else None
    if url.scheme.startswith("socks"):
        return httpcore.AsyncSOCKSProxy(proxy_url=_core_url(url, b"/"), proxy_auth=auth, **kw)
    return httpcore.AsyncHTTPProxy(proxy_url=_core_url(url, b"/"), proxy_auth=auth, **kw)


class SplitPool(httpx.AsyncBaseTransport):
    """`max_connections` connections in pools of `SHARD`: a request waits for one of
    `max_connections` slots, then goes to a pool with a free connection (never a full one),
    and keeps its slot until its reply is closed."""

    def __init__(self, max_connections: int, *, proxy: str | None = None, trust_env: bool = True):
        self.max_connections = max(1, int(max_connections))
        sizes = [SHARD] * (self.max_connections // SHARD)
        if self.max_connections % SHARD:
            sizes.append(self.max_connections % SHARD)
        tls = httpx.create_ssl_context(trust_env=trust_env)  # one CA bundle read (~30 ms), not one per pool
        backend = AsyncioBackend()
        self._pools = [_make_pool(n, tls, backend, proxy) for n in sizes]
        # a pool per free connection in `_free` (a pool of SHARD appears once per free connection)
        self._free = [i for i, n in enumerate(sizes) for _ in range(n)]
        self._slots: asyncio.Semaphore | None = None  # made in the event loop that uses it

    async def _take(self) -> tuple[Any, Callable[[], None]]:
        """A pool with a free connection, and the function that gives the slot back (once)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_connections)
        slots = self._slots
        await slots.acquire()
        i = self._free.pop()  # one is free, since fewer than max_connections hold a slot
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._free.append(i)
                slots.release()

        return self._pools[i], release

    async def exchange(self, request: httpcore.Request, *, stream: bool = False) -> AsyncReply:
        """One exchange (httpcore's exceptions on failure); `stream=False`: the body read."""
        pool, release = await self._take()
        try:
            reply = AsyncReply(await pool.handle_async_request(request), release)
        except BaseException:
            release()
            raise
        if not stream:
            await reply.aread()
        return reply

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """httpx's transport interface (uploads, redirects)."""
        core = httpcore.Request(method=request.method, url=_core_url(request.url),
                                headers=request.headers.raw, content=request.stream,
                                extensions=request.extensions)
        pool, release = await self._take()
        try:
            got = await pool.handle_async_request(core)
        except BaseException:
            release()
            raise
        return httpx.Response(status_code=got.status, headers=got.headers,
                              stream=_Body(got.stream, release), extensions=got.extensions)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


__all__ = ["SHARD", "AsyncReply", "Headers", "SplitPool", "environment_proxy"]

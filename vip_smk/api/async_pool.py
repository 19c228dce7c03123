"""The connection pool under `AsyncVipClient`'s one `httpx.AsyncClient`: at most
`max_connections` HTTP/1.1 connections to VIP (as the sync pool), callers beyond wait their turn.

Why not httpx's own pool of `max_connections`: httpcore 1.0 re-examines every connection of a
pool at each request's start and end (its idle count is rebuilt per idle connection, and each
connection's socket is polled), so a pool of 32 busy connections costs milliseconds of CPU per
request: 500 concurrent `GET executions/{id}` at 30 ms of latency took 3.5 s against 0.55 s for
the sync client's 32 threads (`bench/async_client.py`). The same connections held in small
pools of `SHARD` (4: 0.65 s), each request given to one with a free connection, and at most
`max_connections` requests handed to them at once (the rest wait here, not in httpcore's
queue), cost what one connection's bookkeeping costs.
One client, one connection limit, as before; only the bookkeeping is cheaper."""

from __future__ import annotations

import asyncio
import urllib.request
from urllib.parse import urlsplit

import httpx

SHARD = 1  # connections per small pool (1, 2, 4 measured: 1 the cheapest, tree uploads 10-20% faster than 4)


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY``), as requests reads it for the sync client. (httpx reads it
    only for its own transport, which this pool replaces.)"""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(parts.netloc):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


class _Release(httpx.AsyncByteStream):
    """A response body that gives its pool slot back when closed (read to the end or not)."""

    def __init__(self, inner: httpx.AsyncByteStream, release):
        self._inner, self._release = inner, release

    async def __aiter__(self):
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._release()


class SplitPool(httpx.AsyncBaseTransport):
    """`max_connections` connections in pools of `SHARD`: a request waits for one of
    `max_connections` slots, then goes to the pool with the most free connections (never a
    full one), and keeps its slot until its response is closed."""

    def __init__(self, max_connections: int, *, proxy: str | None = None, trust_env: bool = True):
        self.max_connections = max(1, int(max_connections))
        sizes = [SHARD] * (self.max_connections // SHARD)
        if self.max_connections % SHARD:
            sizes.append(self.max_connections % SHARD)
        tls = httpx.create_ssl_context(trust_env=trust_env)  # one CA bundle read (~30 ms), not one per pool
        self._pools = [httpx.AsyncHTTPTransport(verify=tls,
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
            proxy=proxy, trust_env=trust_env)
            for n in sizes]
        self._sizes = sizes
        self._busy = [0] * len(sizes)
        self._slots: asyncio.Semaphore | None = None  # made in the event loop that uses it

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_connections)
        slots = self._slots
        await slots.acquire()
        # the most free connections: one is free, since fewer than max_connections hold a slot
        i = max(range(len(self._pools)), key=lambda k: self._sizes[k] - self._busy[k])
        self._busy[i] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._busy[i] -= 1
                slots.release()

        try:
            response = await self._pools[i].handle_async_request(request)
        except BaseException:
            release()
            raise
        response.stream = _Release(response.stream, release)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


__all__ = ["SHARD", "SplitPool"]

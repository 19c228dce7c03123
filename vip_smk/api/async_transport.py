"""How `AsyncVipClient` talks HTTP to VIP: one HTTP/1.1 pool (`vip_smk.api.async_pool`, sized
like the sync one: at most `max_connections` to the server, callers beyond wait for a free
connection), timeouts, and the flows of `vip_smk.api.wire` answered with awaits. Every
decision (errors, retries, backoff, budget, clock) is `WireRules`, shared with the synchronous
transport: only the sending differs.

As the sync transport sends through urllib3's pool under requests, this one sends through
httpcore's pools under httpx (one `httpx.AsyncClient` over the same pool follows redirects and
sends upload bodies).
httpx is the `[async]` extra (`pip install 'vip-smk[async]'`)."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

try:
    import httpcore
    import httpx
except ImportError as exc:  # pragma: no cover - the light install
    raise ImportError("the asynchronous VIP client needs httpx: pip install 'vip-smk[async]'") from exc

from vip_smk.api.async_pool import AsyncReply, SplitPool, environment_proxy
from vip_smk.api.wire import (
    CONNECT_TIMEOUT,
    CONNECTION,
    CUT,
    MAX_CONNECTIONS,
    OTHER,
    READ_TIMEOUT,
    Blocking,
    Close,
    Read,
    Send,
    Sleep,
    WireRules,
)

CHUNK = 1 << 20  # upload bodies are read from the file in 1 MiB pieces


async def arun(flow, ado):
    """Run a flow with `await ado(op)` answering each operation."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            value = await ado(op)
        except BaseException as exc:  # handed to the flow, which decides (its finally blocks run)
            error = exc


async def _file_body(reader):
    """An upload body (a file-like reader of `vip_smk.api.streams`) as httpx streams it."""
    while True:
        data = reader.read(CHUNK)
        if not data:
            return
        yield data


class _Replayable:
    """An upload body httpx may send more than once (a 307 / 308 redirect): each iteration
    starts the file again."""

    def __init__(self, reader):
        self._reader = reader

    async def __aiter__(self):
        if self._reader.tell():
            self._reader.seek(0)
        async for data in _file_body(self._reader):
            yield data


class AsyncTransport(WireRules):
    """HTTP to one VIP server from one event loop (one pool of connections)."""

    def __init__(self, url: str, api_key: str, key_source: str, *, timeout: tuple[float, float] = (10, 300),
                 retries: int = 5, retry_budget: float = 60.0, backoff: float = 0.5, max_backoff: float = 15.0,
                 max_connections: int = MAX_CONNECTIONS):
        super().__init__(url, api_key, key_source, timeout=timeout, retries=retries,
                         retry_budget=retry_budget, backoff=backoff, max_backoff=max_backoff,
                         max_connections=max_connections)
        self._timeout = self._timeouts(timeout)
        self._timeout_ext = self._extension(timeout)
        self._http: httpx.AsyncClient | None = None
        self._pool: SplitPool | None = None
        base = httpx.URL(self.base)
        self._origin = (base.raw_scheme, base.raw_host, base.port)
        self._path = base.path  # "/rest/" (or under a prefix)
        self._host = (b"Host", base.netloc)

    @property
    def pool(self) -> SplitPool:
        """The connections, made at first use and made again after `aclose` (a closed client
        reconnects, as the sync one does); a proxy from the environment, as requests reads it."""
        if self._pool is None:
            self._pool = SplitPool(self.max_connections, proxy=environment_proxy(self.base))
        return self._pool

    @property
    def http(self) -> httpx.AsyncClient:
        """httpx over the same pool: the redirect path."""
        if self._http is None or self._http.is_closed:
            self._http = httpx.AsyncClient(
                base_url=self.base,
                headers=self.headers,
                transport=self.pool,
                timeout=self._timeout,
                follow_redirects=True,
                trust_env=True,  # CA bundle from the environment, as requests does
            )
        return self._http

    @staticmethod
    def _timeouts(timeout: tuple[float, float]) -> httpx.Timeout:
        # pool=None: a call waits for a free connection as long as it takes (the sync pool blocks)
        return httpx.Timeout(connect=timeout[0], read=timeout[1], write=timeout[1], pool=None)

    @staticmethod
    def _extension(timeout: tuple[float, float]) -> dict:
        """httpcore's timeout extension (no pool timeout: a call waits for a free connection)."""
        return {"timeout": {"connect": timeout[0], "read": timeout[1], "write": timeout[1], "pool": None}}

    async def aclose(self) -> None:
        http, pool, self._http, self._pool = self._http, self._pool, None, None
        if http is not None:
            await http.aclose()  # (closes the pool: its transport)
        elif pool is not None:
            await pool.aclose()

    # -- failures (the rules: WireRules) ----------------------------------------------------------

    def failure_kind(self, exc: Exception) -> str | None:
        # httpcore's exceptions (our exchanges) and httpx's (the redirect path), alike
        if isinstance(exc, (httpx.ConnectTimeout, httpcore.ConnectTimeout)):
            return CONNECT_TIMEOUT
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout, httpcore.ReadTimeout,
                            httpcore.WriteTimeout, httpcore.PoolTimeout)):
            return READ_TIMEOUT
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.DecodingError,
                            httpcore.RemoteProtocolError, httpcore.ReadError, zlib.error)):
            return CUT
        if isinstance(exc, (httpx.TransportError, httpcore.NetworkError, httpcore.ProtocolError,
                            httpcore.ProxyError, httpcore.UnsupportedProtocol, httpcore.ConnectionNotAvailable)):
            return CONNECTION  # ConnectError, WriteError, proxy errors...
        if isinstance(exc, httpx.HTTPError):
            return OTHER
        return None

    # -- calls --------------------------------------------------------------------------------

    async def request(self, method: str, endpoint: str, **kw) -> httpx.Response | None:
        """One logical call with retries (`WireRules.request_flow`)."""
        return await arun(self.request_flow(method, endpoint, **kw), self.do)

    async def json(self, method: str, endpoint: str, **kw) -> Any:
        return self.json_of(await self.request(method, endpoint, **kw), kw.get("call", endpoint), kw.get("target"))

    async def do(self, op: Any) -> Any:
        """An operation of a flow (`vip_smk.api.wire`), awaited."""
        if isinstance(op, Send):
            return await self.send(op)
        if isinstance(op, Read):
            if op.size <= 0:
                return await op.reply.aread()
            it = getattr(op.reply, "_pieces", None)
            if it is None:
                it = op.reply._pieces = op.reply.aiter_raw(op.size)
            try:
                return await it.__anext__()
            except StopAsyncIteration:
                return b""
        if isinstance(op, Close):
            await op.reply.aclose()
            return None
        if isinstance(op, Sleep):
            await asyncio.sleep(op.seconds)
            return None
        if isinstance(op, Blocking):  # the disk (fsync) waited for aside, not in the loop
            return await asyncio.to_thread(op.fn, *op.args)
        raise TypeError(f"not an operation of a flow: {op!r}")

    async def send(self, op: Send) -> AsyncReply | httpx.Response:
        """One HTTP exchange (no retry): httpcore's exceptions on failure. An upload body goes
        through httpx (over the same pool): measured faster there (tree upload of 1,000 x 10 KB at
        latency 30: 0.85x the sync client's speed sent directly, 0.97x through httpx)."""
        if op.body is not None:
            return await self._send_httpx(op)
        hdrs, body = self.request_headers(op.headers, op.json_body, op.body, op.method)
        headers = [self._host, *((k.encode("latin-1"), v.encode("latin-1")) for k, v in hdrs.items())]
        if "Accept-Encoding" not in hdrs:
            headers.append((b"Accept-Encoding", b"identity"))
        target = self.target_url(self._path, op.endpoint, op.params).encode("ascii")
        request = httpcore.Request(op.method.encode("ascii"), httpcore.URL(
            scheme=self._origin[0], host=self._origin[1], port=self._origin[2], target=target),
            headers=headers, content=body,
            extensions=self._timeout_ext if op.timeout is None else self._extension(op.timeout))
        reply = await self.pool.exchange(request, stream=op.stream)
        if 300 <= reply.status_code < 400 and "location" in reply.headers:
            await reply.aclose()
            return await self._send_httpx(op)
        self.answered = True
        self.note_clock(reply)
        return reply

    async def _send_httpx(self, op: Send) -> httpx.Response:
        """The exchange through httpx, which follows the redirects (httpx's exceptions on failure)."""
        hdrs, body = self.request_headers(op.headers, op.json_body, op.body, op.method)
        if body is not None and hasattr(body, "read"):
            body = _Replayable(body)
        url = self.target_url("", op.endpoint, op.params)
        request = self.http.build_request(
            op.method, url, content=body, headers=hdrs,
            timeout=self._timeout if op.timeout is None else self._timeouts(op.timeout),
        )
        resp = await self.http.send(request, stream=op.stream)
        self.answered = True
        self.note_clock(resp)
        return resp


__all__ = ["AsyncTransport", "arun"]

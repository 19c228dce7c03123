"""How `VipClient` talks HTTP to VIP: one `requests.Session` (its urllib3 pool used directly),
connection limits, timeouts, the retry loop and the sending. Every decision about the wire
(errors, what to retry, backoff, budget, the server's clock) is `vip_smk.api.wire.WireRules`,
shared with the asynchronous transport (`vip_smk.api.async_transport`): only the sending differs.

- Connections: at most `max_connections` to the server (default 32: VIP is shared by many
  researchers); callers wanting more in flight wait for a free one.
- Bodies are sent in `block_size` blocks (urllib3's default is 16 KiB: many syscalls).
"""

from __future__ import annotations

import logging
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as u3

from vip_smk.api.wire import (
    BLOCK_SIZE,
    CONNECT_TIMEOUT,
    CONNECTION,
    CUT,
    MAX_CONNECTIONS,
    OTHER,
    READ_TIMEOUT,
    Attempt,
    Blocking,
    BodyNames,
    Budget,
    Close,
    Read,
    Send,
    Sleep,
    WireRules,
    run,
    short,
)

log = logging.getLogger(__name__)

class _BlockAdapter(HTTPAdapter):
    """HTTPAdapter whose connections send bodies in `blocksize` blocks."""

    def __init__(self, *, blocksize: int, **kw):
        self._blocksize = blocksize
        super().__init__(**kw)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        pool_kwargs.setdefault("blocksize", self._blocksize)
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)


class Reply(BodyNames):
    """A reply read through the session's own connection pool (urllib3), with the names of
    `requests.Response` that our code reads. `stream=True`: the body is read by the caller
    (`iter_content`), and `close()` returns the connection (or drops it if unread)."""

    def __init__(self, raw: urllib3.BaseHTTPResponse, stream: bool = False):
        self.raw = raw
        self.status_code = raw.status
        self.reason = raw.reason or ""
        self.headers = raw.headers
        self._content: bytes | None = None if stream else raw.data
        self._consumed = not stream

    @property
    def content(self) -> bytes:
        if self._content is None:
            self._content = self.raw.read()
            self._consumed = True
        return self._content

    def iter_content(self, size: int) -> Iterator[bytes]:
        try:
            yield from self.raw.stream(size)
        except u3.HTTPError as exc:
            raise _as_requests_error(exc, reading=True) from None
        self._consumed = True

    def close(self) -> None:
        if not self._consumed:
            self.raw.close()  # a body left unread: the connection cannot be reused
        self.raw.release_conn()

    def __enter__(self) -> Reply:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# What a call returns: our own Reply (urllib3 pool) or, on redirects, a requests.Response; both
# have the names our code reads (status_code, reason, headers, content, text, json()).
HttpReply = Reply | requests.Response


def _as_requests_error(exc: Exception, *, reading: bool = False) -> requests.exceptions.RequestException:
    """urllib3's exceptions as requests' (one classification for both paths)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, u3.NewConnectionError):  # (a subclass of ConnectTimeoutError)
        if "timed out" in str(exc):
            return requests.exceptions.ConnectTimeout(text)
        return requests.exceptions.ConnectionError(text)
    if isinstance(exc, u3.ConnectTimeoutError):
        return requests.exceptions.ConnectTimeout(text)
    if isinstance(exc, u3.ReadTimeoutError):
        return requests.exceptions.ReadTimeout(text)
    if isinstance(exc, u3.SSLError):
        return requests.exceptions.SSLError(text)
    if isinstance(exc, u3.DecodeError):
        return requests.exceptions.ContentDecodingError(text)
    if reading and isinstance(exc, (u3.ProtocolError, u3.IncompleteRead)):
        return requests.exceptions.ChunkedEncodingError(text)
    return requests.exceptions.ConnectionError(text)


class Transport(WireRules):
    """HTTP to one VIP server. Thread-safe (one pooled session shared by the workers)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        key_source: str,
        *,
        timeout: tuple[float, float] = (10, 300),
        retries: int = 5,
        retry_budget: float = 60.0,
        backoff: float = 0.5,
        max_backoff: float = 15.0,
        max_connections: int = MAX_CONNECTIONS,
        block_size: int = BLOCK_SIZE,
    ):
        super().__init__(url, api_key, key_source, timeout=timeout, retries=retries,
                         retry_budget=retry_budget, backoff=backoff, max_backoff=max_backoff,
                         max_connections=max_connections)
        s = requests.Session()
        s.headers.update({"apikey": api_key, "Accept": "application/json"})
        # Environment settings (proxies, CA bundle) resolved once for our single host instead
        # of on every request (requests scans the whole environment each time: ~1-2 ms).
        s.proxies.update(requests.utils.get_environ_proxies(self.base) or {})
        ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca:
            s.verify = ca
        s.trust_env = False
        # pool_block: never more than max_connections sockets to the server
        adapter = _BlockAdapter(blocksize=int(block_size), pool_connections=2,
                                pool_maxsize=self.max_connections, max_retries=0, pool_block=True)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        self.session = s
        # the headers of every call (HTTP/1.1 keeps connections alive without saying so)
        self.headers = {k: str(v) for k, v in s.headers.items() if k.lower() != "connection"}
        # The calls go through the session's own pool with urllib3 directly (half the client
        # CPU per request of requests' machinery: it counts with many small files); through
        # requests itself when a proxy is set or a reply redirects.
        self._adapter = adapter
        self._timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        self._pool = None if s.proxies.get(urllib.parse.urlsplit(self.base).scheme) else self._get_pool()
        self._path = urllib.parse.urlsplit(self.base).path

    def _get_pool(self):
        """The session adapter's connection pool for our server (TLS settings applied)."""
        prepared = requests.PreparedRequest()
        prepared.prepare(method="GET", url=self.base)
        s = self.session
        return self._adapter.get_connection_with_tls_context(prepared, s.verify, s.proxies, s.cert)

    def close(self) -> None:
        self.session.close()

    # -- failures and retries (the rules: WireRules) ------------------------------------------

    def failure_kind(self, exc: Exception) -> str | None:
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return CONNECT_TIMEOUT
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return READ_TIMEOUT
        if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
            return CUT
        if isinstance(exc, requests.exceptions.ConnectionError):
            return CONNECTION
        if isinstance(exc, requests.exceptions.RequestException):
            return OTHER
        return None

    def retry_or_raise(self, failed: Attempt, budget: Budget, *, allowed: bool = True) -> None:
        """After a failed attempt: sleep and return (the caller tries again), or raise the
        error (not retryable, not allowed, or the budget is spent)."""
        time.sleep(self.retry_delay(failed, budget, allowed=allowed))

    # -- calls ------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        endpoint: str,
        *,
        call: str,
        target: str | None = None,
        params: dict | None = None,
        json_body: Any = None,
        body_factory: Callable[[], Any] | None = None,
        headers: dict | None = None,
        idempotent: bool = True,
        ok_missing_after_retry: bool = False,
        timeout: tuple[float, float] | None = None,
        retry_budget: float | None = None,
    ) -> HttpReply | None:
        """One logical call with retries. Returns the (fully read) successful response, or
        None when `ok_missing_after_retry` and a retry found the target gone (an earlier
        attempt whose reply was lost did the job)."""
        return run(self.request_flow(method, endpoint, call=call, target=target, params=params,
                                     json_body=json_body, body_factory=body_factory, headers=headers,
                                     idempotent=idempotent, ok_missing_after_retry=ok_missing_after_retry,
                                     timeout=timeout, retry_budget=retry_budget), self.do)

    def do(self, op: Any) -> Any:
        """An operation of a flow (`vip_smk.api.wire`), blocking."""
        if isinstance(op, Send):
            return self.send(op.method, op.endpoint, params=op.params, json_body=op.json_body, body=op.body,
                             headers=op.headers, timeout=op.timeout, stream=op.stream)
        if isinstance(op, Read):
            if op.size <= 0:
                return op.reply.content
            it = getattr(op.reply, "_pieces", None)
            if it is None:
                it = op.reply._pieces = op.reply.iter_content(op.size)
            return next(it, b"")
        if isinstance(op, Close):
            op.reply.close()
            return None
        if isinstance(op, Sleep):
            time.sleep(op.seconds)
            return None
        if isinstance(op, Blocking):
            return op.fn(*op.args)
        raise TypeError(f"not an operation of a flow: {op!r}")

    def send(self, method: str, endpoint: str, *, params: dict | None = None, json_body: Any = None,
             body: Any = None, headers: dict | None = None, timeout: tuple[float, float] | None = None,
             stream: bool = False) -> HttpReply:
        """One HTTP exchange (no retry): requests' exceptions on failure."""
        timeout = timeout or self.timeout
        if self._pool is None:
            return self._send_requests(method, endpoint, params, json_body, body, headers, timeout, stream)
        hdrs, body = self.request_headers(headers, json_body, body, method)
        url = self.target_url(self._path, endpoint, params)
        if self._pool.pool is None:  # closed (client.close()): a new one, as requests would
            self._pool = self._get_pool()
        try:
            raw = self._pool.urlopen(
                method, url, body=body, headers=hdrs, retries=False, redirect=False,
                timeout=(self._timeout if timeout == self.timeout
                         else urllib3.Timeout(connect=timeout[0], read=timeout[1])),
                preload_content=not stream, release_conn=not stream,
            )
        except u3.HTTPError as exc:
            raise _as_requests_error(exc) from None
        if 300 <= raw.status < 400 and raw.headers.get("Location"):
            raw.drain_conn()
            raw.release_conn()
            if hasattr(body, "seek"):
                body.seek(0)
            return self._send_requests(method, endpoint, params, json_body, body, headers, timeout, stream)
        reply = Reply(raw, stream=stream)
        self.answered = True
        self.note_clock(reply)
        return reply

    def _send_requests(self, method, endpoint, params, json_body, body, headers, timeout, stream):
        resp = self.session.request(method, self.base + endpoint, params=params, json=json_body, data=body,
                                    headers=headers, timeout=timeout, stream=stream)
        self.answered = True
        self.note_clock(resp)
        return resp

    def json(self, method: str, endpoint: str, **kw) -> Any:
        return self.json_of(self.request(method, endpoint, **kw), kw.get("call", endpoint), kw.get("target"))

    def open_stream(self, endpoint: str, *, params: dict, headers: dict,
                    stream: bool = True) -> HttpReply:
        """A GET whose body the caller reads (one attempt; close it after). `stream=False`:
        the body is read at once (small files)."""
        self.count(requests_=1)
        return self.send("GET", endpoint, params=params, headers=headers, stream=stream)


__all__ = ["Attempt", "Budget", "HttpReply", "MAX_CONNECTIONS", "Transport", "short"]

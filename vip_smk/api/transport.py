"""How `VipClient` talks HTTP to VIP: one `requests.Session`, connection limits, timeouts,
retries with backoff inside a time budget, error decoding and the server's clock.

`VipClient`'s methods only build calls (method, endpoint, body, what to retry); every decision
about the wire is here, in one place (as httpx keeps its Transport apart from its Client).

- Connections: at most `max_connections` to the server (default 32: VIP is shared by many
  researchers); callers wanting more in flight wait for a free one.
- Bodies are sent in `block_size` blocks (urllib3's default is 16 KiB: many syscalls).
- Retries: idempotent calls (and calls that cannot have reached the server) are retried on
  connection failures, timeouts, cut bodies and HTTP 429/502/503/504, with exponential backoff
  and jitter, at most `retries` times and within `retry_budget` seconds.
- Errors: a VIP JSON error `{"errorCode", "errorMessage"}` is decoded whatever the HTTP status
  (VIP sometimes answers errors with 200); HTML pages from proxies become `ServerError`. An
  unreachable server is named by its URL; a refused key by where it came from. The key itself
  is scrubbed from every message.
- Clock: the server's `Date` header gives `clock_skew` (server minus local, seconds), used to
  compare modification dates in incremental transfers.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as u3

from vip_smk.api.errors import (
    EXECUTION_CALLS,
    AuthError,
    NotFound,
    PermissionDenied,
    ServerError,
    TransportError,
    VipError,
    error_class,
)
from vip_smk.api.keys import MIN_KEY_LENGTH

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 32
BLOCK_SIZE = 1 << 18  # 256 KiB send blocks
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_URL_SAFE = re.compile(r"[A-Za-z0-9/%:@()\[\]!$&'*+,;=\-._~]*")


class _BlockAdapter(HTTPAdapter):
    """HTTPAdapter whose connections send bodies in `blocksize` blocks."""

    def __init__(self, *, blocksize: int, **kw):
        self._blocksize = blocksize
        super().__init__(**kw)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        pool_kwargs.setdefault("blocksize", self._blocksize)
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)


@dataclass
class Attempt:
    """A failed attempt, classified for the retry loop."""

    error: VipError
    retryable: bool
    maybe_sent: bool  # the request may have reached the server


class Budget:
    """The retries left to one logical call: a count and a deadline."""

    def __init__(self, retries: int, seconds: float):
        self.retries = retries
        self.deadline = time.monotonic() + seconds
        self.attempt = 0


class Reply:
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

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

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


class Transport:
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
        self.url = url  # portal URL, for messages
        self.base = url + "/rest/"
        self.key_source = key_source
        self.timeout = timeout
        self.retries = int(retries)
        self.retry_budget = float(retry_budget)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_connections = max(1, int(max_connections))
        self._key = api_key
        self._rng = random.Random()
        self._lock = threading.Lock()
        self.requests_made = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.clock_skew: float | None = None  # server clock - ours (seconds), once known
        self._last_date: str | None = None
        # An interactive caller (the CLI) sets this: a server that refuses the connection (or
        # a host that does not resolve) before it ever answered is reported at once, not retried
        # (once it has answered, a refusal is a restart: retried as usual).
        self.fail_fast_unreachable = False
        self.answered = False
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
        # The calls go through the session's own pool with urllib3 directly (half the client
        # CPU per request of requests' machinery: it counts with many small files); through
        # requests itself when a proxy is set or a reply redirects.
        self._adapter = adapter
        # the headers of every call (HTTP/1.1 keeps connections alive without saying so)
        self._headers = {k: v for k, v in s.headers.items() if k.lower() != "connection"}
        self._timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        self._pool = None if s.proxies.get(urllib.parse.urlsplit(self.base).scheme) else self._get_pool()
        self._path = urllib.parse.urlsplit(self.base).path

    def _get_pool(self):
        """The session adapter's connection pool for our server (TLS settings applied)."""
        prepared = requests.PreparedRequest()
        prepared.prepare(method="GET", url=self.base)
        s = self.session
        return self._adapter.get_connection_with_tls_context(prepared, s.verify, s.proxies, s.cert)

    def __repr__(self) -> str:
        return f"Transport(url={self.url!r}, key from {self.key_source})"

    def __getstate__(self):
        raise TypeError("a VIP transport cannot be pickled (it holds a live session and the key)")

    def close(self) -> None:
        self.session.close()

    # -- counters, messages -----------------------------------------------------------------

    def count(self, sent: int = 0, received: int = 0, requests_: int = 0) -> None:
        with self._lock:
            self.requests_made += requests_
            self.bytes_sent += sent
            self.bytes_received += received

    def scrub(self, text: str) -> str:
        # only a key of a plausible length (read_api_key refuses shorter ones): a 1-letter
        # "key" would turn every word holding that letter into ***
        if len(self._key) >= MIN_KEY_LENGTH and self._key in text:
            text = text.replace(self._key, "***")
        return text

    def error(self, cls: type[VipError], msg: str, *, call: str, target: str | None,
              code: int | None = None, status: int | None = None) -> VipError:
        where = f"{call} {target}" if target else call
        return cls(self.scrub(f"{where}: {msg}"), code=code, status=status, call=call, target=target)

    def _auth_hint(self) -> str:
        return (f"; the API key from {self.key_source} was refused by {self.url}: check that it is "
                "your current VIP key (VIP portal: My Account > API key)")

    # -- replies ----------------------------------------------------------------------------

    def decode_error(self, resp: HttpReply, call: str, target: str | None) -> VipError | None:
        """None if `resp` is a success, else the VipError it means."""
        status = resp.status_code
        ctype = resp.headers.get("Content-Type", "")
        body = None
        if "json" in ctype or (resp.content[:1] in (b"{", b"[")):
            try:
                body = resp.json()
            except ValueError:
                body = None
        is_vip_error = (
            isinstance(body, dict) and "errorCode" in body and set(body) <= {"errorCode", "errorMessage"}
        )
        if 200 <= status < 300 and not is_vip_error:
            return None
        if is_vip_error and isinstance(body, dict):  # (is_vip_error says it is: for mypy)
            code: int | None
            try:
                code = int(body["errorCode"])  # (present: is_vip_error)
            except (TypeError, ValueError):
                code = None
            message = str(body.get("errorMessage") or "").strip() or "error"
            cls = error_class(code, status, message, call=call)
            msg = f"{message} (VIP error {code}, HTTP {status})"
            if cls is NotFound and code == 8000 and call in EXECUTION_CALLS and target:
                msg = f"execution {target}: unknown to VIP or not yours; " + msg
            if cls is AuthError:
                msg += self._auth_hint()
            return self.error(cls, msg, call=call, target=target, code=code, status=status)
        # Not a VIP JSON error: HTML page from a proxy, empty body, other JSON.
        if isinstance(body, dict) and ("detail" in body or "message" in body):
            text = str(body.get("detail") or body.get("message"))
        else:
            raw = resp.text or ""
            title = re.search(r"<title>(.*?)</title>", raw, re.I | re.S)
            text = title.group(1).strip() if title else re.sub(r"\s+", " ", raw)[:120].strip()
        kind = "empty reply" if not resp.content else (
            "HTML error page" if "html" in ctype or "<html" in resp.text[:500].lower() else "non-VIP reply"
        )
        msg = f"HTTP {status} {resp.reason or ''}".rstrip() + f" ({kind}{': ' + text if text else ''})"
        cls = AuthError if status == 401 else PermissionDenied if status == 403 else ServerError
        if cls is AuthError:
            msg += self._auth_hint()
        return self.error(cls, msg, call=call, target=target, status=status)

    def note_clock(self, resp: HttpReply) -> None:
        """Server clock minus ours, from the `Date` header (1 s resolution)."""
        date = resp.headers.get("Date")
        if not date or date == self._last_date:
            return
        self._last_date = date
        try:
            server = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        self.clock_skew = server - time.time()

    # -- failures and retries ---------------------------------------------------------------

    def classify(self, exc: Exception, call: str, target: str | None) -> Attempt:
        """What a failed attempt means: the error to raise, whether to retry, whether the
        request may have reached the server."""
        if isinstance(exc, VipError):
            return Attempt(exc, isinstance(exc, TransportError) or exc.status in RETRY_STATUSES, True)
        check = "check the URL and that the server is up (network, VPN, proxy)"
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            err = self.error(TransportError, f"cannot reach VIP at {self.url} (connection timed out): {check}",
                             call=call, target=target)
            return Attempt(err, True, False)
        if isinstance(exc, requests.exceptions.ReadTimeout):
            err = self.error(TransportError, f"no answer from {self.url} within {self.timeout[1]} s",
                             call=call, target=target)
            return Attempt(err, True, True)
        if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
            err = self.error(TransportError, f"reply cut short ({short(exc)})", call=call, target=target)
            return Attempt(err, True, True)
        if isinstance(exc, requests.exceptions.ConnectionError):
            text = str(exc)
            refused = any(s in text for s in ("NewConnectionError", "Connection refused", "Name or service",
                                              "nodename", "NameResolutionError", "getaddrinfo"))
            if refused:
                msg = f"cannot reach VIP at {self.url} ({short(exc)}): {check}"
            else:
                msg = f"connection to {self.url} failed ({short(exc)})"
            err = self.error(TransportError, msg, call=call, target=target)
            retry = not (refused and self.fail_fast_unreachable and not self.answered)
            return Attempt(err, retry, not refused)
        if isinstance(exc, requests.exceptions.RequestException):
            err = self.error(TransportError, short(exc), call=call, target=target)
            return Attempt(err, False, True)
        raise exc

    def budget(self, seconds: float | None = None) -> Budget:
        return Budget(self.retries, self.retry_budget if seconds is None else seconds)

    def pause(self, budget: Budget) -> float | None:
        """Sleep before the next retry; None (no sleep) if the budget is spent."""
        budget.attempt += 1
        if budget.attempt > budget.retries:
            return None
        cap = min(self.max_backoff, self.backoff * (2 ** (budget.attempt - 1)))
        delay = cap / 2 + self._rng.uniform(0, cap / 2)
        remaining = budget.deadline - time.monotonic()
        if remaining <= 0.0:
            return None
        delay = min(delay, remaining)
        time.sleep(delay)
        return delay

    def retry_or_raise(self, failed: Attempt, budget: Budget, *, allowed: bool = True) -> None:
        """After a failed attempt: sleep and return (the caller tries again), or raise the
        error (not retryable, not allowed, or the budget is spent)."""
        if not (failed.retryable and allowed):
            raise failed.error from None
        delay = self.pause(budget)
        if delay is None:
            raise self._gave_up(failed.error, budget) from None
        log.warning("%s (retry %d in %.1f s)", failed.error, budget.attempt, delay)

    @staticmethod
    def _gave_up(err: VipError, budget: Budget) -> VipError:
        if isinstance(err, TransportError) and budget.attempt > 1:
            err.message = f"{err.message} (gave up after {budget.attempt} attempts)"
            err.args = (err.message,)
        return err

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
        budget = self.budget(retry_budget)
        while True:
            body = body_factory() if body_factory else None
            try:
                self.count(requests_=1)
                resp = self.send(method, endpoint, params=params, json_body=json_body, body=body,
                                 headers=headers, timeout=timeout)
                self.count(received=len(resp.content))
                err = self.decode_error(resp, call, target)
                if err is None:
                    return resp
                raise err
            except (VipError, requests.exceptions.RequestException) as exc:
                failed = self.classify(exc, call, target)
                if ok_missing_after_retry and budget.attempt > 0 and isinstance(failed.error, NotFound):
                    return None
                self.retry_or_raise(failed, budget, allowed=idempotent or not failed.maybe_sent)
            finally:
                close = getattr(body, "close", None)
                if close:
                    close()

    def send(self, method: str, endpoint: str, *, params: dict | None = None, json_body: Any = None,
             body: Any = None, headers: dict | None = None, timeout: tuple[float, float] | None = None,
             stream: bool = False) -> HttpReply:
        """One HTTP exchange (no retry): requests' exceptions on failure."""
        timeout = timeout or self.timeout
        if self._pool is None:
            return self._send_requests(method, endpoint, params, json_body, body, headers, timeout, stream)
        hdrs = dict(self._headers)
        if headers:
            hdrs.update(headers)
        if json_body is not None:
            body = jsonlib.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        if body is not None:
            hdrs["Content-Length"] = str(len(body))
        elif method in ("PUT", "POST"):
            hdrs["Content-Length"] = "0"
        if not _URL_SAFE.fullmatch(endpoint):  # (our endpoints come quoted: rarely needed)
            endpoint = urllib.parse.quote(endpoint, safe="/%:@()[]!$&'*+,;=-._~")
        url = self._path + endpoint
        if params:
            url += "?" + urllib.parse.urlencode(params)
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
        resp = self.request(method, endpoint, **kw)
        if resp is None:
            return None
        try:
            return resp.json()
        except ValueError:
            raise self.error(
                ServerError,
                f"HTTP {resp.status_code}: expected JSON, got {resp.headers.get('Content-Type', 'no content type')}",
                call=kw.get("call", endpoint), target=kw.get("target"), status=resp.status_code,
            ) from None

    def open_stream(self, endpoint: str, *, params: dict, headers: dict,
                    stream: bool = True) -> HttpReply:
        """A GET whose body the caller reads (one attempt; close it after). `stream=False`:
        the body is read at once (small files)."""
        self.count(requests_=1)
        return self.send("GET", endpoint, params=params, headers=headers, stream=stream)


def short(exc: Exception) -> str:
    """A short, key-free description of a requests/urllib3 exception (no internal reprs)."""
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if m:
        return m.group(1).strip()
    for word in ("Connection reset by peer", "Connection aborted", "RemoteDisconnected",
                 "IncompleteRead", "Read timed out", "timed out", "Remote end closed connection",
                 "Name or service not known", "Connection refused"):
        if word in text:
            return word
    text = re.sub(r"\s+", " ", text)[:160]
    return f"{type(exc).__name__}: {text}"


__all__ = ["Attempt", "Budget", "HttpReply", "MAX_CONNECTIONS", "Transport", "short"]

"""VIP's rules of the wire, shared by the synchronous transport (`vip_smk.api.transport`,
requests + urllib3) and the asynchronous one (`vip_smk.api.async_transport`, httpx): only the
sending differs between them, every decision is here.

- Errors: a VIP JSON error `{"errorCode", "errorMessage"}` is decoded whatever the HTTP status
  (VIP sometimes answers errors with 200); HTML pages from proxies become `ServerError`. An
  unreachable server is named by its URL; a refused key by where it came from. The key itself
  is scrubbed from every message.
- Retries: idempotent calls (and calls that cannot have reached the server) are retried on
  connection failures, timeouts, cut bodies and HTTP 429/502/503/504, with exponential backoff
  and jitter, at most `retries` times and within `retry_budget` seconds (`retry_delay` says how
  long to wait, the transport waits its own way).
- Clock: the server's `Date` header gives `clock_skew` (server minus local, seconds), used to
  compare modification dates in incremental transfers.
- URLs: endpoints arrive quoted by the resource client; `target_url` adds the query.

The retry loop of one call (`request_flow`) and the client's calls (`vip_smk.api.calls`) are
*flows*: generators that yield the operations below and receive their results (or have their
exceptions thrown in). Each transport answers them its own way (blocking or awaited), `run`
drives a flow with a blocking `do(op)`.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import random
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Protocol

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

log = logging.getLogger("vip_smk.api.transport")

MAX_CONNECTIONS = 32
BLOCK_SIZE = 1 << 18  # 256 KiB send blocks
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_URL_SAFE = re.compile(r"[A-Za-z0-9/%:@()\[\]!$&'*+,;=\-._~]*")

# What went wrong below HTTP, whatever the library that saw it (each transport maps its own
# exceptions to one of these).
CONNECT_TIMEOUT, READ_TIMEOUT, CUT, CONNECTION, OTHER = "connect-timeout", "read-timeout", "cut", "connection", "other"


@dataclass(frozen=True, slots=True)
class Send:
    """One HTTP exchange, no retry (`stream`: the body is left to `Read`, then `Close`)."""

    method: str
    endpoint: str
    params: dict | None = None
    json_body: Any = None
    body: Any = None
    headers: dict | None = None
    timeout: tuple[float, float] | None = None
    stream: bool = False


@dataclass(frozen=True, slots=True)
class Read:
    """The next piece (at most `size` bytes) of a streamed reply's body; b"" at its end."""

    reply: Any
    size: int


@dataclass(frozen=True, slots=True)
class Close:
    """Give a streamed reply's connection back (dropped if its body was not read)."""

    reply: Any


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Blocking:
    """A call that may block on the disk (fsync): run aside by an async transport."""

    fn: Any
    args: tuple = ()


def run(flow, do):
    """Run a flow with `do(op)` answering each operation (blocking)."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = flow.throw(error) if error is not None else flow.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            value = do(op)
        except BaseException as exc:  # handed to the flow, which decides (its finally blocks run)
            error = exc


class AnyReply(Protocol):
    """What the rules read of a reply (requests', urllib3's through ours, httpx's)."""

    status_code: int

    @property
    def headers(self) -> Any: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


class BodyNames:
    """`text` and `json()` of our own reply types (the sync `Reply`, `AsyncReply`), from their
    `content`, as requests and httpx name them."""

    @property
    def content(self) -> bytes:
        raise NotImplementedError

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


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


class WireRules:
    """The settings, counters and decisions of a transport to one VIP server."""

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
        self.headers = {"apikey": api_key, "Accept": "application/json"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, key from {self.key_source})"

    def __getstate__(self):
        raise TypeError("a VIP transport cannot be pickled (it holds a live session and the key)")

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

    # -- requests -----------------------------------------------------------------------------

    def target_url(self, path: str, endpoint: str, params: dict | None) -> str:
        """`path` (the server's `/rest/`) + the endpoint (quoted if it came unquoted) + query."""
        if not _URL_SAFE.fullmatch(endpoint):  # (our endpoints come quoted: rarely needed)
            endpoint = urllib.parse.quote(endpoint, safe="/%:@()[]!$&'*+,;=-._~")
        url = path + endpoint
        if params:
            url += "?" + urllib.parse.urlencode(params)
        return url

    # -- replies ----------------------------------------------------------------------------

    def decode_error(self, resp: AnyReply, call: str, target: str | None) -> VipError | None:
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
        reason = getattr(resp, "reason", None) or getattr(resp, "reason_phrase", None) or ""
        msg = f"HTTP {status} {reason}".rstrip() + f" ({kind}{': ' + text if text else ''})"
        cls = AuthError if status == 401 else PermissionDenied if status == 403 else ServerError
        if cls is AuthError:
            msg += self._auth_hint()
        return self.error(cls, msg, call=call, target=target, status=status)

    def note_clock(self, resp: AnyReply) -> None:
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

    def not_json(self, resp: AnyReply, call: str, target: str | None) -> VipError:
        return self.error(
            ServerError,
            f"HTTP {resp.status_code}: expected JSON, got {resp.headers.get('Content-Type', 'no content type')}",
            call=call, target=target, status=resp.status_code,
        )

    # -- failures and retries ---------------------------------------------------------------

    def failure_kind(self, exc: Exception) -> str | None:
        """CONNECT_TIMEOUT, READ_TIMEOUT, CUT, CONNECTION or OTHER for the transport's own
        exceptions; None for an exception that is not the transport's (raised as it is)."""
        return None

    def classify(self, exc: Exception, call: str, target: str | None) -> Attempt:
        """What a failed attempt means: the error to raise, whether to retry, whether the
        request may have reached the server."""
        if isinstance(exc, VipError):
            return Attempt(exc, isinstance(exc, TransportError) or exc.status in RETRY_STATUSES, True)
        kind = self.failure_kind(exc)
        if kind is None:
            raise exc
        check = "check the URL and that the server is up (network, VPN, proxy)"
        if kind == CONNECT_TIMEOUT:
            err = self.error(TransportError, f"cannot reach VIP at {self.url} (connection timed out): {check}",
                             call=call, target=target)
            return Attempt(err, True, False)
        if kind == READ_TIMEOUT:
            err = self.error(TransportError, f"no answer from {self.url} within {self.timeout[1]} s",
                             call=call, target=target)
            return Attempt(err, True, True)
        if kind == CUT:
            err = self.error(TransportError, f"reply cut short ({short(exc)})", call=call, target=target)
            return Attempt(err, True, True)
        if kind == CONNECTION:
            text = f"{type(exc).__name__}: {exc}"
            refused = any(s in text for s in ("NewConnectionError", "Connection refused", "Name or service",
                                              "nodename", "NameResolutionError", "getaddrinfo",
                                              "ConnectError", "Errno 111", "Errno -2", "Errno -3"))
            if refused:
                msg = f"cannot reach VIP at {self.url} ({short(exc)}): {check}"
            else:
                msg = f"connection to {self.url} failed ({short(exc)})"
            err = self.error(TransportError, msg, call=call, target=target)
            retry = not (refused and self.fail_fast_unreachable and not self.answered)
            return Attempt(err, retry, not refused)
        err = self.error(TransportError, short(exc), call=call, target=target)
        return Attempt(err, False, True)

    def budget(self, seconds: float | None = None) -> Budget:
        return Budget(self.retries, self.retry_budget if seconds is None else seconds)

    def retry_delay(self, failed: Attempt, budget: Budget, *, allowed: bool = True) -> float:
        """After a failed attempt: the seconds to wait before the next one (logged), or the
        error raised (not retryable, not allowed, or the budget is spent)."""
        if not (failed.retryable and allowed):
            raise failed.error from None
        budget.attempt += 1
        remaining = budget.deadline - time.monotonic()
        if budget.attempt > budget.retries or remaining <= 0.0:
            raise self._gave_up(failed.error, budget) from None
        cap = min(self.max_backoff, self.backoff * (2 ** (budget.attempt - 1)))
        delay = min(cap / 2 + self._rng.uniform(0, cap / 2), remaining)
        log.warning("%s (retry %d in %.1f s)", failed.error, budget.attempt, delay)
        return delay

    @staticmethod
    def _gave_up(err: VipError, budget: Budget) -> VipError:
        if isinstance(err, TransportError) and budget.attempt > 1:
            err.message = f"{err.message} (gave up after {budget.attempt} attempts)"
            err.args = (err.message,)
        return err

    def request_flow(self, method: str, endpoint: str, *, call: str, target: str | None = None,
                     params: dict | None = None, json_body: Any = None, body_factory: Any = None,
                     headers: dict | None = None, idempotent: bool = True, ok_missing_after_retry: bool = False,
                     timeout: tuple[float, float] | None = None, retry_budget: float | None = None):
        """One logical call with retries (a flow). Returns the (fully read) successful reply, or
        None when `ok_missing_after_retry` and a retry found the target gone (an earlier
        attempt whose reply was lost did the job)."""
        budget = self.budget(retry_budget)
        while True:
            body = body_factory() if body_factory else None
            try:
                self.count(requests_=1)
                resp = yield Send(method, endpoint, params, json_body, body, headers, timeout)
                self.count(received=len(resp.content))
                err = self.decode_error(resp, call, target)
                if err is None:
                    return resp
                raise err
            except Exception as exc:
                failed = self.classify(exc, call, target)  # (raises what is not the transport's)
                if ok_missing_after_retry and budget.attempt > 0 and isinstance(failed.error, NotFound):
                    return None
                yield Sleep(self.retry_delay(failed, budget, allowed=idempotent or not failed.maybe_sent))
            finally:
                close = getattr(body, "close", None)
                if close:
                    close()

    def json_of(self, resp: AnyReply | None, call: str, target: str | None) -> Any:
        """The decoded body of a successful reply (None for None)."""
        if resp is None:
            return None
        try:
            return resp.json()
        except ValueError:
            raise self.not_json(resp, call, target) from None

    def request_headers(self, headers: dict | None, json_body: Any, body: Any, method: str) -> tuple[dict, Any]:
        """The headers and body of one exchange (JSON encoded, lengths stated)."""
        hdrs = dict(self.headers)
        if headers:
            hdrs.update(headers)
        if json_body is not None:
            body = jsonlib.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        if body is not None and hasattr(body, "__len__"):
            hdrs["Content-Length"] = str(len(body))
        elif body is None and method in ("PUT", "POST"):
            hdrs["Content-Length"] = "0"
        return hdrs, body


def short(exc: BaseException) -> str:
    """A short, key-free description of a transport exception (no internal reprs)."""
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if m:
        return m.group(1).strip()
    for word in ("Connection reset by peer", "Connection aborted", "RemoteDisconnected",
                 "IncompleteRead", "Read timed out", "timed out", "Remote end closed connection",
                 "Name or service not known", "Connection refused", "peer closed connection"):
        if word in text:
            return word
    text = re.sub(r"\s+", " ", text)[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["AnyReply", "Attempt", "Blocking", "BodyNames", "Close", "Read", "Send", "Sleep", "run", "BLOCK_SIZE", "Budget", "MAX_CONNECTIONS", "RETRY_STATUSES", "WireRules", "short"]

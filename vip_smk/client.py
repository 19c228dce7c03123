"""`VipClient`: the VIP REST API (CARMIN, VIP-portal 4.6) in Python.

One `requests.Session` per client (pooled, thread-safe for concurrent calls), typed errors
decided from the HTTP status *and* the JSON body, connect/read timeouts on every call, bounded
retries with exponential backoff and jitter for idempotent calls, a never-duplicated `launch`,
and streaming transfers (see `vip_smk.transfer` for the tree operations).

No module-level mutable state: the URL, the key and every setting live on the instance.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import requests
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

DEFAULT_URL = "https://vip.creatis.insa-lyon.fr"
DEFAULT_KEY_ENV = "VIP_API_KEY"
CHUNK = 1 << 20  # 1 MiB: file read size
DOWNLOAD_CHUNK = 1 << 18  # 256 KiB

RUNNING_STATUSES = frozenset({"Initializing", "Ready", "Running"})
# Statuses after which an execution produces nothing more ("Removed" is set by VipSession.finish).
# Anything else -- Initializing, Ready, Running, or a status this code does not know -- counts
# as running: waiting once too often is cheap, deleting the data of a live execution is not.
TERMINAL_STATUSES = frozenset(
    {"Finished", "ExecutionFailed", "InitializationFailed", "Killed", "Unknown", "Removed"}
)


def status_is_running(status: str | None) -> bool:
    """True for every status not known to be terminal (None: not launched yet -> False)."""
    return status is not None and status not in TERMINAL_STATUSES

# Characters VIP accepts in input values (server check, code 8009), see reference 2.3.
VIP_VALUE_CHARS = re.compile(r"[0-9.,A-Za-z\-+@/_():\s\[\]?&=]*")


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class VipError(Exception):
    """Any failure talking to VIP. `.code` = VIP error code (or None), `.status` = HTTP status
    (or None), `.call` = the client call, `.target` = the VIP path / pipeline / execution."""

    def __init__(
        self,
        message: str,
        code: int | None = None,
        status: int | None = None,
        *,
        call: str | None = None,
        target: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.call = call
        self.target = target

    def __str__(self) -> str:
        return self.message


class AuthError(VipError):
    """Bad, missing or rejected API key (8002/8003/8004, HTTP 401)."""


class NotFound(VipError):
    """Path, pipeline or execution that does not exist."""


class PermissionDenied(VipError):
    """Not allowed (8013, 8008, HTTP 403)."""


class InvalidInput(VipError):
    """VIP refused the request's content (invalid ids, values, names, missing inputs...)."""


class CapacityError(VipError):
    """Too many executions (2000 platform limit, 2001 user limit)."""


class ServerError(VipError):
    """VIP failed (5xx, or an error page that is not a VIP JSON error)."""


class TransportError(VipError):
    """The network failed (connection refused/reset, timeout, truncated body)."""


_AUTH_CODES = {8002, 8003, 8004}
_NOTFOUND_CODES = {8006, 8007}
_PERMISSION_CODES = {8008, 8013}
_CAPACITY_CODES = {2000, 2001}
_INVALID_CODES = {8005, 8009, 8010, 8011, 8012, 8014, 8015, 8016, 8017, 8018, 8019, 8020, 2002}
_MISSING_RE = re.compile(
    r"(does ?n[o']t exist|not exist|no such|not found|unknown (path|file|directory))", re.I
)
_RETRY_STATUSES = {429, 502, 503, 504}


def _error_class(code: int | None, status: int | None, message: str) -> type[VipError]:
    if code in _AUTH_CODES:
        return AuthError
    if code in _CAPACITY_CODES:
        return CapacityError
    if code in _NOTFOUND_CODES:
        return NotFound
    if code in _PERMISSION_CODES:
        return PermissionDenied
    if code in _INVALID_CODES:
        return InvalidInput
    if code == 8000 and _MISSING_RE.search(message or ""):
        return NotFound
    if status == 401:
        return AuthError
    if status == 403:
        return PermissionDenied
    if status == 404 and code is not None:
        return NotFound
    if status is not None and status >= 500:
        return ServerError
    if code is not None:
        return InvalidInput
    return ServerError


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class _Model:
    """JSON <-> dataclass with camelCase keys; unknown keys are kept in `extra`."""

    _keys: dict[str, str] = {}  # attribute -> JSON key (class constant, never mutated)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]):
        data = dict(data or {})
        kwargs = {}
        for attr, key in cls._keys.items():
            if key in data:
                kwargs[attr] = data.pop(key)
        obj = cls(**kwargs)
        obj.extra = data
        obj._post_load()
        return obj

    def _post_load(self) -> None:
        pass

    def to_json(self) -> dict[str, Any]:
        out = {}
        for attr, key in self._keys.items():
            value = getattr(self, attr)
            if isinstance(value, list):
                value = [v.to_json() if isinstance(v, _Model) else v for v in value]
            out[key] = value
        out.update(self.extra)
        return out


@dataclass
class Parameter(_Model):
    name: str = ""
    type: str = "String"
    is_optional: bool = False
    default_value: Any = None
    description: str | None = None
    is_returned_value: bool = False
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _keys = {
        "name": "name",
        "type": "type",
        "is_optional": "isOptional",
        "default_value": "defaultValue",
        "description": "description",
        "is_returned_value": "isReturnedValue",
    }

    @property
    def is_required(self) -> bool:
        """Required = not optional and no default value (VIP's rule)."""
        return not self.is_optional and self.default_value is None


@dataclass
class Pipeline(_Model):
    identifier: str = ""
    name: str = ""
    version: str = ""
    description: str | None = None
    parameters: list[Parameter] = field(default_factory=list)
    can_execute: bool = True
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _keys = {
        "identifier": "identifier",
        "name": "name",
        "version": "version",
        "description": "description",
        "parameters": "parameters",
        "can_execute": "canExecute",
    }

    def _post_load(self) -> None:
        self.parameters = [
            p if isinstance(p, Parameter) else Parameter.from_json(p) for p in (self.parameters or [])
        ]

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)


@dataclass
class Execution(_Model):
    identifier: str = ""
    name: str | None = None
    pipeline_identifier: str | None = None
    status: str | None = None
    input_values: dict[str, Any] = field(default_factory=dict)
    returned_files: dict[str, list[str]] | None = None
    start_date: int | None = None  # milliseconds since the epoch (VIP's unit)
    end_date: int | None = None
    jobs: dict[str, Any] | None = None
    error_code: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _keys = {
        "identifier": "identifier",
        "name": "name",
        "pipeline_identifier": "pipelineIdentifier",
        "status": "status",
        "input_values": "inputValues",
        "returned_files": "returnedFiles",
        "start_date": "startDate",
        "end_date": "endDate",
        "jobs": "jobs",
        "error_code": "errorCode",
    }

    @property
    def is_running(self) -> bool:
        """Every non-terminal status (Initializing, Ready, Running, or one unknown to this
        code) counts as running."""
        return status_is_running(self.status)

    @property
    def is_over(self) -> bool:
        return not self.is_running

    @property
    def output_paths(self) -> list[str]:
        """All returned files, flattened, in the server's order."""
        out: list[str] = []
        for value in (self.returned_files or {}).values():
            if isinstance(value, str):
                out.append(value)
            elif value:
                out.extend(value)
        return out


@dataclass
class PathInfo(_Model):
    path: str = ""
    is_directory: bool = False
    size: int | None = None  # bytes for files, number of entries for directories
    exists: bool = True
    last_modification_date: int | None = None  # seconds
    mime_type: str | None = None
    execution_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _keys = {
        "path": "path",
        "is_directory": "isDirectory",
        "size": "size",
        "exists": "exists",
        "last_modification_date": "lastModificationDate",
        "mime_type": "mimeType",
        "execution_id": "executionId",
    }

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def vip_clean_name(name: str) -> str:
    """The name VIP stores an uploaded file under: spaces become `_`, non-ASCII is dropped."""
    name = name.replace(" ", "_")
    return "".join(ch for ch in name if ord(ch) < 128)


def resolve_api_key(api_key: str | os.PathLike | None = DEFAULT_KEY_ENV) -> str:
    """As VIP's client: an existing file -> its stripped content; else the name of a set
    environment variable -> its value; else the literal key. Never echoes the key."""
    if api_key is None:
        api_key = DEFAULT_KEY_ENV
    if isinstance(api_key, os.PathLike):
        api_key = os.fspath(api_key)
    api_key = str(api_key).strip()
    if not api_key:
        raise AuthError("no VIP API key given (empty value)", call="api_key")
    try:
        if os.path.isfile(api_key):
            key = Path(api_key).read_text(encoding="utf-8").strip()
            if not key:
                raise AuthError(f"the API key file {api_key} is empty", call="api_key")
            return key
    except (OSError, ValueError):
        pass  # too long / invalid as a path: a literal key
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key) and api_key in os.environ:
        key = os.environ[api_key].strip()
        if not key:
            raise AuthError(f"the environment variable {api_key} is empty", call="api_key")
        return key
    if api_key == DEFAULT_KEY_ENV:
        raise AuthError(
            "no VIP API key found: pass api_key=<key, key file or env var name> "
            f"or set the environment variable {DEFAULT_KEY_ENV}",
            call="api_key",
        )
    return api_key


def quote_path(path: str) -> str:
    """Percent-encode a VIP path (or pipeline id) keeping `/`: `:`, spaces, parentheses,
    `?`, `#`, `%`... all round-trip."""
    return urllib.parse.quote(str(path), safe="/")


def _vip_path(path: str | PurePosixPath) -> str:
    p = str(path)
    if not p.startswith("/"):
        raise InvalidInput(f"VIP paths are absolute (/vip/...): got {p!r}", call="path", target=p)
    if ".." in p.split("/"):
        raise InvalidInput(f"VIP paths may not contain '..': {p!r}", call="path", target=p)
    if len(p) > 1:
        p = p.rstrip("/")
    return p


WRITEBACK = 32 << 20  # start writing a download to disk every 32 MiB (cheap final fsync)


def _start_writeback(fh, start: int, end: int) -> int:
    """Ask the kernel to start writing [start, end) to disk now (asynchronously) so that the
    final fsync of a big download does not stall on gigabytes of dirty pages; also keeps
    the page cache from filling with it. Returns the new flushed offset."""
    fh.flush()
    try:
        os.posix_fadvise(fh.fileno(), start, end - start, os.POSIX_FADV_DONTNEED)
    except (AttributeError, OSError):
        pass
    return end


def _norm_values(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """Input values in a comparable form (VIP may echo numbers as strings)."""
    out: dict[str, Any] = {}
    for k, v in (values or {}).items():
        items = v if isinstance(v, (list, tuple)) else [v]
        out[str(k)] = tuple(str(x) for x in items)
    return out


class _BlockAdapter(HTTPAdapter):
    """HTTPAdapter whose connections send bodies in `blocksize` blocks."""

    blocksize = 1 << 16  # 64 KiB: fewer syscalls than urllib3's 16 KiB, no big copies

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        pool_kwargs.setdefault("blocksize", self.blocksize)
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)


class _ReadCounter:
    """A file-like body that reports the bytes read by the HTTP layer (upload progress)."""

    def __init__(self, fh, size: int, callback: Callable[[int], None] | None):
        self._fh = fh
        self._size = size
        self._cb = callback
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n if n and n > 0 else CHUNK)
        if data:
            self.sent += len(data)
            if self._cb:
                self._cb(len(data))
        return data


@dataclass
class _Attempt:
    """Result of one failed attempt, for the retry loop."""

    error: VipError
    retryable: bool
    maybe_sent: bool  # the request may have reached the server


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


class VipClient:
    """A client of VIP's REST API (or of a local `vip-smk serve`).

    url:      portal URL (default `$VIP_URL` or https://vip.creatis.insa-lyon.fr); `/rest` added.
    api_key:  the key, a path to a file holding it, or the name of an environment variable
              (default `VIP_API_KEY`).
    timeout:  (connect, read) seconds for every call.
    retries:  max retries of an idempotent call; `retry_budget`: total seconds spent retrying.
    workers:  parallel transfers (the connection pool is sized for them).
    progress: tqdm progress bars for transfers: None = when attached to a terminal/notebook.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | os.PathLike | None = DEFAULT_KEY_ENV,
        *,
        timeout: float | tuple[float, float] = (10, 300),
        retries: int = 5,
        retry_budget: float = 60.0,
        workers: int = 8,
        progress: bool | None = None,
        backoff: float = 0.5,
        max_backoff: float = 15.0,
    ):
        url = url or os.environ.get("VIP_URL") or DEFAULT_URL
        url = str(url).strip().rstrip("/")
        if url.endswith("/rest"):
            url = url[: -len("/rest")]
        if not re.match(r"https?://", url):
            raise InvalidInput(f"VIP URL must start with http:// or https://: {url!r}", call="url")
        self.url = url
        self.base = url + "/rest/"
        self.timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self.retries = int(retries)
        self.retry_budget = float(retry_budget)
        self.workers = max(1, int(workers))
        self.progress = progress
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._api_key = resolve_api_key(api_key)
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._launched: set[str] = set()
        self.requests_made = 0
        self.clock_skew: float | None = None  # server clock - ours (seconds), once known
        self.bytes_sent = 0
        self.bytes_received = 0
        self._session = requests.Session()
        self._session.headers.update({"apikey": self._api_key, "Accept": "application/json"})
        # Environment settings (proxies, CA bundle) resolved once for our single host instead
        # of on every request (requests scans the whole environment each time: ~1-2 ms).
        self._session.proxies.update(requests.utils.get_environ_proxies(self.base) or {})
        ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca:
            self._session.verify = ca
        self._session.trust_env = False
        adapter = _BlockAdapter(
            pool_connections=4, pool_maxsize=self.workers + 2, max_retries=0, pool_block=False
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    # -- plumbing ------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"VipClient(url={self.url!r}, workers={self.workers})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> VipClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        raise TypeError("VipClient cannot be pickled (it holds a live session and the key)")

    @property
    def session(self) -> requests.Session:
        return self._session

    def _scrub(self, text: str) -> str:
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return text

    def _count(self, sent: int = 0, received: int = 0, requests_: int = 0) -> None:
        with self._lock:
            self.requests_made += requests_
            self.bytes_sent += sent
            self.bytes_received += received

    def _error(self, cls, msg, *, call, target, code=None, status=None) -> VipError:
        where = f"{call} {target}" if target else call
        return cls(self._scrub(f"{where}: {msg}"), code=code, status=status, call=call, target=target)

    def _decode_error(self, resp: requests.Response, call: str, target: str | None) -> VipError | None:
        """None if `resp` is a success, else the VipError it means."""
        status = resp.status_code
        ctype = resp.headers.get("Content-Type", "")
        body = None
        text = ""
        if "json" in ctype or (resp.content[:1] in (b"{", b"[")):
            try:
                body = resp.json()
            except ValueError:
                body = None
        is_vip_error = (
            isinstance(body, dict)
            and "errorCode" in body
            and set(body) <= {"errorCode", "errorMessage"}
        )
        if 200 <= status < 300 and not is_vip_error:
            return None
        if is_vip_error:
            code = body.get("errorCode")
            try:
                code = int(code)
            except (TypeError, ValueError):
                code = None
            message = str(body.get("errorMessage") or "").strip() or "error"
            cls = _error_class(code, status, message)
            return self._error(
                cls, f"{message} (VIP error {code}, HTTP {status})",
                call=call, target=target, code=code, status=status,
            )
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
        if status == 401:
            cls = AuthError
        elif status == 403:
            cls = PermissionDenied
        else:
            cls = ServerError
        return self._error(cls, msg, call=call, target=target, status=status)

    def _sleep_for(self, attempt: int, deadline: float) -> float | None:
        """Backoff before retry `attempt` (1-based), or None if the budget is exhausted."""
        if attempt > self.retries:
            return None
        cap = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        delay = cap / 2 + self._rng.uniform(0, cap / 2)
        remaining = deadline - time.monotonic()
        if remaining <= 0.0:
            return None
        return min(delay, remaining)

    def _classify_exception(self, exc: Exception, call: str, target: str | None) -> _Attempt:
        if isinstance(exc, VipError):
            return _Attempt(exc, isinstance(exc, (TransportError,)) or exc.status in _RETRY_STATUSES, True)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            err = self._error(TransportError, f"connection timed out ({self._short(exc)})", call=call, target=target)
            return _Attempt(err, True, False)
        if isinstance(exc, requests.exceptions.ReadTimeout):
            err = self._error(TransportError, f"no answer within {self.timeout[1]} s", call=call, target=target)
            return _Attempt(err, True, True)
        if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
            err = self._error(TransportError, f"reply cut short ({self._short(exc)})", call=call, target=target)
            return _Attempt(err, True, True)
        if isinstance(exc, requests.exceptions.ConnectionError):
            text = str(exc)
            refused = any(s in text for s in ("NewConnectionError", "Connection refused", "Name or service", "nodename"))
            err = self._error(TransportError, f"connection failed ({self._short(exc)})", call=call, target=target)
            return _Attempt(err, True, not refused)
        if isinstance(exc, requests.exceptions.RequestException):
            err = self._error(TransportError, self._short(exc), call=call, target=target)
            return _Attempt(err, False, True)
        raise exc

    @staticmethod
    def _short(exc: Exception) -> str:
        """A short, key-free description of a requests/urllib3 exception."""
        text = str(exc)
        m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
        if m:
            return m.group(1).strip()
        for word in ("Connection reset by peer", "Connection aborted", "RemoteDisconnected",
                     "IncompleteRead", "Read timed out", "timed out", "Remote end closed connection"):
            if word in text:
                return word
        text = re.sub(r"\s+", " ", text)[:160]
        return f"{type(exc).__name__}: {text}"

    def _note_clock(self, resp: requests.Response) -> None:
        """Server clock minus ours, from the `Date` header (1 s resolution), for the
        modification-date comparisons of incremental transfers."""
        date = resp.headers.get("Date")
        if not date:
            return
        try:
            server = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        self.clock_skew = server - time.time()

    def _url(self, endpoint: str) -> str:
        return self.base + endpoint

    def _request(
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
    ) -> requests.Response | None:
        """One logical call with retries. Returns the (fully read) successful response."""
        url = self._url(endpoint)
        budget = self.retry_budget if retry_budget is None else retry_budget
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            body = body_factory() if body_factory else None
            try:
                self._count(requests_=1)
                resp = self._session.request(
                    method, url, params=params, json=json_body, data=body, headers=headers,
                    timeout=timeout or self.timeout,
                )
                self._count(received=len(resp.content))
                self._note_clock(resp)
                err = self._decode_error(resp, call, target)
                if err is None:
                    return resp
                raise err
            except (VipError, requests.exceptions.RequestException) as exc:
                failed = self._classify_exception(exc, call, target)
                if (
                    ok_missing_after_retry and attempt > 0 and isinstance(failed.error, NotFound)
                ):
                    return None  # an earlier attempt whose reply was lost did the job
                if not (failed.retryable and (idempotent or not failed.maybe_sent)):
                    raise failed.error from None
                attempt += 1
                delay = self._sleep_for(attempt, deadline)
                if delay is None:
                    raise failed.error from None
                log.warning("%s (retry %d in %.1f s)", failed.error, attempt, delay)
                time.sleep(delay)
            finally:
                close = getattr(body, "close", None)
                if close:
                    close()

    def _json(self, method: str, endpoint: str, **kw) -> Any:
        resp = self._request(method, endpoint, **kw)
        if resp is None:
            return None
        try:
            return resp.json()
        except ValueError:
            raise self._error(
                ServerError,
                f"HTTP {resp.status_code}: expected JSON, got {resp.headers.get('Content-Type', 'no content type')}",
                call=kw.get("call", endpoint), target=kw.get("target"), status=resp.status_code,
            ) from None

    # -- platform ------------------------------------------------------------------------------

    def platform(self) -> dict:
        return self._json("GET", "platform", call="platform")

    def check_key(self) -> None:
        """`PUT /rest/platform` as VIP's client does: AuthError if the key is refused."""
        self._request("PUT", "platform", call="check_key")

    # -- pipelines -----------------------------------------------------------------------------

    def pipelines(self) -> list[Pipeline]:
        data = self._json("GET", "pipelines", call="pipelines")
        return [Pipeline.from_json(p) for p in data or []]

    def pipeline(self, pipeline_id: str) -> Pipeline:
        pid = str(pipeline_id)
        if "/" not in pid:
            raise InvalidInput(
                f"pipeline {pid!r}: identifiers are NAME/VERSION (e.g. TextStats/1.0)",
                call="pipeline", target=pid,
            )
        data = self._json("GET", "pipelines/" + quote_path(pid), call="pipeline", target=pid)
        return Pipeline.from_json(data)

    # -- paths ---------------------------------------------------------------------------------

    def _path_get(self, path: str, action: str, call: str, **kw):
        p = _vip_path(path)
        return self._json("GET", "path" + quote_path(p), params={"action": action}, call=call, target=p, **kw)

    def exists(self, path: str) -> bool:
        data = self._path_get(path, "exists", "exists")
        if isinstance(data, dict):
            return bool(data.get("exists"))
        return bool(data)

    def list(self, path: str) -> list[PathInfo]:
        data = self._path_get(path, "list", "list")
        return [PathInfo.from_json(d) for d in data or []]

    def properties(self, path: str) -> PathInfo:
        return PathInfo.from_json(self._path_get(path, "properties", "properties"))

    def md5(self, path: str) -> str | None:
        """The file's md5 if the server computes it, else None (VIP-portal 4.6 does not)."""
        try:
            data = self._path_get(path, "md5", "md5")
        except VipError as exc:
            if isinstance(exc, InvalidInput) or exc.code == 8001:
                log.debug("md5 not available for %s: %s", path, exc)
                return None
            raise
        if isinstance(data, dict):
            return data.get("md5") or None
        return str(data) if data else None

    def _mkdir_one(self, path: str) -> None:
        """Create one directory whose parent exists (PUT with an empty body, trailing `/`)."""
        p = _vip_path(path)
        try:
            self._request("PUT", "path" + quote_path(p) + "/", call="mkdir", target=p,
                          headers={"Content-Type": "application/octet-stream"}, body_factory=lambda: b"")
        except (InvalidInput, ServerError, NotFound) as exc:
            # Already there (maybe created by a retried attempt or a concurrent worker)?
            try:
                info = self.properties(p)
            except NotFound:
                raise exc from None
            if not (info.exists and info.is_directory):
                raise self._error(InvalidInput, "a file with this name exists", call="mkdir", target=p) from None

    def mkdir(self, path: str, parents: bool = True) -> None:
        """Create a directory (and its missing parents); no error if it exists."""
        p = _vip_path(path)
        if p in ("/", "/vip"):
            return
        try:
            info = self.properties(p)
        except NotFound:
            info = None
        if info is not None and info.exists:
            if not info.is_directory:
                raise self._error(InvalidInput, "a file with this name exists", call="mkdir", target=p)
            return
        parent = str(PurePosixPath(p).parent)
        if parents and parent not in ("/", "/vip"):
            try:
                self._mkdir_one(p)
                return
            except NotFound:
                pass
            except VipError as exc:
                if isinstance(exc, (AuthError, TransportError, CapacityError, PermissionDenied)):
                    raise
            self.mkdir(parent, parents=True)
        self._mkdir_one(p)

    def upload(
        self,
        local: str | os.PathLike,
        vip_path: str,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream a local file to `vip_path` (PUT, application/octet-stream). A retry re-sends
        from the start of the file. `progress(n)` is called with the bytes sent (negative on a
        restart)."""
        local = Path(local)
        p = _vip_path(vip_path)
        try:
            size = local.stat().st_size
        except OSError as exc:
            raise self._error(InvalidInput, f"cannot read {local}: {exc.strerror}", call="upload", target=p) from None
        if not local.is_file():
            raise self._error(InvalidInput, f"{local} is not a file", call="upload", target=p)
        if size == 0:
            raise self._error(
                InvalidInput, f"{local} is empty (VIP turns an empty upload into a directory)",
                call="upload", target=p,
            )
        name = PurePosixPath(p).name
        if vip_clean_name(name) != name:
            raise self._error(
                InvalidInput, f"VIP would rename {name!r} to {vip_clean_name(name)!r}",
                call="upload", target=p,
            )
        state = {"sent": 0}

        def body():
            if state["sent"] and progress:
                progress(-state["sent"])
            state["sent"] = 0

            def cb(n):
                state["sent"] += n
                if progress:
                    progress(n)

            try:
                fh = open(local, "rb")
            except OSError as exc:
                raise self._error(InvalidInput, f"cannot read {local}: {exc.strerror}", call="upload", target=p) from None
            reader = _ReadCounter(fh, size, cb)
            reader.close = fh.close  # type: ignore[attr-defined]
            return reader

        self._request(
            "PUT", "path" + quote_path(p), call="upload", target=p, body_factory=body,
            headers={"Content-Type": "application/octet-stream"},
        )
        self._count(sent=size)

    def download(
        self,
        vip_path: str,
        local: str | os.PathLike,
        *,
        size: int | None = None,
        resume: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> Path:
        """Stream `vip_path` to `local` through `local.part` (Range-resumed if present),
        check the size, fsync, rename. Returns the local path. `size` = expected size if
        known (saves a request)."""
        p = _vip_path(vip_path)
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        part = local.with_name(local.name + ".part")
        url = self._url("path" + quote_path(p))
        deadline = time.monotonic() + self.retry_budget
        attempt = 0
        while True:
            got = 0
            try:
                offset = part.stat().st_size if (resume and part.exists()) else 0
                if size is not None and offset > size:
                    offset = 0
                if size is not None and offset == size and size > 0:
                    self._finish_part(part, local, size, p)
                    return local
                # identity: sizes and Range offsets are those of the file itself
                headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
                if offset:
                    headers["Range"] = f"bytes={offset}-"
                self._count(requests_=1)
                with self._session.get(
                    url, params={"action": "content"}, headers=headers, stream=True, timeout=self.timeout
                ) as resp:
                    if resp.status_code == 416 and offset:
                        part.unlink(missing_ok=True)  # our .part is stale: start again
                        continue
                    if resp.status_code not in (200, 206):
                        resp.content  # noqa: B018 - read the (small) error body
                        err = self._decode_error(resp, "download", p)
                        raise err or self._error(ServerError, f"HTTP {resp.status_code}", call="download", target=p, status=resp.status_code)
                    ctype = resp.headers.get("Content-Type", "")
                    if resp.status_code == 200 and ctype.startswith("application/json"):
                        # a VIP error delivered with 200, or a JSON file: decide by the body shape
                        data = resp.content
                        err = self._decode_error(resp, "download", p)
                        if err is not None:
                            raise err
                        chunks: Iterable[bytes] = [data]
                    else:
                        # 256 KiB: a body cut short loses at most one chunk (resumed by Range)
                        chunks = resp.iter_content(DOWNLOAD_CHUNK)
                    total = self._total_size(resp, offset)
                    if resp.status_code == 200:
                        offset = 0
                    expected = size if size is not None else total
                    mode = "r+b" if offset else "wb"
                    with open(part, mode) as fh:
                        if offset:
                            fh.seek(offset)
                            fh.truncate()
                        flushed = offset
                        for chunk in chunks:
                            fh.write(chunk)
                            got += len(chunk)
                            if progress:
                                progress(len(chunk))
                            if offset + got - flushed >= WRITEBACK:
                                flushed = _start_writeback(fh, flushed, offset + got)
                        fh.flush()
                        os.fsync(fh.fileno())
                    self._count(received=got)
                if expected is None:
                    expected = self.properties(p).size
                have = part.stat().st_size
                if expected is not None and have != expected:
                    if have > expected:
                        part.unlink(missing_ok=True)
                    raise self._error(
                        TransportError, f"got {have} bytes, expected {expected}", call="download", target=p
                    )
                self._finish_part(part, local, have, p)
                return local
            except (VipError, requests.exceptions.RequestException) as exc:
                failed = self._classify_exception(exc, "download", p)
                if not failed.retryable:
                    raise failed.error from None
                attempt += 1
                delay = self._sleep_for(attempt, deadline)
                if delay is None:
                    raise failed.error from None
                log.warning("%s (retry %d in %.1f s)", failed.error, attempt, delay)
                time.sleep(delay)

    @staticmethod
    def _total_size(resp: requests.Response, offset: int) -> int | None:
        if resp.status_code == 206:
            m = re.search(r"/(\d+)\s*$", resp.headers.get("Content-Range", ""))
            if m:
                return int(m.group(1))
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and "Content-Encoding" not in resp.headers:
            return int(length) + (offset if resp.status_code == 206 else 0)
        return None

    @staticmethod
    def _finish_part(part: Path, local: Path, size: int, p: str) -> None:
        if local.is_dir():
            raise InvalidInput(f"download {p}: {local} is a directory", call="download", target=p)
        # The data was fsynced before: if the rename is lost in a power cut, the complete
        # `.part` is found and finalised on the next run (no directory fsync per file).
        os.replace(part, local)

    def delete(self, path: str, *, missing_ok: bool = False, wait: float = 30.0) -> None:
        """Delete a file or directory (recursively). VIP deletes asynchronously: wait up to
        `wait` seconds until it is gone (0: do not wait)."""
        p = _vip_path(path)
        if p in ("/", "/vip", "/vip/Home"):
            raise InvalidInput(f"delete {p}: refusing to delete a root folder", call="delete", target=p)
        try:
            self._request("DELETE", "path" + quote_path(p), call="delete", target=p, ok_missing_after_retry=True)
        except NotFound:
            if missing_ok:
                return
            raise
        if wait:
            end = time.monotonic() + wait
            delay = 0.05
            while self.exists(p):
                if time.monotonic() > end:
                    log.warning("delete %s: still present after %.0f s", p, wait)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    # -- executions ----------------------------------------------------------------------------

    def launch(
        self,
        pipeline_id: str,
        input_values: Mapping[str, Any],
        results_location: str,
        name: str = "vip-smk",
    ) -> Execution:
        """POST executions. Never duplicated: after a failure where the request may have
        reached VIP, an execution of the same name and pipeline created since the call began
        is adopted; only if there is none is the POST sent again."""
        pid = str(pipeline_id)
        values = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in dict(input_values).items()}
        values = {k: ([str(x) if isinstance(x, os.PathLike) else x for x in v] if isinstance(v, list)
                      else (str(v) if isinstance(v, os.PathLike) else v)) for k, v in values.items()}
        body = {
            "name": name,
            "pipelineIdentifier": pid,
            "inputValues": values,
            "resultsLocation": _vip_path(results_location),
        }
        target = f"{pid} ({name})"
        # on the server's clock when known (Date headers), minus a small slack
        began_ms = int((time.time() + (self.clock_skew or 0.0)) * 1000) - 2000
        deadline = time.monotonic() + self.retry_budget
        attempt = 0
        while True:
            try:
                data = self._json("POST", "executions", call="launch", target=target,
                                  json_body=body, idempotent=False, retry_budget=0)
            except VipError as exc:
                failed = self._classify_exception(exc, "launch", target)
                if not failed.retryable:
                    raise
                # Retry; but if VIP may have created it, look for it first (never duplicate).
                while True:
                    attempt += 1
                    delay = self._sleep_for(attempt, deadline)
                    if delay is None:
                        raise
                    log.warning("%s (retry %d in %.1f s)", exc, attempt, delay)
                    time.sleep(delay)
                    if not failed.maybe_sent:
                        break
                    try:
                        adopted = self._find_launched(name, pid, began_ms, values)
                    except VipError as lookup_exc:
                        log.warning("launch %s: cannot check whether VIP created it: %s", target, lookup_exc)
                        continue  # unknown: never POST blindly, look again after a pause
                    if adopted is not None:
                        log.warning("launch %s: reply lost, adopted %s", target, adopted.identifier)
                        return adopted
                    break
                continue
            ex = Execution.from_json(data)
            with self._lock:
                self._launched.add(ex.identifier)
            log.info("launched %s: %s", target, ex.identifier)
            return ex

    def _find_launched(self, name: str, pid: str, began_ms: int, values: dict | None = None) -> Execution | None:
        candidates = []
        for ex in self.executions():
            if ex.name != name or (ex.pipeline_identifier and ex.pipeline_identifier != pid):
                continue
            with self._lock:
                if ex.identifier in self._launched:
                    continue
            if ex.start_date is None or ex.pipeline_identifier is None:
                ex = self.execution(ex.identifier)
                if ex.pipeline_identifier and ex.pipeline_identifier != pid:
                    continue
            if ex.start_date is not None and ex.start_date < began_ms:
                continue
            candidates.append(ex)
        if not candidates:
            return None
        if len(candidates) > 1 and values is not None:
            # several of that name (other processes?): prefer those with our input values
            same = [e for e in candidates if _norm_values(e.input_values) == _norm_values(values)]
            candidates = same or candidates
        ex = min(candidates, key=lambda e: e.start_date or 0)
        with self._lock:
            self._launched.add(ex.identifier)
        return ex

    def execution(self, execution_id: str) -> Execution:
        eid = str(execution_id)
        return Execution.from_json(
            self._json("GET", "executions/" + quote_path(eid), call="execution", target=eid)
        )

    def executions(self) -> list[Execution]:
        return [Execution.from_json(e) for e in self._json("GET", "executions", call="executions") or []]

    def count_executions(self) -> int:
        resp = self._request("GET", "executions/count", call="count_executions")
        text = resp.text.strip()
        try:
            return int(json.loads(text))
        except (ValueError, TypeError):
            raise self._error(ServerError, f"not a count: {text[:60]!r}", call="count_executions") from None

    def results(self, execution_id: str) -> list[PathInfo]:
        eid = str(execution_id)
        data = self._json("GET", f"executions/{quote_path(eid)}/results", call="results", target=eid)
        return [PathInfo.from_json(d) for d in data or []]

    def stdout(self, execution_id: str) -> str:
        eid = str(execution_id)
        return self._request("GET", f"executions/{quote_path(eid)}/stdout", call="stdout", target=eid).text

    def stderr(self, execution_id: str) -> str:
        eid = str(execution_id)
        return self._request("GET", f"executions/{quote_path(eid)}/stderr", call="stderr", target=eid).text

    def kill(self, execution_id: str) -> None:
        eid = str(execution_id)
        self._request("PUT", f"executions/{quote_path(eid)}/kill", call="kill", target=eid)

    def delete_execution(self, execution_id: str, delete_files: bool = False) -> None:
        eid = str(execution_id)
        self._request(
            "PUT", f"executions/{quote_path(eid)}/delete", call="delete_execution", target=eid,
            json_body={"deleteFiles": bool(delete_files)},
        )

    def wait(
        self,
        execution_id: str,
        *,
        poll: float = 5.0,
        timeout: float | None = None,
        callback: Callable[[Execution], None] | None = None,
    ) -> Execution:
        """Poll an execution until it is over (any terminal status). TimeoutError after
        `timeout` seconds (None = no limit)."""
        end = None if timeout is None else time.monotonic() + timeout
        delay = min(0.2, poll)
        while True:
            ex = self.execution(execution_id)
            if callback:
                callback(ex)
            if ex.is_over:
                return ex
            if end is not None and time.monotonic() + delay > end:
                raise TimeoutError(f"execution {execution_id} still {ex.status} after {timeout} s")
            time.sleep(delay)
            delay = min(poll, delay * 2)

    # -- trees (vip_smk.transfer) -----------------------------------------------------------------

    def upload_tree(self, local_dir, vip_dir, **kw):
        from vip_smk import transfer

        return transfer.upload_tree(self, local_dir, vip_dir, **kw)

    def download_tree(self, vip_dir, local_dir, **kw):
        from vip_smk import transfer

        return transfer.download_tree(self, vip_dir, local_dir, **kw)

    def download_files(self, pairs, **kw):
        from vip_smk import transfer

        return transfer.download_files(self, pairs, **kw)


__all__ = [
    "AuthError",
    "CapacityError",
    "Execution",
    "InvalidInput",
    "NotFound",
    "Parameter",
    "PathInfo",
    "PermissionDenied",
    "Pipeline",
    "ServerError",
    "TransportError",
    "VipClient",
    "VipError",
    "quote_path",
    "resolve_api_key",
    "vip_clean_name",
]

"""`ApiClient`: the VIP REST API (CARMIN, VIP-portal 4.6) in Python, one method per VIP call.
(`vip_smk.VipClient`, in `vip_smk.core.client`, is this class plus waiting and tree transfers.)

One `requests.Session` per client (pooled, thread-safe for concurrent calls), typed errors
decided from the HTTP status *and* the JSON body, connect/read timeouts on every call, bounded
retries with exponential backoff and jitter for idempotent calls, a never-duplicated `launch`,
and streaming transfers (one file: `vip_smk.api.streams`; trees: `vip_smk.transfer.trees`).

No module-level mutable state: the URL, the key and every setting live on the instance.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Self

import requests

from vip_smk.api import streams
from vip_smk.api.adoption import adoptable_on_vip
from vip_smk.api.errors import (
    NOT_IMPLEMENTED,
    AuthError,
    CapacityError,
    DescriptorUnavailable,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ServerError,
    TooLarge,
    TransportError,
    VipError,
)
from vip_smk.api.keys import DEFAULT_KEY_ENV, ApiKey, read_api_key, vip_client_key_kwargs  # noqa: F401
from vip_smk.api.models import Execution, Parameter, PathInfo, Pipeline
from vip_smk.api.transport import MAX_CONNECTIONS, HttpReply, Transport
from vip_smk.api.urls import DEFAULT_URL, LOCAL_DIR, ResolvedUrl, resolve_url  # noqa: F401  (re-exported)
from vip_smk.rules import RUNNING_STATUSES, TERMINAL_STATUSES  # noqa: F401  (VIP's rules: vip_smk.rules)
from vip_smk.rules import VALUE_CHARS as VIP_VALUE_CHARS  # noqa: F401
from vip_smk.rules import clean_name as vip_clean_name

log = logging.getLogger(__name__)



# Errors: vip_smk.api.errors, models: vip_smk.api.models, keys: vip_smk.api.keys (all re-exported here);
# HTTP: vip_smk.api.transport; one file's body up/down: vip_smk.api.streams.


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


class ApiClient:
    """A client of VIP's REST API (or of a local `vip-smk serve`).

    url:      portal URL (default `$VIP_URL` or https://vip.creatis.insa-lyon.fr); `/rest` added;
              `local`: the local VIP server of ./.vip-local (started if needed), whose key file
              is then the key default (`vip_smk.api.urls.resolve_url`).
    api_key / api_key_env / api_key_file: the key itself, the name of an environment variable
              holding it, or a file holding it (at most one; default: `$VIP_API_KEY`).
    timeout:  (connect, read) seconds for every call.
    retries:  max retries of an idempotent call; `retry_budget`: total seconds spent retrying.
    max_connections: connections to the server at most (default 32; VIP is shared).
    workers:  transfers in flight at most (default: `max_connections`; tree transfers adapt it to
              file sizes: many small files in flight, few large ones).
    progress: tqdm progress bars for transfers: None = when attached to a terminal/notebook.

    The HTTP side (session, retries, error decoding, clock) is `self.transport`
    (`vip_smk.api.transport.Transport`); the methods here only build calls.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        api_key_env: str | None = None,
        api_key_file: str | os.PathLike | None = None,
        timeout: float | tuple[float, float] = (10, 300),
        retries: int = 5,
        retry_budget: float = 60.0,
        workers: int | None = None,
        max_connections: int = MAX_CONNECTIONS,
        progress: bool | None = None,
        backoff: float = 0.5,
        max_backoff: float = 15.0,
    ):
        resolved = resolve_url(url, setting="url")
        url = resolved.url
        if resolved.key_file is not None and api_key is None and api_key_env is None and api_key_file is None:
            api_key_file = resolved.key_file  # `local`: the local server's key unless one is given
        key = read_api_key(api_key, api_key_env=api_key_env, api_key_file=api_key_file)
        self.url = url
        self.base = url + "/rest/"
        max_connections = max(1, int(max_connections))
        self.workers = max_connections if workers is None else max(1, min(int(workers), max_connections))
        self.progress = progress
        self.transport = Transport(
            url, key.value, key.source,
            timeout=timeout if isinstance(timeout, tuple) else (timeout, timeout),
            retries=retries, retry_budget=retry_budget, backoff=backoff, max_backoff=max_backoff,
            max_connections=max_connections,
        )
        self.key_source = key.source
        self._lock = threading.Lock()
        self._launched: set[str] = set()
        self._md5_offered: bool | None = None  # None: not asked yet (VIP-portal answers 8001)
        self._platform: dict | None = None
        self._descriptors: dict[str, dict | DescriptorUnavailable] = {}  # descriptor() answers

    # -- plumbing ------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, key from {self.key_source}, workers={self.workers})"

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        raise TypeError("VipClient cannot be pickled (it holds a live session and the key)")

    @property
    def session(self) -> requests.Session:
        return self.transport.session

    @property
    def timeout(self) -> tuple[float, float]:
        return self.transport.timeout

    @property
    def retry_budget(self) -> float:
        return self.transport.retry_budget

    @property
    def max_connections(self) -> int:
        return self.transport.max_connections

    @property
    def requests_made(self) -> int:
        return self.transport.requests_made

    @property
    def bytes_sent(self) -> int:
        return self.transport.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self.transport.bytes_received

    @property
    def clock_skew(self) -> float | None:
        """Server clock minus ours (seconds), once a reply had a `Date` header."""
        return self.transport.clock_skew

    def _error(self, cls, msg, *, call, target, code=None, status=None) -> VipError:
        return self.transport.error(cls, msg, call=call, target=target, code=code, status=status)

    def _request(self, method: str, endpoint: str, **kw) -> HttpReply | None:
        return self.transport.request(method, endpoint, **kw)

    def _reply(self, method: str, endpoint: str, **kw) -> HttpReply:
        """`_request` of a call that has a reply (None comes only with ok_missing_after_retry)."""
        resp = self.transport.request(method, endpoint, **kw)
        assert resp is not None, "a reply is None only with ok_missing_after_retry"
        return resp

    def _json(self, method: str, endpoint: str, **kw) -> Any:
        return self.transport.json(method, endpoint, **kw)

    # -- platform ------------------------------------------------------------------------------

    def platform(self, *, cached: bool = False) -> dict:
        """`GET platform` (VIP's settings and limits). `cached`: the first answer of this client."""
        if cached and self._platform is not None:
            return self._platform
        data = self._json("GET", "platform", call="platform")
        self._platform = data if isinstance(data, dict) else {}
        return data

    def max_download_size(self) -> int | None:
        """VIP's direct-transfer limit in bytes (`maxSizeDirectTransfer` of `GET platform`, read
        once per client), None if VIP states none."""
        value = self.platform(cached=True).get("maxSizeDirectTransfer")
        try:
            return int(value) if value is not None and int(value) > 0 else None
        except (TypeError, ValueError):
            return None

    def check_download_size(self, vip_path: str, size: int | None) -> None:
        """TooLarge naming the file, its size and the limit if VIP would refuse to send it."""
        streams.check_size(self, vip_path, size)

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

    def descriptor(self, pipeline_id: str) -> dict:
        """The pipeline's whole Boutiques descriptor (`GET pipelines/{id}?format=boutiques`,
        VIP-portal 4.6): `inputs` with their constraints, `groups`, `output-files`,
        `custom` (`vip:dot`). Asked once per client (a refusal too). Raises
        DescriptorUnavailable where VIP does not serve it (older portals refuse the format or
        answer the CARMIN pipeline), NotFound for an unknown pipeline."""
        pid = str(pipeline_id)
        with self._lock:
            known = self._descriptors.get(pid)
        if known is None:
            known = self._fetch_descriptor(pid)
            with self._lock:
                self._descriptors[pid] = known
        if isinstance(known, DescriptorUnavailable):
            raise known
        return known

    def _fetch_descriptor(self, pid: str) -> dict | DescriptorUnavailable:
        if "/" not in pid:
            raise InvalidInput(f"pipeline {pid!r}: identifiers are NAME/VERSION (e.g. TextStats/1.0)",
                               call="descriptor", target=pid)
        why = "it answered the CARMIN pipeline instead (a portal older than 4.6)"
        try:
            data = self._json("GET", "pipelines/" + quote_path(pid), call="descriptor", target=pid,
                              params={"format": "boutiques"})
        except NotFound:
            raise
        except InvalidInput as exc:  # 8001 not implemented, 8017 not compatible with boutiques
            data, why = None, f"it refused the format ({exc})"
        if isinstance(data, dict) and isinstance(data.get("inputs"), list) and "parameters" not in data:
            return data
        return DescriptorUnavailable(f"VIP ({self.url}) does not serve the Boutiques descriptor of "
                                     f"{pid}: {why}; only the CARMIN parameters are checked",
                                     call="descriptor", target=pid)

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
        """The file's md5 if the server computes it, else None. VIP-portal answers 8001 (not
        implemented): remembered, later calls of this client return None without a request."""
        if self._md5_offered is False:
            return None
        try:
            data = self._path_get(path, "md5", "md5")
        except VipError as exc:
            if exc.code == NOT_IMPLEMENTED:
                log.debug("md5 not offered by %s: %s", self.url, exc)
                self._md5_offered = False
                return None
            raise
        self._md5_offered = True
        if isinstance(data, dict):
            return data.get("md5") or None
        return str(data) if data else None

    @property
    def md5_offered(self) -> bool | None:
        """Whether the server computes md5 (None: not asked yet)."""
        return self._md5_offered

    def mkdir(self, path: str, parents: bool = True, *, exist_ok: bool = True, known_missing: bool = False) -> None:
        """Create a directory (and, with `parents`, its missing parents); no error if it exists
        (`exist_ok`). `known_missing`: the caller knows it is absent (e.g. from a listing): no
        lookup first (one request when its parent exists)."""
        p = _vip_path(path)
        if p in ("/", "/vip"):
            return
        if not known_missing:
            try:
                info = self.properties(p)
            except NotFound:
                info = None
            if info is not None and info.exists:
                if not info.is_directory:
                    raise self._error(InvalidInput, "a file with this name exists", call="mkdir", target=p)
                if not exist_ok:
                    raise self._error(InvalidInput, "already exists", call="mkdir", target=p)
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

    def _mkdir_one(self, p: str) -> None:
        """Create one directory whose parent exists (PUT with an empty body, trailing `/`)."""
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

    def upload(
        self,
        local: str | os.PathLike,
        vip_path: str,
        *,
        progress: Callable[[int], None] | None = None,
        hasher: Callable[[], Any] | None = None,
    ) -> str | None:
        """Stream a local file to `vip_path` (PUT, application/octet-stream). A retry re-sends
        from the start of the file. `progress(n)` is called with the bytes sent (negative on a
        restart). `hasher` (e.g. `vip_smk.core.content.hasher`): the bytes are hashed as they
        are read and the hex digest returned (see `vip_smk.api.streams.upload`)."""
        p = _vip_path(vip_path)
        return streams.upload(self, local, p, "path" + quote_path(p), progress=progress, hasher=hasher)

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
        known (saves a request). A file over VIP's direct-transfer limit raises TooLarge
        before any request for its content."""
        p = _vip_path(vip_path)
        return streams.download(self, p, "path" + quote_path(p), local, size=size, resume=resume,
                                progress=progress)

    def read_bytes(self, vip_path: str, *, size: int | None = None) -> bytes:
        """The content of a (small) file, in memory: one GET, retried, size-checked (`size`:
        the expected size if known). TooLarge over VIP's direct-transfer limit."""
        p = _vip_path(vip_path)
        return streams.read_bytes(self, p, "path" + quote_path(p), size=size)

    @staticmethod
    def write_file(local: str | os.PathLike, data: bytes, vip_path: str = "") -> Path:
        """Write downloaded bytes as `download` does: through `local.part`, fsynced, renamed
        (parents created)."""
        return streams.write_file(local, data, vip_path)


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
        tr = self.transport
        budget = tr.budget()
        while True:
            try:
                data = self._json("POST", "executions", call="launch", target=target,
                                  json_body=body, idempotent=False, retry_budget=0)
            except VipError as exc:
                failed = tr.classify(exc, "launch", target)
                # Retry; but if VIP may have created it, look for it first (never duplicate).
                while True:
                    tr.retry_or_raise(failed, budget)
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

    def _find_launched(self, name: str, pid: str, began_ms: int, values: Mapping[str, Any]) -> Execution | None:
        """The execution a lost POST reply created, if any (`vip_smk.api.adoption.adoptable_on_vip`: same name,
        pipeline and inputs, started since the call began, not one this client already has)."""
        with self._lock:
            mine = set(self._launched)
        ex = adoptable_on_vip(self, name=name, pipeline_id=pid, values=values, exclude=mine,
                                   started_after=began_ms, include_failed=True)
        if ex is not None:
            with self._lock:
                self._launched.add(ex.identifier)
        return ex

    def execution(self, execution_id: str) -> Execution:
        eid = str(execution_id)
        return Execution.from_json(
            self._json("GET", "executions/" + quote_path(eid), call="execution", target=eid)
        )

    def executions(self) -> builtins.list[Execution]:  # (`list` here: the method above)
        return [Execution.from_json(e) for e in self._json("GET", "executions", call="executions") or []]

    def count_executions(self) -> int:
        resp = self._reply("GET", "executions/count", call="count_executions")
        text = resp.text.strip()
        try:
            return int(json.loads(text))
        except (ValueError, TypeError):
            raise self._error(ServerError, f"not a count: {text[:60]!r}", call="count_executions",
                              target=None) from None

    def results(self, execution_id: str) -> builtins.list[PathInfo]:
        eid = str(execution_id)
        data = self._json("GET", f"executions/{quote_path(eid)}/results", call="results", target=eid)
        return [PathInfo.from_json(d) for d in data or []]

    def stdout(self, execution_id: str) -> str:
        eid = str(execution_id)
        return self._reply("GET", f"executions/{quote_path(eid)}/stdout", call="stdout", target=eid).text

    def stderr(self, execution_id: str) -> str:
        eid = str(execution_id)
        return self._reply("GET", f"executions/{quote_path(eid)}/stderr", call="stderr", target=eid).text

    def kill(self, execution_id: str) -> None:
        eid = str(execution_id)
        self._request("PUT", f"executions/{quote_path(eid)}/kill", call="kill", target=eid)

    def delete_execution(self, execution_id: str, delete_files: bool = False) -> None:
        eid = str(execution_id)
        self._request(
            "PUT", f"executions/{quote_path(eid)}/delete", call="delete_execution", target=eid,
            json_body={"deleteFiles": bool(delete_files)},
        )


__all__ = [
    "AuthError",
    "CapacityError",
    "DescriptorUnavailable",
    "Execution",
    "InvalidInput",
    "NotFound",
    "Parameter",
    "PathInfo",
    "PermissionDenied",
    "Pipeline",
    "ServerError",
    "TransportError",
    "ApiClient",
    "VipError",
    "ApiKey",
    "TooLarge",
    "quote_path",
    "read_api_key",
    "vip_client_key_kwargs",
    "vip_clean_name",
]

"""What each VIP call is, once for both clients: `ApiClient` (sync) and `AsyncApiClient` run the
same *flows*.

A flow is a generator: it yields the operations it needs (`Http`: one logical call through the
transport, retries included; `Sleep`) and receives their results (or has their exception
thrown in), then returns the method's value. The sync client runs a flow with blocking calls
(`run`), the async one with awaits (`vip_smk.api.async_client`): the decisions (endpoints and
quoting, what a reply means, md5 availability remembered, the descriptor cache, how a directory
is created, how a delete is waited for, a launch never sent twice) are written here once.

`ClientCore` holds what both clients keep: the settings read by the constructor (URL, key and
its source, workers, progress) and the client's memory (platform, md5, descriptors, launched).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Container, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, TypeVar

from vip_smk import rules
from vip_smk.api import adoption
from vip_smk.api.errors import (
    NOT_IMPLEMENTED,
    AuthError,
    CapacityError,
    DescriptorUnavailable,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ServerError,
    TransportError,
    VipError,
)
from vip_smk.api.keys import read_api_key
from vip_smk.api.models import Execution, PathInfo, Pipeline
from vip_smk.api.urls import resolve_url
from vip_smk.api.wire import MAX_CONNECTIONS, Sleep, WireRules, run  # noqa: F401  (run: re-exported)

log = logging.getLogger("vip_smk.api.client")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Http:
    """One logical call (retried by the transport). `want`: "json" (the decoded body, None
    when `ok_missing_after_retry` found the target gone), "text", or "none"."""

    method: str
    endpoint: str
    kw: dict = field(default_factory=dict)
    want: str = "json"


Flow = Generator[Any, Any, T]  # yields Http, Sleep and the operations of vip_smk.api.wire


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


def quote_path(path: str) -> str:
    """Percent-encode a VIP path (or pipeline id) keeping `/`: `:`, spaces, parentheses,
    `?`, `#`, `%`... all round-trip."""
    return urllib.parse.quote(str(path), safe="/")


def vip_path(path: str | PurePosixPath) -> str:
    p = str(path)
    if not p.startswith("/"):
        raise InvalidInput(f"VIP paths are absolute (/vip/...): got {p!r}", call="path", target=p)
    if ".." in p.split("/"):
        raise InvalidInput(f"VIP paths may not contain '..': {p!r}", call="path", target=p)
    if len(p) > 1:
        p = p.rstrip("/")
    return p


def content_endpoint(path: str) -> tuple[str, str]:
    """(checked VIP path, its `path/...` endpoint)."""
    p = vip_path(path)
    return p, "path" + quote_path(p)


# --------------------------------------------------------------------------------------------
# What both clients keep
# --------------------------------------------------------------------------------------------


class ClientCore:
    """The constructor's settings and the memory shared by `ApiClient` and `AsyncApiClient`
    (see `ApiClient` for the arguments). A subclass makes `self.transport`."""

    transport: WireRules

    def _settings(self, url, api_key, api_key_env, api_key_file, workers, max_connections, progress):
        resolved = resolve_url(url, setting="url")
        if resolved.key_file is not None and api_key is None and api_key_env is None and api_key_file is None:
            api_key_file = resolved.key_file  # `local`: the local server's key unless one is given
        key = read_api_key(api_key, api_key_env=api_key_env, api_key_file=api_key_file)
        self.url = resolved.url
        self.base = resolved.url + "/rest/"
        max_connections = max(1, int(max_connections))
        self.workers = max_connections if workers is None else max(1, min(int(workers), max_connections))
        self.progress = progress
        self.key_source = key.source
        self._lock = threading.Lock()
        self._launched: set[str] = set()
        self._md5_offered: bool | None = None  # None: not asked yet (VIP-portal answers 8001)
        self._platform: dict | None = None
        self._descriptors: dict[str, dict | DescriptorUnavailable] = {}  # descriptor() answers
        return key, max_connections

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, key from {self.key_source}, workers={self.workers})"

    def __getstate__(self):
        raise TypeError(f"{type(self).__name__} cannot be pickled (it holds a live session and the key)")

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

    @property
    def md5_offered(self) -> bool | None:
        """Whether the server computes md5 (None: not asked yet)."""
        return self._md5_offered

    def _error(self, cls, msg, *, call, target, code=None, status=None) -> VipError:
        return self.transport.error(cls, msg, call=call, target=target, code=code, status=status)

    def max_download_size_known(self) -> int | None:
        """VIP's direct-transfer limit from the platform already read (None if unread or none)."""
        return _limit(self._platform)

    def size_error(self, vip_path: str, size: int | None):
        """The TooLarge a download of `size` bytes would meet (None if it fits or no limit is
        known: read `platform` first)."""
        from vip_smk.api.errors import TooLarge

        limit = self.max_download_size_known()
        if size is None or limit is None or size <= limit:
            return None
        return TooLarge(
            f"download {vip_path}: {size:,} bytes is over VIP's direct-transfer limit of "
            f"{limit:,} bytes (maxSizeDirectTransfer): VIP refuses to send it over the API; "
            "fetch it from the VIP portal or have the pipeline write smaller files",
            size=size, limit=limit, call="download", target=vip_path,
        )


def _limit(platform: dict | None) -> int | None:
    value = (platform or {}).get("maxSizeDirectTransfer")
    try:
        return int(value) if value is not None and int(value) > 0 else None
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Flows: platform, pipelines
# --------------------------------------------------------------------------------------------


def platform(c: ClientCore, cached: bool = False) -> Flow[dict]:
    if cached and c._platform is not None:
        return c._platform
    data = yield Http("GET", "platform", {"call": "platform"})
    c._platform = data if isinstance(data, dict) else {}
    return data


def max_download_size(c: ClientCore) -> Flow[int | None]:
    return _limit((yield from platform(c, cached=True)))


def check_download_size(c: ClientCore, path: str, size: int | None) -> Flow[None]:
    if size is None:
        return
    yield from platform(c, cached=True)
    err = c.size_error(path, size)
    if err is not None:
        raise err


def check_key(c: ClientCore) -> Flow[None]:
    yield Http("PUT", "platform", {"call": "check_key"}, "none")


def pipelines(c: ClientCore) -> Flow[list[Pipeline]]:
    data = yield Http("GET", "pipelines", {"call": "pipelines"})
    return [Pipeline.from_json(p) for p in data or []]


def _pipeline_id(pid: str, call: str) -> str:
    pid = str(pid)
    if "/" not in pid:
        raise InvalidInput(f"pipeline {pid!r}: identifiers are NAME/VERSION (e.g. TextStats/1.0)",
                           call=call, target=pid)
    return pid


def pipeline(c: ClientCore, pipeline_id: str) -> Flow[Pipeline]:
    pid = _pipeline_id(pipeline_id, "pipeline")
    data = yield Http("GET", "pipelines/" + quote_path(pid), {"call": "pipeline", "target": pid})
    return Pipeline.from_json(data)


def descriptor(c: ClientCore, pipeline_id: str) -> Flow[dict]:
    pid = str(pipeline_id)
    with c._lock:
        known = c._descriptors.get(pid)
    if known is None:
        _pipeline_id(pid, "descriptor")
        why = "it answered the CARMIN pipeline instead (a portal older than 4.6)"
        try:
            data = yield Http("GET", "pipelines/" + quote_path(pid),
                              {"call": "descriptor", "target": pid, "params": {"format": "boutiques"}})
        except NotFound:
            raise
        except InvalidInput as exc:  # 8001 not implemented, 8017 not compatible with boutiques
            data, why = None, f"it refused the format ({exc})"
        if isinstance(data, dict) and isinstance(data.get("inputs"), list) and "parameters" not in data:
            known = data
        else:
            known = DescriptorUnavailable(f"VIP ({c.url}) does not serve the Boutiques descriptor of "
                                          f"{pid}: {why}; only the CARMIN parameters are checked",
                                          call="descriptor", target=pid)
        with c._lock:
            c._descriptors[pid] = known
    if isinstance(known, DescriptorUnavailable):
        raise known
    return known


# --------------------------------------------------------------------------------------------
# Flows: paths
# --------------------------------------------------------------------------------------------


def _path_get(path: str, action: str, call: str) -> Http:
    p = vip_path(path)
    return Http("GET", "path" + quote_path(p), {"params": {"action": action}, "call": call, "target": p})


def exists(c: ClientCore, path: str) -> Flow[bool]:
    data = yield _path_get(path, "exists", "exists")
    return bool(data.get("exists")) if isinstance(data, dict) else bool(data)


def listing(c: ClientCore, path: str) -> Flow[list[PathInfo]]:
    data = yield _path_get(path, "list", "list")
    return [PathInfo.from_json(d) for d in data or []]


def properties(c: ClientCore, path: str) -> Flow[PathInfo]:
    return PathInfo.from_json((yield _path_get(path, "properties", "properties")))


def md5(c: ClientCore, path: str) -> Flow[str | None]:
    if c._md5_offered is False:
        return None
    try:
        data = yield _path_get(path, "md5", "md5")
    except VipError as exc:
        if exc.code == NOT_IMPLEMENTED:
            log.debug("md5 not offered by %s: %s", c.url, exc)
            c._md5_offered = False
            return None
        raise
    c._md5_offered = True
    if isinstance(data, dict):
        return data.get("md5") or None
    return str(data) if data else None


def mkdir(c: ClientCore, path: str, parents: bool = True, exist_ok: bool = True,
          known_missing: bool = False) -> Flow[None]:
    p = vip_path(path)
    if p in ("/", "/vip"):
        return
    if not known_missing:
        try:
            info = yield from properties(c, p)
        except NotFound:
            info = None
        if info is not None and info.exists:
            if not info.is_directory:
                raise c._error(InvalidInput, "a file with this name exists", call="mkdir", target=p)
            if not exist_ok:
                raise c._error(InvalidInput, "already exists", call="mkdir", target=p)
            return
    parent = str(PurePosixPath(p).parent)
    if parents and parent not in ("/", "/vip"):
        try:
            yield from _mkdir_one(c, p)
            return
        except NotFound:
            pass
        except VipError as exc:
            if isinstance(exc, (AuthError, TransportError, CapacityError, PermissionDenied)):
                raise
        yield from mkdir(c, parent, parents=True)
    yield from _mkdir_one(c, p)


def _mkdir_one(c: ClientCore, p: str) -> Flow[None]:
    """Create one directory whose parent exists (PUT with an empty body, trailing `/`)."""
    try:
        yield Http("PUT", "path" + quote_path(p) + "/",
                   {"call": "mkdir", "target": p, "headers": {"Content-Type": "application/octet-stream"},
                    "body_factory": lambda: b""}, "none")
    except (InvalidInput, ServerError, NotFound) as exc:
        # Already there (maybe created by a retried attempt or a concurrent worker)?
        try:
            info = yield from properties(c, p)
        except NotFound:
            raise exc from None
        if not (info.exists and info.is_directory):
            raise c._error(InvalidInput, "a file with this name exists", call="mkdir", target=p) from None


def delete(c: ClientCore, path: str, missing_ok: bool = False, wait: float = 30.0) -> Flow[None]:
    p = vip_path(path)
    if p in ("/", "/vip", "/vip/Home"):
        raise InvalidInput(f"delete {p}: refusing to delete a root folder", call="delete", target=p)
    try:
        yield Http("DELETE", "path" + quote_path(p),
                   {"call": "delete", "target": p, "ok_missing_after_retry": True}, "none")
    except NotFound:
        if missing_ok:
            return
        raise
    if wait:  # VIP deletes asynchronously
        end = time.monotonic() + wait
        delay = 0.05
        while (yield from exists(c, p)):
            if time.monotonic() > end:
                log.warning("delete %s: still present after %.0f s", p, wait)
                return
            yield Sleep(delay)
            delay = min(delay * 2, 2.0)


# --------------------------------------------------------------------------------------------
# Flows: executions
# --------------------------------------------------------------------------------------------


def launch(c: ClientCore, pipeline_id: str, input_values: Mapping[str, Any], results_location: str,
           name: str = "vip-smk") -> Flow[Execution]:
    """POST executions, never duplicated: after a failure where the request may have reached
    VIP, an execution of the same name and pipeline created since the call began is adopted;
    only if there is none is the POST sent again."""
    pid = str(pipeline_id)
    values = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in dict(input_values).items()}
    values = {k: ([str(x) if isinstance(x, os.PathLike) else x for x in v] if isinstance(v, list)
                  else (str(v) if isinstance(v, os.PathLike) else v)) for k, v in values.items()}
    body = {"name": name, "pipelineIdentifier": pid, "inputValues": values,
            "resultsLocation": vip_path(results_location)}
    target = f"{pid} ({name})"
    # on the server's clock when known (Date headers), minus a small slack
    began_ms = int((time.time() + (c.clock_skew or 0.0)) * 1000) - 2000
    tr = c.transport
    budget = tr.budget()
    while True:
        try:
            data = yield Http("POST", "executions", {"call": "launch", "target": target, "json_body": body,
                                                     "idempotent": False, "retry_budget": 0})
        except VipError as exc:
            failed = tr.classify(exc, "launch", target)
            # Retry; but if VIP may have created it, look for it first (never duplicate).
            while True:
                yield Sleep(tr.retry_delay(failed, budget))
                if not failed.maybe_sent:
                    break
                try:
                    adopted = yield from _find_launched(c, name, pid, began_ms, values)
                except VipError as lookup_exc:
                    log.warning("launch %s: cannot check whether VIP created it: %s", target, lookup_exc)
                    continue  # unknown: never POST blindly, look again after a pause
                if adopted is not None:
                    log.warning("launch %s: reply lost, adopted %s", target, adopted.identifier)
                    return adopted
                break
            continue
        ex = Execution.from_json(data)
        with c._lock:
            c._launched.add(ex.identifier)
        log.info("launched %s: %s", target, ex.identifier)
        return ex


def _find_launched(c: ClientCore, name: str, pid: str, began_ms: int,
                   values: Mapping[str, Any]) -> Flow[Execution | None]:
    """The execution a lost POST reply created, if any (same name, pipeline and inputs,
    started since the call began, not one this client already has)."""
    with c._lock:
        mine = set(c._launched)
    ex = yield from adoptable(c, name=name, pipeline_id=pid, values=values, exclude=mine,
                                       started_after=began_ms, include_failed=True)
    if ex is not None:
        with c._lock:
            c._launched.add(ex.identifier)
    return ex


def execution(c: ClientCore, execution_id: str) -> Flow[Execution]:
    eid = str(execution_id)
    return Execution.from_json((yield Http("GET", "executions/" + quote_path(eid),
                                           {"call": "execution", "target": eid})))


def executions(c: ClientCore) -> Flow[list[Execution]]:
    return [Execution.from_json(e) for e in (yield Http("GET", "executions", {"call": "executions"})) or []]


list_executions = executions  # (for flows with an `executions` argument)


def count_executions(c: ClientCore) -> Flow[int]:
    import json

    text = (yield Http("GET", "executions/count", {"call": "count_executions"}, "text")).strip()
    try:
        return int(json.loads(text))
    except (ValueError, TypeError):
        raise c._error(ServerError, f"not a count: {text[:60]!r}", call="count_executions", target=None) from None


def results(c: ClientCore, execution_id: str) -> Flow[list[PathInfo]]:
    eid = str(execution_id)
    data = yield Http("GET", f"executions/{quote_path(eid)}/results", {"call": "results", "target": eid})
    return [PathInfo.from_json(d) for d in data or []]


def log_text(c: ClientCore, execution_id: str, which: str) -> Flow[str]:
    eid = str(execution_id)
    return (yield Http("GET", f"executions/{quote_path(eid)}/{which}", {"call": which, "target": eid}, "text"))


def kill(c: ClientCore, execution_id: str) -> Flow[None]:
    eid = str(execution_id)
    yield Http("PUT", f"executions/{quote_path(eid)}/kill", {"call": "kill", "target": eid}, "none")


def delete_execution(c: ClientCore, execution_id: str, delete_files: bool = False) -> Flow[None]:
    eid = str(execution_id)
    yield Http("PUT", f"executions/{quote_path(eid)}/delete",
               {"call": "delete_execution", "target": eid, "json_body": {"deleteFiles": bool(delete_files)}},
               "none")


# --------------------------------------------------------------------------------------------
# Flows: adoption (the rules: vip_smk.api.adoption)
# --------------------------------------------------------------------------------------------


def adoptable(c: ClientCore, *, name: str, pipeline_id: str, values: Mapping[str, Any],
              executions: Iterable[Execution] | None = None, exclude: Container[str] = (),
              started_after: int | None = None, include_failed: bool = False) -> Flow[Execution | None]:
    """:func:`vip_smk.api.adoption.find_adoptable` over VIP's listing (``executions`` if
    already fetched, else one ``GET executions``); an entry of that name whose listing lacks
    the inputs, pipeline or start date is read in full (``GET executions/{id}``). A Finished
    execution is adopted only if its returned files are still on VIP (:func:`results_present`:
    one listing of its results folder), else the next candidate is tried: a name used again
    after ``finish()`` (in another folder, whose backup knows nothing of the first) launches anew."""
    listed = (yield from list_executions(c)) if executions is None else executions
    full = []
    for e in listed:
        if e.name != name or e.identifier in exclude:
            continue
        if not e.input_values or e.pipeline_identifier is None or e.start_date is None:
            try:
                e = yield from execution(c, e.identifier)
            except (NotFound, InvalidInput) as exc:
                if not adoption.unknown_execution(exc):
                    raise
                continue
        full.append(e)
    gone: set[str] = set()
    while True:
        ex = adoption.find_adoptable(full, name=name, pipeline_id=pipeline_id, values=values,
                                     exclude=adoption.Union(exclude, gone), started_after=started_after,
                                     include_failed=include_failed)
        if ex is None or ex.status != rules.SUCCESS or (yield from results_present(c, ex)):
            return ex
        log.info("%s: execution %s is Finished but its results are no longer on VIP: not adopted",
                 name, ex.identifier)
        gone.add(ex.identifier)


def results_present(c: ClientCore, ex: Execution) -> Flow[bool]:
    """Whether a Finished execution's returned files are all still on VIP (a session that
    ``finish()``-ed removed them; adopting it would download nothing). One listing of its
    results folder (one per folder if they are several); the files themselves are not read.
    An execution that returned nothing has nothing to lose: True."""
    paths = ex.output_paths
    if not paths:
        try:
            paths = (yield from execution(c, ex.identifier)).output_paths
        except (NotFound, InvalidInput) as exc:
            if not adoption.unknown_execution(exc):
                raise
            return False
    if not paths:
        return True
    folders: dict[str, set[str]] = {}
    for p in paths:
        pp = PurePosixPath(str(p))
        folders.setdefault(str(pp.parent), set()).add(pp.name)
    for folder, names in folders.items():
        try:
            present = {PurePosixPath(i.path).name for i in (yield from listing(c, folder))}
        except NotFound:
            return False
        if not names <= present:
            return False
    return True


__all__ = ["ClientCore", "Flow", "Http", "MAX_CONNECTIONS", "Sleep", "quote_path", "run", "vip_path"]

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
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

import requests

from vip_smk.api import calls, streams
from vip_smk.api.calls import ClientCore, Http, Sleep, quote_path
from vip_smk.api.errors import (
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


_vip_path = calls.vip_path


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


class ApiClient(ClientCore):
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

    transport: Transport

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
        key, max_connections = self._settings(url, api_key, api_key_env, api_key_file, workers,
                                              max_connections, progress)
        self.transport = Transport(
            self.url, key.value, key.source,
            timeout=timeout if isinstance(timeout, tuple) else (timeout, timeout),
            retries=retries, retry_budget=retry_budget, backoff=backoff, max_backoff=max_backoff,
            max_connections=max_connections,
        )

    # -- plumbing ------------------------------------------------------------------------------

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def session(self) -> requests.Session:
        return self.transport.session

    def _request(self, method: str, endpoint: str, **kw) -> HttpReply | None:
        return self.transport.request(method, endpoint, **kw)

    def _json(self, method: str, endpoint: str, **kw) -> Any:
        return self.transport.json(method, endpoint, **kw)

    def _do(self, op: Http | Sleep) -> Any:
        """One operation of a flow (`vip_smk.api.calls`), blocking."""
        if not isinstance(op, Http):
            return self.transport.do(op)
        if op.want == "json":
            return self.transport.json(op.method, op.endpoint, **op.kw)
        resp = self.transport.request(op.method, op.endpoint, **op.kw)
        return resp.text if op.want == "text" and resp is not None else None

    def run_flow(self, flow: calls.Flow[calls.T]) -> calls.T:
        """Run a flow of `vip_smk.api.calls` (what a VIP call is, shared with the async client)."""
        return calls.run(flow, self._do)

    # -- platform (each method: its flow in vip_smk.api.calls) ---------------------------------

    def platform(self, *, cached: bool = False) -> dict:
        """`GET platform` (VIP's settings and limits). `cached`: the first answer of this client."""
        return self.run_flow(calls.platform(self, cached))

    def max_download_size(self) -> int | None:
        """VIP's direct-transfer limit in bytes (`maxSizeDirectTransfer` of `GET platform`, read
        once per client), None if VIP states none."""
        return self.run_flow(calls.max_download_size(self))

    def check_download_size(self, vip_path: str, size: int | None) -> None:
        """TooLarge naming the file, its size and the limit if VIP would refuse to send it."""
        self.run_flow(calls.check_download_size(self, vip_path, size))

    def check_key(self) -> None:
        """`PUT /rest/platform` as VIP's client does: AuthError if the key is refused."""
        self.run_flow(calls.check_key(self))

    # -- pipelines -----------------------------------------------------------------------------

    def pipelines(self) -> builtins.list[Pipeline]:
        return self.run_flow(calls.pipelines(self))

    def pipeline(self, pipeline_id: str) -> Pipeline:
        return self.run_flow(calls.pipeline(self, pipeline_id))

    def descriptor(self, pipeline_id: str) -> dict:
        """The pipeline's whole Boutiques descriptor (`GET pipelines/{id}?format=boutiques`,
        VIP-portal 4.6): `inputs` with their constraints, `groups`, `output-files`,
        `custom` (`vip:dot`). Asked once per client (a refusal too). Raises
        DescriptorUnavailable where VIP does not serve it (older portals refuse the format or
        answer the CARMIN pipeline), NotFound for an unknown pipeline."""
        return self.run_flow(calls.descriptor(self, pipeline_id))

    # -- paths ---------------------------------------------------------------------------------

    def exists(self, path: str) -> bool:
        return self.run_flow(calls.exists(self, path))

    def list(self, path: str) -> builtins.list[PathInfo]:
        return self.run_flow(calls.listing(self, path))

    def properties(self, path: str) -> PathInfo:
        return self.run_flow(calls.properties(self, path))

    def md5(self, path: str) -> str | None:
        """The file's md5 if the server computes it, else None. VIP-portal answers 8001 (not
        implemented): remembered, later calls of this client return None without a request."""
        return self.run_flow(calls.md5(self, path))

    def mkdir(self, path: str, parents: bool = True, *, exist_ok: bool = True, known_missing: bool = False) -> None:
        """Create a directory (and, with `parents`, its missing parents); no error if it exists
        (`exist_ok`). `known_missing`: the caller knows it is absent (e.g. from a listing): no
        lookup first (one request when its parent exists)."""
        self.run_flow(calls.mkdir(self, path, parents, exist_ok, known_missing))

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
        p, endpoint = calls.content_endpoint(vip_path)
        return self.run_flow(streams.upload(self, local, p, endpoint, progress=progress, hasher=hasher))

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
        p, endpoint = calls.content_endpoint(vip_path)
        return self.run_flow(streams.download(self, p, endpoint, local, size=size, resume=resume,
                                              progress=progress))

    def read_bytes(self, vip_path: str, *, size: int | None = None) -> bytes:
        """The content of a (small) file, in memory: one GET, retried, size-checked (`size`:
        the expected size if known). TooLarge over VIP's direct-transfer limit."""
        p, endpoint = calls.content_endpoint(vip_path)
        return self.run_flow(streams.read_bytes(self, p, endpoint, size=size))

    @staticmethod
    def write_file(local: str | os.PathLike, data: bytes, vip_path: str = "") -> Path:
        """Write downloaded bytes as `download` does: through `local.part`, fsynced, renamed
        (parents created)."""
        return streams.write_file(local, data, vip_path)

    def delete(self, path: str, *, missing_ok: bool = False, wait: float = 30.0) -> None:
        """Delete a file or directory (recursively). VIP deletes asynchronously: wait up to
        `wait` seconds until it is gone (0: do not wait)."""
        self.run_flow(calls.delete(self, path, missing_ok, wait))

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
        return self.run_flow(calls.launch(self, pipeline_id, input_values, results_location, name))

    def execution(self, execution_id: str) -> Execution:
        return self.run_flow(calls.execution(self, execution_id))

    def executions(self) -> builtins.list[Execution]:  # (`list` here: the method above)
        return self.run_flow(calls.executions(self))

    def count_executions(self) -> int:
        return self.run_flow(calls.count_executions(self))

    def results(self, execution_id: str) -> builtins.list[PathInfo]:
        return self.run_flow(calls.results(self, execution_id))

    def stdout(self, execution_id: str) -> str:
        return self.run_flow(calls.log_text(self, execution_id, "stdout"))

    def stderr(self, execution_id: str) -> str:
        return self.run_flow(calls.log_text(self, execution_id, "stderr"))

    def kill(self, execution_id: str) -> None:
        self.run_flow(calls.kill(self, execution_id))

    def delete_execution(self, execution_id: str, delete_files: bool = False) -> None:
        self.run_flow(calls.delete_execution(self, execution_id, delete_files))


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

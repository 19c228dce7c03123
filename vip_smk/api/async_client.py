"""`AsyncApiClient`: `ApiClient`'s resource methods as coroutines, on one `httpx.AsyncClient`
(`vip_smk.api.async_transport`). Each method awaits the same flow of `vip_smk.api.calls` /
`vip_smk.api.streams` as the sync method of the same name: the same endpoints, typed errors,
retries inside the same budget, the same never-duplicated launch, the same `.part` / Range /
fsync-rename downloads. (`vip_smk.AsyncVipClient`, in `vip_smk.core.async_client`, adds waiting
and tree transfers.)

Use it from one event loop, `async with` for its pool."""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

from vip_smk.api import calls, streams
from vip_smk.api.async_transport import AsyncTransport, arun
from vip_smk.api.calls import ClientCore, Http
from vip_smk.api.models import Execution, PathInfo, Pipeline
from vip_smk.api.wire import MAX_CONNECTIONS


class AsyncApiClient(ClientCore):
    """The VIP REST API as coroutines. The constructor takes `ApiClient`'s arguments (URL,
    key sources, timeout, retries, retry_budget, workers, max_connections, progress, backoff)."""

    transport: AsyncTransport

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
        self.transport = AsyncTransport(
            self.url, key.value, key.source,
            timeout=timeout if isinstance(timeout, tuple) else (timeout, timeout),
            retries=retries, retry_budget=retry_budget, backoff=backoff, max_backoff=max_backoff,
            max_connections=max_connections,
        )

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def _do(self, op: Any) -> Any:
        if not isinstance(op, Http):
            return await self.transport.do(op)
        if op.want == "json":
            return await self.transport.json(op.method, op.endpoint, **op.kw)
        resp = await self.transport.request(op.method, op.endpoint, **op.kw)
        return resp.text if op.want == "text" and resp is not None else None

    async def run_flow(self, flow: calls.Flow[calls.T]) -> calls.T:
        """Await a flow of `vip_smk.api.calls` (what a VIP call is, shared with `ApiClient`)."""
        return await arun(flow, self._do)

    # -- platform, pipelines (as ApiClient's) -----------------------------------------------------

    async def platform(self, *, cached: bool = False) -> dict:
        return await self.run_flow(calls.platform(self, cached))

    async def max_download_size(self) -> int | None:
        return await self.run_flow(calls.max_download_size(self))

    async def check_download_size(self, vip_path: str, size: int | None) -> None:
        await self.run_flow(calls.check_download_size(self, vip_path, size))

    async def check_key(self) -> None:
        await self.run_flow(calls.check_key(self))

    async def pipelines(self) -> builtins.list[Pipeline]:
        return await self.run_flow(calls.pipelines(self))

    async def pipeline(self, pipeline_id: str) -> Pipeline:
        return await self.run_flow(calls.pipeline(self, pipeline_id))

    async def descriptor(self, pipeline_id: str) -> dict:
        return await self.run_flow(calls.descriptor(self, pipeline_id))

    # -- paths --------------------------------------------------------------------------------------

    async def exists(self, path: str) -> bool:
        return await self.run_flow(calls.exists(self, path))

    async def list(self, path: str) -> builtins.list[PathInfo]:
        return await self.run_flow(calls.listing(self, path))

    async def properties(self, path: str) -> PathInfo:
        return await self.run_flow(calls.properties(self, path))

    async def md5(self, path: str) -> str | None:
        return await self.run_flow(calls.md5(self, path))

    async def mkdir(self, path: str, parents: bool = True, *, exist_ok: bool = True,
                    known_missing: bool = False) -> None:
        await self.run_flow(calls.mkdir(self, path, parents, exist_ok, known_missing))

    async def upload(self, local: str | os.PathLike, vip_path: str, *,
                     progress: Callable[[int], None] | None = None,
                     hasher: Callable[[], Any] | None = None) -> str | None:
        p, endpoint = calls.content_endpoint(vip_path)
        return await self.run_flow(streams.upload(self, local, p, endpoint, progress=progress, hasher=hasher))

    async def download(self, vip_path: str, local: str | os.PathLike, *, size: int | None = None,
                       resume: bool = True, progress: Callable[[int], None] | None = None) -> Path:
        p, endpoint = calls.content_endpoint(vip_path)
        return await self.run_flow(streams.download(self, p, endpoint, local, size=size, resume=resume,
                                                    progress=progress))

    async def read_bytes(self, vip_path: str, *, size: int | None = None) -> bytes:
        p, endpoint = calls.content_endpoint(vip_path)
        return await self.run_flow(streams.read_bytes(self, p, endpoint, size=size))

    write_file = staticmethod(streams.write_file)  # (blocking: run it aside, asyncio.to_thread)

    async def delete(self, path: str, *, missing_ok: bool = False, wait: float = 30.0) -> None:
        await self.run_flow(calls.delete(self, path, missing_ok, wait))

    # -- executions ---------------------------------------------------------------------------------

    async def launch(self, pipeline_id: str, input_values: Mapping[str, Any], results_location: str,
                     name: str = "vip-smk") -> Execution:
        """POST executions, never duplicated (see `ApiClient.launch`)."""
        return await self.run_flow(calls.launch(self, pipeline_id, input_values, results_location, name))

    async def execution(self, execution_id: str) -> Execution:
        return await self.run_flow(calls.execution(self, execution_id))

    async def executions(self) -> builtins.list[Execution]:
        return await self.run_flow(calls.executions(self))

    async def count_executions(self) -> int:
        return await self.run_flow(calls.count_executions(self))

    async def results(self, execution_id: str) -> builtins.list[PathInfo]:
        return await self.run_flow(calls.results(self, execution_id))

    async def stdout(self, execution_id: str) -> str:
        return await self.run_flow(calls.log_text(self, execution_id, "stdout"))

    async def stderr(self, execution_id: str) -> str:
        return await self.run_flow(calls.log_text(self, execution_id, "stderr"))

    async def kill(self, execution_id: str) -> None:
        await self.run_flow(calls.kill(self, execution_id))

    async def delete_execution(self, execution_id: str, delete_files: bool = False) -> None:
        await self.run_flow(calls.delete_execution(self, execution_id, delete_files))


__all__ = ["AsyncApiClient"]

"""`AsyncVipClient`: `VipClient` as coroutines — every resource method of
`vip_smk.api.async_client.AsyncApiClient` (the same flows as the sync client), plus `wait` and
`poll` (`vip_smk.core.executions`' flows, awaited) and the tree transfers
(`vip_smk.transfer.async_trees`). One `httpx.AsyncClient` per instance: `async with`.

    async with AsyncVipClient(url, api_key_file="~/.vip_key") as vip:
        ex = await vip.launch("TextStats/1.0", {...}, "/vip/Home/out", name="s01")
        done = await vip.wait(ex.identifier)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from vip_smk.api.async_client import AsyncApiClient
from vip_smk.api.errors import NotFound
from vip_smk.api.models import Execution
from vip_smk.core.executions import poll_flow, wait_flow
from vip_smk.transfer import async_trees
from vip_smk.transfer.plan import TransferReport

__all__ = ["AsyncVipClient"]


class AsyncVipClient(AsyncApiClient):
    """The VIP client for an event loop (constructor: `VipClient`'s arguments)."""

    async def poll(self, ids: Iterable[str]) -> dict[str, Execution]:
        """The current state of executions `ids` (`core.poll`: one `GET executions` for many)."""
        return await self.run_flow(poll_flow(self, ids))

    async def wait(self, execution_id: str, *, poll: float = 5.0, timeout: float | None = None,
                   callback: Callable[[Execution], None] | None = None) -> Execution:
        """Poll an execution until it is over (as `VipClient.wait`). TimeoutError after
        `timeout` seconds (None = no limit)."""
        eid = str(execution_id)

        def on_round(states: dict[str, Execution]) -> None:
            if callback is not None and eid in states:
                callback(states[eid])

        states = await self.run_flow(wait_flow(self, [eid], refresh=poll, first=min(0.2, poll), timeout=timeout,
                                               on_round=None if callback is None else on_round))
        if eid not in states:
            raise NotFound(f"execution {eid}: unknown to VIP", call="wait", target=eid)
        if states[eid].is_running:
            raise TimeoutError(f"execution {eid} still {states[eid].status} after {timeout} s")
        return states[eid]

    async def upload_tree(self, local_dir, vip_dir, **kw) -> TransferReport:
        """`vip_smk.transfer.trees.upload_tree`, awaited."""
        return await async_trees.upload_tree(self, local_dir, vip_dir, **kw)

    async def download_tree(self, vip_dir, local_dir, **kw) -> TransferReport:
        """`vip_smk.transfer.trees.download_tree`, awaited."""
        return await async_trees.download_tree(self, vip_dir, local_dir, **kw)

    async def download_files(self, pairs, **kw) -> TransferReport:
        """`vip_smk.transfer.trees.download_files`, awaited."""
        return await async_trees.download_files(self, pairs, **kw)

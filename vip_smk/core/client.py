"""`VipClient`: the resource client of `vip_smk.api` plus what sits above it, waiting for an
execution (`vip_smk.core.wait`) and tree transfers (`vip_smk.transfer`). The one class users
import (`from vip_smk import VipClient`); the dependency runs one way: this facade knows the
layers below, they know only `ApiClient`."""

from __future__ import annotations

from collections.abc import Callable

from vip_smk.api.client import *  # noqa: F403  (the client's public names, re-exported)
from vip_smk.api.client import ApiClient, Execution, NotFound
from vip_smk.api.client import __all__ as _api_all
from vip_smk.core.executions import wait as _wait
from vip_smk.transfer import trees

__all__ = [*_api_all, "VipClient"]


class VipClient(ApiClient):
    """The VIP client: every resource method of :class:`~vip_smk.api.client.ApiClient` (same
    constructor), plus :meth:`wait` and the tree transfers."""

    def wait(
        self,
        execution_id: str,
        *,
        poll: float = 5.0,
        timeout: float | None = None,
        callback: Callable[[Execution], None] | None = None,
    ) -> Execution:
        """Poll an execution until it is over (`core.wait`: soon after the call, backing off up
        to `poll` seconds). TimeoutError after `timeout` seconds (None = no limit)."""
        eid = str(execution_id)

        def on_round(states: dict[str, Execution]) -> None:
            if callback is not None and eid in states:
                callback(states[eid])

        states = _wait(self, [eid], refresh=poll, first=min(0.2, poll), timeout=timeout,
                       on_round=None if callback is None else on_round)
        if eid not in states:
            raise NotFound(f"execution {eid}: unknown to VIP", call="wait", target=eid)
        if states[eid].is_running:
            raise TimeoutError(f"execution {eid} still {states[eid].status} after {timeout} s")
        return states[eid]

    # -- trees (vip_smk.transfer.trees) ----------------------------------------------------------

    def upload_tree(self, local_dir, vip_dir, **kw) -> trees.TransferReport:
        """`vip_smk.transfer.trees.upload_tree(self, ...)`."""
        return trees.upload_tree(self, local_dir, vip_dir, **kw)

    def download_tree(self, vip_dir, local_dir, **kw) -> trees.TransferReport:
        """`vip_smk.transfer.trees.download_tree(self, ...)`."""
        return trees.download_tree(self, vip_dir, local_dir, **kw)

    def download_files(self, pairs, **kw) -> trees.TransferReport:
        """`vip_smk.transfer.trees.download_files(self, ...)`."""
        return trees.download_files(self, pairs, **kw)

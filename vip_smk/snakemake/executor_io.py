"""What `--executor vip` tells the `vip://` storage plugin holding a job's output, and when a
launch may go (helpers of vip_smk.snakemake.executor and executor_batch)."""

import logging
import time
from typing import Any, Dict, List, Optional

from vip_smk.core.client import VipClient, VipError
from vip_smk.snakemake import executor_jobs as mapping

log = logging.getLogger("vip_smk.snakemake.executor")


def _launch_delay(newest_input_ms: Optional[int], client: VipClient) -> float:
    """Seconds to wait so that results are written in a later (VIP) second than the newest
    input's date: VIP dates are whole seconds, so results written in the same second as an
    input would look older than it and the next run would redo the job (the vip:// plugin's
    date record orders them after their inputs when the execution ends, `_order_in_storage`;
    this keeps the order on VIP itself, should that record be lost). An execution of its own
    waits this long before its launch (the status thread launches it meanwhile, Snakemake's
    scheduler never waits); a batch does not: its results are our copies, written after it
    ended, and the copies wait instead (only for a batch that ended within that second:
    executor_batch._copy_later). At most a second, and only right after an upload."""
    if newest_input_ms is None:
        return 0.0
    now_ms = (time.time() + (getattr(client, "clock_skew", None) or 0.0)) * 1000
    return min(1.5, max(0.0, (newest_input_ms + 1000 - now_ms) / 1000))


def _forget_in_storage(job) -> None:
    """The job's outputs were (re)written on VIP by an execution: the vip:// plugin's listings
    of them are stale (see vip_smk.snakemake.storage_cache)."""
    for f in getattr(job, "output", None) or []:
        obj = getattr(f, "storage_object", None) if getattr(f, "is_storage", False) else None
        forget = getattr(getattr(obj, "provider", None), "forget", None)
        path = getattr(obj, "path", None)
        if callable(forget) and path:
            forget(path)


def _in_storage(job, method: str, path: str) -> Any:
    """Tell the vip:// plugin holding the job's output about its results folder `path`
    (`protect` / `kept` / `gone`: see vip_smk.snakemake.storage.StorageProvider)."""
    for f in getattr(job, "output", None) or []:
        obj = getattr(f, "storage_object", None) if getattr(f, "is_storage", False) else None
        call = getattr(getattr(obj, "provider", None), method, None)
        if callable(call):
            return call(path)
    return None


def _order_in_storage(job, request: mapping.VipRequest) -> None:
    """The job's execution ended well: its results were made after its inputs were written,
    whatever VIP's whole-second dates say; the vip:// plugin dates them so (a rerun is then
    "Nothing to be done")."""
    for f in getattr(job, "output", None) or []:
        obj = getattr(f, "storage_object", None) if getattr(f, "is_storage", False) else None
        made_from = getattr(getattr(obj, "provider", None), "made_from", None)
        if callable(made_from):
            try:
                made_from([request.results_location], request.input_paths())
            except VipError as exc:  # only the dates' precision is lost: VIP's are used
                log.warning("%s: results not dated after their inputs: %s", request.where, exc)
            return


def _listed_in_storage(job, listings: Dict[str, List[Any]]) -> None:
    """The executor wrote the job's results itself (copied from its batch) and listed their
    folders: the vip:// plugin holding the job's output keeps those listings (folder ->
    entries) instead of asking VIP again (its questions are rate-limited)."""
    for f in getattr(job, "output", None) or []:
        obj = getattr(f, "storage_object", None) if getattr(f, "is_storage", False) else None
        listed = getattr(getattr(obj, "provider", None), "listed", None)
        if callable(listed):
            for folder, entries in listings.items():
                listed(folder, entries)
            return

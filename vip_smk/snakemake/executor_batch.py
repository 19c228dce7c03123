"""Batches of `--executor vip`: ready jobs of one rule as ONE VIP execution with list inputs.

A job can join a batch when its pipeline's descriptor lets its File inputs be listed so that
VIP makes one job per member (`vip_smk.core.batches.listed_inputs`: the `vip:dot` inputs, or
the one File input of a pipeline without `vip:dot`). Jobs of equal share key (rule, pipeline,
every other value, the parent folder of their results) wait in a pool until the pool holds
`--vip-batch-size` jobs, no more jobs of the rule are to come (or Snakemake gives no more,
at `--jobs`), or `--vip-batch-wait` seconds passed; then the pool becomes batches, each launched
(at VIP's limit, error 2001, it waits for a slot like a job) as one execution named from its
members (`core.batches.batch_name`) with its results in `<parent>/.vip-batches/<name>/`.

A job whose values an execution already on VIP runs (a batch of an earlier run, killed with
-9, or of other jobs) adopts that execution instead (`core.batches.find_batch_job`, by
content, started after the job's newest input). When the execution ends, each job's own
results (the names the descriptor predicts for its values) are copied (downloaded and uploaded
once: VIP has no server-side copy) to the job's own output folder as `<dated folder>/<name>`,
the layout of an execution of its own; a job whose VIP job failed fails with that job's stderr.
The batch's folder is removed once all its jobs are done (in the background; the end of the
run waits for it).
"""

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from vip_smk import core, rules
from vip_smk.core import batches
from vip_smk.core.client import CapacityError, ServerError, TransportError, VipError
from vip_smk.snakemake.executor_io import (
    _forget_in_storage,
    _in_storage,
    _launch_delay,
    _listed_in_storage,
    _order_in_storage,
)

log = logging.getLogger("vip_smk.snakemake.executor")

QUIET = 2.0  # seconds without a job handed to us before "Snakemake runs only ours" counts
FOLDER = ".vip-batches"  # under the parent folder of the members' results folders


@dataclass
class Batch:
    """One execution run for many Snakemake jobs (its members, `_Active`s)."""

    key: str
    rule: str
    pipeline_id: str
    listed: tuple
    members: List[Any] = field(default_factory=list)
    name: str = ""
    values: Dict[str, Any] = field(default_factory=dict)
    results_location: str = ""
    started_after: Optional[int] = None
    not_before: float = 0.0
    execution_id: Optional[str] = None
    waiting_since: Optional[float] = None
    results: Optional[dict] = None  # VIP job number -> core.batches.MemberResults
    stderr: Optional[str] = None
    ended: int = 0  # members reported (success or failure)
    copy_failed: Dict[str, VipError] = field(default_factory=dict)  # member name -> why
    listings: Dict[str, Dict[str, list]] = field(default_factory=dict)  # member -> its copy's
    parent_listing: Optional[tuple] = None  # (the members' parent folder, its entries)
    sizes: Dict[str, int] = field(default_factory=dict)  # the batch's results: path -> size
    removing: Optional[threading.Thread] = None  # removing its folder (all its jobs ended)

    @property
    def where(self) -> str:
        return f"rule {self.rule} (batch of {len(self.members)} jobs)"


def _job_failed(state) -> bool:
    """Whether VIP's state of one job of an execution (its ``jobs`` entry) is a failure."""
    return isinstance(state, dict) and bool(rules.job_counts([state]).failed)


def _parent(path: str) -> str:
    return str(PurePosixPath(path.rstrip("/")).parent)


def _scheduler_snapshot(scheduler, dag) -> Optional[tuple]:
    """(ids of the jobs Snakemake runs, whether any job is ready or being finished), read under
    the scheduler's lock; None when that cannot be read (another Snakemake, or the lock held
    for long: "not idle" is the safe answer, the pool then waits for its jobs or its wait)."""
    lock = getattr(scheduler, "_lock", None)
    running = getattr(scheduler, "running", None)
    ready = getattr(dag, "ready_jobs", None)
    if lock is None or running is None or ready is None:
        return None
    if not lock.acquire(timeout=0.5):  # (run_jobs and the status rounds run outside it)
        return None
    try:
        ids = {j.jobid for j in list(running) if not j.is_group()}
        pending = bool(ready) or bool(getattr(scheduler, "_tofinish", ()))
    except RuntimeError:  # changed while read: ask again next round
        return None
    finally:
        lock.release()
    return ids, pending


class Batching:
    """Mixin of the Executor: pools, batch launches and each member's results."""

    if TYPE_CHECKING:  # what the batches use of the Executor, which mixes them in (for mypy)
        import threading

        from vip_smk.core.client import VipClient

        client: VipClient
        workflow: Any
        logger: Any
        _active: Dict[int, Any]
        _active_lock: threading.RLock
        _names: set

        def _wake(self, delay: float) -> None: ...

    def _descriptor(self, pipeline_id: str) -> Mapping[str, Any]:
        """The pipeline's descriptor (asked once per client); a batch is planned only with one."""
        return core.descriptor_or_none(self.client, pipeline_id) or {}

    def _batch_setup(self, config) -> None:
        self.batch_size = max(1, int(getattr(config, "batch_size", 1) or 1))
        self.batch_wait = max(0.0, float(getattr(config, "batch_wait", 0.0) or 0.0))
        self._pools: Dict[str, List[Any]] = {}  # share key -> pooled _Active (oldest first)
        self._pooled_since: Dict[str, float] = {}
        self._batches: Dict[str, Batch] = {}  # execution id (or name before launch) -> Batch
        self._to_come: Dict[str, int] = {}  # rule -> its jobs Snakemake has not handed us yet
        self.copied_bytes = 0
        self._last_handed = time.monotonic()

    def _count_to_come(self, jobs) -> None:
        for job in jobs:
            if not job.is_local:
                self._to_come[job.rule.name] = self._to_come.get(job.rule.name, 0) + 1

    def _handed(self, job) -> None:
        """A job of ours is in its pool or batch (or launching alone): one fewer to come. Said
        after that, never before: a status round that sees none to come must find the job there
        (else its pool became a batch without it, launched apart; or its batch's folder was
        removed before its copy, as a rerun's last adopting job found it)."""
        rule = job.rule.name
        self._to_come[rule] = max(0, self._to_come.get(rule, 0) - 1)
        self._last_handed = time.monotonic()

    # -- pooling -------------------------------------------------------------------------------

    def _batch_plan(self, request, values) -> Optional[tuple]:
        """(share key, listed inputs) of a job that may share an execution, else None."""
        if self.batch_size <= 1:
            return None
        descriptor = core.descriptor_or_none(self.client, request.pipeline_id)
        listed = batches.listed_inputs(descriptor, values, request.file_inputs)
        if listed is None:
            return None
        key = batches.share_key(request.pipeline_id, request.rule, values, listed)
        return f"{_parent(request.results_location)}|{key}", listed

    def _pool(self, job, active, plan, listing, folders) -> None:
        """A batchable job: adopt the execution already running (or holding) its VIP job,
        else wait in its pool. Its own results folder is emptied now: the copy fills it."""
        r = active.request
        active.job = job
        key, listed = plan
        descriptor = self._descriptor(r.pipeline_id)
        own = folders.entry(r.results_location) is not None and self._holds_own(r, active.values)
        found = batches.find_batch_job(
            self.client, listing, rule=r.rule, pipeline_id=r.pipeline_id, descriptor=descriptor,
            values=active.values, started_after=active.started_after,
            has_results=lambda e: own or core.results_on_vip(self.client, e))
        if found is not None and not found[0].is_running and own:
            # its results were copied by an earlier run (Snakemake removed them: only marked)
            _in_storage(job, "kept", r.results_location)
            active.copied = True
        elif folders.entry(r.results_location) is not None:
            self.logger.info(f"{r.where}: removing the previous results {r.results_location}")
            core.remove_remote(self.client, r.results_location)
            _forget_in_storage(job)
            _in_storage(job, "gone", r.results_location)
        else:
            _in_storage(job, "gone", r.results_location)
        with self._active_lock:
            self._active[job.jobid] = active
        if found is not None:
            execution, number = found
            batch = self._batches.get(execution.identifier)
            if batch is None:
                batch = Batch(key=key, rule=r.rule, pipeline_id=r.pipeline_id, listed=listed,
                              name=execution.name or "", execution_id=execution.identifier,
                              values=batches.echoed_values(execution.input_values),
                              results_location=f"{_parent(r.results_location)}/{FOLDER}/"
                                               f"{execution.name}")
                self._batches[execution.identifier] = batch
            batch.members.append(active)
            active.batch, active.vip_job = batch, number
            active.execution_id = execution.identifier
            self.logger.info(f"{r.where}: adopted VIP execution {execution.identifier} "
                             f"({execution.name}, job {number}, {execution.status}): not "
                             "launched again")
        else:
            active.key = key
            with self._active_lock:
                self._pools.setdefault(key, []).append(active)
                self._pooled_since.setdefault(key, time.monotonic())

    def _holds_own(self, request, values) -> bool:
        """Whether a job's results folder holds, in one dated folder, every result the
        descriptor predicts for its values (copied there by an earlier run)."""
        descriptor = self._descriptor(request.pipeline_id)
        names = {e.name for e in core.expected_outputs(descriptor, values) if not e.optional}
        by_folder: Dict[str, set] = {}
        for f in self._tree(request.results_location):
            rel = PurePosixPath(f.path).relative_to(request.results_location)
            if len(rel.parts) == 2:
                by_folder.setdefault(rel.parts[0], set()).add(rel.parts[1])
        return bool(names) and any(names <= have for have in by_folder.values())

    def _flush(self) -> None:
        """Pools that are full, or will get no more jobs soon, become batches."""
        if not self._pools:  # (most rounds: no scheduler lock taken; run_jobs flushes its own)
            return
        now = time.monotonic()
        idle = self._others_idle()
        with self._active_lock:
            handed = len(self._active)
            for key in list(self._pools):
                pool = self._pools[key]
                rule = pool[0].request.rule
                limit = getattr(getattr(self.workflow, "resource_settings", None), "nodes", None)
                done = (self._to_come.get(rule, 0) == 0 or idle
                        or (limit is not None and handed >= int(limit))
                        or now - self._pooled_since[key] >= self.batch_wait)
                while pool and (len(pool) >= self.batch_size or done):
                    members, pool[:] = pool[:self.batch_size], pool[self.batch_size:]
                    self._form(key, members)
                if not pool:
                    del self._pools[key]
                    self._pooled_since.pop(key, None)
                else:  # a status round when its wait is over
                    self._wake(min(QUIET, self._pooled_since[key] + self.batch_wait - now))

    def _others_idle(self) -> bool:
        """Whether Snakemake runs no job but ours and has none ready or finishing: then no job
        can become ready before one of ours ends (the jobs still to come wait for them, or for
        a job that failed). Read under the scheduler's lock, in one piece: a job of another rule
        that has just finished leaves `running` before its downstream jobs become ready, and
        those are ready (not running) while Snakemake selects them, which can take seconds
        (resources computed by the Snakefile); seen apart, those moments looked idle."""
        scheduler = getattr(self.workflow, "scheduler", None)
        snapshot = _scheduler_snapshot(scheduler, getattr(self.workflow, "dag", None))
        if snapshot is None:
            return False
        running, pending = snapshot
        with self._active_lock:
            quiet = time.monotonic() - self._last_handed >= QUIET
            return quiet and not pending and bool(running) and running <= set(self._active)

    def _form(self, key: str, members: List[Any]) -> None:
        members = sorted(members, key=lambda a: a.name)
        first = members[0].request
        listed = batches.listed_inputs(core.descriptor_or_none(self.client, first.pipeline_id),
                                       members[0].values, first.file_inputs)
        name = batches.batch_name(first.rule, [m.name for m in members])
        starts = [m.started_after for m in members]
        batch = Batch(key=key, rule=first.rule, pipeline_id=first.pipeline_id,
                      listed=tuple(listed or ()), members=members, name=name,
                      values=batches.batch_values([m.values for m in members], listed or ()),
                      results_location=f"{_parent(first.results_location)}/{FOLDER}/{name}",
                      started_after=None if None in starts else max(starts),
                      not_before=max(m.not_before for m in members))
        descriptor = self._descriptor(first.pipeline_id)
        numbers = batches.member_jobs(descriptor, batch.values, [m.values for m in members])
        for m, n in zip(members, numbers):
            m.batch, m.vip_job, m.key = batch, n, None
        self._batches[name] = batch
        self._names.add(name)

    # -- launch --------------------------------------------------------------------------------

    def _launch_batch(self, batch: Batch) -> bool:
        """Launch (or adopt, by name: a reply lost) the batch's execution; False if it waits
        (VIP's limit, error 2001, or VIP unreachable)."""
        try:
            execution, adopted = core.launch_or_adopt(
                self.client, batch.pipeline_id, batch.values, batch.results_location, batch.name,
                executions=[], started_after=batch.started_after)
        except CapacityError:
            if batch.waiting_since is None:
                batch.waiting_since = time.monotonic()
                self.logger.info(f"{batch.where}: VIP's limit of running executions is reached: "
                                 "waiting for a slot")
            return False
        except (TransportError, ServerError) as exc:
            self.logger.warning(f"{batch.where}: VIP unreachable ({exc}): launch retried later")
            return False
        batch.execution_id = execution.identifier
        self._batches[execution.identifier] = batch
        for m in batch.members:
            m.execution_id = execution.identifier
            m.waiting_since = None
        what = "adopted" if adopted else "launched"
        self.logger.info(f"{batch.where}: {what} VIP execution {execution.identifier} "
                         f"({batch.name}, {batch.pipeline_id}, {len(batch.members)} jobs)")
        return True

    # -- results -------------------------------------------------------------------------------

    def _member_done(self, active, ex) -> Optional[str]:
        """The batch execution of `active` ended: copy its own results to its own folder.
        Returns None on success, else the failure message. Once every job of the batch is
        done, its folder is removed in the background (each job has its own copy)."""
        why = self._member_result(active, ex)
        batch: Batch = active.batch
        # (not while jobs of its rule are still to come: one may adopt it, after a kill -9,
        # when Snakemake hands the jobs over in several rounds; the end of the run removes it)
        if (batch.ended >= len(batch.members) and batch.removing is None
                and self._to_come.get(batch.rule, 0) == 0):
            batch.removing = threading.Thread(target=self._remove_batch, args=(batch,),
                                              name="vip-batch-cleanup", daemon=True)
            batch.removing.start()
        return why

    def _remove_batch(self, batch: Batch) -> None:
        try:
            core.remove_remote(self.client, batch.results_location, timeout=30)
        except VipError as exc:
            log.warning("%s: %s not removed: %s", batch.where, batch.results_location, exc)

    def _member_result(self, active, ex) -> Optional[str]:
        batch: Batch = active.batch
        r = active.request
        if active.copied:  # in its own folder already (kept): nothing to copy
            batch.ended += 1
            _forget_in_storage(active.job)
            _order_in_storage(active.job, r)
            return None
        if batch.results is None:
            self._batch_ended(batch, ex)
        assert batch.results is not None
        batch.ended += 1
        number = active.vip_job
        mine = batch.results.get(number) if number is not None else None
        state = (ex.jobs or {}).get(str(number)) if number is not None else None
        total = len(ex.jobs or {}) or len(batch.members)
        head = f"VIP execution {ex.identifier} ({batch.name}, job {number} of {total}) of {batch.pipeline_id}"
        if mine is None or _job_failed(state) or mine.missing:
            return (f"{head} ended {ex.status}; this job's part:\n"
                    f"{self._job_detail(batch, ex, number, state, mine)}\n")
        if active.name not in batch.listings and active.name not in batch.copy_failed:
            self._copy_members(batch, [active])  # it joined the batch after its end (adopted)
        exc = batch.copy_failed.get(active.name)
        if exc is not None:
            return (f"{head}: its results could not be copied to {r.results_location}: {exc} "
                    "(VIP has no server-side copy: the batch's results are downloaded and "
                    "uploaded again; for results over VIP's direct-transfer limit use "
                    "--vip-batch-size 1)\n")
        # the vip:// plugin is given the listings of the copy (asked of VIP already, once)
        listed = dict([batch.parent_listing]) if batch.parent_listing else {}
        listed.update(batch.listings.get(active.name, {}))
        _listed_in_storage(active.job, listed)
        _order_in_storage(active.job, r)
        return None

    def _copy_later(self, active) -> bool:
        """Whether the copy of the results of `active`'s ended batch waits: the copies are the
        members' results, to be dated in a later VIP second than their newest input (see
        `_launch_delay`: a batch is launched without waiting for it). A batch launched, run and
        ended within that second keeps its members active; a round comes when the second is
        over (the status round goes on meanwhile: other launches are not held up)."""
        batch = active.batch
        if batch is None or active.copied or batch.results is not None:
            return False
        starts = [m.started_after for m in batch.members if m.started_after is not None]
        wait = _launch_delay(max(starts), self.client) if starts else 0.0
        if wait > 0:
            self._wake(wait)
        return wait > 0

    def _batch_ended(self, batch: Batch, ex) -> None:
        """The batch's execution ended: find each member's results (one listing of the batch's
        folder, which also gives their sizes) and copy those of every member whose VIP job
        succeeded to its own folder, members in parallel."""
        descriptor = self._descriptor(batch.pipeline_id)
        # every VIP job's results, not only the members' so far: a job adopting the batch
        # later (handed over by Snakemake in a later round) finds its own
        numbers = {m.vip_job for m in batch.members if m.vip_job is not None}
        jobs = sorted(numbers | {int(k) for k in (ex.jobs or {}) if str(k).isdigit()})
        listed = self._tree(batch.results_location)
        batch.sizes = {f.path: f.size for f in listed if getattr(f, "size", None) is not None}
        returned = [f.path for f in listed] or list(ex.output_paths or [])
        batch.results = batches.member_results(descriptor, batches.echoed_values(
            ex.input_values) or batch.values, batch.results_location, returned, jobs)
        ok = []
        for m in batch.members:
            mine = batch.results.get(m.vip_job) if m.vip_job is not None else None
            state = (ex.jobs or {}).get(str(m.vip_job))
            if not (m.copied or mine is None or mine.missing or _job_failed(state)):
                ok.append(m)
        self._copy_members(batch, ok)

    def _copy_members(self, batch: Batch, members: List[Any]) -> None:
        """Copy the results of `members` (their VIP jobs succeeded) from the ended batch's
        folder to each one's own folder, members in parallel; their listings kept for the
        vip:// plugin, and the members' parent folder listed once."""
        assert batch.results is not None
        groups = {}
        for m in members:
            mine = batch.results[m.vip_job]
            where = m.request.results_location
            groups[m.name] = (where, [(src, f"{where}/{rel}") for src, rel in sorted(mine.files.items())])
        copied, listings, failed = batches.copy_results(self.client, groups, sizes=batch.sizes)
        batch.listings.update(listings)
        batch.copy_failed.update(failed)
        self.copied_bytes += copied
        if listings:  # the members' parent (one for the batch: part of its share key)
            parent = _parent(batch.members[0].request.results_location)
            try:
                batch.parent_listing = (parent, self.client.list(parent))
            except VipError as exc:  # the vip:// plugin lists it itself
                log.debug("%s not listed: %s", parent, exc)

    def _job_detail(self, batch: Batch, ex, number, state, mine) -> str:
        parts = []
        if isinstance(state, dict):
            parts.append(f"job {number}: {state.get('status')} (exit code {state.get('exitCode')}"
                         f": {state.get('exitMessage')})")
        if mine is not None and mine.missing:
            parts.append("results not written: " + ", ".join(mine.missing))
        if number is None:
            parts.append("no VIP job of this execution has this job's values")
        if batch.stderr is None:
            try:
                batch.stderr = self.client.stderr(ex.identifier)
            except VipError as exc:
                batch.stderr = f"(VIP's stderr could not be read: {exc})"
        text = batches.job_log(batch.stderr, number) if number is not None else batch.stderr
        tail = [ln for ln in text.splitlines() if ln.strip()][-20:]
        parts.append("stderr (last lines):\n    " + "\n    ".join(tail) if tail
                     else "(VIP gives no detail: its stderr is empty)")
        return "\n".join(parts)

    def _tree(self, folder: str) -> list:
        files: List[Any] = []
        level = [folder]
        while level:
            nxt: List[Any] = []
            for d in level:
                try:
                    for info in self.client.list(d):
                        (nxt if info.is_directory else files).append(info)
                except VipError:
                    continue
            level = [i.path for i in nxt]
        return files

    def _batch_cleanup(self) -> None:
        """End of the run: the folders of the batches whose jobs all ended are removed (each
        job has its own copy; usually under way already, see `_member_done`), then their
        parent `.vip-batches` once empty."""
        seen, parents = set(), set()
        for batch in list(self._batches.values()):
            if id(batch) in seen or batch.execution_id is None:
                continue
            seen.add(id(batch))
            if batch.ended < len(batch.members):
                continue
            if batch.removing is not None:  # under way since its last job was done
                batch.removing.join(60)
            else:
                self._remove_batch(batch)
            parents.add(_parent(batch.results_location))
        for folder in sorted(parents):  # the .vip-batches folder itself, once empty
            try:
                if not self.client.list(folder):
                    core.remove_remote(self.client, folder, timeout=30)
            except VipError as exc:
                log.debug("%s not removed: %s", folder, exc)
        if self.copied_bytes:
            self.logger.info(f"--executor vip: {self.copied_bytes} bytes of batch results copied "
                             "to their jobs' folders (each downloaded once, uploaded once)")

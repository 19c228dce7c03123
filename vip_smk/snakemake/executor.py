"""`snakemake --executor vip`: a rule runs as a VIP execution.

Found by Snakemake through the top-level package `snakemake_executor_plugin_vip` (a thin
re-export of this module). The mapping from a Snakemake job to VIP is in `executor_jobs`; every
step of the procedure (checking the values against the descriptor, launch-or-adopt, polling, the
failure detail) is the shared core's (`vip_smk.core`), so this module only wires them to
Snakemake's executor interface:

- before anything runs, every VIP job of the DAG is mapped and checked against its pipeline's
  descriptor; any problem stops the run with one message naming the rules and parameters;
- a job is launched under a deterministic name (rule, wildcards, short hash), so a rerun after
  Ctrl-C, `kill -9` or a lost network adopts the execution instead of launching it again;
- one `GET executions` per status round for all active jobs, sent by an `AsyncVipClient` in
  Snakemake's status loop (a coroutine awaiting the network, no thread blocked);
- VIP's per-user limit (error 2001) makes a job wait for a slot; Ctrl-C kills the active
  executions.

No `from __future__ import annotations` here: Snakemake turns the settings' field types into
argparse types.
"""

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncGenerator, Dict, List, Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import CommonSettings, ExecutorSettingsBase

from vip_smk import core, rules
from vip_smk.core.async_client import AsyncVipClient
from vip_smk.core.client import CapacityError, Execution, NotFound, ServerError, TransportError, VipClient, VipError
from vip_smk.runlock import forget_run, record_run
from vip_smk.snakemake import executor_jobs as mapping
from vip_smk.snakemake import settings
from vip_smk.snakemake.executor_batch import Batching
from vip_smk.snakemake.executor_io import _forget_in_storage, _in_storage, _launch_delay, _order_in_storage
from vip_smk.snakemake.messages import problems_message as _problems_message
from vip_smk.snakemake.messages import raise_message_only

log = logging.getLogger(__name__)

DEFAULT_POLL = 30.0
FIRST_POLL = 1.0  # seconds between the first rounds after a launch (then doubling up to poll)


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    url: Optional[str] = settings.url_field()
    api_key_env: str = settings.api_key_env_field()
    poll_interval: float = field(
        default=DEFAULT_POLL,
        metadata={
            "help": "longest pause in seconds between two status rounds; each round is one "
            "request for all active jobs (rounds start at 1 s after a launch, then back off)",
            "env_var": False,
            "required": False,
        },
    )
    batch_size: int = settings.batch_size_field()
    batch_wait: float = settings.batch_wait_field()


common_settings = CommonSettings(
    non_local_exec=True,
    implies_no_shared_fs=True,  # VIP reads and writes VIP storage only
    job_deploy_sources=False,  # nothing of the workflow runs on VIP
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    pass_envvar_declarations_to_cmd=False,  # the key never on a command line
    auto_deploy_default_storage_provider=False,
    init_seconds_before_status_checks=0,
)


@dataclass
class _Active:
    """A job handed to VIP (or waiting for a VIP slot): what polling and cancel need."""

    request: mapping.VipRequest
    values: Dict[str, Any]
    name: str
    started_after: Optional[int] = None  # ms: executions older than the newest input are stale
    execution_id: Optional[str] = None
    waiting_since: Optional[float] = None  # waiting for a slot (error 2001)
    checked: bool = True  # adoption checked at submission (else at launch, any start date)
    not_before: float = 0.0  # time.monotonic() before which it is not launched (see _launch_delay)
    job: Any = None  # the Snakemake job (its vip:// plugin keeps the results Snakemake removed)
    key: Optional[str] = None  # waiting in the pool of this share key (executor_batch)
    batch: Any = None  # the executor_batch.Batch it runs in
    vip_job: Optional[int] = None  # its VIP job number in that batch's execution
    copied: bool = False  # its results already in its own folder (an earlier run copied them)


class Executor(Batching, RemoteExecutor):
    def __init__(self, workflow, logger):
        # RemoteExecutor starts the status thread before __post_init__: what it reads is set first
        self.poll_interval = DEFAULT_POLL
        self._active: Dict[int, "_Active"] = {}  # Snakemake job id -> _Active
        self._active_lock = threading.RLock()
        self._wake_at = float("inf")  # time.monotonic() of the next status round asked for
        self._names: set = set()  # execution names this run launches (for Ctrl-C mid-launch)
        self._status_client: Optional[AsyncVipClient] = None  # polls in the status thread's loop
        super().__init__(workflow, logger)

    def __post_init__(self):
        config = self.workflow.executor_settings or ExecutorSettings()
        self.settings = config
        self.poll_interval = max(0.1, float(config.poll_interval or DEFAULT_POLL))
        self._pipelines: Dict[str, Any] = {}
        self._requests: Dict[Any, tuple] = {}  # job key -> (request, values, name)
        self.next_seconds_between_status_checks = min(FIRST_POLL, self.poll_interval)
        self._batch_setup(config)
        try:
            self.client = self._make_client(config)
            self._status_client = self._make_client(config, AsyncVipClient)  # the status rounds'
            self._check_workflow()
        except BaseException as exc:
            with self.lock:  # stop the status thread RemoteExecutor started
                self.wait = False
            if isinstance(exc, WorkflowError):
                raise_message_only(exc)
            raise
        # Snakemake's lock is ours now: remember this process, so that after kill -9 the next
        # run removes the lock (the vip:// plugin does, see README) and simply resumes.
        self._recorded = False
        if self.workflow.is_main_process and not getattr(self.workflow, "dryrun", False):
            try:
                record_run(".")
                self._recorded = True
            except OSError as exc:
                log.debug("run record not written: %s", exc)

    # -- set-up --------------------------------------------------------------------------------

    @staticmethod
    def _make_client(config: ExecutorSettings, cls=VipClient):
        return settings.make_client("--executor vip", "--vip-", config.url, config.api_key_env,
                                    cls, progress=False)

    def _pipeline(self, pid: str):
        """The pipeline's descriptor, asked once (a failure too is remembered)."""
        if pid not in self._pipelines:
            try:
                self._pipelines[pid] = self.client.pipeline(pid)
            except VipError as exc:
                self._pipelines[pid] = exc
        found = self._pipelines[pid]
        if isinstance(found, VipError):
            raise found
        return found

    def _check_workflow(self) -> None:
        """Map and check every VIP job of the DAG before anything runs (one error listing every
        problem, each naming its rule and parameter)."""
        needrun = getattr(self.workflow.dag, "needrun_jobs", None)
        jobs = list(needrun()) if callable(needrun) else []
        problems: List[str] = []
        self._count_to_come(jobs)
        for job in jobs:
            if job.is_local:
                problems.extend(mapping.local_job_problems(job))
            else:
                problems.extend(self._prepare(job))
        if problems:
            raise WorkflowError(_problems_message(problems))

    def _prepare(self, job) -> List[str]:
        """Map one job and check it against its pipeline; remember the result. Returns the
        problems (empty when the job is ready to launch)."""
        key = _job_key(job)
        if key in self._requests:
            return []
        if job.is_group() or getattr(job, "group", None):
            names = ", ".join(sorted({j.rule.name for j in getattr(job, "jobs", [job])}))
            return [f"group {getattr(job, 'groupid', None) or job.group} (rules {names}): "
                    "--executor vip runs each rule as its own VIP execution; remove the "
                    "`group:` (or make the rules local)"]
        request, problems = mapping.job_request(job)
        if request is None:
            return problems
        try:
            pipeline = self._pipeline(request.pipeline_id)
        except VipError as exc:
            return [f"rule {request.rule}: {exc}"]
        problems = mapping.input_problems(request, pipeline)
        try:
            values = core.check_against_descriptor(self.client, request.pipeline_id, request.settings,
                                                   pipeline=pipeline, where=request.where,
                                                   check_file=_vip_file_problem)
        except core.SettingsError as exc:
            problems.extend(f"{request.where}: {p}" for p in (exc.problems if exc.problems else [str(exc)]))
        if problems:
            return problems
        name = request.execution_name(values)
        bad = rules.name_problem("execution", name)
        if bad:
            return [f"{request.where}: execution name {name!r}: {bad}"]
        self._requests[key] = (request, values, name)
        _in_storage(job, "protect", request.results_location)  # removed before it runs: deferred
        return []

    # -- submission ----------------------------------------------------------------------------

    def run_jobs(self, jobs: List[JobExecutorInterface]):
        """Launch (or adopt) a batch of ready jobs. One listing of the executions and one
        listing per folder of their inputs and outputs serve the whole batch."""
        jobs = list(jobs)
        problems = [p for job in jobs for p in self._prepare(job)]
        if problems:  # jobs known only now (after a checkpoint)
            raise WorkflowError(_problems_message(problems, "these jobs cannot run on VIP"))
        batch = [self._requests[_job_key(job)] for job in jobs]
        listing: Optional[List[Execution]] = None
        read = _Folders(self.client)
        folders: Optional[_Folders] = read
        try:
            listing = self.client.executions()
            for request, _values, _name in batch:
                for path in request.input_paths() + [request.results_location]:
                    read.entry(path)
        except (TransportError, ServerError) as exc:  # VIP unreachable: the status rounds retry
            self.logger.warning(f"--executor vip: VIP unreachable ({exc}): launches deferred")
            listing, folders = None, None
        except VipError as exc:
            raise WorkflowError(f"--executor vip: cannot read VIP before launching: {exc}") from None
        pooled = False
        for job, (request, values, name) in zip(jobs, batch):
            self.run_job_pre(job)
            plan = self._batch_plan(request, values) if folders is not None else None
            if plan is not None and folders is not None:
                # no launch delay: a batch's results are our copies, written after it ends, and
                # those wait for VIP's next second if need be (executor_batch._copy_later)
                newest = folders.newest_ms(request.input_paths())
                active = _Active(request=request, values=values, name=name, started_after=newest)
                single = core.adoptable_on_vip(self.client, name=name, pipeline_id=request.pipeline_id,
                                               values=values, executions=listing,
                                               started_after=newest)
                if single is None:  # (an execution of its own, from a run with batch size 1)
                    try:
                        self._pool(job, active, plan, listing, folders)
                    except VipError as exc:
                        raise WorkflowError(f"{request.where}: cannot prepare the launch on VIP: "
                                            f"{exc}") from None
                    info = SubmittedJobInfo(job=job, external_jobid=active.execution_id,
                                            aux={"vip": active})
                    self.report_job_submission(info)
                    self._handed(job)  # (now, in its pool or batch: not "to come" before)
                    pooled = True
                    continue
            if folders is None:  # adoption checked at launch time (any start date)
                active = _Active(request=request, values=values, name=name, checked=False,
                                 not_before=time.monotonic() + self.poll_interval)
            else:
                newest = folders.newest_ms(request.input_paths())
                active = _Active(request=request, values=values, name=name, started_after=newest,
                                 not_before=time.monotonic() + _launch_delay(newest, self.client))
            self._submit(job, active, listing, folders)
            self._handed(job)
        if pooled:
            self._flush()
            self.next_seconds_between_status_checks = min(FIRST_POLL, self.poll_interval)
            self._wake(0)

    def run_job(self, job: JobExecutorInterface):
        self.run_jobs([job])

    def _submit(self, job, active: "_Active", listing, folders: Optional["_Folders"]) -> None:
        r = active.request
        active.job = job
        with self._active_lock:
            self._names.add(active.name)
        found = None
        if active.checked:
            try:
                found = core.adoptable_on_vip(self.client, name=active.name,
                                              pipeline_id=r.pipeline_id, values=active.values,
                                              executions=listing, started_after=active.started_after)
                if found is None:
                    assert folders is not None  # (run_jobs checks at submission only with them)
                    self._clear_previous(job, active, listing, folders)
            except (TransportError, ServerError) as exc:
                self.logger.warning(f"{r.where}: VIP unreachable ({exc}): launch deferred")
                active.checked = False
                active.not_before = time.monotonic() + self.poll_interval
            except VipError as exc:
                raise WorkflowError(f"{r.where}: cannot prepare the launch on VIP: {exc}") from None
        if found is not None:
            self._adopted(active, found)
        elif active.checked and active.not_before <= time.monotonic():
            self._launch(active, [])
        with self._active_lock:
            self._active[job.jobid] = active
        info = SubmittedJobInfo(job=job, external_jobid=active.execution_id, aux={"vip": active})
        self.report_job_submission(info)
        self.next_seconds_between_status_checks = min(FIRST_POLL, self.poll_interval)
        self._wake(max(active.not_before - time.monotonic(), 0)
                   if active.execution_id is None else self.next_seconds_between_status_checks)

    def _clear_previous(self, job, active: "_Active", listing, folders: "_Folders") -> None:
        """Before a new execution: kill a still running one of the same name that is stale (its
        inputs changed since it started: it would write into the same folder) and remove the
        previous results, as Snakemake removes a job's old outputs before it runs."""
        r = active.request
        for e in listing or []:
            if e.name == active.name and e.is_running:
                self.logger.info(f"{r.where}: killing VIP execution {e.identifier}, started "
                                 "before its inputs changed")
                self.client.kill(e.identifier)
        if folders.entry(r.results_location) is not None:
            self.logger.info(f"{r.where}: removing the previous results {r.results_location}")
            core.remove_remote(self.client, r.results_location)
            _forget_in_storage(job)
        _in_storage(job, "gone", r.results_location)

    def _launch(self, active: "_Active", listing=None) -> bool:
        """Launch (or adopt, with ``listing`` None: one ``GET executions``); False if the job
        waits: VIP's per-user limit (error 2001), or VIP unreachable once the client's retries
        are spent (a network cut of hours must not end a run of days)."""
        r = active.request
        if not active.checked and _in_storage(active.job, "marked_removed", r.results_location):
            # adoption not checked at submission (VIP was unreachable): the previous results,
            # which Snakemake removed, go now, before an execution may be launched into them
            try:
                core.remove_remote(self.client, r.results_location)
            except (TransportError, ServerError) as exc:
                self.logger.warning(f"{r.where}: VIP unreachable ({exc}): launch retried later")
                return False
            _in_storage(active.job, "gone", r.results_location)
        try:
            execution, adopted = core.launch_or_adopt(
                self.client, r.pipeline_id, active.values, r.results_location, active.name,
                executions=listing, started_after=active.started_after)
        except CapacityError:
            if active.waiting_since is None:
                active.waiting_since = time.monotonic()
                self.logger.info(f"{r.where}: VIP's limit of running executions is reached: "
                                 "waiting for a slot")
            return False
        except (TransportError, ServerError) as exc:  # the client's retries are spent: later
            self.logger.warning(f"{r.where}: VIP unreachable ({exc}): launch retried later")
            return False
        except VipError as exc:
            raise WorkflowError(f"{r.where}: cannot launch {r.pipeline_id} on VIP: {exc}") from None
        if adopted:
            self._adopted(active, execution)
        else:
            active.execution_id = execution.identifier
            active.waiting_since = None
            self.logger.info(f"{r.where}: launched VIP execution {execution.identifier} "
                             f"({active.name}, {r.pipeline_id})")
        return True

    def _adopted(self, active: "_Active", execution) -> None:
        # its results, which Snakemake removed before the job (only marked so), are kept
        _in_storage(active.job, "kept", active.request.results_location)
        active.execution_id = execution.identifier
        active.waiting_since = None
        self.logger.info(
            f"{active.request.where}: adopted VIP execution {execution.identifier} "
            f"({active.name}, {active.request.pipeline_id}, {execution.status}): not launched again")

    def _wake(self, delay: float) -> None:
        """Ask for a status round within ``delay`` seconds."""
        with self._active_lock:
            self._wake_at = min(self._wake_at, time.monotonic() + max(0.0, delay))

    async def sleep(self):
        """Until the next status round: the usual pause, cut short when a job asks for an
        earlier round (a launch, a launch deferred by a fraction of a second) or at shutdown."""
        end = time.monotonic() + self.next_seconds_between_status_checks
        while self.wait:
            with self._active_lock:
                due = min(end, self._wake_at)
            now = time.monotonic()
            if now >= due:
                break
            await asyncio.sleep(min(0.1, due - now))
        with self._active_lock:
            self._wake_at = float("inf")
        if not self.wait and self._status_client is not None:  # the last round is over: the
            await self._status_client.aclose()  # status client's pool closes in its own loop

    # -- status --------------------------------------------------------------------------------

    async def check_active_jobs(
        self, active_jobs: List[SubmittedJobInfo]
    ) -> AsyncGenerator[SubmittedJobInfo, None]:
        if not active_jobs:
            return
        try:
            still = await self._check(active_jobs)
        except Exception as exc:  # a bug must end the run, not leave Snakemake waiting forever
            log.exception("--executor vip: status round failed")
            for j in active_jobs:
                self._forget(j)
                self.report_job_error(j, msg=f"--executor vip: status round failed: {exc!r}\n")
            return
        for j in still:
            yield j

    async def _check(self, active_jobs: List[SubmittedJobInfo]) -> List[SubmittedJobInfo]:
        """One status round; returns the jobs still active."""
        still: List[SubmittedJobInfo] = []
        launched = [j for j in active_jobs if j.external_jobid]
        waiting = [j for j in active_jobs if not j.external_jobid]
        states: Dict[str, Any] = {}
        if launched:
            async with self.status_rate_limiter:
                try:
                    assert self._status_client is not None
                    states = await self._status_client.poll([j.external_jobid for j in launched])
                except VipError as exc:  # the network or VIP failed: try again next round
                    log.warning("--executor vip: status round failed (%s); retrying", exc)
                    return list(active_jobs)
        ended = [j for j in launched if j.external_jobid not in states
                 or not rules.is_running(states[j.external_jobid].status)]
        for j in ended:  # before any is reported: Snakemake then asks VIP afresh, once per folder
            _forget_in_storage(j.job)
        for j in launched:
            ex = states.get(j.external_jobid)
            if ex is None:
                self._forget(j)
                self.report_job_error(j, msg=f"VIP execution {j.external_jobid} is unknown to VIP "
                                      "(deleted meanwhile?)\n")
                continue
            if rules.is_running(ex.status) or self._copy_later(j.aux["vip"]):
                still.append(j)
                continue
            self._forget(j)
            if j.aux["vip"].batch is not None:
                why = self._member_done(j.aux["vip"], ex)
                if why is None:
                    self.report_job_success(j)
                else:
                    self.report_job_error(j, msg=why)
                continue
            if ex.status == rules.SUCCESS:
                _order_in_storage(j.job, j.aux["vip"].request)
                self.report_job_success(j)
            else:
                self.report_job_error(j, msg=self._failure_message(j, ex))
        blocked = False  # VIP's limit still reached: the others keep waiting (no request)
        self._flush()
        now = time.monotonic()
        launched_now = False
        for j in waiting:
            active: _Active = j.aux["vip"]
            if active.key is not None:  # in a pool: not a batch yet
                still.append(j)
                continue
            if active.batch is not None:
                b = active.batch
                if b.execution_id is None and now < b.not_before:
                    self._wake(b.not_before - now)
                elif b.execution_id is None and not blocked:
                    blocked = not self._launch_batch(b)
                    launched_now = launched_now or not blocked
                j.external_jobid = b.execution_id
                still.append(j)
                continue
            if now < active.not_before:
                self._wake(active.not_before - now)
            elif not blocked:
                try:  # adoption checked at submission: only the POST is left (else look now)
                    blocked = not self._launch(active, [] if active.checked else None)
                except WorkflowError as exc:
                    self._forget(j)
                    self.report_job_error(j, msg=str(exc) + "\n")
                    continue
                if not blocked:  # (Snakemake's record keeps no id: it is not written from here)
                    j.external_jobid = active.execution_id
                    launched_now = True
            still.append(j)
        if launched_now:  # a launch: its first rounds come quickly again
            self.next_seconds_between_status_checks = min(FIRST_POLL, self.poll_interval)
        else:
            self.next_seconds_between_status_checks = min(
                self.poll_interval, max(FIRST_POLL, self.next_seconds_between_status_checks * 2))
        return still

    def _failure_message(self, j: SubmittedJobInfo, ex) -> str:
        active: _Active = j.aux["vip"]
        try:
            detail = core.failure_detail(self.client, ex)
        except VipError as exc:
            detail = f"(VIP's stderr could not be read: {exc})"
        detail = (detail or "").rstrip() or "(VIP gives no detail: its stderr is empty)"
        return (f"VIP execution {ex.identifier} ({active.name}) of {active.request.pipeline_id} "
                f"ended {ex.status}:\n{detail}\n")

    def _forget(self, j: SubmittedJobInfo) -> None:
        with self._active_lock:
            self._active.pop(j.job.jobid, None)

    # -- cancel --------------------------------------------------------------------------------

    def cancel_jobs(self, active_jobs: List[SubmittedJobInfo]):
        """Ctrl-C: kill every execution this run launched or adopted that is still active, and
        one whose launch Ctrl-C interrupted (its reply never came: found by its name)."""
        with self._active_lock:
            ids = [a.execution_id for a in self._active.values() if a.execution_id]
            names = set(self._names)
            self._active.clear()
        try:
            ids += [e.identifier for e in self.client.executions()
                    if e.name in names and e.is_running and e.identifier not in ids]
        except VipError as exc:
            self.logger.warning(f"could not list VIP's executions: {exc}")
        for eid in ids:
            try:
                self.client.kill(eid)
                self.logger.info(f"killed VIP execution {eid}")
            except VipError as exc:  # already over, or VIP unreachable: say so, go on
                self.logger.warning(f"could not kill VIP execution {eid}: {exc}")

    def shutdown(self):
        super().shutdown()
        if getattr(self, "client", None) is not None and hasattr(self, "_batches"):
            self._batch_cleanup()
        if getattr(self, "_recorded", False):
            forget_run(".")
        client = getattr(self, "client", None)
        if client is not None:
            client.close()


class _Folders:
    """Listings of VIP folders, one request per folder: existence and dates of many paths."""

    def __init__(self, client: VipClient):
        self.client = client
        self._entries: Dict[str, Dict[str, Any]] = {}

    def entry(self, path: str):
        parent, _, name = path.rstrip("/").rpartition("/")
        if parent not in self._entries:
            try:
                self._entries[parent] = {i.name: i for i in self.client.list(parent)}
            except NotFound:
                self._entries[parent] = {}
        return self._entries[parent].get(name)

    def newest_ms(self, paths: List[str]) -> Optional[int]:
        """The newest modification date of ``paths`` on VIP (ms, VIP's clock), None if any is
        unknown (then any execution of the same name and inputs may be adopted)."""
        newest = 0
        for p in paths:
            info = self.entry(p)
            date = getattr(info, "last_modification_date", None) if info is not None else None
            if date is None:
                return None
            newest = max(newest, int(date))
        return newest * 1000 if paths else None


def _job_key(job) -> tuple:
    return (job.rule.name, tuple(sorted(dict(job.wildcards_dict or {}).items())), job.jobid)


def _vip_file_problem(value: str) -> Optional[str]:
    if not str(value).startswith("/vip/"):
        return f"{value!r} is not a VIP path (/vip/...)"
    return None

"""The steps of the session classes that only need VIP -- validate, launch or adopt, monitor,
finish -- each a call into :mod:`vip_smk.core` (mixed into :class:`~vip_smk.sessions.base.SessionBase`,
whose properties, backup and output they use)."""

from __future__ import annotations

import textwrap
import time
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Iterable

from tqdm.auto import tqdm

from vip_smk import core, rules
from vip_smk.core.client import Execution, InvalidInput, Pipeline, VipClient
from vip_smk.sessions.output import start_string, status_report, vip_errors

__all__ = ["SessionSteps"]


class SessionSteps:
    """Validate, launch, monitor and finish for a session (see SessionBase)."""

    if TYPE_CHECKING:  # what these steps use of SessionBase, which mixes them in (for mypy)
        _BACKUP_LOCATION: str | None
        _workflows: dict[str, dict]
        _meta: dict[str, Any]
        _pipeline_cache: Pipeline | None
        session_name: str | None
        pipeline_id: str | None
        vip_output_dir: PurePosixPath | None
        input_settings: dict | None
        verbose: bool

        @property
        def client(self) -> VipClient: ...
        @property
        def _name(self) -> str: ...
        def _info(self, msg: str) -> None: ...
        def _warn(self, msg: str) -> None: ...
        def _save(self, announce: bool = False) -> None: ...
        def _progress(self, **kw: Any) -> tqdm: ...

    # ---- VIP helpers -------------------------------------------------------------------------
    def _pipeline(self):
        if self.pipeline_id is None:
            raise ValueError("No pipeline: set pipeline_id (launch_pipeline(pipeline_id=...)).")
        if self._pipeline_cache is None or self._pipeline_cache.identifier != self.pipeline_id:
            self._pipeline_cache = self.client.pipeline(self.pipeline_id)
        return self._pipeline_cache

    def _apply(self, ids: Iterable[str], states: dict[str, Execution]) -> None:
        """Record polled states in the workflow inventory (vip-client's entry format)."""
        for wid in ids:
            wf = self._workflows.setdefault(wid, {"status": None, "start": None, "outputs": []})
            ex = states.get(wid)
            if ex is None:
                if wf.get("status") != "Unknown":
                    self._warn(f"(!) Execution {wid} is unknown to VIP (deleted?): status Unknown.")
                wf["status"] = "Unknown"
                continue
            wf["status"] = ex.status
            start = start_string(ex.start_date)
            if start:
                wf["start"] = start
            if not wf.get("outputs") and ex.output_paths:
                wf["outputs"] = [{"path": str(p)} for p in ex.output_paths]

    def _refresh(self, ids: Iterable[str]) -> dict[str, Execution]:
        """One poll (one request) for ``ids``; the inventory updated; {id: Execution}."""
        ids = list(ids)
        states = core.poll(self.client, ids) if ids else {}
        self._apply(ids, states)
        return states

    def _active_ids(self) -> list[str]:
        return [wid for wid, wf in self._workflows.items() if wf.get("status") != "Removed"]

    def _pending_ids(self) -> list[str]:
        """Workflows whose status may still change (terminal statuses are final on VIP)."""
        return [wid for wid, wf in self._workflows.items()
                if wf.get("status") is None or rules.is_running(wf.get("status"))]

    def _exists(self, path) -> bool:
        return bool(self.client.exists(str(path)))

    # ---- validation --------------------------------------------------------------------------
    def _file_check(self, location: str) -> Callable[[str], str | None]:
        """Hook: the File-value check for :func:`core.validate_settings`."""
        return core.vip_file_check(self.client)

    def _check_input_settings(self, location: str = "vip") -> dict:
        """Validate the input settings against the pipeline before any transfer or launch
        (:func:`core.validate_settings`); return the values to send. As vip-client: only
        missing parameters -> AttributeError, only missing files -> FileNotFoundError, anything
        else -> ValueError; the message lists every problem."""
        settings = self.input_settings
        if settings is None:
            raise ValueError("No input settings: set input_settings (launch_pipeline(input_settings=...)).")
        try:
            return core.check_against_descriptor(self.client, str(self.pipeline_id), settings,
                                                 pipeline=self._pipeline(),
                                                 where=f"session '{self.session_name}'",
                                                 check_file=self._file_check(location))
        except core.SettingsError as exc:
            kinds = exc.kinds
            if kinds == {"missing"}:
                err: Exception = AttributeError(str(exc))
            elif kinds == {"file"}:
                err = FileNotFoundError(str(exc))
            else:
                raise
            err.problems = exc.problems  # type: ignore[attr-defined]
            raise err from None

    # ---- launch ------------------------------------------------------------------------------
    def _launch(self, nb_runs: int) -> None:
        """Validate, then launch ``nb_runs`` execution(s), adopting those already on VIP
        (:func:`core.launch_or_adopt`: same name, pipeline and inputs, running or finished, not
        removed by finish()): a resumed session goes on with what it launched before."""
        if int(nb_runs) < 1:
            raise ValueError(f"nb_runs must be >= 1, not {nb_runs}")
        name = self._name  # (a TypeError before anything is created if it was deleted)
        self._info(f"Pipeline: {self.pipeline_id}\n----------------\nParameter checks")
        values = self._check_input_settings(location="vip")
        pipeline_id = self.pipeline_id
        assert pipeline_id is not None  # _check_input_settings() refuses a session without one
        self._info("  --> OK")
        self.client.mkdir(str(self.vip_output_dir), parents=True)
        self._meta["finished"] = False
        self._info(f"----------------\n{nb_runs} execution(s): adopted if already on VIP, "
                   "else launched")
        # not adopted: executions whose outputs finish() removed, or that ran on input files
        # upload_inputs() has changed since
        exclude = {w for w, wf in self._workflows.items() if wf.get("status") == "Removed"}
        exclude |= set(self._meta.get("superseded") or [])
        listing = self.client.executions()
        done = launched = 0
        try:
            for _ in range(int(nb_runs)):
                try:
                    ex, adopted = core.launch_or_adopt(
                        self.client, pipeline_id, values, str(self.vip_output_dir),
                        name, executions=listing, exclude=exclude,
                        wait_for_slot=30.0, on_wait=lambda exc: self._info(
                            f"  VIP runs no more executions for this account now ({exc}): "
                            "waiting for a slot ..."))
                except InvalidInput as exc:  # lists VIP cannot pair (vip:dot): say which
                    clear = core.launch_refusal(exc, values, where=f"session '{self.session_name}'",
                                                pipeline_id=str(self.pipeline_id))
                    if clear is None:
                        raise
                    raise clear from exc
                exclude.add(ex.identifier)
                wf = self._workflows.setdefault(ex.identifier, {"status": None, "start": None,
                                                                "outputs": []})
                wf["status"] = ex.status
                wf["start"] = start_string(ex.start_date) or wf.get("start") or \
                    f"{datetime.now():%Y/%m/%d %H:%M:%S}"
                done += 1
                launched += not adopted
                self._save()
                what = "adopted (already on VIP; finish() the session to launch anew)" if adopted \
                    else "launched"
                self._info(f"  [{done}/{nb_runs}] {ex.identifier} ({ex.status}): {what}")
            self._info(f"  --> {launched} launched, {done - launched} adopted")
        except BaseException:
            self._warn(f"(!) Stopped after {done} execution(s).")
            self._save()
            raise

    # ---- monitor -----------------------------------------------------------------------------
    @vip_errors
    def monitor_workflows(self, refresh_time: float = 30, timeout: float | None = None):
        """Wait until every execution is over (Initializing, Ready and Running all count as
        running), showing jobs done / total. One request per round whatever the number of
        executions; the first rounds come soon after launch, then every ``refresh_time``
        seconds. Returns early after ``timeout`` seconds."""
        self._info("\n=== MONITOR WORKFLOWS ===\n")
        if not self._workflows:
            self._info("This session has not yet launched any execution.")
            return self
        ids = self._pending_ids()
        bar = None
        last: list = []

        def on_round(states: dict[str, Execution]) -> None:
            nonlocal bar, last
            self._apply(ids, states)
            now = [self._workflows[w]["status"] for w in ids]
            if now != last:
                self._save()  # nothing lost if this process dies during a long wait
            if bar is None and any(rules.is_running(s) for s in now):
                self._report()
                self._info(f"Monitoring {len(ids)} execution(s) (refresh up to every {refresh_time}s"
                           f"{'' if timeout is None else f', timeout {timeout}s'}) ...")
                counts, _ = self._job_progress(ids, states)
                bar = self._progress(desc=f"{self.session_name}", unit="job", leave=True,
                                     total=counts.total, initial=counts.done)
            if bar is not None:
                self._update_bar(bar, ids, states)
            last = now

        try:
            states = core.wait(self.client, ids, refresh=float(refresh_time),
                               first=min(1.0, float(refresh_time)), timeout=timeout, on_round=on_round)
        except BaseException:
            if bar is not None:
                bar.close()
            self._warn("(!) Monitoring interrupted; the session was saved.")
            self._save()
            raise
        if bar is not None:
            bar.close()
            still = [w for w in ids if w in states and states[w].is_running]
            if still:
                self._warn(f"(!) Timeout ({timeout}s) reached: {len(still)} execution(s) still "
                           f"running. Call monitor_workflows() again later.")
            else:
                self._info("All executions are over.")
        self._report()
        if self.verbose:  # why the ones that failed while we watched failed (VIP's stderr)
            for w in ids:
                ex = states.get(w)
                if ex is not None and ex.status in ("ExecutionFailed", "InitializationFailed"):
                    detail = core.failure_detail(self.client, ex, lines=10)
                    if detail:
                        self._warn(f"(!) {w} failed:\n{textwrap.indent(detail, '    ')}")
        self._save(announce=True)
        return self

    def _job_progress(self, ids: list[str], states: dict[str, Execution]
                      ) -> tuple[rules.JobCounts, dict[str, int]]:
        """Jobs of ``ids`` (:func:`rules.job_counts`) and executions per status."""
        counts = rules.JobCounts()
        statuses: dict[str, int] = {}
        for w in ids:
            ex = states.get(w)
            status = self._workflows[w]["status"]
            counts = counts + rules.job_counts(ex.jobs if ex is not None else None, status)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        return counts, statuses

    def _update_bar(self, bar: tqdm, ids: list[str], states: dict[str, Execution]) -> None:
        counts, statuses = self._job_progress(ids, states)
        bar.total, bar.n = counts.total, counts.done
        bar.set_postfix_str(", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())), refresh=False)
        bar.refresh()

    def _report(self) -> None:
        if self.verbose and self._workflows:
            self._info(status_report(self._workflows))

    # ---- finish ------------------------------------------------------------------------------
    def _running_refuses_finish(self) -> bool:
        """Refresh the workflows that may still run; True (and a warning) if some do."""
        ids = self._pending_ids()
        if not ids:
            return False
        self._refresh(ids)
        running = [w for w in ids if rules.is_running(self._workflows[w]["status"])]
        if not running:
            return False
        self._save()
        self._warn(
            f"(!) This session cannot be finished since the pipeline might still generate "
            f"data: {len(running)} execution(s) not over "
            f"({', '.join(w + ': ' + str(self._workflows[w]['status']) for w in running)}). "
            "Run monitor_workflows() first.")
        return True

    def _remove(self, path: PurePosixPath, deadline: float) -> bool:

        ok = core.remove_remote(self.client, str(path), timeout=max(0.0, deadline - time.monotonic()))
        if ok:
            self._info(f"\t{path}: removed.")
        else:
            self._warn(f"(!) Timeout reached while removing {path}: it may still be on VIP.")
        return ok

    def _mark_removed(self, removed: list[PurePosixPath]) -> None:
        """Workflows whose outputs are gone get status ``Removed`` (vip-client's rule)."""

        def under(p, parent) -> bool:
            return p == parent or parent in p.parents

        for wid in self._active_ids():
            outs = self._workflows[wid].get("outputs") or []
            parent = PurePosixPath(outs[0]["path"]).parent if outs else None
            if parent is None or any(under(parent, t) for t in removed) or not self._exists(parent):
                self._workflows[wid]["status"] = "Removed"

    def _save_after_finish(self, removed: list[PurePosixPath]) -> None:
        """Save, unless the backup was on VIP in a folder finish() just removed (saving would
        create it again): the session is over, nothing is left on VIP."""
        vout = self.vip_output_dir
        if type(self)._BACKUP_LOCATION == "vip" and vout is not None and \
                any(vout == t or t in vout.parents for t in removed):
            self._info(f"Session '{self.session_name}' is over: its backup on VIP was removed "
                       "with its outputs.")
            return
        self._save(announce=True)

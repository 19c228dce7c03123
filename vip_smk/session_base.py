"""What vip-client's session classes share (its ``VipLauncher``, from which ``VipSession``
derives): class-level configuration set by ``init()``, locked properties, the backup, and the
steps that only need VIP -- validate, launch, monitor, finish -- each a call into
:mod:`vip_smk.core`. :class:`vip_smk.session.VipSession` adds the local side (upload,
download); a ``VipLauncher`` (data already on VIP, issue 13) can be added the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import textwrap
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

from tqdm.auto import tqdm

from . import core, rules
from .backup import META_KEY, meta_of, read_backup, read_backup_vip, save_backup, save_backup_vip
from .client import Execution, VipClient, vip_client_key_kwargs
from .session_output import (ensure_log_handler, logger, pipeline_text, start_string, status_report,
                             vip_errors)

__all__ = ["META_KEY", "SessionBase", "logger", "vip_errors"]


def _flatten(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


_CLASS_DEFAULT: Any = object()  # init(backup_location=...) not given: the class's default


class SessionBase:
    """Configuration, properties, backup and the VIP-only steps of a VIP session (1 pipeline,
    1 dataset, 1 parameter set). Subclasses set the backup keys and location, the default
    paths, and what a settings value means locally."""

    # ---- class-level configuration (set by init(); never module globals) ----------------------
    _VERBOSE: bool = True
    _default_client: VipClient | None = None
    _AVAILABLE_PIPELINES: tuple[str, ...] = ()
    _SAVE_FILE = "session_data.json"
    _SERVER_PATH_PREFIX = "/vip"
    _SERVER_DEFAULT_PATH = "/vip/Home/API"
    _BACKUP_LOCATIONS: tuple[str | None, ...] = ("vip", None)
    _BACKUP_LOCATION: str | None = None  # set by init(backup_location=...)
    _BACKUP_KEYS: tuple[str, ...] = ("session_name", "pipeline_id", "vip_output_dir",
                                     "input_settings", "workflows")
    _LOCKED: tuple[str, ...] = ("session_name", "pipeline_id", "input_settings", "vip_output_dir")

    def _setup(self, verbose: bool | None, client: VipClient | None) -> None:
        self._verbose = verbose
        self._client = client
        self._values: dict[str, Any] = dict.fromkeys(self._LOCKED)
        self._settings_raw: dict | None = None
        self._workflows: dict[str, dict] = {}
        self._meta: dict[str, Any] = {}
        self._pipeline_cache = None
        self._unlocked = False
        if self.verbose:
            ensure_log_handler()

    # ---- init / class helpers ----------------------------------------------------------------
    @classmethod
    @vip_errors
    def init(cls, api_key: str = "VIP_API_KEY", vip_portal_url: str | None = None,
             verbose: bool = True, *, client: VipClient | None = None,
             backup_location: str | None = _CLASS_DEFAULT, **kwargs):  # type: ignore[assignment]
        """Connect to VIP and set the default client of new sessions of this class.

        ``api_key``: a path to a file holding the key, else the name of an environment variable,
        else the key itself (vip-client's order). ``vip_portal_url``: the portal URL (default
        ``$VIP_URL`` or VIP's). ``backup_location``: where ``session_data.json`` is kept:
        ``"local"`` (VipSession's default: ``output_dir``), ``"vip"`` (``vip_output_dir`` on
        VIP), None (no backup; VipLauncher's default). Returns a session built from ``kwargs``
        (silent when none).
        """
        if backup_location is _CLASS_DEFAULT:
            backup_location = cls._BACKUP_LOCATION
        if backup_location not in cls._BACKUP_LOCATIONS:
            raise ValueError(f"backup_location {backup_location!r} is not supported by "
                             f"{cls.__name__} (supported: {cls._BACKUP_LOCATIONS})")
        if client is None:
            client = VipClient(url=vip_portal_url, **vip_client_key_kwargs(api_key))
        cls._VERBOSE = bool(verbose)
        cls._BACKUP_LOCATION = backup_location
        client.check_key()
        pipelines = client.pipelines()
        cls._AVAILABLE_PIPELINES = tuple(p.identifier for p in pipelines if p.can_execute is not False)
        cls._default_client = client
        if verbose:
            ensure_log_handler()
            line = "-" * 60
            logger.info(f"{line}\n| You are communicating with VIP ({client.url})\n"
                        f"| {len(cls._AVAILABLE_PIPELINES)} pipeline(s) available\n{line}")
            if not cls._AVAILABLE_PIPELINES:
                logger.warning("(!) This API key gives access to no pipeline: join a group "
                               "on the VIP portal to use its applications.")
        return cls(_announce=bool(kwargs), **kwargs)

    @classmethod
    def _default_name(cls) -> str:
        return f"{cls.__name__}-{datetime.now():%y%m%d-%H%M%S}-{secrets.token_hex(2)[:3]}"

    @property
    def client(self) -> VipClient:
        """The :class:`VipClient` this session talks through."""
        if self._client is not None:
            return self._client
        client = type(self)._default_client
        if client is None:
            if not os.environ.get("VIP_API_KEY"):
                raise RuntimeError(
                    f"Not connected to VIP: call {type(self).__name__}.init(api_key=...) first "
                    "(or pass client=VipClient(...)).")
            client = VipClient()
            type(self)._default_client = client
        return client

    def _set_given(self, restored: bool, **given: Any) -> None:
        """Set the constructor's properties; those a restored backup already has keep the
        saved value (a warning names the ones given differently)."""
        differ = []
        for name, value in given.items():
            if value is None:
                continue
            if restored and getattr(self, name) is not None:
                if not self._same(name, value):
                    differ.append(name)
                continue
            setattr(self, name, value)
        if differ:
            self._warn(
                f"(!) Property(ies) {', '.join(differ)} differ from the backup of session "
                f"'{self.session_name}'; the saved values were kept. Use another session name or "
                f"output directory (or delete the property first) to change them.")

    # ---- output ------------------------------------------------------------------------------
    @property
    def verbose(self) -> bool:
        return type(self)._VERBOSE if self._verbose is None else bool(self._verbose)

    @verbose.setter
    def verbose(self, value: bool | None) -> None:
        self._verbose = value
        if self.verbose:
            ensure_log_handler()

    def _info(self, msg: str) -> None:
        if self.verbose:
            logger.info(msg)

    def _warn(self, msg: str) -> None:
        if self.verbose:
            logger.warning(msg)

    def _progress(self, **kw) -> tqdm:
        return tqdm(disable=not self.verbose, file=sys.stderr, dynamic_ncols=True, **kw)

    # ---- properties and locking --------------------------------------------------------------
    @contextlib.contextmanager
    def _unlock(self):
        previous, self._unlocked = self._unlocked, True
        try:
            yield
        finally:
            self._unlocked = previous

    def _set_locked(self, name: str, value: Any) -> None:
        current = self._values[name]
        if value is None:
            self._values[name] = None
            return
        if current is not None and current != value and not self._unlocked:
            raise ValueError(
                f"'{name}' is already set for session: {self._values['session_name']} "
                f"(current value {current!s}, new value {value!s}); delete it first "
                f"(del session.{name}) to change it.")
        self._values[name] = value

    def _same(self, name: str, value: Any) -> bool:
        if name == "input_settings":
            return self._vip_settings(self._normalize_settings(value)) == self.input_settings
        return value == getattr(self, name)

    @property
    def session_name(self) -> str | None:
        return self._values["session_name"]

    @session_name.setter
    def session_name(self, value: str | None) -> None:
        if value is not None:
            value = str(value)
            problem = rules.name_problem("session", value)
            if problem:
                raise ValueError(f"Invalid session name: {problem}.")
        self._set_locked("session_name", value)

    @session_name.deleter
    def session_name(self) -> None:
        self._values["session_name"] = None

    @property
    def pipeline_id(self) -> str | None:
        return self._values["pipeline_id"]

    @pipeline_id.setter
    def pipeline_id(self, value: str | None) -> None:
        if value is not None:
            value = str(value)
            available = type(self)._AVAILABLE_PIPELINES
            if available and value not in available:
                close = [p for p in available if value.lower() in p.lower()]
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                raise ValueError(f"Pipeline '{value}' is not available with this API key.{hint} "
                                 f"Use {type(self).__name__}.show_pipeline() to list them.")
        if value != self._values["pipeline_id"]:
            self._pipeline_cache = None
        self._set_locked("pipeline_id", value)

    @pipeline_id.deleter
    def pipeline_id(self) -> None:
        self._values["pipeline_id"] = None
        self._pipeline_cache = None

    @staticmethod
    def _vip_path_prop(name: str):
        def getter(self) -> PurePosixPath | None:
            return self._values[name]

        def setter(self, value) -> None:
            if value is not None:
                value = PurePosixPath(str(value))
                problem = rules.value_problem(str(value))
                if problem:
                    raise ValueError(f"Invalid {name} {str(value)!r}: {problem}")
            self._set_locked(name, value)

        def deleter(self) -> None:
            self._values[name] = None

        return property(getter, setter, deleter)

    vip_output_dir = _vip_path_prop("vip_output_dir")

    @property
    def workflows(self) -> dict[str, dict]:
        return self._workflows

    @workflows.setter
    def workflows(self, value: dict | None) -> None:
        self._workflows = dict(value or {})

    @workflows.deleter
    def workflows(self) -> None:
        self._workflows = {}

    # input settings: kept as given, exposed in the form sent to VIP
    @property
    def input_settings(self) -> dict | None:
        """Input settings in the form sent to VIP."""
        if self._settings_raw is None:
            return None
        return self._vip_settings(self._settings_raw)

    @input_settings.setter
    def input_settings(self, value: dict | None) -> None:
        if value is None:
            self._settings_raw = None
            self._values["input_settings"] = None
            return
        normalized = self._normalize_settings(value)
        if self._settings_raw is not None and not self._unlocked:
            if self._vip_settings(normalized) != self.input_settings:
                raise ValueError(f"'input_settings' is already set for session: "
                                 f"{self.session_name}; delete it first (del session.input_settings).")
        self._settings_raw = normalized
        self._values["input_settings"] = True

    @input_settings.deleter
    def input_settings(self) -> None:
        self._settings_raw = None
        self._values["input_settings"] = None

    def _local_value(self, name: str, v: Any) -> Any:
        """Hook: a settings value as kept (VipSession remembers where local files are)."""
        return v

    def _is_local_path(self, v: Any) -> bool:
        """Hook: whether ``v`` (VIP form) is a local path still to be mapped to VIP."""
        return False

    def _normalize_settings(self, settings: dict) -> dict:
        """Settings as kept: empty values refused (vip-client), booleans as ``"true"/"false"``,
        path-likes as strings; characters VIP refuses refused at once."""
        if not isinstance(settings, dict):
            raise TypeError(f"input_settings must be a dict, not {type(settings).__name__}")
        out: dict[str, Any] = {}
        missing = []
        for name, value in settings.items():
            values = []
            for v in _flatten(value):
                if isinstance(v, bool):
                    v = "true" if v else "false"
                elif isinstance(v, os.PathLike):
                    v = os.fspath(v)
                if v is None or (isinstance(v, str) and not v.strip()):
                    continue
                if not isinstance(v, (str, int, float)):
                    raise TypeError(f"Unsupported value type for parameter '{name}': "
                                    f"{type(v).__name__} ({v!r})")
                values.append(self._local_value(str(name), v))
            if not values:
                missing.append(str(name))
                continue
            out[str(name)] = values if isinstance(value, (list, tuple)) else values[0]
        if missing:
            raise ValueError(f"Missing input value(s) for parameter(s): {', '.join(sorted(missing))}")
        bad = []
        for n, value in self._vip_settings(out).items():
            for v in _flatten(value):
                problem = None if self._is_local_path(v) else rules.value_problem(v)
                if problem:
                    bad.append(f"{n}={str(v)!r} ({problem})")
        if bad:
            raise ValueError("Invalid character(s) in input value(s) for parameter(s): "
                             + "; ".join(bad) + ". VIP accepts only letters, digits, spaces and "
                             ". , - + @ / _ ( ) : [ ] ? & =")
        return out

    def _vip_value(self, v: Any) -> Any:
        """Hook: a kept settings value in the form sent to VIP."""
        return v

    def _vip_settings(self, settings: dict) -> dict:
        return {name: ([self._vip_value(v) for v in value] if isinstance(value, list)
                       else self._vip_value(value))
                for name, value in settings.items()}

    # ---- backup ------------------------------------------------------------------------------
    @property
    def _backup_path(self) -> Path:
        raise NotImplementedError(f"{type(self).__name__} keeps no local backup")

    @property
    def _vip_backup_path(self) -> str:
        return str(PurePosixPath(str(self.vip_output_dir)) / self._SAVE_FILE)

    def _backup_dict(self) -> dict:
        def s(v):
            return None if v is None else str(v)

        out = {}
        for key in self._BACKUP_KEYS:
            if key == "input_settings":
                out[key] = self.input_settings
            elif key == "workflows":
                out[key] = self._workflows
            else:
                out[key] = s(getattr(self, key))
        return out

    def _save(self, announce: bool = False) -> None:
        location = type(self)._BACKUP_LOCATION
        if location is None:
            return
        if location == "vip":
            where = f"{self._vip_backup_path} (on VIP)"
            self._meta = save_backup_vip(self.client, self._vip_backup_path, self.session_name,
                                         self._backup_dict(), self._meta)
        else:
            where = str(self._backup_path)
            self._meta = save_backup(self._backup_path, self.session_name, self._backup_dict(),
                                     self._meta)
        if announce:
            self._info(f">> Session saved in: {where}")
        else:
            logger.debug("session %s saved in %s", self.session_name, where)

    def _saved_on_vip(self) -> dict | None:
        """The backup kept on VIP (``backup_location="vip"``), or None."""
        if type(self)._BACKUP_LOCATION != "vip" or self.vip_output_dir is None:
            return None
        return read_backup_vip(self.client, self._vip_backup_path)

    def _read_backup(self, path: Path | str, name_given: str | None, data: dict | None = None) -> dict:
        data = read_backup(path) if data is None else data
        if data is None:
            raise ValueError(f"Unreadable session backup: {path}")
        missing = [k for k in self._BACKUP_KEYS if k not in data]
        if missing:
            raise TypeError(f"Session backup {path} lacks key(s): {', '.join(missing)}")
        saved = data["session_name"]
        if name_given is not None and saved is not None and saved != name_given:
            raise ValueError(f"The backup {path} holds session '{saved}', not '{name_given}'.")
        return data

    def _restore_common(self, data: dict, name_given: str | None) -> None:
        """Restore the keys every session class has (called with the properties unlocked)."""
        self.session_name = data["session_name"] or name_given
        self.pipeline_id = None
        self._values["pipeline_id"] = data["pipeline_id"]
        self.vip_output_dir = data["vip_output_dir"]
        settings = data["input_settings"]
        self._settings_raw = dict(settings) if isinstance(settings, dict) else None
        self._values["input_settings"] = True if self._settings_raw is not None else None
        self._workflows = {k: dict(v) if isinstance(v, dict) else {"status": str(v), "outputs": []}
                           for k, v in (data["workflows"] or {}).items()}
        self._meta = meta_of(data)

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
            return core.validate_settings(self._pipeline(), settings,
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
        self._info(f"Pipeline: {self.pipeline_id}\n----------------\nParameter checks")
        values = self._check_input_settings(location="vip")
        self._info("  --> OK")
        self.client.mkdir(str(self.vip_output_dir), parents=True)
        self._meta["finished"] = False
        self._info(f"----------------\nLaunching {nb_runs} execution(s) on VIP")
        # not adopted: executions whose outputs finish() removed, or that ran on input files
        # upload_inputs() has changed since
        exclude = {w for w, wf in self._workflows.items() if wf.get("status") == "Removed"}
        exclude |= set(self._meta.get("superseded") or [])
        listing = self.client.executions()
        done = 0
        try:
            for _ in range(int(nb_runs)):
                ex, adopted = core.launch_or_adopt(
                    self.client, self.pipeline_id, values, str(self.vip_output_dir),
                    self.session_name, executions=listing, exclude=exclude)
                exclude.add(ex.identifier)
                wf = self._workflows.setdefault(ex.identifier, {"status": None, "start": None,
                                                                "outputs": []})
                wf["status"] = ex.status
                wf["start"] = start_string(ex.start_date) or wf.get("start") or \
                    f"{datetime.now():%Y/%m/%d %H:%M:%S}"
                done += 1
                self._save()
                what = "adopted (already on VIP; finish() the session to launch anew)" if adopted \
                    else "launched"
                self._info(f"  [{done}/{nb_runs}] {ex.identifier} ({ex.status}): {what}")
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
        import time

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

    # ---- display -----------------------------------------------------------------------------
    @classmethod
    @vip_errors
    def show_pipeline(cls, pipeline_id: str | None = None) -> None:
        """Log the available pipelines (no argument or a partial name) or one pipeline's
        parameters (a unique match)."""
        if not cls._VERBOSE:
            return
        client = cls._default_client
        if client is None:
            raise TypeError(f"Call {cls.__name__}.init() first.")
        ensure_log_handler()
        ids = sorted(cls._AVAILABLE_PIPELINES) or sorted(p.identifier for p in client.pipelines())
        if pipeline_id:
            exact = [p for p in ids if p == pipeline_id]
            ids = exact or [p for p in ids if pipeline_id.lower() in p.lower()]
        if not ids:
            logger.info(f"(!) No pipeline found for pattern '{pipeline_id}'.\n"
                        "    You may need to join the group of this application on the VIP portal.")
            return
        if len(ids) > 1:
            logger.info("Available pipelines:\n" + "\n".join(f"\t{p}" for p in ids))
            return
        logger.info(pipeline_text(client.pipeline(ids[0])))

    def display(self):
        """Log the session's backup data (``key: <json>`` lines)."""
        line = "-" * 50
        body = "\n".join(f"{k}: {json.dumps(v, indent=2)}" for k, v in self._backup_dict().items())
        self._info(f"{line}\n{body}\n{line}")
        return self

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(session_name={self.session_name!r}, "
                f"pipeline_id={self.pipeline_id!r}, output_dir={str(self.output_dir)!r})")



"""Executions: launch or adopt (never a duplicate), poll many with one request per round, wait
with backoff, explain a failure."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import PurePosixPath
from collections.abc import Callable, Container, Iterable, Mapping
from typing import Any

from vip_smk import rules
from vip_smk.api.client import CapacityError, Execution, InvalidInput, NotFound, ServerError, TransportError, ApiClient, VipError

log = logging.getLogger("vip_smk.core")

__all__ = ["adoptable_on_vip", "failure_detail", "find_adoptable", "launch_or_adopt", "poll",
           "results_on_vip", "same_inputs", "wait"]



def _norm(v: Any) -> Any:
    """A value in a comparable form: VIP may echo numbers as strings, booleans as text and
    lists joined with ``@@``."""
    if isinstance(v, (list, tuple)):
        items = tuple(_norm(x) for x in v)
        return items[0] if len(items) == 1 else items
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(float(v))
    text = str(v).strip()
    if "@@" in text:
        return _norm(text.split("@@"))
    if text.lower() in ("true", "false"):
        return text.lower()
    try:
        return repr(float(text))
    except ValueError:
        return text


def same_inputs(sent: Mapping[str, Any], echoed: Mapping[str, Any] | None) -> bool:
    """Whether an execution's ``inputValues`` (as VIP echoes them) are the values ``sent``.
    Compared on the keys sent (VIP may add the defaults it filled in)."""
    if not echoed:
        return not sent
    return all(k in echoed and _norm(v) == _norm(echoed[k]) for k, v in sent.items())


def find_adoptable(executions: Iterable[Execution], *, name: str, pipeline_id: str,
                   values: Mapping[str, Any], exclude: Container[str] = (),
                   started_after: int | None = None,
                   include_failed: bool = False) -> Execution | None:
    """The execution already on VIP that launching ``name`` would duplicate: same name,
    pipeline and input values, not in ``exclude``, started at or after ``started_after`` (ms)
    when given, running or Finished (any status with ``include_failed``). Newest first."""
    found = []
    for e in executions:
        if e.name != name or e.identifier in exclude:
            continue
        if e.pipeline_identifier is not None and e.pipeline_identifier != pipeline_id:
            continue
        if started_after is not None and e.start_date is not None and e.start_date < started_after:
            continue
        if not (include_failed or e.is_running or e.status == rules.SUCCESS):
            continue
        if not same_inputs(values, e.input_values):
            continue
        found.append(e)
    return max(found, key=lambda e: e.start_date or 0) if found else None


def adoptable_on_vip(client: ApiClient, *, name: str, pipeline_id: str, values: Mapping[str, Any],
                     executions: Iterable[Execution] | None = None, exclude: Container[str] = (),
                     started_after: int | None = None,
                     include_failed: bool = False) -> Execution | None:
    """:func:`find_adoptable` over VIP's listing (``executions`` if already fetched, else one
    ``GET executions``); an entry of that name whose listing lacks the inputs, pipeline or
    start date is read in full (``GET executions/{id}``). A Finished execution is adopted only
    if its returned files are still on VIP (:func:`results_on_vip`: one listing of its results
    folder), else the next candidate is tried: a name used again after ``finish()`` (in another
    folder, whose backup knows nothing of the first) launches anew."""
    listing = client.executions() if executions is None else executions
    full = []
    for e in listing:
        if e.name != name or e.identifier in exclude:
            continue
        if not e.input_values or e.pipeline_identifier is None or e.start_date is None:
            try:
                e = client.execution(e.identifier)
            except (NotFound, InvalidInput) as exc:
                if not _unknown_execution(exc):
                    raise
                continue
        full.append(e)
    gone: set[str] = set()
    while True:
        ex = find_adoptable(full, name=name, pipeline_id=pipeline_id, values=values,
                            exclude=_Union(exclude, gone), started_after=started_after,
                            include_failed=include_failed)
        if ex is None or ex.status != rules.SUCCESS or results_on_vip(client, ex):
            return ex
        log.info("%s: execution %s is Finished but its results are no longer on VIP: not adopted",
                 name, ex.identifier)
        gone.add(ex.identifier)


class _Union:
    """Membership in either of two containers."""

    def __init__(self, a: Container[str], b: Container[str]) -> None:
        self._a, self._b = a, b

    def __contains__(self, item: object) -> bool:
        return item in self._a or item in self._b


def results_on_vip(client: ApiClient, execution: Execution) -> bool:
    """Whether a Finished execution's returned files are all still on VIP (a session that
    ``finish()``-ed removed them; adopting it would download nothing). One listing of its
    results folder (one per folder if they are several); the files themselves are not read.
    An execution that returned nothing has nothing to lose: True."""
    paths = execution.output_paths
    if not paths:
        try:
            paths = client.execution(execution.identifier).output_paths
        except (NotFound, InvalidInput) as exc:
            if not _unknown_execution(exc):
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
            present = {PurePosixPath(i.path).name for i in client.list(folder)}
        except NotFound:
            return False
        if not names <= present:
            return False
    return True


def launch_or_adopt(client: ApiClient, pipeline_id: str, values: Mapping[str, Any],
                    results_location: str, name: str, *,
                    executions: list[Execution] | None = None, exclude: Container[str] = (),
                    started_after: int | None = None,
                    wait_for_slot: float | None = None,
                    on_wait: Callable[[CapacityError], None] | None = None) -> tuple[Execution, bool]:
    """Launch ``pipeline_id`` on ``values`` unless VIP already has that execution (see
    :func:`find_adoptable`): never a duplicate. Returns ``(execution, adopted)``. The POST
    itself is never duplicated either (:meth:`ApiClient.launch` adopts a lost reply).

    ``wait_for_slot`` (seconds, the longest pause): when VIP refuses the launch because the
    account runs its maximum of executions (error 2001; a new account runs 1), wait for a slot
    and try again (adoption checked again first) instead of raising :class:`CapacityError`;
    ``on_wait(error)`` is called once when the wait starts (to tell the user)."""
    delay = 1.0
    said = False
    while True:
        ex = adoptable_on_vip(client, name=name, pipeline_id=pipeline_id, values=values,
                              executions=executions, exclude=exclude, started_after=started_after)
        if ex is not None:
            log.info("%s: execution %s of %s already on VIP (%s): adopted, not launched again",
                     name, ex.identifier, pipeline_id, ex.status)
            return ex, True
        try:
            return client.launch(pipeline_id, dict(values), results_location, name), False
        except CapacityError as exc:
            if wait_for_slot is None:
                raise
            if not said:
                if on_wait is not None:
                    on_wait(exc)
                else:
                    log.warning("%s: VIP runs no more executions for this account now (%s): "
                                "waiting for a slot", name, exc)
                said = True
        time.sleep(delay)
        delay = min(float(wait_for_slot), delay * 2)
        executions = None  # listed again: an execution of this name may have appeared


# --------------------------------------------------------------------------------------------
# Poll and wait
# --------------------------------------------------------------------------------------------


def _unknown_execution(exc: VipError) -> bool:
    """VIP answers an unknown execution id with 8015 "invalid execution id" (or a 404)."""
    return isinstance(exc, NotFound) or exc.code == 8015


def poll(client: ApiClient, ids: Iterable[str]) -> dict[str, Execution]:
    """The current state of executions ``ids``, in their order: ONE request per call (``GET
    executions``; ``GET executions/{id}`` for a single id), plus ``GET executions/{id}`` only
    for ids the listing lacks (VIP lists at most 500). Ids unknown to VIP are left out."""
    ids = list(dict.fromkeys(str(i) for i in ids))
    if not ids:
        return {}
    listed: dict[str, Execution] = {}
    if len(ids) > 1:
        listed = {e.identifier: e for e in client.executions()}
    out: dict[str, Execution] = {}
    for eid in ids:
        ex = listed.get(eid)
        if ex is None:
            try:
                ex = client.execution(eid)
            except (NotFound, InvalidInput) as exc:
                if not _unknown_execution(exc):
                    raise
                log.debug("execution %s is unknown to VIP (deleted?)", eid)
                continue
        out[eid] = ex
    return out


def wait(client: ApiClient, ids: Iterable[str], *, refresh: float = 30, first: float = 1.0,
         timeout: float | None = None,
         on_round: Callable[[dict[str, Execution]], None] | None = None,
         retry_errors: bool = False, stop: threading.Event | None = None) -> dict[str, Execution]:
    """Poll ``ids`` (one :func:`poll` per round, over those still running) until every one is
    over; returns their last states. The first round is immediate, the next after ``first``
    seconds, then the pause doubles up to ``refresh``. After ``timeout`` seconds it returns
    what it has (some may still be running). ``on_round(states)`` is called after each round.
    ``retry_errors``: a round that cannot reach VIP (transport or server error) is logged and
    tried again later instead of raising (runs that last days outlive outages). ``stop``: when
    set, returns what it has at once (the executions keep running on VIP)."""
    ids = list(dict.fromkeys(str(i) for i in ids))
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    delay = max(0.0, min(float(first), float(refresh)))
    states: dict[str, Execution] = {}
    pending = list(ids)
    while True:
        try:
            states.update(poll(client, pending))
        except (TransportError, ServerError) as exc:
            if not retry_errors:
                raise
            log.warning("cannot reach VIP (%s): trying again in %.0f s", exc, delay)
        else:
            pending = [i for i in pending if i in states and states[i].is_running]
            if on_round is not None:
                on_round(dict(states))
            if not pending:
                return states
        pause = delay
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return states
            pause = min(pause, left)
        if stop is None:
            time.sleep(pause)
        elif stop.wait(pause):
            return states
        delay = min(float(refresh), max(delay * 2, 0.1))


def failure_detail(client: ApiClient, execution: Execution, lines: int = 20) -> str:
    """Why an execution failed, for a user: its failed jobs' exit messages and the last
    ``lines`` lines of VIP's stderr (empty when VIP gives nothing)."""
    parts = []
    for jid, job in (execution.jobs or {}).items():
        if isinstance(job, Mapping) and rules.job_counts([job]).failed:
            code, message = job.get("exitCode"), job.get("exitMessage")
            why = f"exit code {code}" if code is not None else ""
            if message and str(message) != why:
                why = f"{why}: {message}" if why else str(message)
            parts.append(f"job {jid}: {job.get('status')}" + (f" ({why})" if why else ""))
    try:
        err = client.stderr(execution.identifier)
    except VipError as exc:
        log.debug("stderr of %s: %s", execution.identifier, exc)
        err = ""
    tail = [ln for ln in err.splitlines() if ln.strip()][-lines:] if lines else []
    if tail:
        parts.append("stderr (last lines):\n    " + "\n    ".join(tail))
    return "\n".join(parts)

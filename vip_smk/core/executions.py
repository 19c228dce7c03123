"""Executions: launch or adopt (never a duplicate), poll many with one request per round, wait
with backoff, explain a failure."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Container, Iterable, Mapping
from typing import Any

from vip_smk import rules
from vip_smk.api import calls
from vip_smk.api.adoption import _unknown_execution, find_adoptable, same_inputs
from vip_smk.api.client import (
    ApiClient,
    CapacityError,
    Execution,
    InvalidInput,
    NotFound,
    ServerError,
    TransportError,
    VipError,
)
from vip_smk.api.wire import Blocking, Sleep

log = logging.getLogger("vip_smk.core")

__all__ = ["adoptable_on_vip", "failure_detail", "find_adoptable", "launch_or_adopt", "poll",
           "results_on_vip", "same_inputs", "wait"]



def adoptable_on_vip(client: ApiClient, **kw: Any) -> Execution | None:
    """The execution already on VIP that launching would duplicate (`vip_smk.api.calls.adoptable`:
    name, pipeline, inputs; a Finished one only with its results still on VIP)."""
    return client.run_flow(calls.adoptable(client, **kw))


def results_on_vip(client: ApiClient, execution: Execution) -> bool:
    """Whether a Finished execution's returned files are all still on VIP
    (`vip_smk.api.calls.results_present`: one listing per results folder)."""
    return client.run_flow(calls.results_present(client, execution))


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


def poll(client: ApiClient, ids: Iterable[str]) -> dict[str, Execution]:
    """The current state of executions ``ids``, in their order: ONE request per call (``GET
    executions``; ``GET executions/{id}`` for a single id), plus ``GET executions/{id}`` only
    for ids the listing lacks (VIP lists at most 500). Ids unknown to VIP are left out."""
    return client.run_flow(poll_flow(client, ids))


def poll_flow(client, ids: Iterable[str]) -> calls.Flow[dict[str, Execution]]:
    """:func:`poll` as a flow (run by either client)."""
    ids = list(dict.fromkeys(str(i) for i in ids))
    if not ids:
        return {}
    listed: dict[str, Execution] = {}
    if len(ids) > 1:
        listed = {e.identifier: e for e in (yield from calls.executions(client))}
    out: dict[str, Execution] = {}
    for eid in ids:
        ex = listed.get(eid)
        if ex is None:
            try:
                ex = yield from calls.execution(client, eid)
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
    return client.run_flow(wait_flow(client, ids, refresh=refresh, first=first, timeout=timeout,
                                     on_round=on_round, retry_errors=retry_errors, stop=stop))


def wait_flow(client, ids: Iterable[str], *, refresh: float = 30, first: float = 1.0,
              timeout: float | None = None,
              on_round: Callable[[dict[str, Execution]], None] | None = None,
              retry_errors: bool = False, stop: threading.Event | None = None) -> calls.Flow[dict[str, Execution]]:
    """:func:`wait` as a flow (run by either client)."""
    ids = list(dict.fromkeys(str(i) for i in ids))
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    delay = max(0.0, min(float(first), float(refresh)))
    states: dict[str, Execution] = {}
    pending = list(ids)
    while True:
        try:
            states.update((yield from poll_flow(client, pending)))
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
            yield Sleep(pause)
        elif (yield Blocking(stop.wait, (pause,))):
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

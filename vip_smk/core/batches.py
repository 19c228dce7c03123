"""Many jobs of one pipeline as ONE VIP execution with list inputs (a batch), and each job's
results found again in it: the steps behind ``--executor vip --vip-batch-size``.

VIP runs one job per element of a File list; ``vip:dot`` lists are paired element by element,
every other list crossed (:func:`vip_smk.boutiques.job_values`). Jobs that share the pipeline
and every other value become one execution when the inputs that differ between them can be
listed so that VIP makes exactly one job per member: the ``vip:dot`` inputs (paired), or, in a
pipeline without ``vip:dot``, one File input (the first the job names; the others must then be
equal). Which VIP job is whose is decided by content (the member's values found among the
execution's job values), and each member's results by the names the descriptor predicts for
those values (:func:`vip_smk.core.expected_outputs`, :func:`vip_smk.core.assign_results`):
never by position or order of completion.

Pure functions, plus :func:`find_batch_job` (one listing already fetched, full reads of
entries lacking their inputs) and :func:`copy_results` (VIP has no server-side copy: each
result is downloaded once and uploaded once).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from vip_smk import boutiques, rules
from vip_smk.api.client import ApiClient, Execution, InvalidInput, NotFound, PathInfo, VipError
from vip_smk.core.executions import _unknown_execution, results_on_vip, same_inputs
from vip_smk.core.outputs import ExpectedOutput, assign_results, expected_outputs
from vip_smk.transfer import scheduling

K = TypeVar("K")

log = logging.getLogger("vip_smk.core")

__all__ = ["BATCH_MARK", "MemberResults", "batch_name", "batch_values", "copy_results",
           "echoed_values", "find_batch_job", "job_log", "listed_inputs", "member_jobs",
           "member_results", "share_key"]

BATCH_MARK = "batch"  # execution names: <rule>-batch<N>-<hash>
_NAME_UNSAFE = re.compile(r"[^0-9A-Za-z_-]+")
_LOG_HEAD = re.compile(r"^==> job (\S+) \(([^)]*)\) <==$", re.M)


def listed_inputs(descriptor: Mapping[str, Any] | None, values: Mapping[str, Any],
                  file_inputs: Sequence[str]) -> tuple[str, ...] | None:
    """The inputs a batch of jobs like this one lists (one element per member), or None when
    the job cannot share an execution: no descriptor (no ``vip:dot``, no output names known),
    no output ``path-template``, a list value already (one job of its own per element), or an
    input the descriptor takes as a whole list (Boutiques ``list``)."""
    if not descriptor:
        return None
    if not any(isinstance(o, Mapping) and o.get("path-template")
               for o in descriptor.get("output-files") or []):
        return None
    inputs = boutiques.inputs_of(descriptor)
    dot = [k for k in boutiques.dot_inputs(descriptor) if k in values]
    chosen = dot or [k for k in file_inputs if k in values][:1]
    if not chosen:
        return None
    for k in chosen:
        v = values.get(k)
        if k not in inputs or inputs[k].get("list") or v is None or isinstance(v, (list, tuple)):
            return None
    return tuple(chosen)


def _canonical(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_canonical(x) for x in v]
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def share_key(pipeline_id: str, rule: str, values: Mapping[str, Any],
              listed: Sequence[str]) -> str:
    """Jobs of equal keys may share one execution: same rule, pipeline, listed inputs and
    every other value."""
    rest = {str(k): _canonical(v) for k, v in sorted(values.items()) if k not in listed}
    return json.dumps([rule, pipeline_id, list(listed), rest], sort_keys=True)


def batch_values(members: Sequence[Mapping[str, Any]], listed: Sequence[str]) -> dict[str, Any]:
    """The values of one execution running ``members`` (their values, in this order): the
    listed inputs as lists, every other value the members' common one."""
    out = dict(members[0])
    for k in listed:
        out[k] = [m[k] for m in members]
    return out


def batch_name(rule: str, member_names: Iterable[str]) -> str:
    """The execution name of a batch: from its members' own names (each a hash of its
    pipeline, values and results folder), so the same jobs always give the same name."""
    names = sorted(member_names)
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:10]
    readable = _NAME_UNSAFE.sub("_", rule).strip("_-")[:60] or "rule"
    return f"{readable}-{BATCH_MARK}{len(names)}-{digest}"


def member_jobs(descriptor: Mapping[str, Any], values: Mapping[str, Any],
                members: Sequence[Mapping[str, Any]]) -> list[int | None]:
    """The VIP job number (from 1) of each member in the execution of ``values``: the job
    whose values are the member's (compared as VIP echoes them), None if none is."""
    jobs = boutiques.job_values(descriptor, values)
    out: list[int | None] = []
    for m in members:
        found = None
        for n, jv in enumerate(jobs, start=1):
            if same_inputs(m, jv):
                found = n
                break
        out.append(found)
    return out


def echoed_values(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """An execution's ``inputValues`` as sent: VIP may echo a list joined with ``@@``."""
    out: dict[str, Any] = {}
    for k, v in (values or {}).items():
        out[k] = v.split("@@") if isinstance(v, str) and "@@" in v else v
    return out


def find_batch_job(client: ApiClient, executions: Iterable[Execution], *, rule: str,
                   pipeline_id: str, descriptor: Mapping[str, Any], values: Mapping[str, Any],
                   started_after: int | None = None,
                   has_results: Callable[[Execution], bool] | None = None,
                   ) -> tuple[Execution, int] | None:
    """A batch execution already on VIP that runs a job of ``values`` (newest first):
    ``(execution, its job number)``. Adopted: a batch still running; a Finished one whose
    results are still on VIP; a failed one whose job for these values Completed (VIP's
    ``jobs``), the others of that batch having failed. Started before ``started_after`` (ms,
    the newest input): the inputs changed since, not adopted. ``has_results(execution)``: whether
    an ended one still has this job's results (default :func:`results_on_vip`: all of them)."""
    prefix = _NAME_UNSAFE.sub("_", rule).strip("_-")[:60] + f"-{BATCH_MARK}"
    found: list[tuple[Execution, int]] = []
    for e in executions:
        if not (e.name or "").startswith(prefix):
            continue
        if not e.input_values or e.pipeline_identifier is None or e.start_date is None:
            try:
                e = client.execution(e.identifier)
            except (NotFound, InvalidInput) as exc:
                if not _unknown_execution(exc):
                    raise
                continue
        if e.pipeline_identifier != pipeline_id:
            continue
        if started_after is not None and e.start_date is not None and e.start_date < started_after:
            continue
        sent = echoed_values(e.input_values)
        try:
            [job] = member_jobs(descriptor, sent, [values])
        except (TypeError, ValueError):
            continue
        if job is None:
            continue
        if not e.is_running and e.status != rules.SUCCESS:
            state = (e.jobs or {}).get(str(job))
            if not (isinstance(state, Mapping) and state.get("status") == "Completed"):
                continue
        found.append((e, job))
    for e, job in sorted(found, key=lambda f: f[0].start_date or 0, reverse=True):
        if e.is_running or (has_results(e) if has_results else results_on_vip(client, e)):
            return e, job
        log.info("%s: batch %s ended but its results are no longer on VIP: not adopted",
                 rule, e.identifier)
    return None


@dataclass
class MemberResults:
    """One member's share of a batch's results: ``files`` (VIP paths in the batch's results
    folder -> the path relative to the member's own results folder), ``missing`` (names the
    descriptor predicts and VIP did not write) and ``job`` (its VIP job number)."""

    job: int
    files: dict[str, str]
    missing: list[str]


def member_results(descriptor: Mapping[str, Any], values: Mapping[str, Any],
                   results_location: str, returned: Iterable[str],
                   jobs: Sequence[int]) -> dict[int, MemberResults]:
    """Job number -> its results, from the paths the batch execution returned (under
    ``results_location/<dated folder>/``: ``name`` or ``job<N>/name``). Each lands in the
    member's folder as ``<dated folder>/<name>``: the layout of an execution of its own."""
    root = PurePosixPath(results_location.rstrip("/"))
    by_folder: dict[str, list[str]] = {}
    for p in returned:
        try:
            rel = PurePosixPath(str(p)).relative_to(root)
        except ValueError:
            continue
        if len(rel.parts) >= 2:
            by_folder.setdefault(rel.parts[0], []).append(str(PurePosixPath(*rel.parts[1:])))
    expected: list[ExpectedOutput] = expected_outputs(descriptor, values)
    out: dict[int, MemberResults] = {}
    for n in jobs:
        mine = [e for e in expected if e.job == n]
        files: dict[str, str] = {}
        found: set[str] = set()
        for folder, rels in sorted(by_folder.items()):
            assigned = assign_results(expected, rels).get(n, [])
            for path in assigned:
                name = PurePosixPath(path).name
                files[str(root / folder / path)] = f"{folder}/{name}"
                found.add(name)
        missing = [e.name for e in mine if not e.optional and e.name not in found]
        out[n] = MemberResults(n, files, missing)
    return out


def job_log(text: str, job: int) -> str:
    """Job ``job``'s part of an execution's stdout / stderr when VIP gives them by job
    (``==> job N (status) <==`` sections, as the local VIP); else the whole text."""
    heads = list(_LOG_HEAD.finditer(text or ""))
    for i, m in enumerate(heads):
        if m.group(1) == str(job):
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            return text[m.end():end].strip("\n")
    return text or ""


def copy_results(client: ApiClient, groups: Mapping[K, tuple[str, Sequence[tuple[str, str]]]],
                 *, sizes: Mapping[str, int] | None = None, workers: int | None = None,
                 ) -> tuple[int, dict[K, dict[str, list[PathInfo]]], dict[K, VipError]]:
    """Copy VIP files through this machine (VIP's API has no server-side copy): each group
    ``key -> (its folder, [(source, destination under that folder)])`` is one member's results.
    Each file is downloaded once (to a temporary file; ``sizes``, from a listing, spare the
    size request) and uploaded once; the folder and its sub-folders are created first (one
    request each where their parent exists), then listed (one request each: the dates VIP gave
    the copies). Groups run in parallel (the client's pool). Returns the bytes copied, each
    copied group's listings (folder -> entries) and the error of each group that failed."""
    sizes = sizes or {}

    def one(tmp: str, n: int, folder: str, pairs: Sequence[tuple[str, str]]):
        dirs = sorted({str(PurePosixPath(dest).parent) for _, dest in pairs} | {folder},
                      key=lambda d: (d.count("/"), d))  # parents first
        for d in dirs:
            client.mkdir(d, parents=True, known_missing=True)
        total = 0
        for i, (src, dest) in enumerate(pairs):
            local = Path(tmp) / f"{n}-{i}-{PurePosixPath(src).name}"
            client.download(src, local, size=sizes.get(src), resume=False)
            total += local.stat().st_size
            client.upload(local, dest)
            local.unlink()
        return total, {d: client.list(d) for d in dirs}

    total = 0
    listings: dict[K, dict[str, list[PathInfo]]] = {}
    failed: dict[K, VipError] = {}
    with tempfile.TemporaryDirectory(prefix="vip-smk-copy-") as tmp, \
            ThreadPoolExecutor(scheduling.pool_size(client, workers),
                               thread_name_prefix="vip-copy") as ex:
        futures = {key: ex.submit(one, tmp, n, folder, pairs)
                   for n, (key, (folder, pairs)) in enumerate(groups.items())}
        for key, fut in futures.items():
            try:
                copied, listings[key] = fut.result()
                total += copied
            except VipError as exc:
                failed[key] = exc
    return total, listings, failed

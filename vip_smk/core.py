"""The procedure's steps, each in one place: validate -> launch or adopt -> poll / wait ->
download -> remove. `VipSession`, the study's rules and the executor plugin are faces over
these functions (docs/architecture.md section 4); none re-implements them.

Every function takes the :class:`~vip_smk.client.VipClient` to talk through; nothing here
keeps state between calls.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tarfile
import time
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from . import rules
from .client import (
    Execution,
    InvalidInput,
    NotFound,
    PathInfo,
    Pipeline,
    ServerError,
    TransportError,
    VipClient,
    VipError,
)

log = logging.getLogger(__name__)

__all__ = [
    "Problem",
    "ResultsReport",
    "SettingsError",
    "adoptable_on_vip",
    "dot_inputs_of",
    "download_results",
    "extract_archive",
    "failure_detail",
    "find_adoptable",
    "launch_or_adopt",
    "poll",
    "remove_remote",
    "results_layout",
    "same_inputs",
    "validate_settings",
    "vip_file_check",
    "wait",
]

# --------------------------------------------------------------------------------------------
# Input settings
# --------------------------------------------------------------------------------------------


class Problem(str):
    """One problem of a :class:`SettingsError`: the text, plus ``.kind`` (``unknown``,
    ``missing``, ``empty``, ``type``, ``chars``, ``file``, ``dot``) and ``.param``."""

    kind: str
    param: str | None

    def __new__(cls, text: str, kind: str, param: str | None = None) -> "Problem":
        obj = super().__new__(cls, text)
        obj.kind = kind
        obj.param = param
        return obj


class SettingsError(InvalidInput, ValueError):
    """Input settings VIP would refuse. ``.problems`` lists every problem (each a
    :class:`Problem`); ``str()`` names ``where``, the pipeline and each problem, one a line."""

    def __init__(self, problems: Iterable[str], *, where: str = "", pipeline_id: str = ""):
        self.problems = [p if isinstance(p, Problem) else Problem(str(p), "other") for p in problems]
        self.where = where
        self.pipeline_id = pipeline_id
        head = f"{where}: " if where else ""
        n = len(self.problems)
        text = (f"{head}input settings for {pipeline_id or 'the pipeline'}: {n} problem(s)\n  - "
                + "\n  - ".join(self.problems))
        super().__init__(text, call="validate_settings", target=pipeline_id or None)

    @property
    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}


_INT = re.compile(r"[+-]?\d+")
_CHARS_HINT = "VIP accepts only letters, digits, spaces and . , - + @ / _ ( ) : [ ] ? & ="


def _convert(ptype: str, v: Any) -> tuple[Any, str | None]:
    """(value to send, problem) for one value of a parameter of VIP type ``ptype``."""
    if isinstance(v, os.PathLike):
        v = os.fspath(v)
    if isinstance(v, (list, tuple, dict, set)) or v is None:
        return v, "is not a single value"
    if ptype in ("Boolean", "Flag"):
        if isinstance(v, bool):
            return ("true" if v else "false"), None
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            return v.strip().lower(), None
        return v, "is not true or false"
    if ptype in ("Int64", "Integer"):
        if isinstance(v, bool):
            return v, "is not an integer"
        if isinstance(v, int):
            return v, None
        if isinstance(v, float) and v.is_integer():
            return int(v), None
        if isinstance(v, str) and _INT.fullmatch(v.strip()):
            return int(v.strip()), None
        return v, "is not an integer"
    if ptype in ("Double", "Number"):
        try:
            if isinstance(v, bool):
                raise ValueError
            number = float(v)
            if not math.isfinite(number):
                raise ValueError
        except (TypeError, ValueError):
            return v, "is not a number"
        return (v if isinstance(v, (int, float)) else number), None
    if ptype == "File" and not isinstance(v, str):
        return v, "is not a file path"
    if not isinstance(v, (str, int, float)):
        return v, f"is not a {ptype or 'String'} value"
    return v, None


def _text(v: Any) -> str:
    """A value as VIP reads it (JSON text for numbers and booleans)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v if isinstance(v, str) else str(v)


def dot_inputs_of(pipeline: Pipeline | Mapping[str, Any]) -> list[str]:
    """The ``vip:dot`` group of a pipeline: from a Boutiques descriptor (``custom.vip:dot``)
    or a :class:`Pipeline` whose JSON carried one (VIP's ``GET pipelines/{id}`` does not: pass
    ``dot_inputs`` to :func:`validate_settings` then)."""
    data = pipeline.extra if isinstance(pipeline, Pipeline) else pipeline
    custom = data.get("custom") if isinstance(data.get("custom"), Mapping) else {}
    dot = custom.get("vip:dot", data.get("vip:dot")) or []
    return [str(x) for x in dot] if isinstance(dot, (list, tuple)) else []


def validate_settings(pipeline: Pipeline, settings: Mapping[str, Any], *, where: str = "",
                      check_file: Callable[[str], str | None] | None = None,
                      dot_inputs: Iterable[str] | None = None) -> dict[str, Any]:
    """Check input settings against a pipeline's parameters as VIP would, and return the input
    values to send (Booleans as ``"true"``/``"false"``, integers as ``int``, lists kept).

    Checked: unknown parameter names; required parameters (not optional, no default);
    empty values; types (``Boolean``/``Flag``, ``Int64``, ``Double``/``Number``, ``String``,
    ``File``; a list = one job per element, each element checked); the characters VIP accepts;
    File values through ``check_file(value) -> problem or None`` (e.g. :func:`vip_file_check`);
    lists of the ``vip:dot`` group (``dot_inputs``, else :func:`dot_inputs_of`) must have equal
    lengths. Raises one :class:`SettingsError` listing every problem, naming ``where``.
    """
    pid = pipeline.identifier
    params = {p.name: p for p in pipeline.parameters
              if p.name != "results-directory" and not p.is_returned_value}
    problems: list[Problem] = []

    def add(kind: str, param: str, text: str) -> None:
        problems.append(Problem(text, kind, param))

    for name in sorted(set(map(str, settings)) - set(params)):
        add("unknown", name, f"Unknown input parameter: {name}. Valid parameters: "
                             f"{', '.join(sorted(params))}")
    for name, p in sorted(params.items()):
        if not p.is_optional and p.default_value in rules.NO_DEFAULT and name not in settings:
            add("missing", name, f"Missing input parameter: {name} (required by {pid})")
    out: dict[str, Any] = {}
    for name, value in settings.items():
        name = str(name)
        if name not in params:
            continue
        ptype = str(params[name].type or "String")
        is_list = isinstance(value, (list, tuple))
        items = list(value) if is_list else [value]
        if not items or any(v is None or (isinstance(v, str) and not v.strip()) for v in items):
            add("empty", name, f"Missing input value for parameter: {name}")
            continue
        values = []
        for v in items:
            c, problem = _convert(ptype, v)
            if problem:
                add("type", name, f"{name} ({ptype}): {v!r} {problem}")
                continue
            chars = rules.value_problem(_text(c))
            if chars:
                add("chars", name, f"{name}={_text(c)!r} {chars}; {_CHARS_HINT}")
            elif ptype == "File" and check_file is not None:
                missing = check_file(c)
                if missing:
                    add("file", name, f"{name} (File): {missing}")
            values.append(c)
        out[name] = values if is_list else values[0] if values else None
    group = list(dot_inputs) if dot_inputs is not None else dot_inputs_of(pipeline)
    lengths = {n: len(out[n]) for n in group if isinstance(out.get(n), list)}
    if len(set(lengths.values())) > 1:
        add("dot", ",".join(lengths), "vip:dot parameters need lists of equal length: "
            + ", ".join(f"{n} ({k})" for n, k in lengths.items()))
    if problems:
        raise SettingsError(problems, where=where, pipeline_id=pid)
    return out


def vip_file_check(client: VipClient) -> Callable[[str], str | None]:
    """A ``check_file`` for :func:`validate_settings`: the value must be a file on VIP. One
    ``action=list`` per VIP directory, whatever the number of files (cached by the checker)."""
    listings: dict[str, dict[str, bool]] = {}

    def check(value: str) -> str | None:
        value = str(value)
        if not value.startswith("/vip/"):
            return f"{value} is not a VIP path (/vip/...)"
        vp = PurePosixPath(value)
        parent = str(vp.parent)
        if parent not in listings:
            try:
                listings[parent] = {PurePosixPath(i.path).name: i.is_directory for i in client.list(parent)}
            except NotFound:
                listings[parent] = {}
        if vp.name not in listings[parent]:
            return f"{value} does not exist on VIP"
        if listings[parent][vp.name]:
            return f"{value} is a directory on VIP, not a file"
        return None

    return check


# --------------------------------------------------------------------------------------------
# Launch or adopt
# --------------------------------------------------------------------------------------------


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


def adoptable_on_vip(client: VipClient, *, name: str, pipeline_id: str, values: Mapping[str, Any],
                     executions: Iterable[Execution] | None = None, exclude: Container[str] = (),
                     started_after: int | None = None,
                     include_failed: bool = False) -> Execution | None:
    """:func:`find_adoptable` over VIP's listing (``executions`` if already fetched, else one
    ``GET executions``); an entry of that name whose listing lacks the inputs, pipeline or
    start date is read in full (``GET executions/{id}``)."""
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
    return find_adoptable(full, name=name, pipeline_id=pipeline_id, values=values,
                          exclude=exclude, started_after=started_after,
                          include_failed=include_failed)


def launch_or_adopt(client: VipClient, pipeline_id: str, values: Mapping[str, Any],
                    results_location: str, name: str, *,
                    executions: list[Execution] | None = None, exclude: Container[str] = (),
                    started_after: int | None = None) -> tuple[Execution, bool]:
    """Launch ``pipeline_id`` on ``values`` unless VIP already has that execution (see
    :func:`find_adoptable`): never a duplicate. Returns ``(execution, adopted)``. The POST
    itself is never duplicated either (:meth:`VipClient.launch` adopts a lost reply)."""
    ex = adoptable_on_vip(client, name=name, pipeline_id=pipeline_id, values=values,
                          executions=executions, exclude=exclude, started_after=started_after)
    if ex is not None:
        log.info("%s: execution %s of %s already on VIP (%s): adopted, not launched again",
                 name, ex.identifier, pipeline_id, ex.status)
        return ex, True
    return client.launch(pipeline_id, dict(values), results_location, name), False


# --------------------------------------------------------------------------------------------
# Poll and wait
# --------------------------------------------------------------------------------------------


def _unknown_execution(exc: VipError) -> bool:
    """VIP answers an unknown execution id with 8015 "invalid execution id" (or a 404)."""
    return isinstance(exc, NotFound) or exc.code == 8015


def poll(client: VipClient, ids: Iterable[str]) -> dict[str, Execution]:
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
                log.warning("execution %s is unknown to VIP (deleted?)", eid)
                continue
        out[eid] = ex
    return out


def wait(client: VipClient, ids: Iterable[str], *, refresh: float = 30, first: float = 1.0,
         timeout: float | None = None,
         on_round: Callable[[dict[str, Execution]], None] | None = None,
         retry_errors: bool = False) -> dict[str, Execution]:
    """Poll ``ids`` (one :func:`poll` per round, over those still running) until every one is
    over; returns their last states. The first round is immediate, the next after ``first``
    seconds, then the pause doubles up to ``refresh``. After ``timeout`` seconds it returns
    what it has (some may still be running). ``on_round(states)`` is called after each round.
    ``retry_errors``: a round that cannot reach VIP (transport or server error) is logged and
    tried again later instead of raising (runs that last days outlive outages)."""
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
        time.sleep(pause)
        delay = min(float(refresh), max(delay * 2, 0.1))


def failure_detail(client: VipClient, execution: Execution, lines: int = 20) -> str:
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


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


def _rel_parts(vip_path: str, vip_root: str | PurePosixPath | None) -> tuple[str, ...]:
    vp = PurePosixPath(vip_path)
    if vip_root is not None:
        try:
            rel = vp.relative_to(str(vip_root))
            if rel.parts:
                return rel.parts
        except ValueError:
            pass
    return (vp.parent.name, vp.name) if vp.parent.name else (vp.name,)


def _local_path(local_dir: Path, parts: tuple[str, ...]) -> Path:
    mapped = local_dir.joinpath(*(rules.local_name(p) for p in parts))
    raw = local_dir.joinpath(*parts)
    if raw != mapped:
        try:  # a file vip-client (0.1.10, on Unix) wrote under VIP's own name: use it
            if raw.exists() and not mapped.exists():
                return raw
        except (OSError, ValueError):
            pass
    return mapped


def results_layout(outputs: Mapping[str, Iterable[str]], local_dir: str | os.PathLike, *,
                   vip_root: str | PurePosixPath | None = None) -> dict[str, dict[str, Path]]:
    """The local path of each output: ``{execution id: {vip path: local path}}``.

    THE layout (vip-client's, on every system): ``local_dir / <path under vip_root>`` (without
    ``vip_root``, or outside it: ``local_dir / <dated folder> / <file name>``), each component
    mapped by :func:`rules.local_name` (VIP's ``24-11-2026_23:37:07`` -> ``24-11-2026_23-37-07``);
    a file already present under VIP's own name (vip-client on Unix) is used as is. When an
    execution's output would land on a local path an earlier execution of ``outputs`` (in
    order) already takes -- two executions given the same results folder -- its folder gets the
    execution id appended (``<dated folder>-<execution id>``): one execution's file is never
    taken for another's."""
    local_dir = Path(local_dir)
    owner: dict[Path, str] = {}
    out: dict[str, dict[str, Path]] = {}
    for eid, paths in outputs.items():
        mine: dict[str, Path] = {}
        for p in paths:
            parts = _rel_parts(str(p), vip_root)
            local = _local_path(local_dir, parts)
            if owner.get(local, eid) != eid:
                parts = ((f"{parts[0]}-{eid}",) + parts[1:]) if len(parts) > 1 else (eid,) + parts
                local = _local_path(local_dir, parts)
            owner.setdefault(local, eid)
            mine[str(p)] = local
        out[str(eid)] = mine
    return out


@dataclass
class ResultsReport:
    """What :func:`download_results` did. ``files``: execution id -> its local output paths
    (an extracted tarball is the directory of the archive's name)."""

    files: dict[str, list[Path]] = field(default_factory=dict)
    downloaded: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    extracted: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # vip path -> why
    warnings: list[str] = field(default_factory=list)
    bytes: int = 0  # bytes received

    @property
    def ok(self) -> bool:
        return not self.failed


def _as_info(item: Any) -> PathInfo:
    if isinstance(item, PathInfo):
        return item
    if isinstance(item, Mapping):
        return PathInfo(path=str(item["path"]), is_directory=bool(item.get("isDirectory", False)),
                        size=item.get("size"), exists=item.get("exists", True) is not False)
    return PathInfo(path=str(item), size=None)


def _outputs_of(executions: Any) -> dict[str, list[PathInfo]]:
    if isinstance(executions, Mapping):
        return {str(k): [_as_info(i) for i in (v or [])] for k, v in executions.items()}
    return {e.identifier: [PathInfo(path=p, size=None) for p in e.output_paths] for e in executions}


def download_results(client: VipClient, executions: Iterable[Execution] | Mapping[str, Iterable[Any]],
                     local_dir: str | os.PathLike, *, unzip: bool = True,
                     vip_root: str | PurePosixPath | None = None,
                     select: Container[str] | None = None,
                     progress: bool | None = None) -> ResultsReport:
    """Download executions' outputs into ``local_dir`` with :func:`results_layout`.

    ``executions``: :class:`Execution` objects (their ``returnedFiles``) or ``{execution id:
    outputs}`` with outputs as VIP paths, :class:`PathInfo` or vip-client's ``{"path", "size",
    "isDirectory", "exists"}`` entries, in launch order (the order decides who keeps a shared
    local name). ``select``: download only these ids (the others still claim their names).
    Complete files (same size) and extracted tarballs are skipped, partial ones resumed,
    failures reported in ``.failed`` (a next call fetches them again), never raised.
    ``unzip``: every tarball (also one left by an earlier call) is extracted with
    :func:`extract_archive`."""
    from .transfer import TransferError

    outputs = _outputs_of(executions)
    layout = results_layout({k: [i.path for i in v] for k, v in outputs.items()}, local_dir,
                            vip_root=vip_root)
    report = ResultsReport()
    items: list[tuple[PathInfo | str, Path]] = []
    for eid, infos in outputs.items():
        if select is not None and eid not in select:
            continue
        files = report.files.setdefault(eid, [])
        for info in infos:
            if info.is_directory or not info.exists:
                continue
            local = layout[eid][info.path]
            files.append(local)
            if local.is_dir():  # an extracted tarball
                report.skipped.append(local)
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            items.append((info if info.size is not None else info.path, local))
    if not items:
        return report
    try:
        tr = client.download_files(items, extract=unzip, progress=progress)
    except TransferError as exc:
        tr = exc.report
        for path, why in exc.failures:
            report.failed[str(path)] = str(why)
    report.downloaded = [Path(p) for p in tr.transferred]
    report.skipped += [Path(p) for p in tr.skipped]
    report.extracted = [Path(p) for p in tr.extracted]
    report.warnings = list(tr.warnings)
    report.bytes = int(tr.bytes_transferred or 0)
    return report


def extract_archive(path: str | os.PathLike) -> Path:
    """THE extraction rule (vip-client's layout): the tarball ``x.tgz`` becomes the directory
    ``x.tgz/`` holding its members. Members that would escape it (``..``, absolute links,
    devices) are refused (logged); the archive is removed only after a complete extraction
    (an interrupted one is finished by the next download). Returns the directory."""
    from .transfer import extract_archive as _extract

    path = Path(path)
    if not tarfile.is_tarfile(path):
        raise tarfile.ReadError(f"{path} is not a tar archive")
    _extract(path)
    return path


# --------------------------------------------------------------------------------------------
# Remove
# --------------------------------------------------------------------------------------------


def remove_remote(client: VipClient, vip_path: str, *, timeout: float = 300) -> bool:
    """Delete ``vip_path`` (file or folder) on VIP and wait until it is gone (VIP deletes
    asynchronously). True when it is gone (or was not there), False if still there after
    ``timeout`` seconds."""
    path = str(vip_path)
    if not client.exists(path):
        log.debug("%s: already removed", path)
        return True
    client.delete(path, missing_ok=True, wait=0)
    deadline = time.monotonic() + float(timeout)
    pause = 0.05
    while client.exists(path):
        if time.monotonic() >= deadline:
            log.warning("%s: still on VIP after %.0f s", path, timeout)
            return False
        time.sleep(pause)
        pause = min(2.0, pause * 2)
    log.debug("%s: removed from VIP", path)
    return True

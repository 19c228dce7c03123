"""A study = datasets x pipelines x parameter sets, run on VIP as named sessions.

`load_study(config)` turns the validated `config/config.yaml` into a :class:`Study` (every
mistake is reported before anything is uploaded, naming the session and the key); the other
public functions are what the Snakemake rules (``workflow/rules/*.smk``) call, one per target:

    upload_dataset   -> results/datasets/<dataset>/uploaded.json
    launch_session   -> results/<session>/launched.json   (never launches twice)
    wait_session     -> results/<session>/done.json
    download_session -> results/<session>/outputs/
    finish_session   -> results/<session>/finished        (vip.cleanup)
    finish_dataset   -> results/datasets/<dataset>/finished
    write_summary    -> results/study_summary.{csv,html,txt}

Remote layout (compatible with VipSession's ``/vip/Home/API/<session>/...``, one level down so
that two studies never share a folder)::

    <vip.root>/<study name>/datasets/<dataset>/...      uploaded once, shared
    <vip.root>/<study name>/<session>/OUTPUTS            resultsLocation of the session

The API key is never stored in a `Study`, a marker, a log or an exception: for ``url: local`` the
client reads it from ``<local_dir>/apikey``; for a real URL from the environment variable named
by ``vip.api_key_env``.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import html
import itertools
import json
import logging
import math
import os
import re
import shutil
import socket
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping

from tqdm.auto import tqdm

from vip_smk.server.local import pid_alive
from vip_smk.session import write_json_atomic

log = logging.getLogger(__name__)

# What VIP accepts in input values (error 8009 otherwise) and in execution names (8019).
_VALUE_OK = re.compile(r"^[0-9.,A-Za-z\-+@/_():\s\[\]?&=]*$")
_NAME_OK = re.compile(r"^[A-Za-z0-9_-]+$")
_GLOB_CHARS = set("*?[")
_RESERVED = {"datasets", "logs"}
_TERMINAL_OK = "Finished"
_TARBALL = re.compile(r"\.(tgz|tar\.gz|tar\.bz2|tar\.xz|tar)$")


class StudyConfigError(ValueError):
    """A mistake in the study configuration; the message names the session and the key."""


class StudyError(RuntimeError):
    """A study step that cannot go on (remote failure, timeout...)."""


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    name: str
    dataset: str
    pipeline: str  # alias in `pipelines:`
    pipeline_id: str
    parameters: dict[str, Any]  # what distinguishes it (grid point / explicit settings)
    settings: dict[str, Any]  # merged user-level settings (relative paths / globs)
    input_values: dict[str, Any]  # VIP-bound values (absolute VIP paths)
    origin: str  # "study[i]" or "sessions"

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(
            {"pipeline": self.pipeline_id, "inputs": self.input_values}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Study:
    name: str
    vip: dict[str, Any]
    datasets: dict[str, Path]
    pipelines: dict[str, str]  # alias -> VIP id
    sessions: dict[str, Session]
    results: Path
    workdir: Path = field(default_factory=Path.cwd)

    # -- remote layout --------------------------------------------------------------------
    @property
    def remote_root(self) -> str:
        return str(PurePosixPath(self.vip["root"]) / self.name)

    def remote_dataset_dir(self, dataset: str) -> str:
        return f"{self.remote_root}/datasets/{dataset}"

    def remote_session_dir(self, session: str) -> str:
        return f"{self.remote_root}/{session}"

    def results_location(self, session: str) -> str:
        return f"{self.remote_session_dir(session)}/OUTPUTS"

    def sessions_of_dataset(self, dataset: str) -> list[str]:
        return sorted(s.name for s in self.sessions.values() if s.dataset == dataset)

    @property
    def used_datasets(self) -> list[str]:
        return sorted({s.dataset for s in self.sessions.values()})

    @property
    def is_local(self) -> bool:
        return self.vip["url"] == "local"

    def local_dir(self) -> Path:
        return (self.workdir / self.vip["local_dir"]).resolve()

    def public_vip(self) -> dict[str, Any]:
        """The vip settings as recorded in markers (no key: there is none in them anyway)."""
        return {k: self.vip[k] for k in ("url", "root", "max_running", "cleanup")}


# --------------------------------------------------------------------------------------------
# Configuration -> sessions
# --------------------------------------------------------------------------------------------

_VIP_DEFAULTS = {
    "url": "local",
    "api_key_env": "VIP_API_KEY",
    "max_running": None,
    "poll_seconds": 30,
    "cleanup": False,
    "root": "/vip/Home/API",
    "local_dir": ".vip-local",
    "local_workers": 2,
    "workers": 4,
    "max_wait_hours": None,
}


class _Errors:
    """Collects every mistake; the same (key, message) for many sessions of one grid is
    reported once, naming the first session and how many more."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], list[str]] = {}

    def add(self, where: str, key: str, msg: str) -> None:
        self._groups.setdefault((key, msg), []).append(where)

    @property
    def items(self) -> list[str]:
        out = []
        for (key, msg), wheres in self._groups.items():
            more = f" and {len(wheres) - 1} more session(s)" if len(wheres) > 1 else ""
            out.append(f"{wheres[0]}{more}: {key}: {msg}")
        return out

    def extend(self, other: _Errors) -> None:
        for k, v in other._groups.items():
            self._groups.setdefault(k, []).extend(v)

    def raise_if_any(self) -> None:
        items = self.items
        if items:
            n = len(items)
            head = f"invalid study configuration ({n} error{'s' if n > 1 else ''}):"
            raise StudyConfigError("\n  ".join([head, *items]))


def _slug(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "+".join(_slug(v) for v in value)
    text = str(value).replace(".", "p")
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def _grid_points(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    keys = list(grid)
    values = [v if isinstance(v, list) else [v] for v in grid.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def expand_sessions(config: Mapping[str, Any]) -> tuple[list[dict[str, Any]], _Errors]:
    """The raw session specs (name, dataset, pipeline, parameters, settings, origin) from
    `study:` blocks and `sessions:` entries, without any check against VIP. Returns
    (specs, errors)."""
    errors = _Errors()
    pipelines = config.get("pipelines") or {}
    specs: list[dict[str, Any]] = []
    for i, block in enumerate(config.get("study") or []):
        where = f"study[{i}]"
        grid = block.get("grid") or {}
        points = _grid_points(grid)
        for ds in block["datasets"]:
            for alias in block["pipelines"]:
                base = dict((pipelines.get(alias) or {}).get("settings") or {})
                for point in points:
                    template = block.get("name")
                    if template:
                        try:
                            name = template.format(dataset=ds, pipeline=alias, **point)
                        except (KeyError, IndexError, ValueError) as exc:
                            errors.add(where, "name", f"template {template!r}: unknown field {exc}")
                            continue
                    else:
                        name = "-".join(
                            [ds, alias, *(f"{_slug(k)}{_slug(v)}" for k, v in point.items())]
                        )
                    specs.append(
                        {
                            "name": name,
                            "dataset": ds,
                            "pipeline": alias,
                            "parameters": dict(point),
                            "settings": {**base, **point},
                            "origin": where,
                        }
                    )
    for name, entry in (config.get("sessions") or {}).items():
        alias = entry["pipeline"]
        base = dict((pipelines.get(alias) or {}).get("settings") or {})
        own = dict(entry.get("settings") or {})
        specs.append(
            {
                "name": name,
                "dataset": entry["dataset"],
                "pipeline": alias,
                "parameters": own,
                "settings": {**base, **own},
                "origin": "sessions",
            }
        )
    return specs, errors


def _where(spec: Mapping[str, Any]) -> str:
    return f"session '{spec['name']}' ({spec['origin']})"


def _key(spec: Mapping[str, Any], param: str) -> str:
    if spec["origin"] == "sessions":
        return f"sessions.{spec['name']}.settings.{param}"
    if param in spec["parameters"]:
        return f"{spec['origin']}.grid.{param}"
    return f"pipelines.{spec['pipeline']}.settings.{param}"


class _DatasetFiles:
    """Glob results per (dataset, pattern), computed once (500-session studies)."""

    def __init__(self, datasets: Mapping[str, Path]):
        self.datasets = datasets
        self._cache: dict[tuple[str, str], list[str]] = {}

    def match(self, dataset: str, pattern: str) -> list[str]:
        key = (dataset, pattern)
        if key not in self._cache:
            root = self.datasets[dataset]
            found = glob.glob(pattern, root_dir=root, recursive=True)
            self._cache[key] = sorted(
                PurePosixPath(Path(p).as_posix()).as_posix()
                for p in found
                if (root / p).is_file()
            )
        return self._cache[key]


def _resolve_file(
    value: Any, spec: Mapping[str, Any], param: str, study_root: str, files: _DatasetFiles,
    errors: _Errors,
) -> Any:
    ds = spec["dataset"]
    where, key = _where(spec), _key(spec, param)
    if isinstance(value, list):
        out: list[str] = []
        for v in value:
            r = _resolve_file(v, spec, param, study_root, files, errors)
            if r is None:
                continue
            out.extend(r if isinstance(r, list) else [r])
        return out
    if not isinstance(value, str) or not value:
        errors.add(where, key, f"a File parameter needs a path or glob, got {value!r}")
        return None
    if value.startswith("/vip/"):
        return value  # already on VIP: passed as is
    if value.startswith("/") or ".." in PurePosixPath(value).parts:
        errors.add(where, key, f"{value!r}: give a path relative to dataset '{ds}' (or a /vip/ path)")
        return None
    remote = f"{study_root}/datasets/{ds}"
    if _GLOB_CHARS & set(value):
        matched = files.match(ds, value)
        if not matched:
            errors.add(where, key, f"glob {value!r} matches no file in dataset '{ds}' ({files.datasets[ds]})")
            return None
        bad = [m for m in matched if " " in m or not _VALUE_OK.match(m)]
        if bad:
            errors.add(where, key, f"file name(s) VIP refuses (spaces or special characters): {bad[:3]}")
            return None
        return [f"{remote}/{m}" for m in matched]
    path = files.datasets[ds] / value
    if not path.is_file():
        errors.add(where, key, f"{value!r} is not a file of dataset '{ds}' ({files.datasets[ds]})")
        return None
    if " " in value or not _VALUE_OK.match(value):
        errors.add(where, key, f"file name {value!r} has characters VIP refuses (spaces or special characters)")
        return None
    return f"{remote}/{PurePosixPath(Path(value).as_posix())}"


def _coerce(value: Any, ptype: str, where: str, key: str, errors: _Errors) -> Any:
    """Check a non-File value against the VIP parameter type; return the value to send."""
    if isinstance(value, list) and ptype != "List":
        return [_coerce(v, ptype, where, key, errors) for v in value]
    if ptype == "Boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        errors.add(where, key, f"expects a boolean (true/false), got {value!r}")
        return value
    if ptype == "Int64":
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"[-+]?\d+", value))
        ):
            errors.add(where, key, f"expects an integer, got {value!r}")
            return value
        return int(value)
    if ptype == "Double":
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
        except (TypeError, ValueError):
            errors.add(where, key, f"expects a number, got {value!r}")
            return value
        return value if isinstance(value, (int, float)) else number
    if isinstance(value, (dict,)) or value is None:
        errors.add(where, key, f"expects a {ptype or 'String'} value, got {value!r}")
        return value
    text = str(value)
    if not _VALUE_OK.match(text):
        errors.add(where, key, f"{text!r} has characters VIP refuses in input values")
    return value


def _dataset_problems(root: Path) -> list[str]:
    """What would make the dataset's upload fail (names VIP refuses, empty files, unreadable
    entries), found without any network so that the dry run reports it."""
    from vip_smk.transfer import check_local_tree

    files, problems = check_local_tree(root)
    if not files:
        problems = [*problems, f"{root} holds no file"]
    return problems[:5] + ([f"... and {len(problems) - 5} more"] if len(problems) > 5 else [])


def load_study(
    config: Mapping[str, Any],
    workdir: str | os.PathLike | None = None,
    descriptors: Mapping[str, Any] | None = None,
) -> Study:
    """Validate `config` (already schema-validated, defaults filled) and expand it into
    sessions. `descriptors` maps pipeline id -> Pipeline (the client model) or None; when
    not given they are fetched from VIP (starting the local server for ``url: local``).
    Raises StudyConfigError listing every mistake."""
    wd = Path(workdir or os.getcwd()).resolve()
    vip = {**_VIP_DEFAULTS, **(config.get("vip") or {})}
    name = config.get("name") or ""
    errors = _Errors()

    if not name:
        errors.add("study", "name", "required (the study's VIP folder is <vip.root>/<name>/)")
    elif not _NAME_OK.match(name):
        errors.add("study", "name", f"{name!r}: use letters, digits, '-' and '_' only")
    datasets: dict[str, Path] = {}
    for ds, d in (config.get("datasets") or {}).items():
        path = (wd / d).resolve()
        if not path.is_dir():
            errors.add(f"dataset '{ds}'", f"datasets.{ds}", f"{d!r} is not a directory ({path})")
        datasets[ds] = path
    pipelines = {alias: p["id"] for alias, p in (config.get("pipelines") or {}).items()}

    specs, expand_errors = expand_sessions(config)
    errors.extend(expand_errors)
    if not specs and not expand_errors.items:
        errors.add("study", "study/sessions", "no session defined (add a study: block or sessions:)")

    seen: dict[str, dict[str, Any]] = {}
    for spec in specs:
        where = _where(spec)
        if spec["dataset"] not in datasets:
            key = f"sessions.{spec['name']}.dataset" if spec["origin"] == "sessions" else f"{spec['origin']}.datasets"
            errors.add(where, key, f"unknown dataset {spec['dataset']!r} (known: {sorted(datasets)})")
        if spec["pipeline"] not in pipelines:
            key = f"sessions.{spec['name']}.pipeline" if spec["origin"] == "sessions" else f"{spec['origin']}.pipelines"
            errors.add(where, key, f"unknown pipeline {spec['pipeline']!r} (known: {sorted(pipelines)})")
        if not _NAME_OK.match(spec["name"]) or len(spec["name"]) > 100 or spec["name"] in _RESERVED:
            errors.add(where, "name", f"session names use letters, digits, '-' and '_' (at most 100; not {sorted(_RESERVED)})")
        if spec["name"] in seen:
            other = seen[spec["name"]]
            errors.add(where, "name", f"same name as a session of {other['origin']}: give one a name (study[i].name template or sessions:)")
        seen.setdefault(spec["name"], spec)
    for ds in sorted({s["dataset"] for s in specs if s["dataset"] in datasets}):
        if datasets[ds].is_dir():
            for problem in _dataset_problems(datasets[ds]):
                errors.add(f"dataset '{ds}'", f"datasets.{ds}", problem)
    errors.raise_if_any()  # structural errors first: no server contacted for those

    if descriptors is None:
        descriptors = fetch_descriptors(vip, sorted(set(pipelines.values())), wd)
    study_root = str(PurePosixPath(vip["root"]) / name)
    files = _DatasetFiles(datasets)
    sessions: dict[str, Session] = {}
    for alias, pid in pipelines.items():
        if descriptors.get(pid) is None:
            users = sorted({s["name"] for s in specs if s["pipeline"] == alias})
            errors.add(f"pipeline '{alias}'", f"pipelines.{alias}.id", f"pipeline {pid!r} not found on VIP ({vip['url']}); used by {users[:3]}{'...' if len(users) > 3 else ''}")
    for spec in specs:
        pid = pipelines[spec["pipeline"]]
        desc = descriptors.get(pid)
        if desc is None:
            continue
        where = _where(spec)
        params = {p.name: p for p in desc.parameters if not getattr(p, "is_returned_value", False)}
        values: dict[str, Any] = {}
        for pname, value in spec["settings"].items():
            key = _key(spec, pname)
            p = params.get(pname)
            if p is None:
                errors.add(where, key, f"unknown parameter of {pid} (known: {sorted(params)})")
                continue
            if p.type == "File":
                resolved = _resolve_file(value, spec, pname, study_root, files, errors)
                if resolved is not None:
                    values[pname] = resolved
            else:
                values[pname] = _coerce(value, p.type, where, key, errors)
        for pname, p in params.items():
            if pname not in spec["settings"] and not p.is_optional and p.default_value is None:
                errors.add(where, _key(spec, pname), f"missing required parameter of {pid}")
        sessions[spec["name"]] = Session(
            name=spec["name"],
            dataset=spec["dataset"],
            pipeline=spec["pipeline"],
            pipeline_id=pid,
            parameters=spec["parameters"],
            settings=spec["settings"],
            input_values=values,
            origin=spec["origin"],
        )
    errors.raise_if_any()
    return Study(
        name=name,
        vip=vip,
        datasets=datasets,
        pipelines=pipelines,
        sessions=sessions,
        results=Path(config.get("results") or "results"),
        workdir=wd,
    )


def fetch_descriptors(vip: Mapping[str, Any], ids: list[str], workdir: Path) -> dict[str, Any]:
    """Pipeline id -> Pipeline (None when VIP does not know it), one request per id."""
    from vip_smk.client import NotFound, PermissionDenied

    out: dict[str, Any] = {}
    with _client(vip, workdir) as client:
        for pid in ids:
            try:
                out[pid] = client.pipeline(pid)
            except (NotFound, PermissionDenied):
                out[pid] = None
    return out


# --------------------------------------------------------------------------------------------
# Connection (embedded local server or a real VIP)
# --------------------------------------------------------------------------------------------


def ensure_local_server(local_dir: Path, workers: int = 2):
    """The local server on `local_dir`: attach to the running one, else start it detached
    (it outlives this run so that the next run resumes against the same data)."""
    from vip_smk.server import LocalServer

    local_dir.mkdir(parents=True, exist_ok=True)
    srv = LocalServer.attach(local_dir)
    if srv is not None:
        return srv
    lock = local_dir / ".start.lock"
    with _file_lock(lock):
        srv = LocalServer.attach(local_dir)
        if srv is None:
            log.info("starting the local VIP server (data in %s)", local_dir)
            srv = LocalServer(
                local_dir, port=0, workers=workers, detach=True, log_file=local_dir / "server.log"
            )
            srv.start(timeout=60)
    return srv


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _client(vip: Mapping[str, Any], workdir: Path, **kw):
    from vip_smk.client import VipClient

    if vip["url"] == "local":
        local_dir = (workdir / vip["local_dir"]).resolve()
        srv = ensure_local_server(local_dir, vip.get("local_workers", 2))
        key_file = local_dir / "apikey"
        return VipClient(srv.url, api_key=key_file if key_file.is_file() else srv.api_key, **kw)
    env = vip["api_key_env"]
    if not os.environ.get(env):
        raise StudyConfigError(
            f"vip.api_key_env: environment variable {env} is not set; export your VIP API key "
            f"in it (the key is never written to any file)"
        )
    return VipClient(vip["url"], api_key=env, **kw)


def connect(study: Study, **kw):
    """A VipClient for the study's VIP (starting/attaching the local server if url is local)."""
    kw.setdefault("workers", study.vip["workers"])
    return _client(study.vip, study.workdir, **kw)


# --------------------------------------------------------------------------------------------
# Markers
# --------------------------------------------------------------------------------------------


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as fh:
        return json.load(fh)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@contextlib.contextmanager
def job_log(path: str | os.PathLike | None, level: int = logging.INFO) -> Iterator[None]:
    """Send the `vip_smk` log records of this thread to `path` (the rule's log file) and to
    stderr for the duration of a Snakemake job."""
    logger = logging.getLogger("vip_smk")
    ident = threading.get_ident()
    handlers: list[logging.Handler] = []
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path))
    handlers.append(logging.StreamHandler())
    for h in handlers:
        h.setFormatter(fmt)
        h.setLevel(level)
        # this job's thread, and the transfer worker threads it starts (named vip-*)
        h.addFilter(lambda record: record.thread == ident or record.threadName.startswith("vip-"))
        logger.addHandler(h)
    old_level = logger.level
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    try:
        yield
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(old_level)


# --------------------------------------------------------------------------------------------
# Rule actions
# --------------------------------------------------------------------------------------------


def _dataset_inventory(root: Path) -> list[dict[str, Any]]:
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out.append({"path": p.relative_to(root).as_posix(), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def upload_dataset(study: Study, dataset: str, marker: str | os.PathLike, client=None) -> dict:
    """Upload the dataset folder (incrementally) to <root>/<study>/datasets/<dataset>."""
    local = study.datasets[dataset]
    remote = study.remote_dataset_dir(dataset)
    inventory = _dataset_inventory(local)
    # The inventory of the last upload survives Snakemake's removal of the marker before a
    # rerun: a file changed since then is sent again even if its size did not change.
    last_file = Path(marker).parent / "inventory.json"
    last = {f["path"]: f for f in read_json(last_file)["files"]} if last_file.exists() else None
    own = client is None
    client = client or connect(study)
    try:
        log.info("uploading dataset %s: %d file(s) from %s to %s", dataset, len(inventory), local, remote)
        client.mkdir(remote, parents=True)
        # Without a previous inventory, files already on VIP are compared by checksum where
        # VIP offers one (by size otherwise).
        report = client.upload_tree(local, remote, checksum=last is None)
        skipped = {str(Path(p).resolve()) for p in getattr(report, "skipped", [])}
        for f in inventory:
            before = (last or {}).get(f["path"])
            if before and before != f and str((local / f["path"]).resolve()) in skipped:
                log.info("dataset %s: %s changed (same size): sending it again", dataset, f["path"])
                client.upload(local / f["path"], f"{remote}/{f['path']}")
    finally:
        if own:
            client.close()
    info = {
        "dataset": dataset,
        "local_dir": str(local),
        "vip_dir": remote,
        "vip": study.public_vip(),
        "files": inventory,
        "count": len(inventory),
        "bytes": sum(f["size"] for f in inventory),
        "fingerprint": hashlib.sha256(json.dumps(inventory, sort_keys=True).encode()).hexdigest()[:16],
        "uploaded_at": _now(),
        "sessions": study.sessions_of_dataset(dataset),
    }
    write_json_atomic(marker, info)
    write_json_atomic(last_file, {"dataset": dataset, "files": inventory})
    return info


def _norm_value(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_norm_value(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str) and "@@" in v:
        return tuple(_norm_value(x) for x in v.split("@@"))
    if isinstance(v, (int, float)):
        return repr(float(v))
    if isinstance(v, str):
        low = v.strip()
        if low.lower() in ("true", "false"):
            return low.lower()
        try:
            return repr(float(low))
        except ValueError:
            return low
    return str(v)


def _same_inputs(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    def norm(m):
        out = {}
        for k, v in (m or {}).items():
            n = _norm_value(v)
            if isinstance(n, tuple) and len(n) == 1:
                n = n[0]
            out[k] = n
        return out

    na, nb = norm(a), norm(b)
    # VIP may echo defaults it filled in: compare on the keys we sent.
    return all(k in nb and na[k] == nb[k] for k in na)


def _history_path(marker: Path) -> Path:
    return marker.parent / "launch-history.json"


def _session_fingerprint(study: Study, session: Session, uploaded: Mapping[str, Any] | None) -> str:
    blob = json.dumps(
        {"session": session.fingerprint, "data": (uploaded or {}).get("fingerprint")}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _running_in_study(study: Study, executions) -> int:
    names = set(study.sessions)
    return sum(1 for e in executions if e.name in names and e.is_running)


def _input_files(session: Session) -> list[str]:
    out = []
    for v in session.input_values.values():
        for x in v if isinstance(v, list) else [v]:
            if isinstance(x, str) and x.startswith("/vip/"):
                out.append(x)
    return out


def _newest_input_ms(client, session: Session) -> int | None:
    """Server-side modification time (ms) of the session's newest input file: one listing per
    folder. None when unknown."""
    from vip_smk.client import VipError

    wanted = set(_input_files(session))
    newest = None
    for parent in sorted({str(PurePosixPath(p).parent) for p in wanted}):
        try:
            infos = client.list(parent)
        except VipError:
            continue
        for info in infos:
            if info.path.rstrip("/") in wanted and info.last_modification_date:
                ms = int(info.last_modification_date) * 1000
                newest = ms if newest is None else max(newest, ms)
    return newest


def find_launched(study: Study, session: Session, executions, client, excluded: set[str],
                  trusted: set[str] = frozenset()):
    """An execution already on VIP for this session: same name, pipeline and input values,
    not failed/killed, not superseded, and (unless recorded by this session's history with
    the current data) started after its input files were last uploaded. Newest first."""
    found = []
    for e in executions:
        if e.name != session.name or e.identifier in excluded:
            continue
        if e.pipeline_identifier and e.pipeline_identifier != session.pipeline_id:
            continue
        if not e.input_values:
            e = client.execution(e.identifier)
        if e.pipeline_identifier != session.pipeline_id:
            continue
        if not _same_inputs(session.input_values, e.input_values):
            continue
        if e.is_running or e.status == _TERMINAL_OK:
            found.append(e)
    found.sort(key=lambda e: e.start_date or 0, reverse=True)
    if found and found[0].identifier not in trusted:
        newest = _newest_input_ms(client, session)
        if newest is not None:
            stale = [e for e in found if e.identifier not in trusted and (e.start_date or 0) < newest]
            for e in stale:
                log.info("session %s: execution %s ran on older input files: not reused", session.name, e.identifier)
            found = [e for e in found if e not in stale]
    return found[0] if found else None


def launch_session(
    study: Study, name: str, marker: str | os.PathLike, uploaded: str | os.PathLike | None = None,
    client=None,
) -> dict:
    """Launch the session's execution, or adopt the one already on VIP. Waits for a free slot
    (vip.max_running, VIP error 2001) inside this job. `marker` is written atomically right
    after the POST."""
    from vip_smk.client import CapacityError, ServerError, TransportError

    session = study.sessions[name]
    marker = Path(marker)
    up = read_json(uploaded) if uploaded and Path(uploaded).exists() else None
    fp = _session_fingerprint(study, session, up)
    history_file = _history_path(marker)
    history = read_json(history_file) if history_file.exists() else []
    superseded = {eid for h in history if h.get("fingerprint") != fp for eid in h.get("executions", [])}
    trusted = {eid for h in history if h.get("fingerprint") == fp for eid in h.get("executions", [])}
    own = client is None
    client = client or connect(study)
    poll = float(study.vip["poll_seconds"])
    cap = study.vip.get("max_running")
    try:
        if up is not None and not client.exists(up["vip_dir"]):
            log.warning("dataset %s is no longer on VIP (cleanup?): uploading it again", session.dataset)
            client.mkdir(up["vip_dir"], parents=True)
            client.upload_tree(study.datasets[session.dataset], up["vip_dir"])
        results_location = study.results_location(name)
        client.mkdir(results_location, parents=True)
        adopted = False
        waited_since = None
        while True:
            executions = client.executions()
            ex = find_launched(study, session, executions, client, superseded, trusted)
            if ex is not None:
                adopted = True
                log.info("session %s: execution %s already on VIP (%s): not launching again", name, ex.identifier, ex.status)
                break
            if cap and _running_in_study(study, executions) >= cap:
                if waited_since is None:
                    waited_since = time.monotonic()
                    log.info("session %s: %d execution(s) in flight (vip.max_running): waiting for a slot", name, cap)
                time.sleep(poll)
                continue
            try:
                ex = client.launch(session.pipeline_id, session.input_values, results_location, name=name)
                break
            except CapacityError as exc:
                if waited_since is None:
                    waited_since = time.monotonic()
                log.info("session %s: VIP is at capacity (%s): waiting for a slot", name, exc.code or exc)
                time.sleep(poll)
            except (TransportError, ServerError) as exc:
                # The POST may or may not have reached VIP: the next round looks it up first.
                log.warning("session %s: launch failed (%s): checking VIP before retrying", name, exc)
                time.sleep(poll)
        info = {
            "session": name,
            "dataset": session.dataset,
            "pipeline": session.pipeline,
            "pipeline_id": session.pipeline_id,
            "parameters": session.parameters,
            "input_values": session.input_values,
            "results_location": results_location,
            "executions": [ex.identifier],
            "adopted": adopted,
            "fingerprint": fp,
            "launched_at": _now(),
            "vip": study.public_vip(),
        }
        write_json_atomic(marker, info)
        if not any(ex.identifier in h.get("executions", []) for h in history):
            history.append({"fingerprint": fp, "executions": [ex.identifier], "at": info["launched_at"]})
            write_json_atomic(history_file, history)
        if waited_since is not None:
            log.info("session %s: waited %.0f s for a slot", name, time.monotonic() - waited_since)
        return info
    finally:
        if own:
            client.close()


def _job_counts(ex) -> tuple[int, int]:
    jobs = ex.jobs or {}
    ok = failed = 0
    for j in jobs.values():
        status = (j or {}).get("status", "") if isinstance(j, Mapping) else str(j)
        code = (j or {}).get("exitCode") if isinstance(j, Mapping) else None
        if status in ("Finished", "Completed", "Successful") or (code == 0 and status not in ("Failed", "Error")):
            ok += 1
        else:
            failed += 1
    if not jobs:
        ok, failed = (1, 0) if ex.status == _TERMINAL_OK else (0, 1)
    return ok, failed


_JOB_ACTIVE = {"initializing", "ready", "queued", "running", "submitted", "pending", "waiting"}


def _progress(bar, executions) -> None:
    """Jobs done / total over the session's executions (when VIP reports its jobs)."""
    total = done = 0
    for e in executions:
        for j in (e.jobs or {}).values():
            total += 1
            status = str(j.get("status", "") if isinstance(j, Mapping) else j).lower()
            done += status not in _JOB_ACTIVE
    if total:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()


def _poll(client, name: str, ids: list[str]) -> dict:
    """Statuses of `ids`: one `GET executions` for all of them (a direct GET only for one the
    listing does not show, VIP listing a limited number)."""
    from vip_smk.client import NotFound

    listed = {e.identifier: e for e in client.executions() if e.identifier in ids}
    current = {}
    for eid in ids:
        e = listed.get(eid)
        if e is None:
            try:
                e = client.execution(eid)
            except NotFound:
                raise StudyError(
                    f"session {name}: execution {eid} no longer exists on VIP; delete "
                    f"results/{name}/launched.json (or the session folder) to launch it again"
                ) from None
        current[eid] = e
    return current


def wait_session(
    study: Study, name: str, launched: str | os.PathLike, marker: str | os.PathLike, client=None
) -> dict:
    """Wait for the session's executions: one `GET executions` per round for all of them."""
    from vip_smk.client import ServerError, TransportError

    info = read_json(launched)
    ids = list(info["executions"])
    poll = float(study.vip["poll_seconds"])
    max_wait = study.vip.get("max_wait_hours")
    deadline = time.monotonic() + max_wait * 3600 if max_wait else None
    own = client is None
    client = client or connect(study)
    last: dict[str, str | None] = {}
    bar = tqdm(desc=f"{name}: jobs done", unit="job", total=None, disable=None, leave=False)
    try:
        while True:
            try:
                current = _poll(client, name, ids)
            except (TransportError, ServerError) as exc:
                # Runs last days: a network or VIP outage is waited out, not fatal.
                log.warning("session %s: cannot reach VIP (%s): trying again in %.0f s", name, exc, poll)
                current = None
            if current is not None:
                for eid, e in current.items():
                    if last.get(eid) != e.status:
                        log.info("session %s: execution %s is %s", name, eid, e.status)
                        last[eid] = e.status
                _progress(bar, current.values())
                if all(e.is_over for e in current.values()):
                    break
            if deadline and time.monotonic() > deadline:
                raise StudyError(f"session {name}: still running after vip.max_wait_hours={max_wait}; run again to keep waiting")
            time.sleep(poll)
        details = []
        for eid in ids:
            e = client.execution(eid)  # full record: jobs, returnedFiles
            ok, failed = _job_counts(e)
            details.append(
                {
                    "id": eid,
                    "status": e.status,
                    "start_date": e.start_date,
                    "end_date": e.end_date,
                    "duration_s": round((e.end_date - e.start_date) / 1000, 3) if e.start_date and e.end_date else None,
                    "jobs": e.jobs or {},
                    "jobs_ok": ok,
                    "jobs_failed": failed,
                    "error_code": e.error_code,
                    "returned_files": e.returned_files or {},
                    "outputs": e.output_paths,
                }
            )
    finally:
        bar.close()
        if own:
            client.close()
    statuses = {d["status"] for d in details}
    done = {
        "session": name,
        "status": statuses.pop() if len(statuses) == 1 else "Mixed",
        "executions": details,
        "jobs_ok": sum(d["jobs_ok"] for d in details),
        "jobs_failed": sum(d["jobs_failed"] for d in details),
        "results_location": info["results_location"],
        "finished_at": _now(),
    }
    write_json_atomic(marker, done)
    return done


def _local_name(rel: PurePosixPath, multi: bool, eid: str) -> PurePosixPath:
    # <resultsLocation>/<timestamp folder>/<file...>: drop the opaque timestamp folder.
    parts = rel.parts[1:] if len(rel.parts) > 1 else rel.parts
    out = PurePosixPath(*parts)
    return PurePosixPath(eid) / out if multi else out


def _safe_extract(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")


def download_session(
    study: Study, name: str, done: str | os.PathLike, outdir: str | os.PathLike, client=None
) -> dict:
    """Download the session's outputs into `outdir` (tarballs extracted into a folder of the
    same name without the extension). Partial downloads are kept in `<outdir>.partial/` and
    resumed by the next run; `outdir` appears atomically when everything is there."""
    info = read_json(done)
    outdir = Path(outdir)
    staging = outdir.parent / (outdir.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    location = PurePosixPath(info["results_location"])
    execs = info["executions"]
    multi = len(execs) > 1
    pairs: list[tuple[str, str]] = []
    for d in execs:
        for p in d.get("outputs") or []:
            pp = PurePosixPath(p)
            try:
                rel = pp.relative_to(location)
            except ValueError:
                rel = PurePosixPath(pp.name)
            pairs.append((p, str(staging / _local_name(rel, multi, d["id"]))))
    if pairs:
        own = client is None
        client = client or connect(study)
        try:
            log.info("session %s: downloading %d output file(s)", name, len(pairs))
            client.download_files(pairs)
        finally:
            if own:
                client.close()
    building = outdir.parent / (outdir.name + ".building")
    if building.exists():
        shutil.rmtree(building)
    building.mkdir(parents=True)
    for _, local in pairs:
        src = Path(local)
        rel = src.relative_to(staging)
        m = _TARBALL.search(src.name)
        if m and tarfile.is_tarfile(src):
            _safe_extract(src, building / rel.parent / src.name[: m.start()])
        else:
            (building / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, building / rel)
    if outdir.exists():
        shutil.rmtree(outdir)
    os.replace(building, outdir)
    shutil.rmtree(staging, ignore_errors=True)
    count, size = _tree_size(outdir)
    log.info("session %s: %d file(s), %d bytes in %s", name, count, size, outdir)
    return {"files": count, "bytes": size}


def _tree_size(root: Path) -> tuple[int, int]:
    count = size = 0
    if root.is_dir():
        for p in root.rglob("*"):
            if p.is_file() and p.name != ".snakemake_timestamp":
                count += 1
                size += p.stat().st_size
    return count, size


def _remove_remote(study: Study, remote: str, why: str, client=None) -> None:
    """Delete `remote` on VIP if it is there (`why` goes into the log line)."""
    own = client is None
    client = client or connect(study)
    try:
        if client.exists(remote):
            log.info("%s: removing %s from VIP", why, remote)
            client.delete(remote, missing_ok=True)
    finally:
        if own:
            client.close()


def finish_session(study: Study, name: str, marker: str | os.PathLike, client=None) -> None:
    """Remove the session's remote folder (its outputs are downloaded)."""
    remote = study.remote_session_dir(name)
    _remove_remote(study, remote, f"session {name}", client)
    write_json_atomic(marker, {"session": name, "removed": remote, "at": _now()})


def finish_dataset(study: Study, dataset: str, marker: str | os.PathLike, client=None) -> None:
    """Remove the dataset's remote copy: every session of the study using it is finished."""
    remote = study.remote_dataset_dir(dataset)
    _remove_remote(study, remote, f"dataset {dataset}: no session needs it any more", client)
    write_json_atomic(marker, {"dataset": dataset, "removed": remote, "at": _now()})


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = [
    "session", "dataset", "pipeline", "pipeline_id", "parameters", "status", "jobs_ok",
    "jobs_failed", "duration_s", "outputs", "output_bytes", "executions",
]


def _fmt_params(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in params.items())


def summary_rows(study: Study) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(study.sessions):
        s = study.sessions[name]
        sdir = study.results / name
        done = read_json(sdir / "done.json") if (sdir / "done.json").exists() else {}
        execs = done.get("executions", [])
        durations = [d["duration_s"] for d in execs if d.get("duration_s") is not None]
        count, size = _tree_size(sdir / "outputs")
        rows.append(
            {
                "session": name,
                "dataset": s.dataset,
                "pipeline": s.pipeline,
                "pipeline_id": s.pipeline_id,
                "parameters": _fmt_params(s.parameters),
                "status": done.get("status", "missing"),
                "jobs_ok": done.get("jobs_ok", 0),
                "jobs_failed": done.get("jobs_failed", 0),
                "duration_s": round(max(durations), 1) if durations else "",
                "outputs": count,
                "output_bytes": size,
                "executions": " ".join(d["id"] for d in execs),
            }
        )
    return rows


def _svg_chart(rows: list[dict[str, Any]]) -> str:
    """Horizontal bars: duration per session (colour = status), with jobs ok/failed."""
    bar_h, gap, left, width = 18, 6, 260, 420
    durations = [float(r["duration_s"] or 0) for r in rows]
    top = max(durations + [1e-9])
    height = len(rows) * (bar_h + gap) + 40
    colors = {"Finished": "#3b82f6"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 160}" height="{height}" '
        f'role="img" aria-label="Duration per session" font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="14" font-weight="bold">Execution duration (s) per session</text>',
    ]
    for i, (r, d) in enumerate(zip(rows, durations)):
        y = 24 + i * (bar_h + gap)
        w = max(1.0, width * d / top)
        color = colors.get(r["status"], "#ef4444")
        label = html.escape(r["session"])
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{label}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
            f'<title>{label}: {d:.1f} s, {html.escape(str(r["status"]))}</title></rect>'
        )
        parts.append(
            f'<text x="{left + w + 6:.1f}" y="{y + 13}">{d:.1f} s · {r["jobs_ok"]} ok'
            f'{", " + str(r["jobs_failed"]) + " failed" if r["jobs_failed"] else ""}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def summary_text(rows: list[dict[str, Any]]) -> str:
    cols = ["session", "pipeline", "parameters", "status", "jobs_ok", "jobs_failed", "duration_s", "outputs", "output_bytes"]
    heads = ["session", "pipeline", "parameters", "status", "ok", "failed", "time (s)", "files", "size"]
    table = [[str(r[c]) if c != "output_bytes" else _human(int(r[c])) for c in cols] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip() for t in table]
    return "\n".join(lines) + "\n"


def write_summary(study: Study, csv_path, html_path, txt_path=None) -> list[dict[str, Any]]:
    rows = summary_rows(study)
    Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(csv_path) + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=SUMMARY_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, csv_path)
    ok = sum(1 for r in rows if r["status"] == _TERMINAL_OK)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in SUMMARY_COLUMNS)
    body = "\n".join(
        "<tr" + ("" if r["status"] == _TERMINAL_OK else ' class="bad"') + ">"
        + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in SUMMARY_COLUMNS) + "</tr>"
        for r in rows
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Study {html.escape(study.name)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
th {{ background: #f3f4f6; }} tr.bad td {{ background: #fee2e2; }}
</style></head><body>
<h1>Study <code>{html.escape(study.name)}</code></h1>
<p>{len(rows)} session(s), {ok} finished, {len(rows) - ok} not finished. VIP: {html.escape(study.vip["url"])},
folder <code>{html.escape(study.remote_root)}</code>. Written {html.escape(_now())}.</p>
{_svg_chart(rows)}
<table><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table></body></html>
"""
    tmp = Path(str(html_path) + ".tmp")
    tmp.write_text(page)
    os.replace(tmp, html_path)
    if txt_path:
        tmp = Path(str(txt_path) + ".tmp")
        tmp.write_text(summary_text(rows))
        os.replace(tmp, txt_path)
    return rows


# --------------------------------------------------------------------------------------------
# Resume after kill -9: Snakemake's stale lock
# --------------------------------------------------------------------------------------------


def _run_record(workdir: Path) -> Path:
    return workdir / ".snakemake" / "vip-smk-run.json"


def record_run(workdir: str | os.PathLike) -> None:
    """Called from `onstart`: remember which process holds Snakemake's lock."""
    write_json_atomic(_run_record(Path(workdir)), {"pid": os.getpid(), "host": socket.gethostname(), "at": _now()})


def forget_run(workdir: str | os.PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        rec = read_json(_run_record(Path(workdir)))
        if rec.get("pid") == os.getpid():
            _run_record(Path(workdir)).unlink()


def clear_stale_lock(workdir: str | os.PathLike) -> bool:
    """If the run that took Snakemake's lock here was killed (kill -9, power loss) on this
    host, remove the lock it left so that `snakemake --cores 1` resumes without --unlock.
    A lock held by a live process, by another host, or not taken by vip-smk is left alone."""
    wd = Path(workdir)
    rec_path = _run_record(wd)
    try:
        rec = read_json(rec_path)
    except (FileNotFoundError, ValueError):
        return False
    if rec.get("host") != socket.gethostname() or pid_alive(int(rec.get("pid", 0))):
        return False
    locks = wd / ".snakemake" / "locks"
    removed = False
    if locks.is_dir():
        for f in locks.iterdir():
            with contextlib.suppress(OSError):
                f.unlink()
                removed = True
    with contextlib.suppress(OSError):
        rec_path.unlink()
    if removed:
        log.warning("removed the lock left by an interrupted run (pid %s, %s)", rec.get("pid"), rec.get("at"))
    return removed


def load_study_or_fail(config: Mapping[str, Any], workdir: str | os.PathLike | None = None) -> Study:
    """`load_study` for the Snakefile: a config mistake becomes a Snakemake WorkflowError
    (a clean message, no traceback) so that even `snakemake -n` stops on it."""
    from snakemake.exceptions import WorkflowError

    try:
        return load_study(config, workdir)
    except StudyConfigError as exc:
        raise WorkflowError(str(exc)) from None


# --------------------------------------------------------------------------------------------
# Entry points of the rules' `run:` blocks (one short call each; logs to the rule's log file)
# --------------------------------------------------------------------------------------------


def rule_upload(study: Study, wildcards, input, output, log) -> None:
    with job_log(log[0]):
        upload_dataset(study, wildcards.dataset, output[0])


def rule_launch(study: Study, wildcards, input, output, log) -> None:
    with job_log(log[0]):
        launch_session(study, wildcards.session, output[0], uploaded=input[0])


def rule_wait_and_download(study: Study, wildcards, input, output, log) -> None:
    with job_log(log[0]):
        wait_session(study, wildcards.session, input[0], output.done)
        download_session(study, wildcards.session, output.done, output.outputs)


def rule_finish_session(study: Study, wildcards, input, output, log) -> None:
    with job_log(log[0]):
        finish_session(study, wildcards.session, output[0])


def rule_finish_dataset(study: Study, wildcards, input, output, log) -> None:
    with job_log(log[0]):
        finish_dataset(study, wildcards.dataset, output[0])


def rule_summary(study: Study, wildcards, input, output, log) -> None:
    with job_log(log[0]):
        rows = write_summary(study, output.csv, output.html, output.txt)
        log_summary = logging.getLogger(__name__)
        ok = sum(1 for r in rows if r["status"] == _TERMINAL_OK)
        log_summary.info("study %s: %d/%d session(s) finished; summary in %s", study.name, ok, len(rows), output.html)

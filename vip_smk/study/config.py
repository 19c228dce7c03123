"""Study configuration: load, check against the schema (defaults filled from it), expand into
sessions and validate every session against its pipeline, with no network for ``url: local``.

Every mistake is reported before anything is uploaded or launched, each on one line naming the
session and the key (or, for a key the schema does not know, where it is and the closest known
key).
"""

from __future__ import annotations

import difflib
import glob
import hashlib
import itertools
import json
import logging
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from vip_smk.study.model import Session, Study, VipSettings  # noqa: F401 - re-exported
from vip_smk.study.schema import (  # noqa: F401 - re-exported: the study's config API
    SCHEMA_PATH,
    StudyConfigError,
    _raise_if_any,
    check_config,
    config_problems,
    fill_defaults,
    load_config,
    schema,
)

log = logging.getLogger(__name__)

_NAME_OK = re.compile(r"^[A-Za-z0-9_-]+$")
_GLOB_CHARS = set("*?[")
_RESERVED = {"datasets", "logs"}
MAX_SESSION_NAME = 100


# --------------------------------------------------------------------------------------------
# Expansion: study blocks x grid -> session specs
# --------------------------------------------------------------------------------------------


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

    def raise_if_any(self) -> None:
        _raise_if_any(self.items)


# Punctuation spelled out in session names ('-' and '_' are kept, '.' is 'p' as in 0p5).
_WORDS = {
    ",": "comma", ";": "semicolon", ":": "colon", "|": "pipe", "\t": "tab", " ": "space",
    "/": "slash", "\\": "backslash", "+": "plus", "*": "star", "=": "eq", "&": "and", "@": "at",
    "#": "hash", "%": "pct", "!": "excl", "?": "qmark", "'": "quote", '"': "dquote", "~": "tilde",
    "(": "lpar", ")": "rpar", "[": "lbr", "]": "rbr", "{": "lbrace", "}": "rbrace", "<": "lt",
    ">": "gt", "^": "caret", "$": "dollar",
}


def slug(value: Any) -> str:
    """A readable, stable fragment of a session name for a grid value: letters, digits, '-'
    and '_' only. Punctuation is spelled out (',' -> 'comma'); a value with other characters
    (accents, control characters...) gets a short hash of itself so two values never meet."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "+".join(slug(v) for v in value).replace("+", "_") or "empty"
    text = str(value)
    parts: list[str] = []
    lossy = False
    for i, ch in enumerate(text):
        if ch.isascii() and (ch.isalnum() or ch in "-_"):
            parts.append(ch)
        elif ch == "." and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit():
            parts.append("p")  # 0.5 -> 0p5
        elif ch in _WORDS or ch == ".":
            word = _WORDS.get(ch, "dot")
            sep_before = "" if not parts or parts[-1].endswith("_") else "_"
            parts.append(f"{sep_before}{word}_")
        else:
            lossy = True
            parts.append("_")
    out = re.sub(r"_+", "_", "".join(parts)).strip("_")
    if text == "":
        return "empty"
    if lossy or not out:
        digest = hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:6]
        out = f"{out}_{digest}" if out else f"v{digest}"
    return out


def _grid_points(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    keys = list(grid)
    values = [v if isinstance(v, list) else [v] for v in grid.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _default_name(ds: str, alias: str, point: Mapping[str, Any]) -> str:
    name = "-".join([ds, alias, *(f"{slug(k)}{slug(v)}" for k, v in point.items())])
    if len(name) > MAX_SESSION_NAME:  # stable: the hash of the full name
        name = name[: MAX_SESSION_NAME - 9] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


def expand_sessions(config: Mapping[str, Any]) -> tuple[list[dict[str, Any]], _Errors]:
    """The raw session specs (name, dataset, pipeline, parameters, settings, origin) from
    `study:` blocks and `sessions:` entries, without any check against VIP."""
    errors = _Errors()
    pipelines = config.get("pipelines") or {}
    specs: list[dict[str, Any]] = []
    for i, block in enumerate(config.get("study") or []):
        where = f"study[{i}]"
        points = _grid_points(block.get("grid") or {})
        for ds in block["datasets"]:
            for alias in block["pipelines"]:
                base = dict((pipelines.get(alias) or {}).get("settings") or {})
                for point in points:
                    template = block.get("name")
                    if template:
                        try:
                            name = template.format(dataset=ds, pipeline=alias, **point)
                        except (KeyError, IndexError, ValueError) as exc:
                            errors.add(where, f"{where}.name", f"template {template!r}: unknown field {exc}")
                            continue
                    else:
                        name = _default_name(ds, alias, point)
                    specs.append({"name": name, "dataset": ds, "pipeline": alias, "parameters": dict(point),
                                  "settings": {**base, **point}, "origin": where})
    for name, entry in (config.get("sessions") or {}).items():
        alias = entry["pipeline"]
        base = dict((pipelines.get(alias) or {}).get("settings") or {})
        own = dict(entry.get("settings") or {})
        specs.append({"name": name, "dataset": entry["dataset"], "pipeline": alias, "parameters": own,
                      "settings": {**base, **own}, "origin": "sessions"})
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

    def __init__(self, datasets: Mapping[str, Path], exclude: Mapping[str, list[str]] | None = None):
        self.datasets = datasets
        self.exclude = dict(exclude or {})  # `exclude:` globs; hidden files are always left out
        self._cache: dict[tuple[str, str], list[str]] = {}

    def left_out(self, dataset: str, rel: str) -> bool:
        from vip_smk.study.content import excluded

        return excluded(rel, tuple(self.exclude.get(dataset, ())))

    def match(self, dataset: str, pattern: str) -> list[str]:
        key = (dataset, pattern)
        if key not in self._cache:
            root = self.datasets[dataset]
            found = glob.glob(pattern, root_dir=root, recursive=True)
            self._cache[key] = sorted(Path(p).as_posix() for p in found
                                      if (root / p).is_file() and not self.left_out(dataset, Path(p).as_posix()))
        return self._cache[key]


def _resolve_file(value: Any, spec: Mapping[str, Any], param: str, study_root: str,
                  files: _DatasetFiles, errors: _Errors) -> Any:
    """A File setting (dataset-relative path, glob or /vip/ path) -> VIP path(s)."""
    ds = spec["dataset"]
    where, key = _where(spec), _key(spec, param)
    if isinstance(value, list):
        out: list[str] = []
        for v in value:
            r = _resolve_file(v, spec, param, study_root, files, errors)
            if r is not None:
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
        return [f"{remote}/{m}" for m in matched]
    if files.left_out(ds, PurePosixPath(Path(value).as_posix()).as_posix()):
        errors.add(where, key, f"{value!r} is hidden or excluded (datasets.{ds}.exclude): it is not uploaded")
        return None
    if not (files.datasets[ds] / value).is_file():
        errors.add(where, key, f"{value!r} is not a file of dataset '{ds}' ({files.datasets[ds]})")
        return None
    return f"{remote}/{PurePosixPath(Path(value).as_posix())}"


def _dataset_problems(root: Path, exclude: list[str] | None = None) -> list[str]:
    """What would make the dataset's upload fail (names VIP refuses, empty files, unreadable
    entries), found without any network so that the dry run reports it. Hidden and excluded
    files are not uploaded: not checked."""
    from vip_smk.study.content import excluded
    from vip_smk.transfer.trees import check_local_tree

    files, problems = check_local_tree(root)
    pats = tuple(exclude or ())
    files = [f for f in files if not excluded(f.rel, pats)]
    problems = [p for p in problems if not excluded(p.split(": ", 1)[0], pats)]
    if not files:
        problems = [*problems, f"{root} holds no file"]
    return problems[:5] + ([f"... and {len(problems) - 5} more"] if len(problems) > 5 else [])


def session_values(desc, spec: Mapping[str, Any], study_root: str, files: _DatasetFiles,
                   errors: _Errors) -> dict[str, Any]:
    """The session's VIP-bound input values (core.validate_settings on the settings, File
    values resolved in the dataset first), every problem added to `errors` under its key."""
    from vip_smk.core import SettingsError, check_against_descriptor

    where = _where(spec)
    params = [p.name for p in desc.parameters if not p.is_returned_value]
    settings: dict[str, Any] = {}
    unresolved: set[str] = set()
    for pname, value in spec["settings"].items():
        p = next((q for q in desc.parameters if q.name == pname), None)
        if p is not None and p.type == "File":
            resolved = _resolve_file(value, spec, pname, study_root, files, errors)
            if resolved is None:
                unresolved.add(pname)
                continue
            value = resolved
        settings[pname] = value
    try:
        return check_against_descriptor(None, desc.identifier, settings, pipeline=desc, where=where,
                                        descriptor=desc.extra.get("boutiques"))
    except SettingsError as exc:
        for problem in exc.problems:
            param = problem.param or ""
            if param in unresolved:
                continue  # already reported, with the dataset
            text = str(problem)
            if problem.kind == "unknown":
                close = difflib.get_close_matches(param, params, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'? " if close else ""
                text = f"unknown parameter of {desc.identifier} ({hint}known: {', '.join(sorted(params))})"
            errors.add(where, _key(spec, param), text)
    return {}


# --------------------------------------------------------------------------------------------
# load_study
# --------------------------------------------------------------------------------------------


def load_study(config: Mapping[str, Any], workdir: str | os.PathLike | None = None,
               descriptors: Mapping[str, Any] | None = None) -> Study:
    """Check `config` (schema, defaults) and expand it into validated sessions. Raises
    StudyConfigError listing every mistake.

    `descriptors`: pipeline id -> Pipeline / VIP JSON / None (unknown). When not given: the
    shipped apps for `url: local` (no server started), the cache of the last real run for a
    VIP URL, else fetched from VIP (read-only requests)."""
    wd = Path(workdir or os.getcwd()).resolve()
    config, problems = config_problems(config)
    if not problems:
        return _load_checked(config, wd, descriptors)
    # Schema mistakes: the other checks still run where the config allows, so that one pass
    # reports every mistake; those they cannot make sense of are left to the next pass.
    try:
        _load_checked(config, wd, descriptors, offline=True)
    except StudyConfigError as exc:
        problems += getattr(exc, "problems", None) or [str(exc)]
    except Exception as exc:  # the structure is too broken to go further
        log.debug("further checks skipped: %r", exc)
    _raise_if_any(problems)
    raise AssertionError("unreachable")  # pragma: no cover


def _load_checked(config: dict[str, Any], wd: Path, descriptors: Mapping[str, Any] | None,
                  offline: bool = False) -> Study:
    """load_study on a config that passed the schema (or, `offline`, one that did not: no
    request is made to VIP then)."""
    from vip_smk.core.client import Pipeline

    vip = VipSettings.from_config(config.get("vip"))
    name = config["name"]
    errors = _Errors()

    datasets: dict[str, Path] = {}
    dataset_exclude: dict[str, list[str]] = {}
    for ds, d in config["datasets"].items():
        if isinstance(d, Mapping):
            exclude = d.get("exclude") or []
            dataset_exclude[ds] = [p for p in exclude if isinstance(p, str)] if isinstance(exclude, list) else []
            d = d.get("path")
        if not isinstance(d, str):
            continue  # the schema reports it (offline check of a config that failed it)
        path = (wd / d).resolve()
        if not path.is_dir():
            errors.add(f"dataset '{ds}'", f"datasets.{ds}", f"{d!r} is not a directory ({path})")
        datasets[ds] = path
    pipelines = {alias: p["id"] for alias, p in config["pipelines"].items()}

    specs, expand_errors = expand_sessions(config)
    errors._groups.update(expand_errors._groups)
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
        if not _NAME_OK.match(spec["name"]) or len(spec["name"]) > MAX_SESSION_NAME or spec["name"] in _RESERVED:
            errors.add(where, "name", f"session names use letters, digits, '-' and '_' "
                                      f"(at most {MAX_SESSION_NAME}; not {sorted(_RESERVED)})")
        if spec["name"] in seen:
            other = seen[spec["name"]]
            errors.add(where, "name", f"same name as a session of {other['origin']}: give one a name "
                                      f"(study[i].name template or sessions:)")
        seen.setdefault(spec["name"], spec)
    for ds in sorted({s["dataset"] for s in specs if s["dataset"] in datasets}):
        if datasets[ds].is_dir():
            for problem in _dataset_problems(datasets[ds], dataset_exclude.get(ds)):
                errors.add(f"dataset '{ds}'", f"datasets.{ds}", problem)
    from vip_smk.study.descriptors import offline_descriptors

    # every alias is checked (an unused one with a wrong id too); sessions use the used ones
    all_pipelines = dict(pipelines)
    used = {s["pipeline"] for s in specs}
    pipelines = {alias: pid for alias, pid in pipelines.items() if alias in used}
    wanted = sorted(set(all_pipelines.values()))
    known_offline = True
    learned: dict[str, Any] = {}
    if descriptors is None:
        descriptors = dict(offline_descriptors(vip, wd) or {})
        missing = [pid for pid in wanted if pid not in descriptors]
        if missing and not vip.is_local:
            if offline or errors.items:  # VIP is never asked about a study with mistakes
                known_offline = False
            else:
                from vip_smk.study.connect import fetch_descriptors

                learned = {k: v for k, v in fetch_descriptors(vip, missing, wd).items() if v is not None}
                descriptors.update(learned)
                descriptors.update({pid: None for pid in missing if pid not in learned})
    models = {pid: (d if d is None or isinstance(d, Pipeline) else Pipeline.from_json(d))
              for pid, d in descriptors.items()}
    study_root = str(PurePosixPath(vip.root) / name)
    files = _DatasetFiles(datasets, dataset_exclude)
    sessions: dict[str, Session] = {}
    where_vip = "the shipped apps of the local VIP" if vip.is_local else vip.url
    for alias, pid in all_pipelines.items():
        if models.get(pid) is None and (pid in descriptors or known_offline):
            users = sorted({s["name"] for s in specs if s["pipeline"] == alias})
            close = difflib.get_close_matches(pid, [k for k, v in models.items() if v is not None], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            used_by = (f"used by {users[:3]}{'...' if len(users) > 3 else ''}" if users
                       else "used by no session")
            errors.add(f"pipeline '{alias}'", f"pipelines.{alias}.id",
                       f"pipeline {pid!r} not found on VIP ({where_vip}){hint}; {used_by}")
    for spec in specs:
        if spec["pipeline"] not in pipelines or spec["dataset"] not in datasets:
            continue  # reported above
        pid = pipelines[spec["pipeline"]]
        desc = models.get(pid)
        if desc is None:
            continue
        values = session_values(desc, spec, study_root, files, errors)
        sessions[spec["name"]] = Session(
            name=spec["name"], dataset=spec["dataset"], pipeline=spec["pipeline"], pipeline_id=pid,
            parameters=spec["parameters"], settings=spec["settings"], input_values=values,
            origin=spec["origin"],
        )
    errors.raise_if_any()
    return Study(name=name, vip=vip, datasets=datasets, pipelines=pipelines, sessions=sessions,
                 results=Path(config["results"]), workdir=wd, dataset_exclude=dataset_exclude,
                 learned=learned)

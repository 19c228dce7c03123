"""The study config's schema (workflow/schemas/config.schema.yaml): load the YAML, fill the
defaults, and report every mistake in one pass -- unknown keys with the closest known one,
then types and ranges -- each on one line naming the key."""

from __future__ import annotations

import copy
import difflib
import os
from functools import cache
from pathlib import Path
from typing import Any, Collection, Mapping

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class StudyConfigError(ValueError):
    """A mistake in the study configuration; the message names the session and the key."""




@cache
def _schema_text() -> str:
    return SCHEMA_PATH.read_text(encoding="utf-8")


def schema() -> dict[str, Any]:
    return yaml.safe_load(_schema_text())


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML study config file -> dict (a mistake in the YAML names the file and line)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise StudyConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except OSError as exc:
        raise StudyConfigError(f"{path}: {exc.strerror}") from None
    return data or {}


def fill_defaults(data: Any, sch: Mapping[str, Any]) -> Any:
    """Fill the schema's `default`s into `data` (in place; returned)."""
    if isinstance(data, dict) and sch.get("type") == "object":
        for key, sub in (sch.get("properties") or {}).items():
            if key not in data and "default" in sub:
                data[key] = copy.deepcopy(sub["default"])
            if key in data:
                fill_defaults(data[key], sub)
        extra = sch.get("additionalProperties")
        if isinstance(extra, dict):
            for key in data:
                if key not in (sch.get("properties") or {}):
                    fill_defaults(data[key], extra)
    elif isinstance(data, list) and isinstance(sch.get("items"), dict):
        for item in data:
            fill_defaults(item, sch["items"])
    return data


def _unknown_keys(data: Any, sch: Mapping[str, Any], where: str, suggested: set[str] | None = None) -> list[str]:
    """One line per key the schema does not allow, with the closest known key (added to
    `suggested` as its full path: the 'required' mistake it causes is the same one)."""
    out: list[str] = []
    if isinstance(data, dict) and sch.get("type") == "object":
        props = sch.get("properties") or {}
        extra = sch.get("additionalProperties", True)
        for key, value in data.items():
            path = f"{where}.{key}" if where else str(key)
            if key in props:
                out += _unknown_keys(value, props[key], path, suggested)
            elif extra is False:
                place = f"in {where}" if where else "at the top level"
                close = difflib.get_close_matches(str(key), list(props), n=1, cutoff=0.5)
                hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(props)}"
                if close and suggested is not None:
                    suggested.add(f"{where}.{close[0]}" if where else close[0])
                out.append(f"{path}: unknown key '{key}' {place} ({hint})")
            elif isinstance(extra, dict):
                out += _unknown_keys(value, extra, path, suggested)
    elif isinstance(data, list) and isinstance(sch.get("items"), dict):
        for i, item in enumerate(data):
            out += _unknown_keys(item, sch["items"], f"{where}[{i}]", suggested)
    return out


def _error_path(parts) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(parts))


def _schema_problems(data: Any, sch: Mapping[str, Any], suggested: Collection[str] = frozenset()) -> list[str]:
    """Every type/range mistake, one 'key.path: message' each (unknown keys are reported by
    `_unknown_keys`, with the closest known key). Empty without jsonschema (base install)."""
    try:
        from jsonschema.validators import validator_for
    except ImportError:  # without Snakemake's extra: defaults and unknown keys only
        return []
    validator = validator_for(sch)(sch)
    out = []
    for err in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        if err.validator == "additionalProperties":
            continue
        where = _error_path(err.absolute_path)
        if err.validator == "required":
            missing = [k for k in err.validator_value if isinstance(err.instance, dict) and k not in err.instance]
            if missing and all((f"{where}.{k}" if where else k) in suggested for k in missing):
                continue  # misspelt: reported with its closest known key
        out.append(f"{where or 'config'}: {err.message}")
    return list(dict.fromkeys(out))


def config_problems(config: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of `config`, defaults filled in, and every schema mistake in it (unknown keys
    with the closest known one, then types and ranges), one line each naming the key."""
    if not isinstance(config, Mapping):
        return {}, ["the config is not a mapping of keys"]
    data = copy.deepcopy(dict(config))
    sch = schema()
    suggested: set[str] = set()
    problems = _unknown_keys(data, sch, "", suggested)
    fill_defaults(data, sch)
    return data, problems + _schema_problems(data, sch, suggested)


def check_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `config` checked against the schema, defaults filled in. Raises
    StudyConfigError listing every mistake, each on one line naming the key."""
    data, problems = config_problems(config)
    _raise_if_any(problems)
    return data


def _raise_if_any(items: list[str]) -> None:
    if not items:
        return
    if len(items) == 1:
        exc = StudyConfigError(f"invalid study configuration: {items[0]}")
    else:
        head = f"invalid study configuration ({len(items)} errors):"
        exc = StudyConfigError("\n  ".join([head, *items]))
    exc.problems = list(items)  # type: ignore[attr-defined]
    raise exc

"""Input settings checked as VIP would, before anything is uploaded or launched: one
:class:`SettingsError` listing every problem."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

from vip_smk import boutiques, rules
from vip_smk.api.client import ApiClient, InvalidInput, NotFound, Pipeline

__all__ = ["Problem", "SettingsError", "dot_inputs_of", "launch_refusal", "validate_settings",
           "vip_file_check"]


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
    given = data.get("custom")
    custom = given if isinstance(given, Mapping) else {}
    dot = custom.get("vip:dot", data.get("vip:dot")) or []
    return [str(x) for x in dot] if isinstance(dot, (list, tuple)) else []


def validate_settings(pipeline: Pipeline, settings: Mapping[str, Any], *, where: str = "",
                      check_file: Callable[[str], str | None] | None = None,
                      dot_inputs: Iterable[str] | None = None,
                      descriptor: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Check input settings against a pipeline's parameters as VIP would, and return the input
    values to send (Booleans as ``"true"``/``"false"``, integers as ``int``, lists kept).

    Checked: unknown parameter names; required parameters (not optional, no default);
    empty values; types (``Boolean``/``Flag``, ``Int64``, ``Double``/``Number``, ``String``,
    ``File``; a list = one job per element, each element checked); the characters VIP accepts;
    File values through ``check_file(value) -> problem or None`` (e.g. :func:`vip_file_check`);
    lists of the ``vip:dot`` group (``dot_inputs``, else :func:`dot_inputs_of`) must have equal
    lengths. ``descriptor`` (the Boutiques descriptor, :meth:`ApiClient.descriptor`): also
    what only it says (:func:`vip_smk.boutiques.check_values`: vip:dot, value-choices, integer
    and bounds, groups, required inputs), in the same pass. Raises one :class:`SettingsError`
    listing every problem, naming ``where``.
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
    if descriptor is not None:  # what the CARMIN pipeline does not say, vip:dot included
        flagged = {p.param for p in problems}
        given = {n: (list(settings[n]) if isinstance(v, list) and len(v) != len(settings[n]) else v)
                 for n, v in out.items()}  # a list some of whose values failed keeps its length
        problems += [Problem(f.text, f.kind, f.param) for f in boutiques.check_values(descriptor, given)
                     if not (f.kind == "missing" and f.param in flagged)]
    group = [] if descriptor is not None else (
        list(dot_inputs) if dot_inputs is not None else dot_inputs_of(pipeline))
    lengths = {n: len(out[n]) for n in group if isinstance(out.get(n), list)}
    if len(set(lengths.values())) > 1:
        add("dot", ",".join(lengths), "vip:dot parameters need lists of equal length: "
            + ", ".join(f"{n} ({k})" for n, k in lengths.items()))
    if problems:
        raise SettingsError(problems, where=where, pipeline_id=pid)
    return out


def launch_refusal(error: Exception, values: Mapping[str, Any], *, where: str = "",
                   pipeline_id: str = "") -> SettingsError | None:
    """VIP's refusal (8009) of a launch whose list values have unequal lengths, as a
    :class:`SettingsError` naming each list parameter and its length; None if ``error`` is
    anything else. For callers that cannot know the pipeline's ``vip:dot`` group (a portal
    older than 4.6 serves no Boutiques descriptor): VIP refuses such a launch as a whole, so
    nothing was launched."""
    if getattr(error, "code", None) != 8009:
        return None
    lengths = {str(k): len(v) for k, v in values.items() if isinstance(v, (list, tuple))}
    if len(lengths) < 2 or len(set(lengths.values())) < 2:
        return None
    said = getattr(error, "message", None) or str(error)
    text = ("VIP refused the launch (nothing was launched): the list parameters have unequal "
            "lengths: " + ", ".join(f"{n} ({k})" for n, k in lengths.items())
            + ". If the pipeline pairs them element by element (vip:dot), give each list one "
            f"value per subject, in the same order. VIP said: {said}")
    return SettingsError([Problem(text, "dot", ",".join(lengths))], where=where,
                         pipeline_id=pipeline_id)


def vip_file_check(client: ApiClient) -> Callable[[str], str | None]:
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

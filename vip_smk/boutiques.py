"""What a pipeline's Boutiques descriptor says about input values, checked without any I/O.

VIP-portal 4.6 serves the whole descriptor (``GET pipelines/{id}?format=boutiques``,
:meth:`vip_smk.api.client.ApiClient.descriptor`); its CARMIN pipeline does not carry what is checked
here: the ``vip:dot`` group (``custom``), ``value-choices``, ``integer`` / ``minimum`` /
``maximum`` (``exclusive-minimum`` / ``exclusive-maximum``), ``min-list-entries`` /
``max-list-entries``, ``requires-inputs`` / ``disables-inputs``, ``groups``
(``mutually-exclusive``, ``all-or-none``, ``one-is-required``) and required inputs.

:func:`check_values` returns every problem in one pass (:class:`Finding`); the core
(:func:`vip_smk.core.validate_settings`) turns them into its one ``SettingsError``. Job
expansion (:func:`job_values`) is VIP-portal's: ``vip:dot`` lists paired element by element,
every other list crossed with them. No client import, no request: pure functions on dicts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Finding", "check_values", "dot_inputs", "inputs_of", "job_values"]

HIDDEN = "results-directory"  # VIP's hidden input, given by resultsLocation


@dataclass(frozen=True)
class Finding:
    """One problem: ``kind`` (``dot``, ``choice``, ``integer``, ``range``, ``list``,
    ``group``, ``requires``, ``disables``, ``missing``), the input(s) at fault (``param``,
    comma-separated when several) and the text naming them."""

    kind: str
    param: str
    text: str


def inputs_of(descriptor: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Input id -> its Boutiques input (VIP's hidden ``results-directory`` left out)."""
    return {str(i["id"]): i for i in descriptor.get("inputs") or []
            if isinstance(i, Mapping) and "id" in i and i["id"] != HIDDEN}


def dot_inputs(descriptor: Mapping[str, Any]) -> list[str]:
    """The ``vip:dot`` group (``custom["vip:dot"]``): inputs whose lists VIP pairs."""
    custom = descriptor.get("custom")
    ids = custom.get("vip:dot") if isinstance(custom, Mapping) else None
    if not ids:
        return []
    return [str(i) for i in ids] if isinstance(ids, (list, tuple)) else [str(ids)]


def _items(inp: Mapping[str, Any], value: Any) -> list:
    """The values of one input as VIP iterates them: a list is one job per element, except for
    a Boutiques ``list`` input, which takes its whole list in one job."""
    if isinstance(value, (list, tuple)) and not inp.get("list"):
        return list(value)
    return [value]


def _given(inp: Mapping[str, Any], value: Any) -> bool:
    """Whether a value counts as given (a Flag set to false does not)."""
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return False
    if inp.get("type") == "Flag":
        return any(str(v).strip().lower() == "true" for v in _items(inp, value))
    return True


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        n = float(v)
    except (TypeError, ValueError):
        return None
    return n if math.isfinite(n) else None


def _show(v: Any) -> str:
    return f"{v!r}" if isinstance(v, str) else str(v)


def _value_problems(key: str, inp: Mapping[str, Any], v: Any) -> list[Finding]:
    out: list[Finding] = []
    choices = inp.get("value-choices")
    if choices:
        if inp.get("type") == "Number":
            ok = _number(v) is not None and _number(v) in [_number(c) for c in choices]
        else:
            ok = str(v) in [str(c) for c in choices]
        if not ok:
            out.append(Finding("choice", key, f"{key}={_show(v)} is not one of its value-choices: "
                                              + ", ".join(_show(c) for c in choices)))
            return out
    if inp.get("type") != "Number":
        return out
    n = _number(v)
    if n is None:  # not a number at all: the CARMIN type check reports it
        return out
    if inp.get("integer") and not n.is_integer():
        out.append(Finding("integer", key, f"{key}={_show(v)} must be an integer"))
    for bound, exclusive, below in (("minimum", "exclusive-minimum", True),
                                    ("maximum", "exclusive-maximum", False)):
        limit = _number(inp.get(bound))
        if limit is None:
            continue
        strict = bool(inp.get(exclusive))
        bad = (n <= limit if strict else n < limit) if below else (n >= limit if strict else n > limit)
        if bad:
            sign = (">" if strict else ">=") if below else ("<" if strict else "<=")
            out.append(Finding("range", key, f"{key}={_show(v)} is out of range: it must be "
                                             f"{sign} {inp[bound]}"))
    return out


def check_values(descriptor: Mapping[str, Any], values: Mapping[str, Any]) -> list[Finding]:
    """Every problem of ``values`` (input id -> value, or a list: one job per element) against
    ``descriptor``, in one pass. Inputs the descriptor does not know are left to the CARMIN
    check (unknown parameters)."""
    inputs = inputs_of(descriptor)
    given = {k: v for k, v in values.items() if k in inputs and _given(inputs[k], v)}
    found: list[Finding] = []
    for key, inp in inputs.items():
        if key not in values:
            if not inp.get("optional", False) and inp.get("type") != "Flag" \
                    and inp.get("default-value") is None:
                found.append(Finding("missing", key, f"Missing input parameter: {key} "
                                                     f"(required by the descriptor)"))
            continue
        value = values[key]
        if inp.get("list") and isinstance(value, (list, tuple)):
            n = len(value)
            low, high = inp.get("min-list-entries"), inp.get("max-list-entries")
            if isinstance(low, int) and n < low or isinstance(high, int) and n > high:
                found.append(Finding("list", key, f"{key}: {n} entries; the pipeline takes "
                                                  f"{low if low is not None else 0} to "
                                                  f"{high if high is not None else 'any number'}"))
        for v in _items(inp, value):
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                found.extend(_value_problems(key, inp, item))
    for key in given:
        inp = inputs[key]
        lacking = [r for r in inp.get("requires-inputs") or [] if r not in given]
        if lacking:
            found.append(Finding("requires", ",".join([key, *lacking]),
                                 f"{key} requires {', '.join(lacking)} (not given)"))
        clash = [d for d in inp.get("disables-inputs") or [] if d in given]
        if clash:
            found.append(Finding("disables", ",".join([key, *clash]),
                                 f"{key} cannot be given with {', '.join(clash)}"))
    for group in descriptor.get("groups") or []:
        members = [str(m) for m in group.get("members") or []]
        name = group.get("name") or group.get("id") or "a group"
        on = [m for m in members if m in given]
        if group.get("mutually-exclusive") and len(on) > 1:
            found.append(Finding("group", ",".join(on), f"group '{name}' is mutually exclusive: "
                                                        f"give one of {', '.join(on)}, not {len(on)}"))
        if group.get("all-or-none") and 0 < len(on) < len(members):
            off = [m for m in members if m not in given]
            found.append(Finding("group", ",".join(off),
                                 f"group '{name}' is all-or-none: {', '.join(on)} given, so "
                                 f"{', '.join(off)} must be given too"))
        if group.get("one-is-required") and not on:
            found.append(Finding("group", ",".join(members), f"group '{name}' needs one of "
                                                             f"{', '.join(members)}"))
    dot = [k for k in dot_inputs(descriptor) if k in values and k in inputs]
    lengths = {k: len(_items(inputs[k], values[k])) for k in dot}
    if len(set(lengths.values())) > 1:
        found.append(Finding("dot", ",".join(lengths), "vip:dot parameters need lists of equal "
                             "length (VIP pairs them element by element): "
                             + ", ".join(f"{k} ({n})" for k, n in lengths.items())))
    return found


def job_values(descriptor: Mapping[str, Any], values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The values of each job of one execution, in VIP's job order: the ``vip:dot`` inputs
    paired element by element (outer), crossed with every other input (inner, in the order of
    ``values``). Assumes :func:`check_values` found no ``dot`` problem."""
    inputs = inputs_of(descriptor)
    lists = {k: _items(inputs.get(k, {}), v) for k, v in values.items()}
    dot = [k for k in dot_inputs(descriptor) if k in lists]
    cross = [k for k in lists if k not in dot]
    dots = [dict(zip(dot, row)) for row in zip(*(lists[k] for k in dot))] if dot else [{}]
    crosses = [dict(zip(cross, row)) for row in itertools.product(*(lists[k] for k in cross))]
    return [{**d, **c} for d in dots for c in crosses] or [{}]

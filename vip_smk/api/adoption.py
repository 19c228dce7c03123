"""Adoption, VIP's rule for "this execution is already the one you would launch": same name,
pipeline and inputs (as VIP echoes them), running or Finished with its results still on VIP.
The rules only (pure): the flows that ask VIP (`adoptable`, `results_present`) are in
`vip_smk.api.calls`, run by both clients; the resource client uses them to adopt a launch whose
reply was lost, `vip_smk.core` to launch or adopt."""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable, Mapping
from typing import Any

from vip_smk import rules
from vip_smk.api.errors import NotFound, VipError
from vip_smk.api.models import Execution

log = logging.getLogger("vip_smk.core")

__all__ = ["Union", "find_adoptable", "same_inputs", "unknown_execution"]


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


class Union:
    """Membership in either of two containers."""

    def __init__(self, a: Container[str], b: Container[str]) -> None:
        self._a, self._b = a, b

    def __contains__(self, item: object) -> bool:
        return item in self._a or item in self._b


def unknown_execution(exc: VipError) -> bool:
    """VIP answers an unknown execution id with 8015 "invalid execution id" (or a 404)."""
    return isinstance(exc, NotFound) or exc.code == 8015


_unknown_execution = unknown_execution  # (the name the core imported)

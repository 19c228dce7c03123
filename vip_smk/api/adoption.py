"""Adoption, VIP's rule for "this execution is already the one you would launch": same name,
pipeline and inputs (as VIP echoes them), running or Finished with its results still on VIP.
The resource client uses it to adopt a launch whose reply was lost; `vip_smk.core` to launch or
adopt. Imports the client only for annotations."""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable, Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from vip_smk import rules
from vip_smk.api.errors import InvalidInput, NotFound, VipError
from vip_smk.api.models import Execution

if TYPE_CHECKING:
    from vip_smk.api.client import ApiClient

log = logging.getLogger("vip_smk.core")

__all__ = ["adoptable_on_vip", "find_adoptable", "results_on_vip", "same_inputs"]


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


def _unknown_execution(exc: VipError) -> bool:
    """VIP answers an unknown execution id with 8015 "invalid execution id" (or a 404)."""
    return isinstance(exc, NotFound) or exc.code == 8015

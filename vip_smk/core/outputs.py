"""The result names a job writes, known before launching: from the Boutiques descriptor's
``output-files[].path-template`` and the input values (no request).

One execution's jobs follow VIP's expansion (:func:`vip_smk.boutiques.job_values`: ``vip:dot``
lists paired, every other list crossed). A job's output name is its path-template with the
input values substituted as Boutiques does it (value-keys; File values by their file name;
``path-template-stripped-extensions`` removed from File / String values; lists joined by the
input's ``list-separator``; defaults for inputs not given; keys of inputs without a value kept
as written), the file name of the result. Jobs of one execution that write the same name do
not overwrite each other on VIP: the first job to finish takes ``<name>``, each other one
``job<N>/<name>`` (N = its job number, from 1) under the execution's results folder.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from vip_smk import boutiques

__all__ = ["ExpectedOutput", "assign_results", "expected_outputs"]


@dataclass(frozen=True)
class ExpectedOutput:
    """One result of one job: ``job`` (VIP's job number, from 1), ``output_id``, ``name``
    (the file name), ``optional`` (the job may not write it), ``collides`` (another job of
    the execution writes the same name: then it lands at ``name`` or ``job<N>/name``)."""

    job: int
    output_id: str
    name: str
    optional: bool = False
    collides: bool = False

    @property
    def candidates(self) -> tuple[str, ...]:
        """Where it may land, relative to the execution's results folder."""
        return (self.name, f"job{self.job}/{self.name}") if self.collides else (self.name,)


def _as_engine(inp: Mapping[str, Any], v: Any) -> Any:
    """A value as VIP's job receives it: File -> its file name, Number -> int (integer) or
    float, Flag -> bool, anything else -> text."""
    t = inp.get("type")
    if t == "File":
        return PurePosixPath(str(v)).name
    if t == "Number":
        try:
            n = float(v)
        except (TypeError, ValueError):
            return v
        return int(n) if inp.get("integer") and n.is_integer() else n
    if t == "Flag":
        return v if isinstance(v, bool) else str(v).strip().lower() == "true"
    return v if isinstance(v, str) else str(v)


def _substitute(template: str, params: list[Mapping[str, Any]], values: Mapping[str, Any],
                stripped: list[str]) -> str:
    """Boutiques' value-key substitution of an output path-template (unfound keys kept)."""
    for p in params:
        key = p.get("value-key")
        if not key or p["id"] not in values:
            continue
        val = values[p["id"]]
        if isinstance(val, list):
            val = (p.get("list-separator") or " ").join(str(x) for x in val)
        if p.get("type") in ("File", "String") and isinstance(val, str):
            for ext in stripped:
                val = val.replace(ext, "")
        if val is not None and val != "":
            template = template.replace(key, str(val))
        else:
            template = template.replace(" " + key, "")
    return template


def expected_outputs(descriptor: Mapping[str, Any], values: Mapping[str, Any]) -> list[ExpectedOutput]:
    """The results the execution of ``values`` (the input values sent, lists included) writes,
    job by job in VIP's job order. Outputs without a ``path-template`` (a
    ``conditional-path-template``) are left out."""
    inputs = boutiques.inputs_of(descriptor)
    outputs = [o for o in descriptor.get("output-files") or [] if isinstance(o, Mapping) and o.get("id")]
    params = [*inputs.values(), *outputs]
    found: list[tuple[int, str, str, bool]] = []
    for job, given in enumerate(boutiques.job_values(descriptor, values), start=1):
        job_in = {k: inp.get("default-value") for k, inp in inputs.items()
                  if inp.get("default-value") is not None}
        for k, v in given.items():
            if k in inputs:
                inp = inputs[k]
                job_in[k] = [_as_engine(inp, x) for x in v] if isinstance(v, (list, tuple)) \
                    else _as_engine(inp, v)
        names: dict[str, str] = {}
        for _ in range(2):  # twice, as Boutiques: a template may name another output's key
            for o in outputs:
                if "path-template" not in o:
                    continue
                current = names.get(o["id"], str(o["path-template"]))
                names[o["id"]] = _substitute(current, params, {**job_in, **names},
                                             list(o.get("path-template-stripped-extensions") or []))
        for o in outputs:
            name = PurePosixPath(names.get(o["id"], "")).name
            if name:
                found.append((job, str(o["id"]), name, bool(o.get("optional", False))))
    jobs_of = Counter(name for _, name in {(job, name) for job, _, name, _ in found})
    return [ExpectedOutput(job, oid, name, optional, jobs_of[name] > 1)
            for job, oid, name, optional in found]


def assign_results(expected: Iterable[ExpectedOutput], results: Iterable[str]) -> dict[int, list[str]]:
    """Job number -> the results it wrote, from the paths of an execution's results relative to
    its results folder (``name`` or ``job<N>/name``). A name several jobs write is job N's at
    ``job<N>/name``; at ``name``, it is the one of those jobs not found under its ``job<N>/``
    (left unassigned when more than one is not: a job that failed could not be told apart)."""
    expected = list(expected)
    present = set(results)
    out: dict[int, list[str]] = {e.job: [] for e in expected}
    for e in expected:
        if not e.collides:
            if e.name in present:
                out[e.job].append(e.name)
        elif f"job{e.job}/{e.name}" in present:
            out[e.job].append(f"job{e.job}/{e.name}")
        elif e.name in present:
            unplaced = {r.job for r in expected if r.name == e.name
                        and f"job{r.job}/{r.name}" not in present}
            if unplaced == {e.job}:
                out[e.job].append(e.name)
    return out

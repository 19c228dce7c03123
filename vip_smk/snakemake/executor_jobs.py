"""From a Snakemake job to a VIP execution request: the mapping behind `--executor vip`.

A rule runs on VIP when it is not a local rule and names its pipeline in
``resources.vip_pipeline``:

- each *named* input is a File parameter of the pipeline; its files must be VIP storage
  objects (``vip://...``, or plain paths under ``--default-storage-provider vip``); a name
  holding several files gives a list value (one VIP job per file, as VIP does);
- each *named* ``params`` entry is another parameter of the pipeline, by name;
- the single output is a ``directory()`` on VIP: the execution's ``resultsLocation``;
- the rule's body (``shell``/``run``/``script``) is never run: Snakemake only sends rules with a
  body to an executor, so a VIP rule carries one (``shell: "# runs on VIP"``).

This module only reads Snakemake job objects; it talks to no server. The checks of the values
against the pipeline's descriptor are the shared core's (`vip_smk.core.validate_settings`).
"""

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PIPELINE_RESOURCE = "vip_pipeline"
SCHEME = "vip://"
# execution names VIP accepts (0-9 A-Z a-z - _ space, code 8019); we use no spaces
_NAME_UNSAFE = re.compile(r"[^0-9A-Za-z_-]+")
NAME_MAX = 96  # characters of the name before the hash; the whole name stays short


@dataclass
class VipRequest:
    """What one Snakemake job asks of VIP."""

    rule: str
    where: str  # "rule smooth (subject=s1)": the culprit named in every message
    pipeline_id: str
    settings: dict[str, Any]  # parameter -> value (File values are VIP paths, lists kept)
    file_inputs: tuple[str, ...]  # the parameters that came from named inputs
    results_location: str  # VIP path of the output directory
    wildcards: dict[str, str] = field(default_factory=dict)

    def input_paths(self) -> list[str]:
        """The VIP paths of the job's input files."""
        out: list[str] = []
        for name in self.file_inputs:
            v = self.settings.get(name)
            out.extend(v if isinstance(v, list) else [v] if v else [])
        return out

    def execution_name(self, values: Mapping[str, Any] | None = None) -> str:
        """The deterministic execution name: rule, wildcards, then a short hash of the
        pipeline, the input values and the results location (a rerun finds it again)."""
        return execution_name(self.rule, self.wildcards, self.pipeline_id,
                              self.settings if values is None else values, self.results_location)


def execution_name(rule: str, wildcards: Mapping[str, Any], pipeline_id: str,
                   values: Mapping[str, Any], results_location: str) -> str:
    blob = json.dumps([rule, sorted((str(k), str(v)) for k, v in wildcards.items()), pipeline_id,
                       _canonical(values), results_location], sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:8]
    parts = [rule] + [str(v) for v in wildcards.values()]
    readable = _NAME_UNSAFE.sub("_", "-".join(parts)).strip("_-") or "job"
    return f"{readable[:NAME_MAX]}-{digest}"


def _canonical(values: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): (list(map(str, v)) if isinstance(v, (list, tuple)) else str(v))
            for k, v in sorted(values.items())}


def vip_path(iofile) -> str | None:
    """The VIP path of a Snakemake file if it is a ``vip://`` storage object, else None."""
    if not getattr(iofile, "is_storage", False):
        return None
    query = getattr(iofile.storage_object, "query", None)
    if not isinstance(query, str) or not query.startswith(SCHEME):
        return None
    rest = query[len(SCHEME):].strip("/")
    return "/" + rest if rest else None


def describe(iofile) -> str:
    """How a file appears to the user: its query if it is a storage object, else its path."""
    if getattr(iofile, "is_storage", False):
        return str(getattr(iofile.storage_object, "query", iofile))
    return str(iofile)


def where(job) -> str:
    wildcards = dict(getattr(job, "wildcards_dict", None) or {})
    wc = ", ".join(f"{k}={v}" for k, v in wildcards.items())
    return f"rule {job.rule.name}" + (f" ({wc})" if wc else "")


def job_request(job) -> tuple[VipRequest | None, list[str]]:
    """Map one (non-local, non-group) Snakemake job to a VipRequest.

    Returns ``(request, problems)``; every problem names the rule (and wildcards) and the
    input, parameter or output concerned. ``request`` is None when there is any problem.
    """
    here = where(job)
    problems: list[str] = []
    pid = job.resources.get(PIPELINE_RESOURCE) if job.resources is not None else None
    if not pid:
        return None, [f"{here}: no resources.{PIPELINE_RESOURCE}: name the VIP pipeline "
                      f"(e.g. {PIPELINE_RESOURCE}=\"Smooth/1.0\"), or list the rule in "
                      "`localrules:` to run it here"]
    pid = str(pid)

    settings: dict[str, Any] = {}
    files: list[str] = []
    problems += [f"{here}: input {describe(f)!r} has no name: name each input after a File "
                 f"parameter of {pid} (input: input_file=...)" for f in _unnamed(job.input)]
    for name, value in job.input.items():
        items = list(value) if _is_list(value) else [value]
        paths = []
        for f in items:
            p = vip_path(f)
            if p is None:
                problems.append(
                    f"{here}: input {name}={describe(f)!r} is not on VIP: a VIP pipeline reads "
                    "VIP files only (use storage.vip(\"vip://vip/Home/...\") or "
                    "--default-storage-provider vip)")
            else:
                paths.append(p)
        settings[name] = paths if _is_list(value) else (paths[0] if paths else None)
        files.append(name)

    problems += [f"{here}: params value {v!r} has no name: name each params entry after a "
                 f"parameter of {pid}" for v in _unnamed(job.params)]
    for name, value in job.params.items():
        if name in settings:
            problems.append(f"{here}: parameter {name!r} given both as an input and in params")
            continue
        settings[name] = list(value) if _is_list(value) else value

    outputs = list(job.output)
    results = None
    if len(outputs) != 1:
        listed = ": " + ", ".join(repr(describe(o)) for o in outputs) if outputs else ""
        problems.append(f"{here}: a VIP rule has exactly one output, a directory() on VIP (the "
                        f"execution's results), not {len(outputs)}{listed}")
    else:
        out = outputs[0]
        results = vip_path(out)
        if not getattr(out, "is_directory", False):
            problems.append(f"{here}: output {describe(out)!r} must be a directory() (VIP writes "
                            "the execution's results in it)")
        if results is None:
            problems.append(f"{here}: output {describe(out)!r} is not on VIP: VIP writes its "
                            "results on VIP (use --default-storage-provider vip)")
    if problems:
        return None, problems
    assert results is not None  # (None added a problem above)
    return VipRequest(
        rule=job.rule.name, where=here, pipeline_id=pid, settings=settings,
        file_inputs=tuple(files), results_location=results,
        wildcards={str(k): str(v) for k, v in dict(getattr(job, "wildcards_dict", None) or {}).items()},
    ), []


def local_job_problems(job) -> list[str]:
    """A job Snakemake keeps here but that names a VIP pipeline: its body would run here
    instead of the pipeline. Snakemake keeps a job local when its rule is in `localrules:` or
    when one of its files is marked local()."""
    pid = job.resources.get(PIPELINE_RESOURCE) if job.resources is not None else None
    if not pid:
        return []
    here = where(job)
    local_files = [f for f in list(job.input) + list(job.output)
                   if (getattr(f, "flags", None) or {}).get("local")]
    if local_files:
        return [f"{here}: names {PIPELINE_RESOURCE}={pid} but {describe(f)!r} is a local() "
                "file, so Snakemake runs the rule here; a VIP pipeline reads and writes VIP "
                "files only" for f in local_files]
    return [f"{here}: names {PIPELINE_RESOURCE}={pid} but is a local rule (`localrules:`): "
            "remove it from localrules to run it on VIP"]


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple)) and not isinstance(value, str)


def _unnamed(namedlist) -> list:
    """The items of a Snakemake Namedlist (input, params) that carry no name."""
    named: set[int] = set()
    for _name, (start, end) in getattr(namedlist, "_names", {}).items():
        named.update(range(start, start + 1 if end is None else end))
    return [v for i, v in enumerate(namedlist) if i not in named]


def input_problems(request: VipRequest, pipeline) -> list[str]:
    """Named inputs must be File parameters of the pipeline (the core checks the rest)."""
    problems = []
    for name in request.file_inputs:
        try:
            param = pipeline.parameter(name)
        except Exception:  # unknown: the core's check names it with the known parameters
            continue
        if getattr(param, "type", "File") != "File":
            problems.append(f"{request.where}: input {name!r} is a {param.type} parameter of "
                            f"{request.pipeline_id}, not a File: give it in params")
    return problems


def unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in items:
        seen.setdefault(i, None)
    return list(seen)

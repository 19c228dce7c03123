"""Results: one local layout, one extraction rule; and the removal of remote data."""

from __future__ import annotations

import logging
import os
import tarfile
import time
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from vip_smk import rules
from vip_smk.api.client import ApiClient, Execution, PathInfo, TooLarge
from vip_smk.transfer import trees

log = logging.getLogger("vip_smk.core")

__all__ = ["ResultsReport", "download_results", "extract_archive", "remove_remote", "results_layout"]



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
    too_large: dict[str, tuple[int, int]] = field(default_factory=dict)  # vip path -> (size, limit)
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


def download_results(client: ApiClient, executions: Iterable[Execution] | Mapping[str, Iterable[Any]],
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
    from vip_smk.transfer.trees import TransferError

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
        tr = trees.download_files(client, items, extract=unzip, progress=progress)
    except TransferError as exc:
        tr = exc.report
        for path, why in exc.failures:
            report.failed[str(path)] = str(why)
            if isinstance(why, TooLarge):  # VIP will never send it (also in .failed)
                report.too_large[str(path)] = (why.size, why.limit)
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
    from vip_smk.transfer.trees import extract_archive as _extract

    path = Path(path)
    if not tarfile.is_tarfile(path):
        raise tarfile.ReadError(f"{path} is not a tar archive")
    _extract(path)
    return path


# --------------------------------------------------------------------------------------------
# Remove
# --------------------------------------------------------------------------------------------


def remove_remote(client: ApiClient, vip_path: str, *, timeout: float = 300) -> bool:
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

"""What a tree transfer does, decided once for the sync (`vip_smk.transfer.trees`, threads) and
the async (`vip_smk.transfer.async_trees`, one event loop) transfers: which folders hold files,
which files are sent or skipped (from one listing per folder), which downloads are needed,
too large, or already there. Pure: no request, the local disk read only for sizes and dates.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from vip_smk.api.errors import InvalidInput, NotFound
from vip_smk.transfer import local_tree as lt
from vip_smk.transfer.archives import recover_extraction

if TYPE_CHECKING:
    from vip_smk.api.models import PathInfo


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


@dataclass
class TransferReport:
    """What a transfer did. `requests` counts the HTTP requests the client made meanwhile."""

    direction: str  # "upload" | "download"
    files_transferred: int = 0
    files_skipped: int = 0
    bytes_transferred: int = 0
    requests: int = 0
    seconds: float = 0.0
    transferred: list[str] = field(default_factory=list)  # local paths
    skipped: list[str] = field(default_factory=list)
    extracted: list[str] = field(default_factory=list)  # directories made from archives
    warnings: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)  # upload with `hasher`: rel -> hex digest

    def __str__(self) -> str:
        verb = "uploaded" if self.direction == "upload" else "downloaded"
        text = (
            f"{verb} {self.files_transferred} file(s) ({_human(self.bytes_transferred)}), "
            f"skipped {self.files_skipped} unchanged, {self.requests} request(s) in {self.seconds:.1f} s"
        )
        if self.extracted:
            text += f", extracted {len(self.extracted)} archive(s)"
        return text

    def skip(self, local: Path | str) -> None:
        self.files_skipped += 1
        self.skipped.append(str(local))


# --------------------------------------------------------------------------------------------
# Upload
# --------------------------------------------------------------------------------------------


def folders_of(files: Iterable[lt.LocalFile]) -> list[list[str]]:
    """The local folders that hold files (empty ones are ignored, as VIP's client does), level
    by level, the tree's root ("") first."""
    dirs = {""}
    for f in files:
        d = lt.parent(f.rel)
        while d not in dirs:
            dirs.add(d)
            d = lt.parent(d)
    by_depth = sorted(dirs - {""}, key=lambda d: (lt.depth(d), d))
    return [[""]] + [[d for d in by_depth if lt.depth(d) == n] for n in sorted({lt.depth(d) for d in by_depth})]


def listing_of(infos: Iterable[PathInfo]) -> dict[str, PathInfo]:
    return {PurePosixPath(i.path).name: i for i in infos}


def to_list(level: list[str], remote: dict[str, dict[str, PathInfo] | None], clashes: list[str]) -> list[str]:
    """The folders of a level that exist on VIP (to be listed); the others are marked to be
    created (None in `remote`), a file in the way of a folder is a clash."""
    out = []
    for d in level:
        parent = remote[lt.parent(d)]
        entry = parent.get(d.rsplit("/", 1)[-1]) if parent is not None else None
        if entry is None:
            remote[d] = None
        elif not entry.is_directory:
            clashes.append(f"{d}: a file with this name exists on VIP ({entry.path})")
            remote[d] = None
        else:
            out.append(d)
    return out


def uploads(files: list[lt.LocalFile], remote: dict[str, dict[str, PathInfo] | None], *, skew: float,
            known: Callable[[str], bool | None] | None, mtime_check: bool, report: TransferReport,
            clashes: list[str]) -> list[lt.LocalFile]:
    """The files to send (see `upload_tree`); the unchanged ones are skipped in `report`."""
    todo: list[lt.LocalFile] = []
    for f in files:
        listing = remote[lt.parent(f.rel)]
        entry = listing.get(f.rel.rsplit("/", 1)[-1]) if listing else None
        same = None if entry is None or entry.size != f.size or known is None else known(f.rel)
        if entry is not None and entry.is_directory:
            clashes.append(f"{f.rel}: a directory with this name exists on VIP ({entry.path})")
        elif same is False:
            todo.append(f)
        elif entry is not None and entry.size == f.size and (same or not (
                mtime_check and lt.newer(f.mtime + skew, entry.last_modification_date))):
            report.skip(f.path)
        else:
            todo.append(f)
    return todo


def new_folders(levels: list[list[str]], remote: dict[str, dict[str, PathInfo] | None]) -> list[list[str]]:
    """The folders to create below the root, level by level (parents first)."""
    return [[d for d in level if remote[d] is None] for level in levels[1:]]


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


def local_path(vip_dir: str, info: PathInfo, local_dir: Path) -> Path:
    """Where a file under `vip_dir` goes: local names valid everywhere (VIP's
    dd-mm-yyyy_HH:MM:SS folders), as every face does."""
    from vip_smk.rules import local_name

    rel = PurePosixPath(info.path).relative_to(vip_dir)
    return local_dir.joinpath(*map(local_name, rel.parts))


def pairs_to_resolve(pairs: Iterable[tuple[Any, Any]]) -> tuple[list[tuple[PathInfo | None, str, Path]], list[str]]:
    """`download_files`' pairs as (info or None, VIP path, local path), and the folders to list
    for the sizes the caller did not give."""
    items: list[tuple[PathInfo | None, str, Path]] = []
    for vip, local in pairs:
        info = None if isinstance(vip, (str, os.PathLike, PurePosixPath)) else vip  # a PathInfo
        path = info.path if info else str(vip)
        if info is not None and (info.size is None or info.is_directory):
            info = None
        items.append((info, path, Path(local)))
    return items, sorted({str(PurePosixPath(p).parent) for i, p, _ in items if i is None})


def resolve(items: list[tuple[PathInfo | None, str, Path]], listings: dict[str, Any],
            failures: list[tuple[str, Exception]]) -> list[tuple[PathInfo, Path]]:
    """The pairs of `pairs_to_resolve` with their sizes from `listings` (parent -> {path: info}
    or the error its listing raised); what cannot be fetched goes to `failures`."""
    resolved: list[tuple[PathInfo, Path]] = []
    for info, path, local in items:
        if info is None:
            listing = listings[str(PurePosixPath(path).parent)]
            if isinstance(listing, Exception):
                failures.append((path, listing))
                continue
            info = listing.get(path.rstrip("/"))
            if info is None:
                failures.append((path, NotFound(f"download {path}: no such file on VIP",
                                                call="download", target=path)))
                continue
            if info.is_directory:
                failures.append((path, InvalidInput(f"download {path}: is a directory (use download_tree)",
                                                    call="download", target=path)))
                continue
        resolved.append((info, local))
    return resolved


@dataclass
class Downloads:
    """What a download of many files has to do."""

    todo: list[tuple[PathInfo, Path]]
    new: set[Path]  # files whose folder is not there yet (no .part to resume)
    pending_extract: list[Path]  # downloaded before, their extraction interrupted

    def partial(self, local: Path) -> int:
        if local in self.new:
            return 0
        try:
            return local.with_name(local.name + ".part").stat().st_size
        except OSError:
            return 0

    def total(self) -> int:
        return sum(max(0, (info.size or 0) - self.partial(local)) for info, local in self.todo)


def downloads(pairs: list[tuple[PathInfo, Path]], *, skew: float, extract: bool, mtime_check: bool,
              call: str, report: TransferReport, failures: list[tuple[str, Exception]]) -> Downloads:
    """The files to fetch: those not already there with the remote size and not older than the
    remote copy (a null date is unknown: the size decides)."""
    plan = Downloads([], set(), [])
    # folders not there yet (a first download): none of their files is looked up on disk
    # (two system calls fewer per file before the first request)
    dirs: dict[Path, bool] = {}
    for info, local in pairs:
        parent = local.parent
        there = dirs.get(parent)
        if there is None:
            there = dirs[parent] = parent.is_dir()
        if not there:
            plan.new.add(local)
            plan.todo.append((info, local))
            continue
        if extract and (recover_extraction(local) or local.is_dir()):
            report.skip(local)
            continue
        try:
            st = local.stat()
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            failures.append((str(local), InvalidInput(f"{call} {info.path}: {local} is a directory",
                                                      call=call, target=info.path)))
            continue
        remote_date = info.last_modification_date  # None (VIP may send null): unknown, not 1970
        if st is not None and info.size is not None and st.st_size == info.size and not (
                mtime_check and remote_date is not None and lt.newer(remote_date - skew, st.st_mtime)):
            report.skip(local)
            if extract and tarfile.is_tarfile(local):
                plan.pending_extract.append(local)
            continue
        plan.todo.append((info, local))
    return plan


def fitting(plan: Downloads, size_error, failures: list[tuple[str, Exception]]) -> None:
    """Drop from `plan.todo` the files over VIP's direct-transfer limit (`size_error(path,
    size)`: the TooLarge, or None), reported in `failures`, never fetched."""
    fits = []
    for info, local in plan.todo:
        err = size_error(info.path, info.size)
        if err is not None:
            failures.append((info.path, err))
        else:
            fits.append((info, local))
    plan.todo = fits


__all__ = ["Downloads", "TransferReport", "downloads", "fitting", "folders_of", "listing_of", "local_path",
           "new_folders", "pairs_to_resolve", "resolve", "to_list", "uploads"]

"""Tree transfers between a local disk and VIP: `upload_tree`, `download_tree`,
`download_files`.

- one `action=list` per directory to decide what to send (never one request per file);
- a file is unchanged when its size is the remote one and it is not newer than the remote
  copy (a null `lastModificationDate` is unknown: the size decides); `checksum=True` also
  compares md5 where the server computes it (VIP answers 8001: asked once, then size/date);
- before anything is sent, one `PreflightError` lists *all* problems (0-byte files, names VIP
  would rename, characters VIP refuses in input values, unreadable files, file/dir clashes);
  the local scan and checks, and the unchanged tests, are `vip_smk.transfer.local_tree`;
- concurrency adapted to sizes on the client's connections: many small files in flight, at
  most `LARGE_IN_FLIGHT` large ones (`vip_smk.transfer.scheduling`); streaming (memory independent of
  sizes: one file's body is `vip_smk.api.streams`, through the client);
- downloads go through `NAME.part` (size-checked, fsynced, renamed; a left-over `.part` is
  resumed with `Range`); files over VIP's `maxSizeDirectTransfer` are reported, not fetched;
- tarballs optionally extracted (`vip_smk.transfer.archives`); tqdm progress (`vip_smk.transfer.progress`).

This module (and those it uses) imports the client's errors and VIP's rules, never
`vip_smk.api.client` (which imports it): no import cycle.
"""

from __future__ import annotations

import logging
import os
import tarfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vip_smk.api.errors import AuthError, InvalidInput, NotFound, PermissionDenied, VipError
from vip_smk.transfer import local_tree as lt
from vip_smk.transfer import plan, scheduling
from vip_smk.transfer.archives import extract_archive
from vip_smk.transfer.local_tree import check_local_tree  # noqa: F401  (re-exported)
from vip_smk.transfer.plan import TransferReport
from vip_smk.transfer.progress import Progress, want_progress
from vip_smk.transfer.scheduling import WHOLE, WRITE_QUEUE, WRITERS

if TYPE_CHECKING:  # annotations only: the client imports this module, never the reverse
    from vip_smk.api.client import ApiClient, PathInfo

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Report and errors
# --------------------------------------------------------------------------------------------


class PreflightError(InvalidInput):
    """Problems found before anything was sent. `.problems` lists them all."""

    def __init__(self, call: str, target: str, problems: list[str]):
        self.problems = list(problems)
        lines = "\n  ".join(self.problems)
        super().__init__(
            f"{call} {target}: nothing sent, {len(self.problems)} problem(s) to fix first:\n  {lines}",
            call=call,
            target=target,
        )


# Failures that a rerun meets again (too large, refused, missing, bad key): no "run again" advice
PERMANENT = (InvalidInput, NotFound, PermissionDenied, AuthError)


class TransferError(VipError):
    """Some files failed. `.failures` = [(path, exception)], `.report` = what succeeded."""

    def __init__(self, call: str, target: str, failures: list[tuple[str, Exception]], report: TransferReport):
        self.failures = failures
        self.report = report
        first = failures[0][1]
        lines = "\n  ".join(f"{p}: {e}" for p, e in failures[:20])
        more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
        lasting = [e for _, e in failures if isinstance(e, PERMANENT)]
        if len(lasting) == len(failures):  # a rerun would meet the same refusals
            advice = "running again will not help: see each file's reason"
        elif lasting:
            advice = f"run again to resume; {len(lasting)} of them will fail the same way (see why)"
        else:
            advice = "run again to resume"
        super().__init__(
            f"{call} {target}: {len(failures)} file(s) failed ({report.files_transferred} done, "
            f"{report.files_skipped} unchanged; {advice}):\n  {lines}{more}",
            code=getattr(first, "code", None),
            status=getattr(first, "status", None),
            call=call,
            target=target,
        )


# --------------------------------------------------------------------------------------------
# Upload
# --------------------------------------------------------------------------------------------


def upload_tree(
    client: ApiClient,
    local_dir: str | os.PathLike,
    vip_dir: str,
    *,
    workers: int | None = None,
    progress: bool | None = None,
    checksum: bool = False,
    mtime_check: bool = True,
    known: Callable[[str], bool | None] | None = None,
    hasher: Callable[[], Any] | None = None,
) -> TransferReport:
    """Make `vip_dir` hold every file of `local_dir` (incremental: unchanged files are not
    re-sent; remote extras are left alone). Raises PreflightError before sending anything if
    the tree has problems, TransferError if some files failed (the others are in place).

    A file is re-sent when its size differs from the remote one, or (`mtime_check`) when it
    was modified after the remote copy was written (from the same listing: no extra request;
    2 s of slack for clock skew and whole-second dates), or (`checksum`) when the md5 the
    server computes differs (one request per same-size file).

    `known(rel)`, for a file whose remote copy has its size: True = its content is the one
    sent before (skipped whatever the dates: a file rewritten with the same bytes is not
    re-sent), False = changed (sent), None = no record (the rules above decide). Missing or
    other-size remote copies are always sent. `hasher`: a factory of incremental hashes
    (`vip_smk.core.content.hasher`): each file sent is hashed while it is read for the upload,
    its hex digest in `report.digests[rel]`."""
    t0 = time.monotonic()
    req0 = client.requests_made
    local_dir = Path(local_dir)
    vip_dir = str(vip_dir).rstrip("/") or "/"
    report = TransferReport("upload")
    if not local_dir.is_dir():
        raise InvalidInput(f"upload_tree {local_dir}: not a directory", call="upload_tree", target=vip_dir)
    files, problems = check_local_tree(local_dir)
    if problems:
        raise PreflightError("upload_tree", str(local_dir), problems)
    n = scheduling.pool_size(client, workers)

    levels = plan.folders_of(files)
    remote: dict[str, dict[str, PathInfo] | None] = {}  # rel dir -> listing, None = to create
    clashes: list[str] = []
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="vip-up") as ex:
        # 1. one listing per existing directory, level by level
        try:
            remote[""] = plan.listing_of(client.list(vip_dir))
        except NotFound:
            remote[""] = None
        for level in levels[1:]:
            listed = plan.to_list(level, remote, clashes)
            for d, fut in scheduling.map_as_completed(ex, lambda d: client.list(lt.join(vip_dir, d)), listed):
                remote[d] = plan.listing_of(fut.result())
        # 2. decide (dates compared on the server's clock)
        todo = plan.uploads(files, remote, skew=lt.skew(client), known=known, mtime_check=mtime_check,
                            report=report, clashes=clashes)
        if clashes:
            raise PreflightError("upload_tree", str(local_dir), sorted(clashes))
        if checksum and report.skipped:
            todo.extend(lt.changed_by_md5(client, ex, files, vip_dir, report))
        # 3. create the missing directories (parents first)
        if remote[""] is None:
            client.mkdir(vip_dir, parents=True, known_missing=True)
        for level in plan.new_folders(levels, remote):
            for _, fut in scheduling.map_as_completed(ex, lambda d: client.mkdir(lt.join(vip_dir, d), known_missing=True), level):
                fut.result()
        # 4. send
        prog = Progress(want_progress(client.progress if progress is None else progress),
                         "upload", sum(f.size for f in todo), len(todo))
        failures: list[tuple[str, Exception]] = []
        try:
            def send(f: lt.LocalFile):
                digest = client.upload(f.path, lt.join(vip_dir, f.rel), progress=prog.add_bytes,
                                       hasher=hasher)
                if digest is not None:
                    report.digests[f.rel] = digest
                prog.file_done()

            def sent(f: lt.LocalFile, _, error: Exception | None) -> None:
                if error is not None:
                    failures.append((str(f.path), error))
                    log.error("upload %s: %s", f.path, error)
                else:
                    report.files_transferred += 1
                    report.transferred.append(str(f.path))

            scheduling.run_sized(n, send, todo, lambda f: f.size, "vip-up", sent)
        finally:
            prog.close()
    report.bytes_transferred = prog.bytes
    report.requests = client.requests_made - req0
    report.seconds = time.monotonic() - t0
    if failures:
        raise TransferError("upload_tree", vip_dir, sorted(failures, key=lambda x: x[0]), report)
    log.info("upload_tree %s -> %s: %s", local_dir, vip_dir, report)
    return report


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


def list_tree(client: ApiClient, vip_dir: str, *, workers: int | None = None,
              on_listing=None) -> list[PathInfo]:
    """Every file under vip_dir (one `action=list` per directory, parallel per level).
    `on_listing(executor, files)` is called (in the caller's thread) as each listing arrives,
    e.g. to start other requests on the same pool while the remaining listings run."""
    vip_dir = str(vip_dir).rstrip("/") or "/"
    n = scheduling.pool_size(client, workers)
    out: list[PathInfo] = []
    level = [vip_dir]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="vip-ls") as ex:
        while level:
            nxt: list[PathInfo] = []
            for _, fut in scheduling.map_as_completed(ex, client.list, level):
                files: list[PathInfo] = []
                for info in fut.result():
                    (nxt if info.is_directory else files).append(info)
                out.extend(files)
                if on_listing is not None and files:
                    on_listing(ex, files)
            level = [i.path for i in nxt]
    return sorted(out, key=lambda i: i.path)


def download_tree(
    client: ApiClient,
    vip_dir: str,
    local_dir: str | os.PathLike,
    *,
    workers: int | None = None,
    progress: bool | None = None,
    extract: bool = False,
    mtime_check: bool = True,
) -> TransferReport:
    """Mirror every file under `vip_dir` into `local_dir` (incremental: files already there
    with the right size, and not older than the remote copy, are skipped). Local names are
    :func:`vip_smk.rules.local_name` of VIP's (``:`` and other characters Windows refuses
    become ``-``)."""
    t0 = time.monotonic()
    req0 = client.requests_made
    vip_dir = str(vip_dir).rstrip("/") or "/"
    local_dir = Path(local_dir)
    # VIP's download limit (GET platform, once per client) is read while the other folders
    # are listed, as soon as one listing shows a file to fetch: one round trip fewer. An
    # unchanged tree makes no such request (re-sync: one request per folder).
    limit: list[Future] = []

    def on_listing(ex: ThreadPoolExecutor, files: list[PathInfo]) -> None:
        if limit:
            return
        for info in files:
            try:
                same = plan.local_path(vip_dir, info, local_dir).stat().st_size == info.size
            except OSError:
                same = False
            if not same:
                limit.append(ex.submit(client.max_download_size))
                return

    infos = list_tree(client, vip_dir, workers=workers, on_listing=on_listing)
    for fut in limit:
        if fut.exception() is not None:  # asked again (retried, raised) where it is needed
            log.debug("GET platform while listing %s: %s", vip_dir, fut.exception())
    pairs = [(info, plan.local_path(vip_dir, info, local_dir)) for info in infos]
    report = _download_many(client, pairs, workers=workers, progress=progress, extract=extract,
                            call="download_tree", target=vip_dir, mtime_check=mtime_check)
    report.requests = client.requests_made - req0
    report.seconds = time.monotonic() - t0
    log.info("download_tree %s -> %s: %s", vip_dir, local_dir, report)
    return report


def download_files(
    client: ApiClient,
    pairs: Iterable[tuple[str | PathInfo, str | os.PathLike]],
    *,
    workers: int | None = None,
    progress: bool | None = None,
    extract: bool = False,
    mtime_check: bool = True,
) -> TransferReport:
    """Download (vip_path or PathInfo, local_path) pairs. Remote sizes unknown to the caller
    are read with one `action=list` per parent directory."""
    t0 = time.monotonic()
    req0 = client.requests_made
    items, missing_parents = plan.pairs_to_resolve(pairs)
    listings: dict[str, dict[str, PathInfo] | Exception] = {}
    if missing_parents:
        with ThreadPoolExecutor(max_workers=scheduling.pool_size(client, workers), thread_name_prefix="vip-ls") as ex:
            for parent, fut in scheduling.map_as_completed(ex, client.list, missing_parents):
                try:
                    listings[parent] = {i.path.rstrip("/"): i for i in fut.result()}
                except VipError as exc:
                    listings[parent] = exc
    failures: list[tuple[str, Exception]] = []
    resolved = plan.resolve(items, listings, failures)
    report = _download_many(client, resolved, workers=workers, progress=progress, extract=extract,
                            call="download_files", target=f"{len(items)} file(s)", failures=failures,
                            mtime_check=mtime_check)
    report.requests = client.requests_made - req0
    report.seconds = time.monotonic() - t0
    return report


def _download_many(
    client: ApiClient,
    pairs: list[tuple[PathInfo, Path]],
    *,
    workers: int | None,
    progress: bool | None,
    extract: bool,
    call: str,
    target: str,
    failures: list[tuple[str, Exception]] | None = None,
    mtime_check: bool = True,
) -> TransferReport:
    report = TransferReport("download")
    failures = list(failures or [])
    plans = plan.downloads(pairs, skew=lt.skew(client), extract=extract, mtime_check=mtime_check,
                           call=call, report=report, failures=failures)
    if plans.todo and client.max_download_size() is not None:  # GET platform, once per client
        plan.fitting(plans, client.size_error, failures)
    todo, pending_extract = plans.todo, plans.pending_extract
    total = plans.total()
    prog = Progress(want_progress(client.progress if progress is None else progress),
                     "download", total, len(todo))

    # Small files are read whole by the HTTP slots and written (fsync, rename) by a few
    # writer threads: a connection goes on to its next file instead of waiting on the disk.
    room = threading.BoundedSemaphore(WRITE_QUEUE)  # bytes held in memory <= WRITE_QUEUE x WHOLE

    def write(local: Path, data: bytes, vip_path: str) -> None:
        client.write_file(local, data, vip_path)
        prog.add_bytes(len(data))
        prog.file_done()

    def fetch(item: tuple[PathInfo, Path]) -> Future | None:
        info, local = item
        if info.size is not None and info.size <= WHOLE:
            data = client.read_bytes(info.path, size=info.size)
            room.acquire()
            try:
                fut = writer.submit(write, local, data, info.path)
            except BaseException:
                room.release()
                raise
            fut.add_done_callback(lambda _: room.release())
            return fut
        client.download(info.path, local, size=info.size, progress=prog.add_bytes)
        prog.file_done()
        return None

    def finished(info: PathInfo, local: Path, fut: Future | None) -> None:
        try:
            if fut is not None:
                fut.result()
        except (VipError, OSError) as exc:
            failures.append((info.path, exc))
            log.error("download %s: %s", info.path, exc)
            return
        report.files_transferred += 1
        report.transferred.append(str(local))
        if extract and tarfile.is_tarfile(local):
            pending_extract.append(local)

    writes: list[tuple[PathInfo, Path, Future]] = []

    def fetched(item: tuple[PathInfo, Path], written: Future | None, error: Exception | None) -> None:
        info, local = item
        if error is not None:
            failures.append((info.path, error))
            log.error("download %s: %s", info.path, error)
        elif written is None or written.done():
            finished(info, local, written)
        else:
            writes.append((info, local, written))

    try:
        with ThreadPoolExecutor(WRITERS, thread_name_prefix="vip-write") as writer:
            scheduling.run_sized(scheduling.pool_size(client, workers), fetch, todo, lambda item: item[0].size or 0, "vip-down",
                       fetched)
            for info, local, written in writes:
                finished(info, local, written)
    finally:
        prog.close()
    for archive in pending_extract:
        try:
            refused = extract_archive(archive)
        except (OSError, tarfile.TarError) as exc:
            failures.append((str(archive), exc))
            log.error("extract %s: %s", archive, exc)
            continue
        report.extracted.append(str(archive))
        report.warnings.extend(refused)
    report.bytes_transferred = prog.bytes
    if failures:
        raise TransferError(call, target, sorted(failures, key=lambda x: x[0]), report)
    return report


__all__ = [
    "PreflightError",
    "TransferError",
    "TransferReport",
    "check_local_tree",
    "download_files",
    "download_tree",
    "extract_archive",
    "list_tree",
    "upload_tree",
    "want_progress",
]

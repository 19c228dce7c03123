"""Tree transfers through an `AsyncApiClient`, in one event loop: `upload_tree`, `download_tree`,
`download_files`, with the sync functions' (`vip_smk.transfer.trees`) behaviour and reports.

What is sent, skipped or fetched is decided by `vip_smk.transfer.plan` (the same code as the
sync transfers); one file's body is the client's (`vip_smk.api.streams` flows). Only the
concurrency differs: tasks instead of threads, at most `workers` transfers in flight (the
client's connections), at most `LARGE_IN_FLIGHT` large files among them; small downloads are
read whole and written (fsync, rename) by `WRITERS` threads aside from the loop, the connection
free for its next file meanwhile, at most `WRITE_QUEUE` files in memory (plus one per worker).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tarfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vip_smk.api.errors import InvalidInput, NotFound, VipError
from vip_smk.transfer import local_tree as lt
from vip_smk.transfer import plan
from vip_smk.transfer.archives import extract_archive
from vip_smk.transfer.plan import TransferReport
from vip_smk.transfer.progress import Progress, want_progress
from vip_smk.transfer.scheduling import LARGE, LARGE_IN_FLIGHT, WHOLE, WRITE_QUEUE, WRITERS, pool_size
from vip_smk.transfer.trees import PreflightError, TransferError

if TYPE_CHECKING:
    from vip_smk.api.async_client import AsyncApiClient
    from vip_smk.api.models import PathInfo

log = logging.getLogger("vip_smk.transfer.trees")


async def _each(n: int, items: Iterable[Any], fn: Callable[[Any], Awaitable[Any]]) -> list[Any]:
    """`fn(item)` over `items`, `n` at once; results in order (an exception as the result)."""
    slots = asyncio.Semaphore(n)

    async def one(item):
        async with slots:
            return await fn(item)

    return await asyncio.gather(*(one(it) for it in items), return_exceptions=True)


async def _sized(n: int, items: list, size_of, fn, on_done) -> None:
    """`fn(item)` over `items` by `n` workers, at most LARGE_IN_FLIGHT of them on large files
    (largest first; a worker takes a small file rather than wait for a large slot);
    `on_done(item, error)` as each ends. VipError / OSError are the item's failure; anything
    else (Ctrl-C, a bug) stops the transfer once those in flight are cancelled."""
    large = deque(sorted((it for it in items if size_of(it) > LARGE), key=size_of, reverse=True))
    small = deque(it for it in items if size_of(it) <= LARGE)
    large_slots = asyncio.Semaphore(max(1, min(LARGE_IN_FLIGHT, n - 1 or 1)))

    async def worker():
        while large or small:
            big = bool(large) and (not large_slots.locked() or not small)
            if big:
                item = large.popleft()
                await large_slots.acquire()
            else:
                item = small.popleft()
            try:
                await fn(item)
            except (VipError, OSError) as exc:
                on_done(item, exc)
                continue
            finally:
                if big:
                    large_slots.release()
            on_done(item, None)

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(n, len(items)))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()


async def upload_tree(client: AsyncApiClient, local_dir: str | os.PathLike, vip_dir: str, *,
                      workers: int | None = None, progress: bool | None = None, checksum: bool = False,
                      mtime_check: bool = True, known: Callable[[str], bool | None] | None = None,
                      hasher: Callable[[], Any] | None = None) -> TransferReport:
    """`vip_smk.transfer.trees.upload_tree`, awaited."""
    t0, req0 = time.monotonic(), client.requests_made
    local_dir = Path(local_dir)
    vip_dir = str(vip_dir).rstrip("/") or "/"
    report = TransferReport("upload")
    if not local_dir.is_dir():
        raise InvalidInput(f"upload_tree {local_dir}: not a directory", call="upload_tree", target=vip_dir)
    files, problems = await asyncio.to_thread(lt.check_local_tree, local_dir)
    if problems:
        raise PreflightError("upload_tree", str(local_dir), problems)
    n = pool_size(client, workers)
    levels = plan.folders_of(files)
    remote: dict[str, dict[str, PathInfo] | None] = {}
    clashes: list[str] = []
    try:
        remote[""] = plan.listing_of(await client.list(vip_dir))
    except NotFound:
        remote[""] = None
    for level in levels[1:]:
        listed = plan.to_list(level, remote, clashes)
        for d, got in zip(listed, await _each(n, listed, lambda d: client.list(lt.join(vip_dir, d)))):
            if isinstance(got, BaseException):
                raise got
            remote[d] = plan.listing_of(got)
    todo = plan.uploads(files, remote, skew=lt.skew(client), known=known, mtime_check=mtime_check,
                        report=report, clashes=clashes)
    if clashes:
        raise PreflightError("upload_tree", str(local_dir), sorted(clashes))
    if checksum and report.skipped:
        todo.extend(await _changed_by_md5(client, n, files, vip_dir, report))
    if remote[""] is None:
        await client.mkdir(vip_dir, parents=True, known_missing=True)
    for level in plan.new_folders(levels, remote):
        for got in await _each(n, level, lambda d: client.mkdir(lt.join(vip_dir, d), known_missing=True)):
            if isinstance(got, BaseException):
                raise got
    prog = Progress(want_progress(client.progress if progress is None else progress),
                    "upload", sum(f.size for f in todo), len(todo))
    failures: list[tuple[str, Exception]] = []

    async def send(f: lt.LocalFile) -> None:
        digest = await client.upload(f.path, lt.join(vip_dir, f.rel), progress=prog.add_bytes, hasher=hasher)
        if digest is not None:
            report.digests[f.rel] = digest
        prog.file_done()

    def sent(f: lt.LocalFile, error: Exception | None) -> None:
        if error is not None:
            failures.append((str(f.path), error))
            log.error("upload %s: %s", f.path, error)
        else:
            report.files_transferred += 1
            report.transferred.append(str(f.path))

    try:
        await _sized(n, todo, lambda f: f.size, send, sent)
    finally:
        prog.close()
    report.bytes_transferred = prog.bytes
    report.requests = client.requests_made - req0
    report.seconds = time.monotonic() - t0
    if failures:
        raise TransferError("upload_tree", vip_dir, sorted(failures, key=lambda x: x[0]), report)
    log.info("upload_tree %s -> %s: %s", local_dir, vip_dir, report)
    return report


async def _changed_by_md5(client: AsyncApiClient, n: int, files, vip_dir: str, report: TransferReport):
    """`local_tree.changed_by_md5`, awaited: one probe (VIP answers 8001), then the rest."""
    skipped = set(report.skipped)
    cands = [f for f in files if str(f.path) in skipped]
    if not cands or client.md5_offered is False:
        return []

    def local_md5(path) -> str:
        h = hashlib.md5()  # noqa: S324 - content comparison, not security
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()

    async def differs(f) -> bool | None:
        remote = await client.md5(lt.join(vip_dir, f.rel))
        return None if remote is None else await asyncio.to_thread(local_md5, f.path) != remote.lower()

    first = await differs(cands[0])
    if first is None:
        log.info("md5 not offered by %s: unchanged files are judged by size and date", client.url)
        return []
    changed = []
    for f, d in zip(cands, [first, *await _each(n, cands[1:], differs)]):
        if isinstance(d, BaseException):
            raise d
        if d:
            changed.append(f)
            report.skipped.remove(str(f.path))
            report.files_skipped -= 1
    return changed


async def list_tree(client: AsyncApiClient, vip_dir: str, *, workers: int | None = None) -> list[PathInfo]:
    """Every file under `vip_dir` (one `action=list` per directory, a level at once)."""
    vip_dir = str(vip_dir).rstrip("/") or "/"
    out: list[PathInfo] = []
    level = [vip_dir]
    while level:
        nxt: list[PathInfo] = []
        for got in await _each(pool_size(client, workers), level, client.list):
            if isinstance(got, BaseException):
                raise got
            for info in got:
                (nxt if info.is_directory else out).append(info)
        level = [i.path for i in nxt]
    return sorted(out, key=lambda i: i.path)


async def download_tree(client: AsyncApiClient, vip_dir: str, local_dir: str | os.PathLike, *,
                        workers: int | None = None, progress: bool | None = None, extract: bool = False,
                        mtime_check: bool = True) -> TransferReport:
    """`vip_smk.transfer.trees.download_tree`, awaited."""
    t0, req0 = time.monotonic(), client.requests_made
    vip_dir = str(vip_dir).rstrip("/") or "/"
    local_dir = Path(local_dir)
    infos = await list_tree(client, vip_dir, workers=workers)
    pairs = [(info, plan.local_path(vip_dir, info, local_dir)) for info in infos]
    report = await _download_many(client, pairs, workers=workers, progress=progress, extract=extract,
                                  call="download_tree", target=vip_dir, mtime_check=mtime_check)
    report.requests = client.requests_made - req0
    report.seconds = time.monotonic() - t0
    log.info("download_tree %s -> %s: %s", vip_dir, local_dir, report)
    return report


async def download_files(client: AsyncApiClient, pairs: Iterable[tuple[Any, Any]], *, workers: int | None = None,
                         progress: bool | None = None, extract: bool = False,
                         mtime_check: bool = True) -> TransferReport:
    """`vip_smk.transfer.trees.download_files`, awaited."""
    t0, req0 = time.monotonic(), client.requests_made
    items, parents = plan.pairs_to_resolve(pairs)
    listings: dict[str, Any] = {}
    for parent, got in zip(parents, await _each(pool_size(client, workers), parents, client.list)):
        if isinstance(got, VipError):
            listings[parent] = got
        elif isinstance(got, BaseException):
            raise got
        else:
            listings[parent] = {i.path.rstrip("/"): i for i in got}
    failures: list[tuple[str, Exception]] = []
    resolved = plan.resolve(items, listings, failures)
    report = await _download_many(client, resolved, workers=workers, progress=progress, extract=extract,
                                  call="download_files", target=f"{len(items)} file(s)", failures=failures,
                                  mtime_check=mtime_check)
    report.requests = client.requests_made - req0
    report.seconds = time.monotonic() - t0
    return report


async def _download_many(client: AsyncApiClient, pairs: list[tuple[PathInfo, Path]], *, workers: int | None,
                         progress: bool | None, extract: bool, call: str, target: str,
                         failures: list[tuple[str, Exception]] | None = None,
                         mtime_check: bool = True) -> TransferReport:
    report = TransferReport("download")
    failures = list(failures or [])
    plans = plan.downloads(pairs, skew=lt.skew(client), extract=extract, mtime_check=mtime_check,
                           call=call, report=report, failures=failures)
    if plans.todo and await client.max_download_size() is not None:  # GET platform, once per client
        plan.fitting(plans, client.size_error, failures)
    prog = Progress(want_progress(client.progress if progress is None else progress),
                    "download", plans.total(), len(plans.todo))
    # Small files are read whole and written (fsync, rename) by WRITERS threads aside: the
    # connection goes on to its next file instead of waiting on the disk (as the sync transfer);
    # at most WRITE_QUEUE of them read and waiting (the queue's bound holds the readers back).
    queue: asyncio.Queue = asyncio.Queue(WRITE_QUEUE)
    broken: list[BaseException] = []  # a writer's unexpected exception (a bug): raised at the end

    def write_some(batch: list) -> list[BaseException | None]:
        out: list[BaseException | None] = []
        for (info, local), data in batch:
            try:
                client.write_file(local, data, info.path)
                out.append(None)
            except (VipError, OSError) as exc:
                out.append(exc)
        return out

    async def writer() -> None:
        # what is waiting goes to the thread in one hop (a hop per file costs the loop more
        # than the write itself, for files of a few kB); None: no more files
        last = False
        while not last:
            batch = [await queue.get()]
            if batch[0] is None:
                return
            while len(batch) < WRITE_QUEUE // WRITERS and not queue.empty():
                got = queue.get_nowait()
                if got is None:
                    last = True
                    break
                batch.append(got)
            try:
                errors: list = await asyncio.to_thread(write_some, batch)
            except Exception as exc:  # (not the files' failure: kept, the queue still drained)
                broken.append(exc)
                errors = [exc] * len(batch)
            for (item, data), err in zip(batch, errors):
                if err is None:
                    prog.add_bytes(len(data))
                    prog.file_done()
                finished(item, err)

    def read_whole(item: tuple[PathInfo, Path]) -> bool:
        return item[0].size is not None and item[0].size <= WHOLE

    async def fetch(item: tuple[PathInfo, Path]) -> None:
        info, local = item
        if read_whole(item):
            data = await client.read_bytes(info.path, size=info.size)
            await queue.put((item, data))  # finished once written
            return
        await client.download(info.path, local, size=info.size, progress=prog.add_bytes)
        prog.file_done()

    def finished(item: tuple[PathInfo, Path], error: BaseException | None) -> None:
        info, local = item
        if error is not None:
            failures.append((info.path, error))  # type: ignore[arg-type]
            log.error("download %s: %s", info.path, error)
            return
        report.files_transferred += 1
        report.transferred.append(str(local))
        if extract and tarfile.is_tarfile(local):
            plans.pending_extract.append(local)

    def fetched(item: tuple[PathInfo, Path], error: Exception | None) -> None:
        if error is not None or not read_whole(item):
            finished(item, error)
        # else: finished by the writer, once written

    writer_tasks = [asyncio.ensure_future(writer()) for _ in range(WRITERS)]
    try:
        await _sized(pool_size(client, workers), plans.todo, lambda item: item[0].size or 0, fetch, fetched)
        for _ in writer_tasks:
            await queue.put(None)
        await asyncio.gather(*writer_tasks)
    finally:
        for t in writer_tasks:
            t.cancel()
        prog.close()
    if broken:
        raise broken[0]
    for archive in plans.pending_extract:
        try:
            refused = await asyncio.to_thread(extract_archive, archive)
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


__all__ = ["download_files", "download_tree", "list_tree", "upload_tree"]

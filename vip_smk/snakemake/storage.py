"""Snakemake storage plugin `vip://`: VIP files and folders as inputs and outputs of any rule.

    rule stats:
        input: storage.vip("vip://vip/Home/study/data/{subject}.csv")
        output: storage.vip("vip://vip/Home/study/stats/{subject}.txt")
        shell: "wc -l {input} > {output}"

Snakemake finds it as the top-level package `snakemake_storage_plugin_vip`, which re-exports
this module. Every VIP access goes through `VipClient` (streamed, resumed and retried
transfers); the plugin adds no retries of its own.

- Queries are `vip://vip/Home/...` (`vip://` + a VIP path without its leading `/`). Names VIP
  would rename or refuse are refused by `is_valid_query`, naming the part.
- `inventory` fills existence, date and size of every sibling with one `action=list` of the
  parent folder: `snakemake -n` over N files in F folders costs F requests.
- During the run (when Snakemake keeps no cache) every question about a file is answered from
  its folder's listing, kept for the run (`storage_cache.Listings`): our own writes update it,
  `--executor vip` invalidates the results folder of an execution that ended, and "missing" is
  asked again at most once a second per folder.
- Rate limit (`max_requests_per_second`, default `DEFAULT_RATE`): charged per question sent to
  VIP (listings, mkdir, delete, md5), never for an answer from the listings (Snakemake's limiter,
  which charges both, is off); transfers are bounded by the client's connections.
- Dates: see `storage_dates` (VIP's whole seconds, null dates, VIP's clock).
- Content decides (core.content): an output holding the bytes we sent there is not sent again.
  Snakemake removes a job's old outputs before it runs: a file we sent (and the results folder of
  an --executor vip job, `protect`) is only marked removed in the date book (it counts as
  missing); written again with the same bytes it is back, VIP's copy and date untouched (an
  execution that read it stays adoptable); else it is deleted at the end of the process (or by
  the next run, if this one died).
- Directories (`storage.vip(directory("vip://..."))`): transferred with `upload_tree` /
  `download_tree`; their date is that of their newest file; Snakemake's empty
  `.snakemake_timestamp` is not uploaded (VIP cannot hold an empty file).

No `from __future__ import annotations` here: Snakemake turns the settings' field types into
argparse types.
"""

import asyncio
import atexit
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, List, Optional
from urllib.parse import urlsplit

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_storage_plugins.common import Operation
from snakemake_interface_storage_plugins.io import (
    IOCacheStorageInterface,
    Mtime,
    get_constant_prefix,
)
from snakemake_interface_storage_plugins.settings import StorageProviderSettingsBase
from snakemake_interface_storage_plugins.storage_object import (
    StorageObjectGlob,
    StorageObjectRead,
    StorageObjectTouch,
    StorageObjectWrite,
)
from snakemake_interface_storage_plugins.storage_provider import (
    ExampleQuery,
    QueryType,
    StorageProviderBase,
    StorageQueryValidationResult,
)

from vip_smk.core import content
from vip_smk.core.client import NotFound, PathInfo, VipClient, VipError
from vip_smk.snakemake import settings
from vip_smk.snakemake.messages import raise_message_only
from vip_smk.snakemake.storage_cache import Listings, Throttle
from vip_smk.snakemake.storage_dates import DateBook, vip_seconds
from vip_smk.snakemake.storage_query import SCHEME, query_problem, vip_path

log = logging.getLogger(__name__)

TIMESTAMP = ".snakemake_timestamp"  # Snakemake's (empty) date marker inside directory outputs
# Questions a second to VIP by default (listings, mkdir, delete, md5). VIP is one portal shared
# by all its researchers and its path requests reach the grid storage behind it: a run must not
# hammer it. 20 a second on average, in bursts of up to BURST (a run's questions come in waves: a
# batch of jobs starting or ending), is what one quick user browsing the portal costs; answers
# served from the listings are free, and a folder is listed once however many of its files are
# asked about. File transfers are not counted: the client bounds them by its connections (and
# real VIP's answers take long enough that a limit on their count would never bind).
DEFAULT_RATE = 20.0
BURST = 50


@dataclass
class StorageProviderSettings(StorageProviderSettingsBase):
    url: Optional[str] = settings.url_field()
    api_key_env: Optional[str] = settings.api_key_env_field()
    max_requests_per_second: Optional[float] = field(
        default=None,
        metadata={
            "help": f"questions a second sent to VIP (listings, mkdir, delete), on average "
            f"(default {DEFAULT_RATE:g}, in bursts of up to {BURST}): VIP is one portal shared by "
            "all its users. Answers the plugin already has (a folder listed once serves all its "
            "files) cost nothing; file transfers are bounded by the client's connections "
            "instead. 0: no limit (a local VIP server).",
            "env_var": False,
            "required": False,
        },
    )


class StorageProvider(StorageProviderBase):
    """One `VipClient` (one HTTP session) for the whole workflow."""

    def __post_init__(self):
        try:
            self._set_up()
        except WorkflowError as exc:  # one clear message, no frame of ours
            raise_message_only(exc)

    def _set_up(self):
        config = self.settings or StorageProviderSettings()
        self.client = settings.make_client("vip:// storage", "--storage-vip-",
                                           getattr(config, "url", None),
                                           getattr(config, "api_key_env", None))
        self.dates = DateBook(self.local_prefix)
        self._skew: Optional[float] = None
        rate = getattr(config, "max_requests_per_second", None)
        rate = DEFAULT_RATE if rate is None else float(rate)
        self.throttle = Throttle(rate, BURST if rate == DEFAULT_RATE else max(rate, 1.0))
        self.listings = Listings(self.list)
        self._lock_checked = False
        self._removals_registered = False
        # results folders of --executor vip jobs (protect): Snakemake's removal before the job
        # is deferred, so that the job can adopt the execution that made them
        self.protected: set = set()
        self.finish_removals(dead_only=True)  # left by a run that died before its end

    def protect(self, path: str) -> None:
        """`path` is the results folder of an --executor vip job: when Snakemake removes it
        before the job runs, it is only marked removed; the executor then adopts the execution
        that wrote it (`kept`) or deletes it before launching anew (`gone`)."""
        self.protected.add(path.rstrip("/"))

    def kept(self, path: str) -> None:
        """The execution that wrote `path` was adopted: its results count as present again."""
        self.dates.unmark(path.rstrip("/"))

    def marked_removed(self, path: str) -> bool:
        return self.dates.removed(path.rstrip("/")) is not None

    def gone(self, path: str) -> None:
        """`path` was deleted on VIP (by the executor, before a new execution)."""
        self.listings.forget(path)
        self.dates.forget(path)

    def defer_removal(self, path: str, tree: bool = False) -> bool:
        """Mark `path` removed in the date book instead of deleting it now (see
        DateBook.mark_removed); really deleted at the end of this process unless the same
        bytes are written there again meanwhile. False: delete it now."""
        if tree:
            self.dates.mark_removed_tree(path, os.getpid())
        elif not self.dates.mark_removed(path, os.getpid()):
            return False
        if not self._removals_registered:
            self._removals_registered = True
            atexit.register(self.finish_removals)
        return True

    def finish_removals(self, dead_only: bool = False) -> None:
        """Delete on VIP the files this process (or, with `dead_only`, a dead run) marked
        removed and did not write again."""
        from vip_smk.util import pid_alive

        for path, pid in self.dates.pending_removals().items():
            if (pid == os.getpid() and not dead_only) or (pid != os.getpid() and not pid_alive(pid)):
                try:
                    self.throttle()
                    self.client.delete(path, missing_ok=True)
                except VipError as exc:
                    log.warning("vip:// %s: not removed (%s): removed at the next run", path, exc)
                    continue
                self.listings.forget(path)
                self.dates.forget(path)

    def clear_stale_lock_once(self) -> None:
        """After kill -9 of a run of --executor vip (which records its process), the lock it
        left is removed: the same command resumes, without `snakemake --unlock`. Done when the
        first `vip://` file is declared: in the working directory (after a `workdir:`), before
        Snakemake takes its lock."""
        if not self._lock_checked:
            self._lock_checked = True
            from vip_smk.runlock import clear_stale_lock  # the study's: same lock, same record

            clear_stale_lock(Path.cwd())

    def list(self, folder: str) -> List[PathInfo]:
        """`action=list` of a folder (throttled; prefer `listings`)."""
        self.throttle()
        return self.client.list(folder)

    def forget(self, path: str) -> None:
        """`path` (a file or a folder) changed on VIP by someone else than this plugin (a VIP
        execution wrote its results): the next question about it is asked of VIP."""
        self.listings.forget(path)

    def listed(self, folder: str, entries: List[PathInfo]) -> None:
        """`--executor vip` has just written and listed ``folder`` itself (a job's results
        copied from its batch): the listing is kept, not asked of VIP again."""
        self.listings.fill(folder, entries)

    def made_from(self, outputs: List[str], inputs: List[str]) -> None:
        """A VIP execution that started after ``inputs`` were written has just written
        ``outputs`` (files or folders): their dates are ordered after the inputs' (see
        DateBook.order_after), whatever VIP's whole-second clock says."""
        def files(path: str) -> List[PathInfo]:
            info = self.listings.entry(path)
            if info is None:
                return []
            return self.tree_files(path) if info.is_directory else [info]

        ins = [f for p in inputs for f in files(p)]
        outs = [f for p in outputs for f in files(p)]
        if not ins or not outs:
            return
        self.dates.order_after(
            [(f.path, f.size, vip_seconds(f.last_modification_date)) for f in outs],
            self.times(ins), self.skew())

    # -- Snakemake's interface -----------------------------------------------------------------

    @classmethod
    def example_queries(cls) -> List[ExampleQuery]:
        return [
            ExampleQuery(
                query="vip://vip/Home/study/data/subject01.csv",
                description="A file in your VIP home (/vip/Home/...), as input or output.",
                type=QueryType.ANY,
            ),
            ExampleQuery(
                query="vip://vip/Home/study/stats/{subject}.txt",
                description="With wildcards; names must be kept by VIP as they are (no spaces, "
                "ASCII letters, digits and . , - + @ _ ( ) : [ ] ? & =).",
                type=QueryType.OUTPUT,
            ),
            ExampleQuery(
                query="vip://vip/Home/study/results",
                description="A folder, with directory(...): downloaded / uploaded as a tree; "
                "its date is that of its newest file.",
                type=QueryType.ANY,
            ),
        ]

    def rate_limiter_key(self, query: str, operation: Operation) -> Any:
        return urlsplit(self.client.url).netloc

    def default_max_requests_per_second(self) -> float:
        return DEFAULT_RATE

    def use_rate_limiter(self) -> bool:
        return False  # ours (self.throttle) is charged per request sent, not per question

    @classmethod
    def is_valid_query(cls, query: str) -> StorageQueryValidationResult:
        problem = query_problem(query)
        return StorageQueryValidationResult(query=query, valid=problem is None, reason=problem)

    # -- dates ---------------------------------------------------------------------------------

    def skew(self) -> float:
        """VIP's clock minus ours, fixed once per run (whole seconds; 0 below 2 s) so that all
        dates of one run shift alike."""
        if self._skew is None:
            skew = self.client.clock_skew
            if skew is None:
                return 0.0  # nothing asked yet: decide at the next call
            self._skew = float(round(skew)) if abs(skew) >= 2 else 0.0
        return self._skew

    def times(self, infos: Iterable[PathInfo]) -> List[float]:
        """Our-clock times of VIP files (see storage_dates)."""
        items = [(i.path, i.size, vip_seconds(i.last_modification_date)) for i in infos]
        return self.dates.resolve(items, self.skew())

    def tree_files(self, vip_dir: str) -> List[PathInfo]:
        """Every file under a VIP folder (one `action=list` per folder, once per run)."""
        files: List[PathInfo] = []
        level = [vip_dir]
        while level:
            nxt: List[PathInfo] = []
            for d in level:
                for info in self.listings.children(d):
                    (nxt if info.is_directory else files).append(info)
            level = [i.path for i in nxt]
        return files

    def local_key(self, vip: str) -> str:
        """Snakemake's cache key (the local path) of a VIP path."""
        return str(self.local_prefix / vip.lstrip("/"))


class StorageObject(StorageObjectRead, StorageObjectWrite, StorageObjectGlob, StorageObjectTouch):
    """One `vip://` file or folder."""

    provider: StorageProvider

    def __post_init__(self):
        if self.query.startswith(SCHEME):
            # A name VIP would rename or refuse (a wildcard value with a space...): said here,
            # where the file is declared, before Snakemake's advice on --default-storage-prefix
            # (whose scheme is right) hides the reason.
            problem = query_problem(self.query)
            if problem:
                raise_message_only(WorkflowError(
                    f"vip:// file {self.query!r} cannot be on VIP: {problem}; VIP keeps ASCII "
                    "letters, digits and . , - + @ _ ( ) : [ ] ? & = in names (check the "
                    "wildcard values or file names that make this path)"))
        self.path = vip_path(self.query) if self.query.startswith(SCHEME) else self.query
        self.provider.clear_stale_lock_once()

    # -- helpers -------------------------------------------------------------------------------

    @property
    def client(self) -> VipClient:
        return self.provider.client

    def _props(self) -> Optional[PathInfo]:
        """From its folder's listing (see storage_cache: "missing" is asked again)."""
        info = self.provider.listings.entry(self.path)
        if info is None or not info.exists:
            return None
        if self.provider.dates.removed(self.path) is not None:
            return None  # removed by Snakemake before its job writes it again (defer_removal)
        return info

    # -- read ----------------------------------------------------------------------------------

    async def inventory(self, cache: IOCacheStorageInterface):
        """Existence, date and size of this object and all its siblings: one `action=list`."""
        parent = self.get_inventory_parent()
        if parent is None:
            return
        has_inventory = getattr(cache.exists_in_storage, "has_inventory", None)
        if has_inventory is not None and parent in has_inventory:
            return
        folder = str(PurePosixPath(self.path).parent)
        try:
            infos = self.provider.listings.children(folder)
        except NotFound:
            infos = []  # no folder: none of its files exists
        except VipError as exc:  # Snakemake asks file by file instead (and reports errors)
            log.warning("vip:// inventory of %s skipped: %s", folder, exc)
            return
        removed = self.provider.dates.pending_removals()
        infos = [i for i in infos if i.path not in removed]
        files = [i for i in infos if not i.is_directory]
        for info, t in zip(files, self.provider.times(files)):
            key = self.provider.local_key(info.path)
            cache.exists_in_storage[key] = True
            cache.mtime[key] = Mtime(storage=t)
            cache.size[key] = int(info.size or 0)
        for info in infos:
            if info.is_directory:  # date = its newest file's: asked on demand
                cache.exists_in_storage[self.provider.local_key(info.path)] = True
        if has_inventory is not None:
            has_inventory.add(parent)

    def get_inventory_parent(self) -> Optional[str]:
        parent = str(PurePosixPath(self.path).parent)
        if parent in ("/", "/vip"):
            return None
        return self.provider.local_key(parent)

    def local_suffix(self) -> str:
        return self.path.lstrip("/")

    def cleanup(self):
        pass  # nothing besides the local copy, which Snakemake removes itself

    def exists(self) -> bool:
        return self._props() is not None

    def mtime(self) -> float:
        info = self._props()
        if info is None:
            raise FileNotFoundError(self.print_query)
        if not info.is_directory:
            return self.provider.times([info])[0]
        files = self.provider.tree_files(self.path)
        if not files:  # an empty folder: its own date
            return self.provider.times([info])[0]
        return max(self.provider.times(files))

    def size(self) -> int:
        info = self._props()
        if info is None:
            raise FileNotFoundError(self.print_query)
        return 0 if info.is_directory else int(info.size or 0)

    def checksum(self) -> Optional[str]:
        """`md5:...` where the server computes it, else None (VIP does not: error 8001)."""
        info = self._props()
        if info is None or info.is_directory:
            return None
        if self.client.md5_offered is not False:
            self.provider.throttle()
        md5 = self.client.md5(self.path)
        return f"md5:{md5.lower()}" if md5 else None

    def local_footprint(self) -> int:
        info = self._props()
        if info is not None and info.is_directory:
            return sum(int(f.size or 0) for f in self.provider.tree_files(self.path))
        return self.size()

    async def managed_retrieve(self):
        """As Snakemake's own (free space, rate limiter, a partial download removed, its
        message), but `retrieve_object` runs in a thread: Snakemake awaits the retrievals of a
        job's inputs together in one event loop, where the blocking call would fetch them one
        after another (a report over 100 results folders: 100 downloads in a row). The client's
        connections bound them; the listings and the date book are locked."""
        await self.wait_for_free_space()
        try:
            self.local_path().parent.mkdir(parents=True, exist_ok=True)
            async with self._rate_limiter(Operation.RETRIEVE):
                return await asyncio.to_thread(self.retrieve_object)
        except Exception as e:
            local = self.local_path()
            if local.is_dir():
                shutil.rmtree(local, ignore_errors=True)
            elif local.exists():
                local.unlink()
            raise WorkflowError(f"Failed to retrieve storage object from {self.print_query}", e)

    def retrieve_object(self):
        info = self._props()
        if info is None:
            raise WorkflowError(f"{self.print_query}: not found on VIP")
        local = self.local_path()
        # Dates are resolved (files without a date recorded as seen) *before* the job runs:
        # its outputs will be newer than its inputs in every later run.
        if info.is_directory:
            files = self.provider.tree_files(self.path)
            self.provider.times(files)
            base = PurePosixPath(self.path)
            self.client.download_files(  # the listing above is reused: no second walk
                [(f, local.joinpath(*PurePosixPath(f.path).relative_to(base).parts)) for f in files])
            local.mkdir(parents=True, exist_ok=True)
        else:
            self.provider.times([info])
            self.client.download(self.path, local, size=info.size)

    # -- write ---------------------------------------------------------------------------------

    def store_object(self):
        local = self.local_path()
        if local.is_dir():
            self._store_dir(local)
        else:
            self._store_file(local)

    def _store_file(self, local: Path):
        if not local.exists():
            raise WorkflowError(f"{self.print_query}: the local file {local} does not exist")
        if local.stat().st_size == 0:
            raise WorkflowError(
                f"{self.print_query}: the output {local} is empty; VIP cannot store an empty "
                "file (an empty upload creates a folder): write something into it"
            )
        parent = str(PurePosixPath(self.path).parent)
        listings = self.provider.listings
        known = listings.known_folder(parent)
        if not known:
            self.provider.throttle()
            self.client.mkdir(parent, parents=True, known_missing=known is False)
            listings.made_folder(parent)
        size = local.stat().st_size
        digest = content.digest_file(local)
        on_vip = listings.entry(self.path) if known else None
        if on_vip is not None and self.provider.dates.sent(
                self.path, on_vip.size, vip_seconds(on_vip.last_modification_date), digest):
            # The bytes VIP holds are those we sent (content decides, core.content): not sent
            # again, so VIP's copy and date stay (the executions that read it stay adoptable);
            # Snakemake's removal before the job is undone.
            log.info("%s: same content as the copy on VIP: not sent again", self.print_query)
            done = time.time()
            self.provider.dates.revive(self.path, done)
        else:
            self.client.upload(local, self.path)
            done = time.time()
            # No properties asked: the size is ours, VIP's date is learnt from the folder's next
            # listing (the date book adopts it then: see storage_dates).
            info = PathInfo(path=self.path, size=size, last_modification_date=None)
            self.provider.dates.record_upload([(info.path, size, None)], done, {self.path: digest})
            listings.put(info)
        try:  # a kept local copy is then not older than VIP's: no download back
            os.utime(local, (done, done))
        except OSError:
            pass

    def _store_dir(self, local: Path):
        entries = [p for p in local.iterdir() if p.name != TIMESTAMP]
        self.provider.forget(self.path)
        self.provider.throttle()
        if not entries:
            self.client.mkdir(self.path, parents=True)
        else:
            # Upload a view of the folder without Snakemake's empty timestamp marker.
            with tempfile.TemporaryDirectory(dir=self.provider.local_prefix, prefix=".vip-up-") as tmp:
                for p in entries:
                    os.symlink(p.resolve(), Path(tmp) / p.name)
                try:
                    self.client.upload_tree(tmp, self.path)
                except VipError as exc:
                    raise WorkflowError(f"{self.print_query}: {str(exc).replace(tmp, str(local))}") from None
        self.provider.forget(self.path)
        files = self.provider.tree_files(self.path)
        done = time.time()
        self.provider.dates.record_upload(
            [(f.path, f.size, vip_seconds(f.last_modification_date)) for f in files], done)

    def remove(self):
        info = self.provider.listings.entry(self.path)
        if (info is not None and info.exists and not info.is_directory
                and self.provider.dates.sent(self.path, info.size,
                                             vip_seconds(info.last_modification_date),
                                             self.provider.dates.digest(self.path) or "")
                and self.provider.defer_removal(self.path)):
            return
        if info is not None and info.exists and info.is_directory and self.path in self.provider.protected:
            self.provider.defer_removal(self.path, tree=True)
            return
        self.provider.throttle()
        try:
            self.client.delete(self.path, missing_ok=True)
        finally:
            self.provider.forget(self.path)
        self.provider.dates.forget(self.path)

    def touch(self):
        """`snakemake --touch`: the file (or every file of the folder) counts as written now.
        VIP has no touch: the time is recorded in the date book, VIP is not changed."""
        info = self._props()
        if info is None:
            raise WorkflowError(f"{self.print_query}: not on VIP (a missing file cannot be touched: "
                                "VIP cannot hold an empty file)")
        files = self.provider.tree_files(self.path) if info.is_directory else [info]
        self.provider.dates.record_upload(
            [(f.path, f.size, vip_seconds(f.last_modification_date)) for f in files], time.time())

    # -- glob ----------------------------------------------------------------------------------

    def list_candidate_matches(self) -> Iterable[str]:
        """Every file under the query's constant folder, as `vip://` queries (glob_wildcards)."""
        prefix = get_constant_prefix(self.query, strip_incomplete_parts=True)
        folder = vip_path(prefix.rstrip("/")) if prefix.rstrip("/") != SCHEME.rstrip("/") else "/vip"
        try:
            files = self.provider.tree_files(folder)
        except NotFound:
            return []
        return [SCHEME + f.path.lstrip("/") for f in files]


__all__ = ["StorageObject", "StorageProvider", "StorageProviderSettings"]

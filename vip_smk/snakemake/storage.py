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
- Dates: see `storage_dates` (VIP's whole seconds, null dates, VIP's clock).
- Directories (`storage.vip(directory("vip://..."))`): transferred with `upload_tree` /
  `download_tree`; their date is that of their newest file; Snakemake's empty
  `.snakemake_timestamp` is not uploaded (VIP cannot hold an empty file).

No `from __future__ import annotations` here: Snakemake turns the settings' field types into
argparse types.
"""

import logging
import os
import re
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

from vip_smk.client import NotFound, PathInfo, VipClient, VipError
from vip_smk.snakemake.storage_dates import DateBook, vip_seconds
from vip_smk.snakemake.storage_query import SCHEME, query_problem, vip_path

log = logging.getLogger(__name__)

TIMESTAMP = ".snakemake_timestamp"  # Snakemake's (empty) date marker inside directory outputs


@dataclass
class StorageProviderSettings(StorageProviderSettingsBase):
    url: Optional[str] = field(
        default=None,
        metadata={
            "help": "VIP portal URL (default: $VIP_URL, else https://vip.creatis.insa-lyon.fr)",
            "env_var": False,
            "required": False,
        },
    )
    api_key_env: Optional[str] = field(
        default="VIP_API_KEY",
        metadata={
            "help": "NAME of the environment variable holding your VIP API key (default "
            "VIP_API_KEY). The key itself never goes on the command line.",
            "env_var": False,
            "required": False,
        },
    )


class StorageProvider(StorageProviderBase):
    """One `VipClient` (one HTTP session) for the whole workflow."""

    def __post_init__(self):
        settings = self.settings or StorageProviderSettings()
        env = (getattr(settings, "api_key_env", None) or "VIP_API_KEY").strip()
        # Never echo what may be a key pasted by mistake: only conventional variable names.
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
            raise WorkflowError(
                "vip:// storage: --storage-vip-api-key-env takes the NAME of an environment "
                "variable holding the key (e.g. VIP_API_KEY), not the key itself")
        if not os.environ.get(env, "").strip():
            shown = env if re.fullmatch(r"[A-Z_][A-Z0-9_]*", env) else "named by --storage-vip-api-key-env"
            raise WorkflowError(
                f"vip:// storage: no VIP API key: the environment variable {shown} is not set "
                "or empty (export VIP_API_KEY=..., or name another variable with "
                "--storage-vip-api-key-env)")
        try:
            self.client = VipClient(getattr(settings, "url", None) or None, api_key_env=env)
        except VipError as exc:  # names the variable, never the key
            raise WorkflowError(
                f"vip:// storage: {exc} (the variable is set by --storage-vip-api-key-env)"
            ) from None
        self.dates = DateBook(self.local_prefix)
        self._skew: Optional[float] = None
        self.folders: set = set()  # VIP folders known to exist (listed or created in this run)

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
        return 20.0

    def use_rate_limiter(self) -> bool:
        return True

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
        """Every file under a VIP folder (one `action=list` per folder)."""
        files: List[PathInfo] = []
        level = [vip_dir]
        while level:
            nxt = []
            for d in level:
                for info in self.client.list(d):
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
        self.path = vip_path(self.query) if self.query.startswith(SCHEME) else self.query
        # properties of self.path from the last exists()/store (reused by mtime, size...)
        self._info: Optional[PathInfo] = None

    # -- helpers -------------------------------------------------------------------------------

    @property
    def client(self) -> VipClient:
        return self.provider.client

    def _props(self) -> Optional[PathInfo]:
        # a missing object is asked again: a remote job (--executor vip) may create it meanwhile
        if self._info is None:
            try:
                info = self.client.properties(self.path)
            except NotFound:
                info = None
            if info is not None and info.exists:
                self._info = info
        return self._info

    def _forget(self) -> None:
        self._info = None

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
            infos = self.client.list(folder)
            self.provider.folders.add(folder)
        except NotFound:
            infos = []  # no folder: none of its files exists
        except VipError as exc:  # Snakemake asks file by file instead (and reports errors)
            log.warning("vip:// inventory of %s skipped: %s", folder, exc)
            return
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
        self._forget()  # always asked afresh (another job may have written it since)
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
        md5 = self.client.md5(self.path)
        return f"md5:{md5.lower()}" if md5 else None

    def local_footprint(self) -> int:
        info = self._props()
        if info is not None and info.is_directory:
            return sum(int(f.size or 0) for f in self.provider.tree_files(self.path))
        return self.size()

    def retrieve_object(self):
        self._forget()
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
        self._forget()
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
        if parent not in self.provider.folders:
            self.client.mkdir(parent, parents=True)
            self.provider.folders.add(parent)
        self.client.upload(local, self.path)
        info = self.client.properties(self.path)
        done = time.time()
        if info.size is not None and info.size != local.stat().st_size:
            raise WorkflowError(
                f"{self.print_query}: VIP holds {info.size} bytes after the upload, "
                f"{local.stat().st_size} expected"
            )
        self.provider.dates.record_upload(
            [(info.path, info.size, vip_seconds(info.last_modification_date))], done)
        self._info = info
        try:  # a kept local copy is then not older than VIP's: no download back
            os.utime(local, (done, done))
        except OSError:
            pass

    def _store_dir(self, local: Path):
        entries = [p for p in local.iterdir() if p.name != TIMESTAMP]
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
        files = self.provider.tree_files(self.path)
        done = time.time()
        self.provider.dates.record_upload(
            [(f.path, f.size, vip_seconds(f.last_modification_date)) for f in files], done)

    def remove(self):
        self._forget()
        self.client.delete(self.path, missing_ok=True)
        self.provider.dates.forget(self.path)
        self.provider.folders -= {
            f for f in self.provider.folders if f == self.path or f.startswith(self.path + "/")}

    def touch(self):
        """`snakemake --touch`: the file (or every file of the folder) counts as written now.
        VIP has no touch: the time is recorded in the date book, VIP is not changed."""
        self._forget()
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

"""What the `vip://` plugin knows of VIP during one Snakemake run (helper of `storage`).

Snakemake asks a storage plugin about each file many times per job (existence before and after
it, dates, sizes, footprint before a download) and, once the run has started, keeps no cache of
its own. Each answer asked of VIP would be a request; `Listings` answers them all from one
`action=list` of the parent folder, kept for the run:

- a folder's listing is reused until something invalidates it: our own writes and removals
  (`put`, `forget`) and `--executor vip` when a VIP execution ends or starts (it forgets the
  execution's results folder);
- "missing" is the one answer that others change behind our back (a job of another executor
  writing the output, a user uploading an input): it is served only from a listing younger than
  `MISSING_FRESH` seconds; an older one is listed again -- one request per folder, however many
  of its files are asked about (wait_for_files asks once a second).

`Throttle` is the plugin's rate limit: it is charged for each question sent to VIP, never for an
answer served from the listings (Snakemake's own limiter would charge both).
"""

from __future__ import annotations

import threading
import time
from pathlib import PurePosixPath
from typing import Callable

from vip_smk.core.client import NotFound, PathInfo

MISSING_FRESH = 1.0  # seconds a listing is trusted to say "missing"


class Throttle:
    """At most `rate` requests a second on average, bursts of up to `burst` (token bucket);
    thread-safe. A rate of 0 or less: no limit."""

    def __init__(self, rate: float, burst: float | None = None):
        self.rate = float(rate)
        self.burst = max(1.0, float(burst if burst is not None else self.rate))
        self._tokens = self.burst
        self._at = time.monotonic()
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting (for the curious: bench, logs)

    def __call__(self) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
            self.waited += wait
        if wait > 0:
            time.sleep(wait)


def split(path: str) -> tuple[str, str]:
    p = PurePosixPath(path)
    return str(p.parent), p.name


class Listings:
    """Folder listings (one `action=list` each), shared by every object of a provider."""

    def __init__(self, lister: Callable[[str], list[PathInfo]]):
        self._lister = lister  # throttled client.list
        self._lock = threading.Lock()
        # folder -> (time.monotonic() of the listing, {name: PathInfo}, or None: no such folder)
        self._folders: dict[str, tuple[float, dict[str, PathInfo] | None]] = {}

    def _list(self, folder: str) -> dict[str, PathInfo] | None:
        try:
            entries: dict[str, PathInfo] | None = {i.name: i for i in self._lister(folder)}
        except NotFound:
            entries = None
        self.fill(folder, entries)
        return entries

    def fill(self, folder: str, entries) -> None:
        """Record a listing made elsewhere (inventory): `entries` a dict or list of PathInfo."""
        if entries is not None and not isinstance(entries, dict):
            entries = {i.name: i for i in entries}
        with self._lock:
            self._folders[folder] = (time.monotonic(), entries)

    def children(self, folder: str) -> list[PathInfo]:
        """The folder's entries (NotFound if it does not exist); listed once."""
        with self._lock:
            got = self._folders.get(folder)
        entries = got[1] if got is not None and got[1] is not None else None
        if entries is None and (got is None or time.monotonic() - got[0] >= MISSING_FRESH):
            entries = self._list(folder)
        if entries is None:
            raise NotFound(f"{folder}: no such folder on VIP", call="list", target=folder)
        return list(entries.values())

    def entry(self, path: str) -> PathInfo | None:
        """The file or folder at `path`, None if VIP has none (see module doc)."""
        parent, name = split(path)
        with self._lock:
            got = self._folders.get(parent)
        if got is not None:
            at, entries = got
            info = entries.get(name) if entries is not None else None
            if info is not None or time.monotonic() - at < MISSING_FRESH:
                return info
        entries = self._list(parent)
        return entries.get(name) if entries is not None else None

    def known_folder(self, folder: str) -> bool | None:
        """True if a listing shows the folder exists, False if it shows it does not, None if
        unknown."""
        if folder in ("/", "/vip"):
            return True
        with self._lock:
            got = self._folders.get(folder)
            if got is not None and got[1] is not None:
                return True
            parent, name = split(folder)
            up = self._folders.get(parent)
        if up is not None and up[1] is not None:
            info = up[1].get(name)
            return bool(info is not None and info.is_directory) if info is not None or \
                time.monotonic() - up[0] < MISSING_FRESH else None
        return None

    def made_folder(self, folder: str) -> None:
        """We created `folder` (and its parents): listings that said "no such folder" are
        now empty folders; the parent's listing is forgotten."""
        with self._lock:
            for f in [folder, *map(str, PurePosixPath(folder).parents)]:
                got = self._folders.get(f)
                if got is not None and got[1] is None:
                    self._folders[f] = (time.monotonic(), {})
            self._drop_parent(folder)

    def put(self, info: PathInfo) -> None:
        """We wrote this file: its entry is updated in the parent's listing (if listed)."""
        parent, name = split(info.path)
        with self._lock:
            got = self._folders.get(parent)
            if got is not None and got[1] is not None:
                got[1][name] = info

    def forget(self, path: str) -> None:
        """`path` changed on VIP (written, removed, results of an execution): its listing and
        those below it are dropped, and its parent's listing is asked again."""
        prefix = path.rstrip("/")
        with self._lock:
            for f in [f for f in self._folders if f == prefix or f.startswith(prefix + "/")]:
                del self._folders[f]
            self._drop_parent(prefix)

    def _drop_parent(self, path: str) -> None:
        parent, _ = split(path)
        self._folders.pop(parent, None)

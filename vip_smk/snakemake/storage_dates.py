"""Modification dates of VIP files as Snakemake needs them (helper of the `vip://` plugin).

VIP's `lastModificationDate` is whole seconds on VIP's clock, and may be null. Snakemake
compares it with local file times (sub-second, our clock) and with the dates of other VIP
files, and reruns a job when one input is *strictly* newer than its oldest output.

`DateBook` keeps, in a small file of JSON lines under Snakemake's local storage prefix, what this
workflow directory knows better than VIP:

- the files the plugin uploaded: their size, VIP's date for them and the time (our clock) the
  upload had finished. While VIP still shows that size and date (or no date), the file's time
  is that precise time: outputs always look newer than the inputs their job read, even
  within VIP's one-second resolution, and even when VIP gives no date at all;
- the files VIP gives no date for and that the plugin did not write: the start of the run that
  first saw them with their current size (an input is seen at the latest when its job
  retrieves it, before the job's outputs exist). A null date is unknown -- never 1970, which
  would make every output derived from the file look outdated forever; a new size is a change.

- pending removals (`mark_removed`): the pid of the run that removed a file we sent (or an
  execution's results folder), kept on VIP until that run ends in case the same bytes come back.

Nothing else is stored (VIP paths, sizes, dates, digests, pids: no key). The book is a log of JSON lines
appended under a file lock: concurrent Snakemake processes sharing the directory (jobs on a
cluster) keep and see each other's entries.
"""

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

BOOK_NAME = ".vip-dates.jsonl"


def vip_seconds(value) -> float | None:
    """VIP's date as seconds since the epoch (None if unknown). Values past year 5000 in
    seconds are milliseconds (VIP's unit for execution dates)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if v <= 0:
        return None  # 0 / negative: no date, not 1970
    return v / 1000.0 if v > 1e11 else v


@dataclass
class _Entry:
    size: int | None
    vip_date: float | None  # VIP's date when recorded (seconds, None = VIP gave none)
    time: float  # our clock
    ours: bool  # uploaded by the plugin, or dated after its inputs (else: first seen, null date)
    sha256: str | None = None  # of the bytes the plugin sent (core.content): same bytes, not re-sent
    removed_by: int | None = None  # pid of the run that removed it: a pending removal (see below)


class DateBook:
    """What this workflow directory knows about the dates of VIP files (see module doc).

    The file is a log of JSON lines, appended under a lock (one line per file written or
    first seen, one per removal): a run writing N outputs appends N lines instead of rewriting
    the whole book N times. Lines appended by other processes are read before each use."""

    def __init__(self, folder: Path, first_seen: float | None = None):
        self.path = Path(folder) / BOOK_NAME
        # The time given to files without a date seen for the first time: one per run (the
        # run's start), so that no order of listing makes one look newer than another.
        self.first_seen = time.time() if first_seen is None else first_seen
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._offset = 0  # bytes of the file already applied to _entries
        self._inode: int | None = None  # of the file read (a compaction replaces it)
        self._lines = 0

    # -- persistence ---------------------------------------------------------------------------

    def _apply(self, rec: dict) -> None:
        if "forget" in rec:
            prefix = str(rec["forget"]).rstrip("/")
            for p in [p for p in self._entries if p == prefix or p.startswith(prefix + "/")]:
                del self._entries[p]
        else:
            self._entries[rec["path"]] = _Entry(rec.get("size"), rec.get("vip_date"),
                                                float(rec["time"]), bool(rec.get("ours")),
                                                rec.get("sha256"), rec.get("removed_by"))

    def _refresh(self) -> None:
        """Apply the lines appended since the last read (by us or another process)."""
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                if st.st_ino != self._inode or st.st_size < self._offset:
                    # first read, or compacted (replaced) since: read it all again
                    self._entries, self._offset, self._lines = {}, 0, 0
                    self._inode = st.st_ino
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            self._entries, self._offset, self._lines = {}, 0, 0
            return
        end = data.rfind(b"\n") + 1  # a line being appended right now is read next time
        for line in data[:end].splitlines():
            self._lines += 1
            try:
                self._apply(json.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a damaged line (crash mid-write): ignored
        self._offset += end

    def _locked(self):
        """The book's lock (a separate file: the book itself is replaced when compacted)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # an OS lock (flock / msvcrt): a dead holder's is released
        from filelock import FileLock

        return FileLock(self.path.with_name(BOOK_NAME + ".lock"), thread_local=False)

    def _append(self, records: list[dict]) -> None:
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
        with self._locked():
            with open(self.path, "ab") as fh:
                fh.write(data)
            self._refresh()
            if self._lines > 2 * len(self._entries) + 10_000:
                self._compact()

    def _compact(self) -> None:
        """Rewrite the log with one line per live entry (atomically; caller holds the lock)."""
        tmp = self.path.with_name(BOOK_NAME + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for p, e in sorted(self._entries.items()):
                fh.write(json.dumps({"path": p, **asdict(e)}, separators=(",", ":")) + "\n")
        os.replace(tmp, self.path)
        self._entries, self._offset, self._lines = {}, 0, 0
        self._refresh()

    # -- API -----------------------------------------------------------------------------------

    def record_upload(self, files: list[tuple[str, int | None, float | None]], when: float,
                      digests: dict[str, str] | None = None) -> None:
        """The plugin has just written these (vip_path, size, vip_date) files; upload done at
        `when`. `digests`: vip_path -> sha256 of the bytes sent (what `sent` compares with)."""
        digests = digests or {}
        with self._lock:
            self._append([{"path": p, **asdict(_Entry(size, date, when, True, digests.get(p)))}
                          for p, size, date in files])

    def sent(self, path: str, size: int | None, vip_date: float | None, sha256: str) -> bool:
        """True if VIP still holds at `path` the bytes we sent there (same digest recorded, and
        VIP still shows the size and date we recorded): sending them again would change nothing
        but VIP's date."""
        with self._lock:
            self._refresh()
            e = self._entries.get(path)
        return bool(e is not None and e.ours and e.sha256 == sha256 and e.size == size
                    and (e.vip_date is None or vip_date is None or e.vip_date == vip_date))

    def mark_removed(self, path: str, pid: int) -> bool:
        """Snakemake removes a job's old output before the job runs again. A file VIP holds as
        we sent it is not deleted at once: it is marked removed by `pid` (it counts as missing),
        so that the job writing the same bytes again finds them there (`revive`): not re-sent,
        its date kept. False if the book holds no digest of ours for it (delete it now)."""
        with self._lock:
            self._refresh()
            e = self._entries.get(path)
            if e is None or not e.ours or not e.sha256:
                return False
            self._append([{"path": path, **asdict(_Entry(e.size, e.vip_date, e.time, True,
                                                         e.sha256, pid))}])
            return True

    def digest(self, path: str) -> str | None:
        """The sha256 of the bytes we sent to `path`, if recorded."""
        with self._lock:
            self._refresh()
            e = self._entries.get(path)
        return e.sha256 if e is not None and e.ours else None

    def mark_removed_tree(self, path: str, pid: int) -> None:
        """A folder (an execution's results) marked removed by `pid` (see mark_removed): it
        counts as missing until `unmark` (its execution adopted) or its real deletion."""
        with self._lock:
            self._append([{"path": path, **asdict(_Entry(None, None, 0.0, False, None, pid))}])

    def unmark(self, path: str) -> None:
        with self._lock:
            self._refresh()
            e = self._entries.get(path)
            if e is not None and e.removed_by is not None:
                self._append([{"path": path, **asdict(_Entry(e.size, e.vip_date, e.time, e.ours,
                                                             e.sha256))}])

    def removed(self, path: str) -> int | None:
        """The pid of the run that marked `path` removed (not yet deleted on VIP), else None."""
        with self._lock:
            self._refresh()
            e = self._entries.get(path)
        return e.removed_by if e is not None else None

    def pending_removals(self) -> dict[str, int]:
        with self._lock:
            self._refresh()
            return {p: e.removed_by for p, e in self._entries.items() if e.removed_by is not None}

    def revive(self, path: str, when: float) -> None:
        """The same bytes were written again (at `when`) where they were marked removed:
        present again, VIP's copy untouched. Dated `when`: the job that wrote them may have
        read local inputs newer than their first write (Snakemake would rerun it forever)."""
        with self._lock:
            self._refresh()
            e = self._entries.get(path)
            if e is not None and e.removed_by is not None:
                self._append([{"path": path, **asdict(_Entry(e.size, e.vip_date, when, True,
                                                             e.sha256))}])

    def order_after(self, files: list[tuple[str, int | None, float | None]], inputs: list[float],
                    skew: float) -> None:
        """These files were made from inputs whose times are `inputs` (a VIP execution wrote
        them after it started, and it started after its inputs were written): where VIP's whole
        seconds date one at or before its newest input, it is recorded just after it (as long as
        VIP shows the same size and date), so that Snakemake sees them in the order they were
        made."""
        if not files or not inputs:
            return
        after = max(inputs)
        times = self.resolve(files, skew)
        if min(times) > after:
            return
        when = max(after + 0.001, max(times))
        with self._lock:
            self._append([{"path": p, **asdict(_Entry(size, date, when, True))}
                          for p, size, date in files])

    def forget(self, prefix: str) -> None:
        """Forget a removed file or directory (and everything under it)."""
        with self._lock:
            self._refresh()
            prefix = prefix.rstrip("/")
            if any(p == prefix or p.startswith(prefix + "/") for p in self._entries):
                self._append([{"forget": prefix}])

    def resolve(self, items: list[tuple[str, int | None, float | None]], skew: float) -> list[float]:
        """Times (our clock) of (vip_path, size, vip_date) files, in order. `skew` = VIP's
        clock minus ours. Files without a date seen for the first time are recorded."""
        with self._lock:
            self._refresh()
            now = self.first_seen
            out: list[float] = []
            new: list[dict] = []
            for path, size, date in items:
                e = self._entries.get(path)
                if e is not None and e.size == size and (
                    (e.ours and (e.vip_date is None or date is None or e.vip_date == date))
                    or (not e.ours and date is None)
                ):
                    out.append(e.time)
                    if e.ours and e.vip_date is None and date is not None:
                        # uploaded without asking VIP's date: the first one seen is adopted,
                        # so that a later change of the file (a new date) is noticed
                        new.append({"path": path, **asdict(_Entry(size, date, e.time, True,
                                                                  e.sha256))})
                elif date is not None:
                    out.append(date - skew)
                else:
                    new.append({"path": path, **asdict(_Entry(size, None, now, False))})
                    out.append(now)
            unknown = [r for r in new if not r["ours"]]
            if unknown:
                log.info("VIP gives no modification date for %d file(s): using the time they "
                         "were first seen (%s)", len(unknown), ", ".join(r["path"] for r in unknown[:3]))
            if new:
                self._append(new)
            return out

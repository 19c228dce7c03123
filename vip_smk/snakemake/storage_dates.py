"""Modification dates of VIP files as Snakemake needs them (helper of the `vip://` plugin).

VIP's `lastModificationDate` is whole seconds on VIP's clock, and may be null. Snakemake
compares it with local file times (sub-second, our clock) and with the dates of other VIP
files, and reruns a job when one input is *strictly* newer than its oldest output.

`DateBook` keeps, in one small JSON file under Snakemake's local storage prefix, what this
workflow directory knows better than VIP:

- the files the plugin uploaded: their size, VIP's date for them and the time (our clock) the
  upload had finished. While VIP still shows that size and date (or no date), the file's time
  is that precise time: outputs always look newer than the inputs their job read, even
  within VIP's one-second resolution, and even when VIP gives no date at all;
- the files VIP gives no date for and that the plugin did not write: the time they were first
  seen with their current size. A null date is unknown -- never 1970, which would make every
  output derived from the file look outdated forever; a new size is a change.

Nothing else is stored (VIP paths, sizes, dates: no key). Writes are atomic and merged under a
file lock, so concurrent Snakemake processes sharing the directory keep each other's entries.
"""

import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

BOOK_NAME = ".vip-dates.json"


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
    ours: bool  # uploaded by the plugin (else: first seen with a null date)


class DateBook:
    """What this workflow directory knows about the dates of VIP files (see module doc)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / BOOK_NAME
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] | None = None

    # -- persistence ---------------------------------------------------------------------------

    def _read(self) -> dict[str, _Entry]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s (%s)", self.path, exc)
            return {}
        out = {}
        for path, e in (raw.get("files") or {}).items():
            try:
                out[path] = _Entry(e.get("size"), e.get("vip_date"), float(e["time"]), bool(e.get("ours")))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
        return out

    def _load(self) -> dict[str, _Entry]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _save(self, updates: dict[str, _Entry | None]) -> None:
        """Merge `updates` (None = forget) into the file under an exclusive lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(BOOK_NAME + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self._read()
            for path, e in updates.items():
                if e is None:
                    entries.pop(path, None)
                else:
                    entries[path] = e
            data = {"files": {p: e.__dict__ for p, e in sorted(entries.items())}}
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=BOOK_NAME, suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, indent=1)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        self._entries = entries

    # -- API -----------------------------------------------------------------------------------

    def record_upload(self, files: list[tuple[str, int | None, float | None]], when: float) -> None:
        """The plugin has just written these (vip_path, size, vip_date) files; upload done at `when`."""
        with self._lock:
            self._save({p: _Entry(size, date, when, True) for p, size, date in files})

    def forget(self, prefix: str) -> None:
        """Forget a removed file or directory (and everything under it)."""
        with self._lock:
            entries = self._load()
            gone = [p for p in entries if p == prefix or p.startswith(prefix.rstrip("/") + "/")]
            if gone:
                self._save(dict.fromkeys(gone))

    def resolve(self, items: list[tuple[str, int | None, float | None]], skew: float) -> list[float]:
        """Times (our clock) of (vip_path, size, vip_date) files, in order. `skew` = VIP's
        clock minus ours. Files without a date seen for the first time are recorded."""
        with self._lock:
            entries = self._load()
            now = time.time()
            out: list[float] = []
            new: dict[str, _Entry] = {}
            for path, size, date in items:
                e = entries.get(path)
                if e is not None and e.size == size and (
                    (e.ours and (e.vip_date is None or date is None or e.vip_date == date))
                    or (not e.ours and date is None)
                ):
                    out.append(e.time)
                elif date is not None:
                    out.append(date - skew)
                else:
                    new[path] = _Entry(size, None, now, False)
                    out.append(now)
            if new:
                log.info("VIP gives no modification date for %d file(s): using the time they "
                         "were first seen (%s)", len(new), ", ".join(sorted(new)[:3]))
                self._save(new)
            return out

"""Whether a local input changed: by its content, never by its modification time alone.

The one place that decides it; every face calls it (VipSession / VipLauncher through their
backup, the study through its upload marker, the executor through its job records). A change of
an input is what makes us re-send it and relaunch the executions that used it, and a VIP
execution costs hours of grid time (and, on a new account, the user's only slot), so:

- at upload time we record each file's :class:`Fingerprint` (size, ``st_mtime_ns``, sha256 of
  the bytes; the digest is best computed while the upload reads the file: :func:`hasher`);
- later, :func:`unchanged` compares a file with its record: another size is a change (no read);
  the same size and the same ``st_mtime_ns`` is no change (nothing moved: no read); otherwise the
  file is read and hashed, and only other bytes are a change. A file rewritten with the same
  bytes (new mtime) is therefore *not* a change; new bytes of the same size are.
- remote files are never hashed (VIP serves no md5): what we know of a VIP file's content is the
  record we made when we sent it.

sha256 because it is fast where it matters (OpenSSL, ~1.5 GB/s on this class of machine, well
above a WAN upload) and collision-free for this purpose.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ALGORITHM", "Fingerprint", "changed_files", "digest_file", "fingerprint", "hasher",
           "same_content", "tree_digest", "unchanged"]

ALGORITHM = "sha256"
_CHUNK = 1 << 20


def hasher() -> Any:
    """A fresh incremental hash of :data:`ALGORITHM` (``update(bytes)``, ``hexdigest()``): feed it
    the chunks an upload reads, so that a file is read once for both."""
    return hashlib.sha256()


def digest_file(path: str | os.PathLike) -> str:
    """The hex digest of a local file's bytes (read in 1 MiB chunks: constant memory)."""
    h = hasher()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """What we know of a local file's content when we sent it (or last checked it)."""

    size: int
    mtime_ns: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: Any) -> Fingerprint | None:
        """A record read back from a backup or marker; None for anything else (an older record
        without a digest, a damaged file): no record means "not known to be unchanged"."""
        if isinstance(data, Fingerprint):
            return data
        if not isinstance(data, Mapping):
            return None
        try:
            size, mtime_ns, digest = int(data["size"]), int(data["mtime_ns"]), str(data["sha256"])
        except (KeyError, TypeError, ValueError):
            return None
        if len(digest) != 64:
            return None
        return cls(size, mtime_ns, digest)


def fingerprint(path: str | os.PathLike, digest: str | None = None, *,
                before: os.stat_result | None = None) -> Fingerprint:
    """The file's fingerprint; ``digest``: the one computed while uploading it (no re-read).

    ``before``: the ``os.stat`` taken BEFORE the bytes were read (pass it with ``digest``): the
    record then holds that size and mtime, so a file rewritten during the upload has another
    mtime next time and is hashed again (a stat taken after the read would pair the new mtime
    with the old bytes' digest, and the new bytes would pass for unchanged without a read)."""
    st = before if before is not None else os.stat(path)
    return Fingerprint(st.st_size, st.st_mtime_ns, digest if digest is not None else digest_file(path))


def unchanged(path: str | os.PathLike, recorded: Fingerprint | Mapping[str, Any] | None) -> bool:
    """True if ``path`` still holds the bytes of ``recorded`` (see the module's docstring for
    when the file is read). A missing file or no usable record: False."""
    rec = Fingerprint.from_json(recorded)
    if rec is None:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_size != rec.size:
        return False
    if st.st_mtime_ns == rec.mtime_ns:
        return True
    return digest_file(path) == rec.sha256


def same_content(path: str | os.PathLike, recorded: Fingerprint | Mapping[str, Any] | None
                 ) -> Fingerprint | None:
    """Like :func:`unchanged`, but returns the record to keep: the old one with the file's new
    mtime when only the mtime moved (so the next check needs no read), None when changed."""
    rec = Fingerprint.from_json(recorded)
    if rec is None or not unchanged(path, rec):
        return None
    st = os.stat(path)
    return rec if st.st_mtime_ns == rec.mtime_ns else Fingerprint(rec.size, st.st_mtime_ns, rec.sha256)


def changed_files(root: str | os.PathLike, rels: Iterable[str],
                  records: Mapping[str, Any] | None) -> list[str]:
    """The relative paths under ``root`` whose content is not the recorded one (new files
    included: no record). ``records``: ``{rel: Fingerprint or its JSON}``."""
    records = records or {}
    base = Path(root)
    return [rel for rel in rels if not unchanged(base / rel, records.get(rel))]


def tree_digest(records: Mapping[str, Fingerprint | Mapping[str, Any] | None]) -> str:
    """One digest of a set of files' contents and relative names (not their dates): what a
    session's inputs are, for naming or comparing them. Entries without a usable record count
    as their name only."""
    h = hasher()
    for rel in sorted(records):
        rec = Fingerprint.from_json(records[rel])
        h.update(f"{rel}\0{rec.sha256 if rec else ''}\n".encode())
    return h.hexdigest()

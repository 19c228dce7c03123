"""The local side of a tree transfer: what a local tree holds and whether VIP would take it,
where its files go, and whether a file is unchanged from VIP's copy.

- `check_local_tree`: scan a directory to upload (symlinks followed, loops ignored, our own
  `NAME.part` left-overs skipped) and list *all* its problems without any network: 0-byte
  files, names or folders VIP would rename, characters VIP refuses in input values,
  unreadable or non-regular files (`vip_smk.transfer.trees.upload_tree` raises them as one
  `PreflightError`; the dry run of `vip_smk.study` reports them);
- tree-relative paths (`join`, `parent`, `depth`);
- unchanged or not: dates compared with `MTIME_SLACK` on the server's clock (`skew`, `newer`),
  and md5 where the server computes it (`changed_by_md5`).

Imports VIP's rules and `vip_smk.transfer.scheduling`, never `vip_smk.api.client` or `vip_smk.transfer.trees`
(which import it): no import cycle.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from vip_smk.rules import clean_name, value_problem
from vip_smk.transfer.scheduling import map_as_completed

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Local scan and pre-flight
# --------------------------------------------------------------------------------------------


@dataclass
class LocalFile:
    rel: str  # POSIX path relative to the tree root
    path: Path
    size: int
    mtime: float = 0.0


def scan(local_dir: Path) -> tuple[list[LocalFile], list[str]]:
    """Files under local_dir (symlinks followed, loops ignored) and the problems found."""
    files: list[LocalFile] = []
    problems: list[str] = []
    seen_dirs: set[str] = set()
    top = os.fspath(local_dir)
    for root, dirs, names in os.walk(top, followlinks=True, onerror=lambda e: problems.append(
            f"{e.filename}: unreadable directory ({e.strerror})")):
        real = os.path.realpath(root)
        if real in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add(real)
        dirs.sort()
        rel_root = os.path.relpath(root, top).replace(os.sep, "/")
        prefix = "" if rel_root == "." else rel_root + "/"
        present = set(names) | set(dirs)
        for name in sorted(names):
            path = os.path.join(root, name)
            rel = prefix + name
            if name.endswith(".part") and name[: -len(".part")] in present:
                continue  # an interrupted download of ours next to its target
            try:
                st = os.stat(path)
            except OSError as exc:
                problems.append(f"{rel}: unreadable ({exc.strerror or 'broken link'})")
                continue
            if not stat.S_ISREG(st.st_mode):
                problems.append(f"{rel}: not a regular file")
                continue
            if not os.access(path, os.R_OK):
                problems.append(f"{rel}: unreadable (Permission denied)")
                continue
            files.append(LocalFile(rel, Path(path), st.st_size, st.st_mtime))
    return files, problems


def name_problems(rel: str, seen: set[str]) -> list[str]:
    problems = []
    parts = rel.split("/")
    for i, part in enumerate(parts):
        prefix = "/".join(parts[: i + 1])
        if prefix in seen:
            continue
        seen.add(prefix)
        clean = clean_name(part)
        if clean != part:
            what = "folder" if i < len(parts) - 1 else "name"
            problems.append(f"{prefix}: VIP would rename this {what} to {clean!r} (spaces, non-ASCII)")
        elif (bad := value_problem(part)) is not None:
            problems.append(f"{prefix}: {bad}, refused by VIP in pipeline inputs")
    return problems


def check_local_tree(local_dir: str | os.PathLike) -> tuple[list[LocalFile], list[str]]:
    """Scan a directory to upload; return (files, problems) without any network."""
    local_dir = Path(local_dir)
    files, problems = scan(local_dir)
    seen: set[str] = set()
    for f in files:
        problems.extend(name_problems(f.rel, seen))
        if f.size == 0:
            problems.append(f"{f.rel}: empty file (VIP turns an empty upload into a directory)")
    return files, sorted(set(problems))


# --------------------------------------------------------------------------------------------
# Tree-relative paths
# --------------------------------------------------------------------------------------------


def join(base: str, rel: str) -> str:
    base = base.rstrip("/") or "/"
    return base if not rel else f"{base}/{rel}"


def parent(rel: str) -> str:
    return rel.rsplit("/", 1)[0] if "/" in rel else ""


def depth(rel: str) -> int:
    return 0 if not rel else rel.count("/") + 1


# --------------------------------------------------------------------------------------------
# Unchanged?
# --------------------------------------------------------------------------------------------


MTIME_SLACK = 2.0  # seconds: VIP dates are whole seconds; small clock skews are tolerated


def skew(client) -> float:
    """Server clock minus ours, rounded away below the slack (dates are whole seconds)."""
    skew = getattr(client, "clock_skew", None) or 0.0
    return skew if abs(skew) > 1.0 else 0.0


def newer(mtime: float, than: float | int | None) -> bool:
    """True if a date `mtime` (seconds) is clearly after `than` (None: unknown -> False)."""
    if than is None:
        return False
    try:
        return float(mtime) > float(than) + MTIME_SLACK
    except (TypeError, ValueError):
        return False


def changed_by_md5(client, ex, files, vip_dir, report) -> list[LocalFile]:
    """Same-size files whose content differs, where the server computes md5. VIP-portal does
    not (8001): the first answer tells, and the client remembers it (size/date decide)."""
    import hashlib

    skipped = set(report.skipped)
    cands = [f for f in files if str(f.path) in skipped]

    def compare(f: LocalFile) -> bool | None:
        remote = client.md5(join(vip_dir, f.rel))
        if remote is None:
            return None  # not offered: size and date decide
        h = hashlib.md5()  # noqa: S324 - content comparison, not security
        with open(f.path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest() != remote.lower()

    if not cands or client.md5_offered is False:
        return []
    changed = []
    first = compare(cands[0])  # one probe: is md5 offered at all?
    if first is None:
        log.info("md5 not offered by %s: unchanged files are judged by size and date", client.url)
        return []
    results = [(cands[0], first)] + [(f, fut.result()) for f, fut in map_as_completed(ex, compare, cands[1:])]
    for f, differs in results:
        if differs:
            changed.append(f)
            report.skipped.remove(str(f.path))
            report.files_skipped -= 1
    return changed

"""VIP's rules: what VIP accepts and what its answers mean. Pure functions, no I/O.

The one copy used by the client, `VipSession`, the study and the plugins (the local server in
``vip_smk.server`` keeps its own copy: it emulates VIP and never imports the client). Sources:
reference ``vip-api.md`` sections 2.3 (server checks), 3.2 (statuses), 3.4 (paths), 4.3.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "EXECUTION_NAME_CHARS",
    "JobCounts",
    "NO_DEFAULT",
    "RUNNING_STATUSES",
    "SESSION_NAME_CHARS",
    "SUCCESS",
    "TERMINAL_STATUSES",
    "VALUE_CHARS",
    "clean_name",
    "is_over",
    "is_running",
    "job_counts",
    "local_name",
    "name_problem",
    "results_folder",
    "value_problem",
]

# ---- characters ------------------------------------------------------------------------------

#: Characters VIP accepts in an input value (``POST executions``, error 8009 otherwise):
#: ``0-9 . , A-Z a-z - + @ / _ ( ) : space [ ] ? & =``. A space only: no tab, no newline.
VALUE_CHARS = re.compile(r"[0-9.,A-Za-z\-+@/_():\[\]?&= ]*")
#: Session names (vip-client's rule, they become VIP folder names): letters, digits, ``-``, ``_``.
SESSION_NAME_CHARS = re.compile(r"[0-9A-Za-z_\-]+")
#: Execution names (VIP, error 8019 otherwise): letters, digits, ``-``, ``_`` and space.
EXECUTION_NAME_CHARS = re.compile(r"[0-9A-Za-z_\- ]+")

_NAME_RULES = {
    "session": (SESSION_NAME_CHARS, "letters, digits, '-' and '_'"),
    "execution": (EXECUTION_NAME_CHARS, "letters, digits, '-', '_' and spaces"),
}


def _bad_chars(text: str, pattern: re.Pattern) -> list[str]:
    return sorted({c for c in text if not pattern.fullmatch(c)})


def _show(chars: Iterable[str]) -> str:
    return " ".join(repr(c) for c in chars)


def value_problem(value: Any) -> str | None:
    """What VIP would refuse in an input value (``"contains '$' ';'"``), or None if accepted.
    Numbers are checked as VIP receives them (their text)."""
    text = value if isinstance(value, str) else str(value)
    if VALUE_CHARS.fullmatch(text):
        return None
    return f"contains {_show(_bad_chars(text, VALUE_CHARS))}"


def clean_name(name: str) -> str:
    """The name VIP stores an uploaded file under: spaces become ``_``, non-ASCII is dropped."""
    return "".join(ch for ch in name.replace(" ", "_") if ord(ch) < 128)


def name_problem(kind: str, name: str) -> str | None:
    """Why ``name`` is not a valid ``kind`` name ("session" or "execution"), or None."""
    try:
        pattern, allowed = _NAME_RULES[kind]
    except KeyError:
        raise ValueError(f"unknown kind of name {kind!r} (session, execution)") from None
    if not isinstance(name, str) or not name:
        return f"{kind} name is empty"
    if pattern.fullmatch(name):
        return None
    return f"{kind} name {name!r} contains {_show(_bad_chars(name, pattern))}: only {allowed} are allowed"


# ---- statuses --------------------------------------------------------------------------------

#: Execution statuses during which an execution may still produce data (``Ready`` is VIP's
#: queued state). A status unknown to this code counts as running too (see :func:`is_running`).
RUNNING_STATUSES = frozenset({"Initializing", "Ready", "Running"})
#: Statuses after which an execution produces nothing more (``Removed`` is set by
#: ``VipSession.finish``, not by VIP).
TERMINAL_STATUSES = frozenset(
    {"Finished", "ExecutionFailed", "InitializationFailed", "Killed", "Unknown", "Removed"}
)
SUCCESS = "Finished"
#: VIP's "no default value" (``null``; older VIP versions sent the literal template string).
NO_DEFAULT = (None, "$input.getDefaultValue()")


def is_running(status: str | None) -> bool:
    """True for every status not known to be terminal: waiting once too often is cheap,
    deleting the data of a live execution is not. ``None`` (no status yet) -> False."""
    return status is not None and status not in TERMINAL_STATUSES


def is_over(status: str | None) -> bool:
    """True for a terminal status (``None``, no status yet, is neither running nor over)."""
    return status is not None and status in TERMINAL_STATUSES


# Job statuses (the ``jobs`` field of an execution; compared lower-case). A job status in
# neither set counts as still active, like an unknown execution status.
_JOB_OK = frozenset({"completed", "finished", "successful", "success", "done"})
_JOB_FAILED = frozenset({"failed", "error", "killed", "cancelled", "canceled", "executionfailed",
                         "initializationfailed", "aborted"})


@dataclass(frozen=True)
class JobCounts:
    """``total`` jobs = ``done`` (over, whatever the outcome) + ``active`` (queued or running);
    ``failed`` counts the done jobs that did not succeed; ``ok`` = done - failed."""

    total: int = 0
    done: int = 0
    failed: int = 0
    active: int = 0

    @property
    def ok(self) -> int:
        return self.done - self.failed

    def __add__(self, other: "JobCounts") -> "JobCounts":
        return JobCounts(self.total + other.total, self.done + other.done,
                         self.failed + other.failed, self.active + other.active)


def job_counts(jobs: Any, status: str | None = None) -> JobCounts:
    """Count an execution's jobs (``{id: {"status", "exitCode", ...}}``, a list of those, or of
    status strings). Without jobs, the execution itself counts as one job, from ``status``
    (its execution status; nothing at all when that is None too)."""
    items = list(jobs.values()) if isinstance(jobs, Mapping) else list(jobs or [])
    if not items:
        if status is None:
            return JobCounts()
        if is_running(status):
            return JobCounts(1, 0, 0, 1)
        return JobCounts(1, 1, 0 if status == SUCCESS else 1, 0)
    done = failed = 0
    for job in items:
        st = job.get("status") if isinstance(job, Mapping) else getattr(job, "status", job)
        st = str(st or "").lower()
        if st in _JOB_OK:
            done += 1
        elif st in _JOB_FAILED:
            done += 1
            failed += 1
    return JobCounts(len(items), done, failed, len(items) - done)


# ---- names and folders -----------------------------------------------------------------------

RESULTS_FOLDER_FORMAT = "%d-%m-%Y_%H:%M:%S"


def results_folder(when: datetime | None = None) -> str:
    """The dated folder VIP creates under ``resultsLocation`` for an execution
    (``dd-mm-yyyy_HH:MM:SS``, local time). Clients treat the folder name as opaque."""
    return (when or datetime.now()).strftime(RESULTS_FOLDER_FORMAT)


# vip-client maps these to "-" on Windows (reference 3.4); we also map the other characters
# Windows refuses (| \ control characters) and apply the mapping on every system, so that a
# results folder means the same files on Windows and Unix.
_LOCAL_BAD = re.compile(r'[<>:"/\\|?*\x00-\x1f ]')
# device names Windows reserves, with any extension (COM0/LPT0 and the superscript digits too)
_WINDOWS_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|conin\$|conout\$|com[0-9\u00b9\u00b2\u00b3]|lpt[0-9\u00b9\u00b2\u00b3])(\..*)?")


def local_name(vip_name: str) -> str:
    """A local file or folder name valid on Windows and Unix for one VIP name component.

    ``< > : " / \\ | ? *``, control characters and spaces become ``-`` (vip-client's Windows
    mapping, extended), so VIP's dated folder ``24-11-2026_23:37:07`` is stored as
    ``24-11-2026_23-37-07``; trailing dots (refused by Windows) become ``-``; a name Windows
    reserves (``CON``, ``NUL``, ``COM1``...) gets a ``-`` prefix. Names that need nothing are
    unchanged, so on Windows this is exactly vip-client's layout."""
    out = _LOCAL_BAD.sub("-", vip_name)
    stripped = out.rstrip(".")
    if stripped != out:
        out = stripped + "-" * (len(out) - len(stripped))
    if _WINDOWS_RESERVED.fullmatch(out):
        out = "-" + out
    return out or "-"

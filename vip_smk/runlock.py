"""A Snakemake working directory's run record: which process holds Snakemake's lock, so that
the lock a killed run (kill -9, power loss) left behind is removed when its process is gone (on
this host) and `snakemake --cores 1` simply resumes. Shared by the study and both plugins."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from pathlib import Path

from vip_smk.util import pid_alive, read_json, write_json_atomic

log = logging.getLogger(__name__)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _run_record(workdir: Path) -> Path:
    return workdir / ".snakemake" / "vip-smk-run.json"


def record_run(workdir: str | os.PathLike) -> None:
    """Called from `onstart`: remember which process holds Snakemake's lock."""
    write_json_atomic(_run_record(Path(workdir)), {"pid": os.getpid(), "host": socket.gethostname(), "at": _now()})


def forget_run(workdir: str | os.PathLike) -> None:
    rec = read_json(_run_record(Path(workdir))) or {}
    if rec.get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            _run_record(Path(workdir)).unlink()


def clear_stale_lock(workdir: str | os.PathLike) -> bool:
    """If the run that took Snakemake's lock here was killed (kill -9, power loss) on this
    host, remove the lock it left so that `snakemake --cores 1` resumes without --unlock.
    A lock held by a live process, by another host, or not taken by vip-smk is left alone."""
    wd = Path(workdir)
    rec_path = _run_record(wd)
    rec = read_json(rec_path)
    if not isinstance(rec, dict):
        return False
    if rec.get("host") != socket.gethostname() or pid_alive(int(rec.get("pid", 0))):
        return False
    locks = wd / ".snakemake" / "locks"
    removed = False
    if locks.is_dir():
        for f in locks.iterdir():
            with contextlib.suppress(OSError):
                f.unlink()
                removed = True
    with contextlib.suppress(OSError):
        rec_path.unlink()
    if removed:
        log.warning("removed the lock left by an interrupted run (pid %s, %s)", rec.get("pid"), rec.get("at"))
    return removed

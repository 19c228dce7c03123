"""Resume after kill -9: the Snakemake lock a killed run leaves behind is removed when its
process is gone (on this host), so that `snakemake --cores 1` simply resumes."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from pathlib import Path

from vip_smk.util import read_json, write_json_atomic

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
    from vip_smk.util import pid_alive

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


def stop_on_interrupt(study) -> bool:
    """Called at parse time in Snakemake's main thread: Ctrl-C sets `study.stop` (the waiting
    steps then end within a second, their executions left running on VIP for the next run to
    resume), then goes on as Snakemake expects (KeyboardInterrupt). A second Ctrl-C while the
    run stops does not interrupt Snakemake's cleanup (it would print tracebacks of its own); a
    third ends the process at once (the executions keep running on VIP). Nothing is installed
    when SIGINT is ignored (a background job) or off the main thread."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None) or getattr(previous, "_vip_smk_stop", None) is study.stop:
        return False

    def on_sigint(signum, frame):
        if study.stop.is_set():  # already stopping: the next Ctrl-C ends the process
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.write(2, b"vip-smk: stopping (the executions keep running on VIP); Ctrl-C again quits at once\n")
            return
        study.stop.set()
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    on_sigint._vip_smk_stop = study.stop  # type: ignore[attr-defined]
    signal.signal(signal.SIGINT, on_sigint)
    return True

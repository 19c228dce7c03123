"""Ctrl-C during a study: the waiting steps end within a second, the executions are left running
on VIP for the next run to resume. (The run record and stale lock: `vip_smk.runlock`.)"""

from __future__ import annotations

import logging
import os
import threading

from vip_smk.runlock import clear_stale_lock, forget_run, record_run  # noqa: F401 - re-exported

log = logging.getLogger(__name__)


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

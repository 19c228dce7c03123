"""The study's logging: each Snakemake job's `vip_smk` records to its rule's log file and to
stderr (`job_log`), and the parse-time records on stderr (`log_to_stderr`)."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Iterator

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%H:%M:%S"


@contextlib.contextmanager
def job_log(path: str | os.PathLike | None, level: int = logging.INFO) -> Iterator[None]:
    """Send the `vip_smk` log records of this thread to `path` (the rule's log file) and to
    stderr for the duration of a Snakemake job."""
    logger = logging.getLogger("vip_smk")
    ident = threading.get_ident()
    handlers: list[logging.Handler] = []
    fmt = logging.Formatter(LOG_FORMAT, LOG_DATEFMT)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path))
    handlers.append(logging.StreamHandler())
    for h in handlers:
        h.setFormatter(fmt)
        h.setLevel(level)
        # this job's thread, and the transfer worker threads it starts (named vip-*)
        h.addFilter(lambda record: record.thread == ident or (record.threadName or "").startswith("vip-"))
        logger.addHandler(h)
    # the parse-time handler (log_to_stderr) stays quiet for this job's records
    parse = [h for h in logger.handlers if hasattr(h, "_vip_smk_quiet")]
    for h in parse:
        h._vip_smk_quiet.add(ident)
    old_level = logger.level
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    try:
        yield
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(old_level)
        for h in parse:
            h._vip_smk_quiet.discard(ident)


def log_to_stderr(level: int = logging.INFO) -> None:
    """While Snakemake parses the workflow: `vip_smk` records (retry warnings...) on stderr
    with time and logger name, like every other message. Installed once per process."""
    logger = logging.getLogger("vip_smk")
    if any(hasattr(h, "_vip_smk_quiet") for h in logger.handlers):
        return
    h = logging.StreamHandler()
    quiet: set[int] = set()  # threads running a job: job_log prints their records
    h._vip_smk_quiet = quiet  # type: ignore[attr-defined]
    h.addFilter(lambda r: not quiet or (r.thread not in quiet and not (r.threadName or "").startswith("vip-")))
    h.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATEFMT))
    h.setLevel(level)
    logger.addHandler(h)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)

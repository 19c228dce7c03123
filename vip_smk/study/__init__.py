"""A study = datasets x pipelines x parameter sets, run on VIP as named sessions.

By concern:

- :mod:`.schema`  -- load the YAML, check it against the schema (defaults come from it);
- :mod:`.config`  -- the model (Study, Session, VipSettings); expand `study:` grids and `sessions:` into sessions, validate them against the pipelines
  (the shipped descriptors for ``url: local``: a dry run starts nothing);
- :mod:`.descriptors` -- the pipelines known without a request (shipped apps, a run's cache);
- :mod:`.connect` -- the study's VIP: the embedded local server (started, restarted) or a portal;
- :mod:`.steps`   -- what the Snakemake rules call, each a call of the shared core
  (:mod:`vip_smk.core`);
- :mod:`.summary` -- the CSV / text / HTML summary;
- :mod:`.runs`    -- resuming after kill -9 (Snakemake's stale lock).

The API key is never stored in a `Study`, a marker, a log or an exception: for ``url: local``
the client reads it from ``<local_dir>/apikey``; for a real URL from the environment variable
named by ``vip.api_key_env``.
"""

from __future__ import annotations

from typing import Any, Mapping

from vip_smk.study.config import (
    Session,
    Study,
    StudyConfigError,
    VipSettings,
    check_config,
    expand_sessions,
    load_config,
    load_study,
    slug,
)
from vip_smk.study.connect import StudyError, StudyVip, ensure_local_server, save_descriptors
from vip_smk.study.content import StudyContent, dataset_files
from vip_smk.study.descriptors import shipped_descriptors
from vip_smk.study.entry import (
    rule_check,
    rule_finish_dataset,
    rule_finish_session,
    rule_launch,
    rule_upload,
    rule_wait_and_download,
)
from vip_smk.study.logs import job_log, log_to_stderr
from vip_smk.study.runs import clear_stale_lock, forget_run, record_run, stop_on_interrupt
from vip_smk.study.steps import (
    check_study,
    download_session,
    failed_sessions,
    finish_dataset,
    finish_session,
    launch_session,
    upload_dataset,
    wait_session,
)
from vip_smk.study.summary import SUMMARY_COLUMNS, rule_summary, summary_rows, summary_text, write_summary
from vip_smk.util import read_json, write_json_atomic


def load_study_or_fail(config: Mapping[str, Any], workdir=None) -> Study:
    """`load_study` for the Snakefile: a config mistake becomes a Snakemake WorkflowError
    (a clean message, no traceback) so that even `snakemake -n` stops on it."""
    study, error = study_or_error(config, workdir)
    if error is not None:
        raise error
    return study


def study_or_error(config: Mapping[str, Any], workdir=None):
    """(study, None), or (None, WorkflowError listing every mistake) for the Snakefile to
    raise itself: Snakemake then shows no frame of ours. Log records of the parse (retry
    warnings...) go to stderr with time and logger name."""
    from snakemake.exceptions import WorkflowError

    log_to_stderr()
    try:
        return load_study(config, workdir), None
    except (StudyConfigError, StudyError) as exc:
        return None, WorkflowError(str(exc))


__all__ = [
    "SUMMARY_COLUMNS", "Session", "Study", "StudyConfigError", "StudyContent", "StudyError", "StudyVip",
    "VipSettings", "check_config", "check_study", "clear_stale_lock", "dataset_files", "download_session",
    "ensure_local_server", "expand_sessions", "failed_sessions", "finish_dataset", "finish_session",
    "forget_run", "job_log", "launch_session", "load_config", "load_study", "load_study_or_fail",
    "log_to_stderr", "read_json", "record_run", "rule_check", "rule_finish_dataset",
    "rule_finish_session", "rule_launch", "rule_summary", "rule_upload", "rule_wait_and_download",
    "save_descriptors", "shipped_descriptors", "slug", "stop_on_interrupt", "study_or_error",
    "summary_rows", "summary_text", "upload_dataset", "wait_session", "write_json_atomic",
    "write_summary",
]

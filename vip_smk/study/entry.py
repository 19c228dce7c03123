"""Entry points of the Snakefile's rules (`run:` blocks): one short call each, logged to the
rule's log file; a failure comes back as one line saying what to fix."""

from __future__ import annotations

import logging

from vip_smk.study.connect import StudyError, explain
from vip_smk.study.logs import job_log
from vip_smk.study.model import Study
from vip_smk.study.steps import (
    check_study,
    download_session,
    finish_dataset,
    finish_session,
    launch_session,
    upload_dataset,
    wait_session,
)

log = logging.getLogger(__name__)

def _run(study: Study, log_path, what: str, fn, *args, **kw) -> StudyError | None:
    """Run a step with its log. A failure is returned as a StudyError of one line saying what
    to fix, never raised: the rule raises it itself so that Snakemake shows no frame of ours."""
    from vip_smk.api.errors import VipError
    from vip_smk.study.schema import StudyConfigError

    with job_log(log_path):
        try:
            fn(*args, **kw)
            return None
        except VipError as exc:
            err = explain(exc, study.vip, study.workdir, what)
        except (StudyConfigError, StudyError) as exc:
            err = StudyError(str(exc))
        log.error("%s", err)
    return StudyError(str(err))  # a fresh exception: no traceback


def rule_upload(study: Study, wildcards, input, output, log) -> StudyError | None:
    return _run(study, log[0], f"dataset {wildcards.dataset}", upload_dataset, study, wildcards.dataset, output[0])


def rule_launch(study: Study, wildcards, input, output, log) -> StudyError | None:
    return _run(study, log[0], f"session {wildcards.session}", launch_session, study, wildcards.session,
                output[0], uploaded=input[0])


def rule_wait_and_download(study: Study, wildcards, input, output, log) -> StudyError | None:
    def both():
        wait_session(study, wildcards.session, input[0], output.done)
        download_session(study, wildcards.session, output.done, output.outputs)

    return _run(study, log[0], f"session {wildcards.session}", both)


def rule_finish_session(study: Study, wildcards, input, output, log) -> StudyError | None:
    return _run(study, log[0], f"session {wildcards.session}", finish_session, study, wildcards.session, output[0])


def rule_finish_dataset(study: Study, wildcards, input, output, log) -> StudyError | None:
    return _run(study, log[0], f"dataset {wildcards.dataset}", finish_dataset, study, wildcards.dataset, output[0])


def rule_check(study: Study, wildcards, input, output, log) -> StudyError | None:
    return _run(study, log[0], f"study {study.name}", check_study, study, output[0])

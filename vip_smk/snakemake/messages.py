"""Errors of the plugins shown as one clear message.

Snakemake prints, under an error's message, the frames between the raise and its own code
(`snakemake.exceptions.cut_traceback`): for an error of a plugin's set-up (a missing key, a
pre-launch check), frames of ours that tell the user nothing. The study's rules avoid it by
raising in the Snakefile; a plugin is called by Snakemake, so `raise_message_only` raises in a
one-line frame filed under Snakemake's folder (under a name no file has). The full traceback
stays in Snakemake's debug log.
"""

import os

import snakemake.exceptions as snakemake_exceptions

_MESSAGE_ONLY = compile(
    "raise error",
    os.path.join(os.path.dirname(snakemake_exceptions.__file__), "<vip-smk: message only>"),
    "exec",
)


def raise_message_only(error: BaseException) -> None:
    """Raise ``error`` (a WorkflowError) so that Snakemake shows its message and no frame of ours."""
    error.__suppress_context__ = True
    exec(_MESSAGE_ONLY, {"error": error.with_traceback(None)})

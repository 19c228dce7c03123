"""Errors of the plugins shown as one clear message.

Snakemake prints, under an error's message, the frames between the raise and its own code
(`snakemake.exceptions.cut_traceback`): for an error of a plugin's set-up (a missing key, a
pre-launch check), frames of ours that tell the user nothing. The study's rules avoid it by
raising in the Snakefile; a plugin is called by Snakemake, so `raise_message_only` raises in a
one-line frame filed under Snakemake's folder (under a name no file has). The full traceback
stays in Snakemake's debug log.
"""

import os
import re
from typing import Dict, List

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


MAX_PROBLEMS = 30  # problems listed in a pre-launch error (then "... and N more")


_JOB_PROBLEM = re.compile(r"rule (\S+) \(([^)]*)\): (.*)", re.S)


def problems_message(problems: List[str],
                      head: str = "nothing was launched; fix these first") -> str:
    """One line per problem; the same problem in many jobs of a rule (other wildcards) is
    one line naming the first job and how many more."""
    groups: Dict[tuple, List[str]] = {}
    for p in dict.fromkeys(problems):
        m = _JOB_PROBLEM.fullmatch(p)
        key = (m.group(1), m.group(3)) if m else (p, "")
        groups.setdefault(key, []).append(p)
    problems = []
    for (rule, text), items in groups.items():
        if len(items) > 1 and text:
            head_match = _JOB_PROBLEM.fullmatch(items[0])
            assert head_match is not None  # (text is set only for problems of that form)
            first = head_match.group(2)
            problems.append(f"rule {rule} ({first}) and {len(items) - 1} more job(s): {text}")
        else:
            problems.append(items[0])
    shown = problems[:MAX_PROBLEMS]
    more = len(problems) - len(shown)
    text = f"--executor vip: {head}:\n  " + "\n  ".join(shown)
    if more:
        text += f"\n  ... and {more} more"
    return text

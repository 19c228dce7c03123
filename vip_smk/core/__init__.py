"""The procedure's steps, each in one place: validate -> launch or adopt -> poll / wait ->
download -> remove. `VipSession`, `VipLauncher`, the study's rules and the Snakemake plugins are
faces over these functions (docs/architecture.md section 4); none re-implements them.

Every function takes the :class:`~vip_smk.api.client.ApiClient` to talk through; nothing here
keeps state between calls. ``from vip_smk import core; core.poll(...)``: the names below are
the contract (the submodules ``settings``, ``executions``, ``results`` are how it is filed;
``core.content`` decides whether a local input changed: by its bytes, never its mtime alone).
"""

from __future__ import annotations

from vip_smk.core import content
from vip_smk.core.descriptors import check_against_descriptor, descriptor_or_none
from vip_smk.core.executions import (
                         adoptable_on_vip,
                         failure_detail,
                         find_adoptable,
                         launch_or_adopt,
                         poll,
                         results_on_vip,
                         same_inputs,
                         wait,
)
from vip_smk.core.outputs import ExpectedOutput, assign_results, expected_outputs
from vip_smk.core.results import ResultsReport, download_results, extract_archive, remove_remote, results_layout
from vip_smk.core.settings import (
                         Problem,
                         SettingsError,
                         dot_inputs_of,
                         launch_refusal,
                         validate_settings,
                         vip_file_check,
)

__all__ = [
    "content",
    "ExpectedOutput",
    "Problem",
    "ResultsReport",
    "SettingsError",
    "adoptable_on_vip",
    "assign_results",
    "check_against_descriptor",
    "descriptor_or_none",
    "dot_inputs_of",
    "download_results",
    "expected_outputs",
    "extract_archive",
    "failure_detail",
    "find_adoptable",
    "launch_or_adopt",
    "launch_refusal",
    "poll",
    "remove_remote",
    "results_layout",
    "results_on_vip",
    "same_inputs",
    "validate_settings",
    "vip_file_check",
    "wait",
]

"""Snakemake discovers executor plugins as top-level packages named
``snakemake_executor_plugin_*``; the code lives in :mod:`vip_smk.snakemake.executor`."""

from vip_smk.snakemake.executor import Executor, ExecutorSettings, common_settings

__all__ = ["Executor", "ExecutorSettings", "common_settings"]

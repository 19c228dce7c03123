"""Snakemake storage plugin `vip://` (found by Snakemake under this top-level name).

The code lives in `vip_smk.snakemake.storage`; this package only re-exports it.
"""

from vip_smk.snakemake.storage import StorageObject, StorageProvider, StorageProviderSettings

__all__ = ["StorageObject", "StorageProvider", "StorageProviderSettings"]

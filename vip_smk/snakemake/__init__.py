"""Snakemake plugins of vip-smk: the `vip://` storage plugin (`storage.py`) and the VIP
executor (`executor.py`), found by Snakemake through the thin top-level packages
`snakemake_storage_plugin_vip` / `snakemake_executor_plugin_vip`."""

"""Local VIP server: VIP's REST API on this machine, running Boutiques apps.

``vip-smk serve`` / ``python -m vip_smk.server`` run it; :class:`LocalServer` starts and
stops it from Python (tests, benchmarks, the Snakemake workflow).
"""

from vip_smk.server.local import LocalServer

__all__ = ["LocalServer"]

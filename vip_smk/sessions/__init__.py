"""vip-client's faces: `VipSession` (local data: upload, launch, monitor, download, finish),
`VipLauncher` (data already on VIP), their shared parts (`base`, `steps`, `output`) and the
`session_data.json` backup (`backup`, vip-client 0.1.10's format).

May import: `vip_smk.core` (every step of the procedure), `vip_smk.transfer`, `vip_smk.api`,
`vip_smk.rules`, `vip_smk.util`. Never the study or the Snakemake plugins.
"""

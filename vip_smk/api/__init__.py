"""The VIP API layer: the HTTP transport (`transport`), VIP's errors (`errors`), the dataclasses
(`models`), API-key sources (`keys`), what a URL setting means (`urls`), one file's body up and
down (`streams`), the adoption rule for a lost launch reply (`adoption`) and the resource client
(`client.ApiClient`, one method per VIP call).

May import: `vip_smk.rules`, `vip_smk.util`, and (for ``url="local"`` only) `vip_smk.server`.
Never the transfer, core, sessions, study or snakemake layers above it.
"""

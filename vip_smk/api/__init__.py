"""vip_smk.api."""

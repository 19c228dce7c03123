"""vip_smk.sessions."""

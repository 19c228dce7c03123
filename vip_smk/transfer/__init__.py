"""vip_smk.transfer.trees."""

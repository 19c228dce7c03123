"""vip-smk: run medical-imaging pipelines on VIP (Virtual Imaging Platform)."""

__version__ = "0.1.0"

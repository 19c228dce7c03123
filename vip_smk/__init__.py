"""vip-smk: run medical-imaging pipelines on VIP (Virtual Imaging Platform).

``from vip_smk import VipSession, VipLauncher, VipClient, AsyncVipClient`` — imported lazily, so that
``import vip_smk`` stays light (no requests / tqdm import until they are used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AsyncVipClient", "VipClient", "VipLauncher", "VipSession", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from vip_smk.core.async_client import AsyncVipClient
    from vip_smk.core.client import VipClient
    from vip_smk.sessions.launcher import VipLauncher
    from vip_smk.sessions.session import VipSession

_LAZY = {"AsyncVipClient": "vip_smk.core.async_client", "VipClient": "vip_smk.core.client", "VipLauncher": "vip_smk.sessions.launcher",
         "VipSession": "vip_smk.sessions.session"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vip_smk' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))

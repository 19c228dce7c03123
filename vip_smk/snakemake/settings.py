"""The settings both plugins declare (`--vip-...` and `--storage-vip-...`), from one place,
and how a `url` setting is turned into a client.

No `from __future__ import annotations` here: Snakemake turns the settings' field types into
argparse types.
"""

import os
import re
from dataclasses import field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from snakemake_interface_common.exceptions import WorkflowError

from vip_smk.client import VipClient, VipError

KEY_ENV = "VIP_API_KEY"
LOCAL = "local"  # as the CLI's --url local: the local VIP server of ./.vip-local (started if needed)
LOCAL_DIR = ".vip-local"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def url_field() -> Any:
    return field(default=None, metadata={
        "help": "VIP portal URL, or 'local' for the local VIP server of this directory "
        "(.vip-local/, started if needed, as `vip-smk --url local`) (default: $VIP_URL, else "
        "https://vip.creatis.insa-lyon.fr)",
        "env_var": False,
        "required": False,
    })


def api_key_env_field() -> Any:
    return field(default=KEY_ENV, metadata={
        "help": f"NAME of the environment variable holding your VIP API key (default {KEY_ENV}; "
        "with url 'local', the local server's key when that variable is unset). The key itself "
        "never goes on a command line.",
        "env_var": False,
        "required": False,
    })


def make_client(who: str, option: str, url: Optional[str], key_env: Optional[str],
                **kwargs: Any) -> VipClient:
    """The client of a plugin's settings; every mistake is a WorkflowError naming its setting.

    ``who``: "--executor vip" / "vip:// storage"; ``option``: the plugin's option prefix
    ("--vip-" / "--storage-vip-"). ``url`` None: $VIP_URL, else VIP's portal; 'local' (either
    way): the local VIP server of ./.vip-local, as the CLI's `--url local`."""
    env = (key_env or KEY_ENV).strip()
    if not _ENV_NAME.fullmatch(env):  # a key pasted by mistake: never echoed
        raise WorkflowError(f"{who}: {option}api-key-env takes the NAME of the environment "
                            f"variable holding the key (e.g. {KEY_ENV}), not the key itself")
    url_setting = f"{option}url" if url else "$VIP_URL"
    url = (url or os.environ.get("VIP_URL") or "").strip() or None
    key: Dict[str, Any] = {"api_key_env": env}
    if url == LOCAL:
        url, key_file = _local_server(who)
        if not os.environ.get(env, "").strip():
            key = {"api_key_file": key_file}
    elif not os.environ.get(env, "").strip():
        raise WorkflowError(
            f"{who}: no VIP API key: the environment variable {env} is not set or empty "
            f"(export {env}=..., or name another variable with {option}api-key-env)")
    try:
        return VipClient(url, **key, **kwargs)
    except VipError as exc:  # names the setting at fault, never the key
        culprit = url_setting if getattr(exc, "call", None) == "url" else f"{option}api-key-env"
        raise WorkflowError(f"{who}: {exc} (set by {culprit})") from None


def _local_server(who: str) -> Tuple[str, Path]:
    """URL and key file of the local VIP server of ./.vip-local (attached, else started)."""
    try:
        from vip_smk.study.connect import ensure_local_server

        srv = ensure_local_server(Path(LOCAL_DIR).resolve())
    except Exception as exc:  # noqa: BLE001 - no server extra, a port refused: one line
        raise WorkflowError(f"{who}: url 'local': the local VIP server of {LOCAL_DIR}/ could "
                            f"not be started: {exc}") from None
    return srv.url, Path(srv.data_dir) / "apikey"

"""The settings both plugins declare (`--vip-...` and `--storage-vip-...`), from one place,
and how a `url` setting is turned into a client.

No `from __future__ import annotations` here: Snakemake turns the settings' field types into
argparse types.
"""

import os
import re
from dataclasses import field
from typing import Any, Dict, Optional

from snakemake_interface_common.exceptions import WorkflowError

from vip_smk.api.urls import LOCAL, LOCAL_DIR, resolve_url
from vip_smk.core.client import VipClient, VipError

KEY_ENV = "VIP_API_KEY"
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
                cls: Any = VipClient, **kwargs: Any) -> Any:
    """The client of a plugin's settings; every mistake is a WorkflowError naming its setting.

    ``who``: "--executor vip" / "vip:// storage"; ``option``: the plugin's option prefix
    ("--vip-" / "--storage-vip-"); ``cls``: VipClient or AsyncVipClient. ``url``: as every face
    reads it (`vip_smk.api.urls.resolve_url`:
    None = $VIP_URL, else VIP's portal; 'local' = the local VIP server of ./.vip-local, whose
    key is the default when the key variable is unset)."""
    env = (key_env or KEY_ENV).strip()
    if not _ENV_NAME.fullmatch(env):  # a key pasted by mistake: never echoed
        raise WorkflowError(f"{who}: {option}api-key-env takes the NAME of the environment "
                            f"variable holding the key (e.g. {KEY_ENV}), not the key itself")
    try:
        where = resolve_url(url, setting=f"{option}url")
    except VipError as exc:  # names the url setting (or $VIP_URL) itself
        raise WorkflowError(f"{who}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - 'local' and its server could not start: one line
        raise WorkflowError(f"{who}: {option}url '{LOCAL}': the local VIP server of "
                            f"{LOCAL_DIR}/ could not be started: {exc}") from None
    key: Dict[str, Any] = {"api_key_env": env}
    if not os.environ.get(env, "").strip():
        if where.key_file is None:
            if not env.isupper():  # maybe a key pasted in place of a name: never echoed
                raise WorkflowError(
                    f"{who}: no VIP API key: the environment variable named by {option}api-key-env "
                    f"is not set or empty ({option}api-key-env takes the NAME of a variable, e.g. "
                    f"{KEY_ENV}, never the key itself)")
            raise WorkflowError(
                f"{who}: no VIP API key: the environment variable {env} is not set or empty "
                f"(export {env}=..., or name another variable with {option}api-key-env)")
        key = {"api_key_file": where.key_file}
    try:
        return cls(where.url, **key, **kwargs)
    except VipError as exc:  # the key's source at fault (the URL was checked above), never the key
        culprit = f" (set by {option}api-key-env)" if "api_key_env" in key else ""
        raise WorkflowError(f"{who}: {exc}{culprit}") from None


DEFAULT_BATCH_SIZE = 100
DEFAULT_BATCH_WAIT = 60.0


def batch_size_field() -> Any:
    return field(default=DEFAULT_BATCH_SIZE, metadata={
        "help": "most Snakemake jobs of one rule run as ONE VIP execution with list inputs "
        "(one VIP job per Snakemake job), when they share the pipeline, every non-File "
        f"parameter and their results' parent folder (default {DEFAULT_BATCH_SIZE}; 1: one "
        "execution per job)",
        "env_var": False,
        "required": False,
    })


def batch_wait_field() -> Any:
    return field(default=DEFAULT_BATCH_WAIT, metadata={
        "help": "longest wait in seconds for more jobs of a rule to become ready before a "
        "batch is launched smaller than --vip-batch-size (it is launched at once when no more "
        f"jobs of its rule are to come) (default {DEFAULT_BATCH_WAIT:g})",
        "env_var": False,
        "required": False,
    })

"""Where a VIP API key comes from: exactly one explicit source (`read_api_key`), and
vip-client 0.1.10's one-string form mapped onto it (`vip_client_key_kwargs`).

An `ApiKey` carries the key and its source; messages name the source, never the key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vip_smk.api.errors import AuthError

DEFAULT_KEY_ENV = "VIP_API_KEY"
# VIP's keys are long random strings; anything shorter is a mistake (a placeholder, a variable's
# name, a truncated paste), and masking it in messages would hit ordinary words.
MIN_KEY_LENGTH = 8


@dataclass(frozen=True, repr=False)
class ApiKey:
    """A VIP API key and where it came from (`source`, for messages). The key never appears
    in `repr`, `str` or messages."""

    value: str
    source: str

    def __repr__(self) -> str:
        return f"ApiKey(from {self.source})"

    __str__ = __repr__


def _checked(key: str, source: str) -> ApiKey:
    """`ApiKey(key, source)`; AuthError naming the source (never the key) if it is too short."""
    if len(key) < MIN_KEY_LENGTH:
        raise AuthError(f"the API key from {source} is {len(key)} character(s) long: not a VIP API key "
                        f"(those are long random strings; VIP portal: My Account > API key)", call="api_key")
    return ApiKey(key, source)


def read_api_key(
    api_key: str | None = None, *, api_key_env: str | None = None,
    api_key_file: str | os.PathLike | None = None,
) -> ApiKey:
    """The key from exactly one explicit source: `api_key` (the key itself), `api_key_env`
    (an environment variable's name) or `api_key_file` (a file holding it); none given:
    `$VIP_API_KEY`. AuthError naming the source (never the key) if it is missing or empty."""
    given = [x for x in (api_key, api_key_env, api_key_file) if x is not None]
    if len(given) > 1:
        raise AuthError("give only one of api_key=, api_key_env=, api_key_file=", call="api_key")
    if api_key is not None:
        if isinstance(api_key, os.PathLike):
            raise AuthError("api_key= is the key itself: pass a key file as api_key_file=", call="api_key")
        key = str(api_key).strip()
        if not key:
            raise AuthError("the API key given as api_key= is empty", call="api_key")
        return _checked(key, "the api_key argument")
    if api_key_file is not None:
        path = Path(api_key_file).expanduser()
        source = f"the file {path}"
        try:
            key = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise AuthError(f"API key file {path} not found", call="api_key") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not a text file"
            raise AuthError(f"cannot read the API key file {path}: {reason}", call="api_key") from None
        if not key:
            raise AuthError(f"the API key file {path} is empty", call="api_key")
        return _checked(key, source)
    env = DEFAULT_KEY_ENV if api_key_env is None else str(api_key_env)
    value = os.environ.get(env)
    if value is None:
        hint = "" if api_key_env is not None else " (or pass api_key=, api_key_env= or api_key_file=)"
        raise AuthError(f"no VIP API key: the environment variable {env} is not set{hint}", call="api_key")
    if not value.strip():
        raise AuthError(f"the environment variable {env} holding the VIP API key is empty", call="api_key")
    return _checked(value.strip(), f"the environment variable {env}")


def vip_client_key_kwargs(api_key: str | os.PathLike) -> dict[str, Any]:
    """vip-client 0.1.10's one-string `api_key` (its `init(api_key=...)`, reference 4.2) as
    VipClient's explicit keyword: a path to an existing file -> `api_key_file`; else the name
    of a set environment variable -> `api_key_env`; else the key itself -> `api_key`.
    (The default name `VIP_API_KEY` unset -> `api_key_env`, so the error names the variable.)"""
    if isinstance(api_key, os.PathLike):
        return {"api_key_file": api_key}
    text = str(api_key).strip()
    try:
        if text and os.path.isfile(text):
            return {"api_key_file": text}
    except (OSError, ValueError):
        pass  # too long / invalid as a path: not a file
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) and (text in os.environ or text == DEFAULT_KEY_ENV):
        return {"api_key_env": text}
    return {"api_key": text}


__all__ = ["DEFAULT_KEY_ENV", "MIN_KEY_LENGTH", "ApiKey", "read_api_key", "vip_client_key_kwargs"]

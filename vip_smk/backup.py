"""The session backup, ``session_data.json``, in vip-client 0.1.10's format (reference 4.8).

Keys of the class first (``session_name``, ``pipeline_id``, ... ``workflows``), 4-space indent;
keys unknown to us are preserved; our own bookkeeping lives under one extra key, ``vip_smk``,
which vip-client ignores and keeps. Written atomically (:func:`vip_smk.util.write_json_atomic`),
never with the API key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from .util import read_json, write_json_atomic

__all__ = ["META_KEY", "backup_is_finished", "read_backup", "save_backup", "sessions_sharing"]

META_KEY = "vip_smk"  # extra backup key, ignored (and preserved) by vip-client


def read_backup(path: str | Path) -> dict | None:
    """The backup's dict, or None if it is missing, unreadable or not a JSON object."""
    data = read_json(path)
    return data if isinstance(data, dict) else None


def meta_of(data: Mapping[str, Any] | None) -> dict:
    meta = (data or {}).get(META_KEY)
    return dict(meta) if isinstance(meta, dict) else {}


def save_backup(path: Path, session_name: str, values: Mapping[str, Any], meta: dict) -> dict:
    """Write ``values`` (the class's keys, in order) over the backup at ``path``, keeping the
    keys unknown to us and merging our ``meta`` (``input_users`` lists are united). Refuses to
    overwrite another session's backup. Returns the merged meta."""
    existing = read_backup(path) or {}
    saved_name = existing.get("session_name")
    if saved_name not in (None, session_name):
        raise ValueError(f"The backup {path} belongs to session '{saved_name}', not "
                         f"'{session_name}': use another output_dir.")
    data = dict(values)
    data.update({k: v for k, v in existing.items() if k not in values})
    merged = meta_of(existing)
    users = list(merged.get("input_users") or [])
    for user in meta.get("input_users") or []:
        if user not in users:
            users.append(user)
    merged.update(meta)
    if users:
        merged["input_users"] = users
    if merged:
        data[META_KEY] = merged
    write_json_atomic(path, data)
    return merged


def add_input_user(path: Path, user: str) -> None:
    """Record in the backup at ``path`` that session ``user`` (its output dir) uses its inputs."""
    data = read_backup(path)
    if data is None:
        return
    meta = meta_of(data)
    users = meta.setdefault("input_users", [])
    if user not in users:
        users.append(user)
        data[META_KEY] = meta
        write_json_atomic(path, data)


def backup_is_finished(data: Mapping[str, Any]) -> bool:
    """Whether the session saved in ``data`` no longer needs its VIP inputs."""
    if meta_of(data).get("finished"):
        return True
    # vip-client's finish() marks every workflow Removed (and does not know our flag)
    workflows = data.get("workflows") or {}
    return bool(workflows) and all(
        isinstance(w, dict) and w.get("status") == "Removed" for w in workflows.values()
    )


def sessions_sharing(vip_input_dir: PurePosixPath, own_backup: Path, candidates: Iterable[Path],
                     owner_name: str | None, session_name: str) -> list[str]:
    """Names of the other unfinished sessions (among the backups ``candidates``) whose VIP
    input directory is ``vip_input_dir``; plus the owner session ``owner_name`` when its
    backup cannot be found (borrowed inputs are not ours to delete)."""
    users = []
    owner_seen = False
    own = own_backup.resolve()
    for path in sorted(set(candidates)):
        if not path.is_file() or path.resolve() == own:
            continue
        data = read_backup(path)
        if not data or data.get("vip_input_dir") is None:
            continue
        if PurePosixPath(str(data["vip_input_dir"])) != vip_input_dir:
            continue
        name = str(data.get("session_name") or path.parent.name)
        owner_seen = owner_seen or name == owner_name
        if not backup_is_finished(data):
            users.append(name)
    if not owner_seen and owner_name not in (None, session_name):
        users.append(f"{owner_name} (owner; its backup was not found)")
    return sorted(set(users))

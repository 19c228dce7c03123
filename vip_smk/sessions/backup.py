"""The session backup, ``session_data.json``, in vip-client 0.1.10's format (reference 4.8).

Keys of the class first (``session_name``, ``pipeline_id``, ... ``workflows``), 4-space indent;
keys unknown to us are preserved; our own bookkeeping lives under one extra key, ``vip_smk``,
which vip-client ignores and keeps. Written atomically (:func:`vip_smk.util.write_json_atomic`),
never with the API key.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from vip_smk.api.errors import InvalidInput, NotFound, VipError
from vip_smk.util import read_json, write_json_atomic

if TYPE_CHECKING:  # pragma: no cover
    from vip_smk.core.client import VipClient

__all__ = ["META_KEY", "backup_is_finished", "merge_backup", "read_backup", "read_backup_vip",
           "save_backup", "save_backup_vip", "sessions_sharing"]

META_KEY = "vip_smk"  # extra backup key, ignored (and preserved) by vip-client


def read_backup(path: str | Path) -> dict | None:
    """The backup's dict, or None if it is missing, unreadable or not a JSON object."""
    data = read_json(path)
    return data if isinstance(data, dict) else None


def meta_of(data: Mapping[str, Any] | None) -> dict:
    meta = (data or {}).get(META_KEY)
    return dict(meta) if isinstance(meta, dict) else {}


def merge_backup(existing: Mapping[str, Any] | None, session_name: str | None, values: Mapping[str, Any],
                 meta: dict, where: str) -> tuple[dict, dict]:
    """(data to write, merged meta): ``values`` (the class's keys, in order) over the backup
    ``existing``, keeping the keys unknown to us and merging our ``meta`` (``input_users``
    lists are united). Refuses to overwrite another session's backup (``where`` names it)."""
    existing = dict(existing or {})
    saved_name = existing.get("session_name")
    if saved_name not in (None, session_name):
        raise ValueError(f"The backup {where} belongs to session '{saved_name}', not "
                         f"'{session_name}': use another output directory.")
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
    return data, merged


def save_backup(path: Path, session_name: str | None, values: Mapping[str, Any], meta: dict) -> dict:
    """Write the backup at local ``path`` (:func:`merge_backup`, atomic). Returns the meta."""
    data, merged = merge_backup(read_backup(path), session_name, values, meta, str(path))
    write_json_atomic(path, data)
    return merged


# ---- the backup on VIP (backup_location="vip": <vip_output_dir>/session_data.json) ------------

def _spare(vip_path: str) -> str:
    return vip_path + ".new"


def read_backup_vip(client: "VipClient", vip_path: str) -> dict | None:
    """The backup saved on VIP at ``vip_path`` (or, if a save was cut short after removing it,
    its complete copy ``<vip_path>.new``); None if there is none. Through a private temporary
    directory, never the current one."""
    for candidate in (vip_path, _spare(vip_path)):
        with tempfile.TemporaryDirectory(prefix="vip-smk-backup-") as tmp:
            local = Path(tmp) / "session_data.json"
            try:
                client.download(candidate, local)
            except (NotFound, InvalidInput):
                continue
            data = read_backup(local)
        if data is not None:
            return data
    return None


def save_backup_vip(client: "VipClient", vip_path: str, session_name: str | None,
                    values: Mapping[str, Any], meta: dict) -> dict:
    """Write the backup on VIP at ``vip_path`` as far as VIP allows atomically: the new content
    is first uploaded beside it (``<vip_path>.new``), then over ``vip_path`` (removed first if
    VIP refuses to overwrite), then the spare copy is removed: at every moment one of the two
    holds a complete backup (:func:`read_backup_vip` reads either). Returns the meta."""
    data, merged = merge_backup(read_backup_vip(client, vip_path), session_name, values, meta,
                                f"{vip_path} (on VIP)")
    parent = str(PurePosixPath(vip_path).parent)
    client.mkdir(parent, parents=True)
    with tempfile.TemporaryDirectory(prefix="vip-smk-backup-") as tmp:
        local = Path(tmp) / "session_data.json"
        write_json_atomic(local, data)
        client.upload(local, _spare(vip_path))
        try:
            client.upload(local, vip_path)
        except VipError:
            client.delete(vip_path, missing_ok=True, wait=30)
            client.upload(local, vip_path)
    client.delete(_spare(vip_path), missing_ok=True, wait=30)  # VIP deletes asynchronously
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
                     owner_name: str | None, session_name: str | None) -> list[str]:
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

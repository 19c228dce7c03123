"""Persistent state of the local VIP server: SQLite (users, executions, jobs) and the users'
file spaces under ``<data-dir>/users/<name>/``.

VIP paths (``/vip/Home/...``, ``/vip/Trash/...``) are mapped to local paths by
:meth:`Store.resolve`, the single place where escapes are refused.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import secrets
import sqlite3
import string
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = "/vip"
SPACES = ("Home", "Trash")
_ALNUM = string.ascii_letters + string.digits

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    apikey TEXT UNIQUE NOT NULL,
    password TEXT
);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    name TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    status TEXT NOT NULL,
    input_values TEXT NOT NULL,
    results_location TEXT NOT NULL,
    results_dir TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER,
    returned_files TEXT,
    error_code INTEGER,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_user ON executions(user);
CREATE TABLE IF NOT EXISTS folders (
    path TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS jobs (
    exec_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    exit_message TEXT,
    invocation TEXT NOT NULL,
    outputs TEXT,
    pid INTEGER,
    PRIMARY KEY (exec_id, idx)
);
"""

#: execution states that are not over
ACTIVE = ("Initializing", "Ready", "Running")


class ApiError(Exception):
    """An error answered as VIP does: ``{"errorCode", "errorMessage"}`` with an HTTP status."""

    def __init__(self, code: int, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def not_found(vip_path: str) -> ApiError:
    return ApiError(8000, f"The path '{vip_path}' does not exist")


def forbidden(vip_path: str) -> ApiError:
    return ApiError(8013, f"Unauthorized data access to '{vip_path}'")


@dataclass
class User:
    name: str
    apikey: str
    password: str | None = None


@dataclass
class Resolved:
    """A VIP path mapped into a user's space. ``local`` is None for the virtual root ``/vip``."""

    vip: str
    local: Path | None
    user_root: Path


def new_key() -> str:
    return secrets.token_urlsafe(24)


def clean_name(name: str) -> str:
    """VIP's file-name cleaning on upload: spaces become ``_``, non-ASCII characters are dropped."""
    out = name.replace(" ", "_")
    return "".join(c for c in out if ord(c) < 128)


class Store:
    """SQLite + files. Thread-safe (one connection guarded by a lock)."""

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.users_dir = self.data_dir / "users"
        self.users_dir.mkdir(exist_ok=True)
        self.work_dir = self.data_dir / "work"
        self.work_dir.mkdir(exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(
            str(self.data_dir / "vip.sqlite"), check_same_thread=False, isolation_level=None
        )
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # ---------------------------------------------------------------- users
    def add_user(self, name: str, apikey: str, password: str | None = None) -> User:
        with self.lock:
            self.db.execute("DELETE FROM users WHERE apikey = ? AND name != ?", (apikey, name))
            self.db.execute(
                "INSERT INTO users(name, apikey, password) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET apikey = excluded.apikey, "
                "password = COALESCE(excluded.password, users.password)",
                (name, apikey, password),
            )
        self.ensure_space(name)
        return User(name, apikey, password)

    def ensure_space(self, name: str) -> None:
        for space in SPACES:
            (self.users_dir / name / space).mkdir(parents=True, exist_ok=True)

    def user_by_key(self, apikey: str) -> User | None:
        with self.lock:
            row = self.db.execute("SELECT * FROM users WHERE apikey = ?", (apikey,)).fetchone()
        return User(row["name"], row["apikey"], row["password"]) if row else None

    def user_by_name(self, name: str) -> User | None:
        with self.lock:
            row = self.db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return User(row["name"], row["apikey"], row["password"]) if row else None

    def users(self) -> list[User]:
        with self.lock:
            rows = self.db.execute("SELECT * FROM users ORDER BY name").fetchall()
        return [User(r["name"], r["apikey"], r["password"]) for r in rows]

    # ---------------------------------------------------------------- paths
    def user_root(self, user: str) -> Path:
        return self.users_dir / user

    def resolve(self, user: str, vip_path: str) -> Resolved:
        """Map a (decoded) VIP path into ``user``'s space, refusing any escape.

        ``..`` segments are refused outright, ``.`` and empty segments dropped; the result must
        start with ``/vip/Home`` or ``/vip/Trash`` (or be ``/vip``), and, after resolving
        symlinks, still lie inside the user's root (a symlink planted in the data dir and
        pointing elsewhere is never followed).
        """
        if "\x00" in vip_path:
            raise forbidden(vip_path.replace("\x00", "\\0"))
        parts = []
        for seg in vip_path.split("/"):
            if seg in ("", "."):
                continue
            if seg == "..":
                raise forbidden(vip_path)
            parts.append(seg)
        root = self.user_root(user)
        if not parts or parts[0] != "vip":
            raise ApiError(8000, f"Invalid VIP path '{vip_path}': it must start with /vip/Home")
        norm = "/" + "/".join(parts)
        if len(parts) == 1:
            return Resolved(norm, None, root)
        if parts[1] not in SPACES:
            raise ApiError(
                8000, f"The path '{vip_path}' does not exist (only /vip/Home and /vip/Trash exist here)"
            )
        local = root.joinpath(*parts[1:])
        self.check_inside(local, root, vip_path)
        return Resolved(norm, local, root)

    def check_inside(self, local: Path, root: Path, vip_path: str) -> None:
        real = os.path.realpath(local)
        base = str(root)
        if real != base and not real.startswith(base + os.sep):
            raise forbidden(vip_path)

    def to_vip(self, user: str, local: Path) -> str:
        rel = Path(local).relative_to(self.user_root(user))
        return ROOT + "/" + rel.as_posix()

    def properties(self, user: str, res: Resolved, execution_id: str | None = None) -> dict:
        if res.local is None:
            props = {
                "path": ROOT,
                "lastModificationDate": int(self.user_root(user).stat().st_mtime),
                "isDirectory": True,
                "exists": True,
                "size": len(SPACES),
                "mimeType": "text/directory",
            }
        else:
            props = path_props(res.vip, res.local)
        if execution_id is not None:
            props["executionId"] = execution_id
        return props

    def listing(self, user: str, res: Resolved) -> list[dict]:
        if res.local is None:
            return [path_props(f"{ROOT}/{s}", self.user_root(user) / s) for s in SPACES]
        out = []
        with os.scandir(res.local) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.name.startswith(".vip-upload-"):
                continue
            p = Path(e.path)
            try:
                if e.is_symlink():  # (the directory itself was checked by resolve)
                    self.check_inside(p, res.user_root, res.vip)
            except ApiError:
                continue  # a planted symlink pointing outside: not shown
            out.append(path_props(f"{res.vip.rstrip('/')}/{e.name}", p))
        return out

    # ---------------------------------------------------------------- executions
    def new_execution_id(self) -> str:
        with self.lock:
            while True:
                eid = "workflow-" + "".join(secrets.choice(_ALNUM) for _ in range(6))
                if not self.db.execute("SELECT 1 FROM executions WHERE id = ?", (eid,)).fetchone():
                    return eid

    def reserve_folder(self, user: str, vip_path: str) -> bool:
        """Take the results folder name ``vip_path`` for good (False if it was ever taken, even
        by an execution since deleted): VIP never gives two executions one results folder."""
        with self.lock:
            cur = self.db.execute("INSERT OR IGNORE INTO folders(path) VALUES (?)",
                                  (f"{user}:{vip_path}",))
            return cur.rowcount == 1

    def insert_execution(self, ex: dict, jobs: list[dict]) -> None:
        with self.lock:
            seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM executions").fetchone()[0]
            self.db.execute("BEGIN")
            try:
                self.db.execute(
                    "INSERT INTO executions(id, user, name, pipeline, status, input_values, "
                    "results_location, results_dir, start_ms, end_ms, returned_files, error_code, seq) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)",
                    (ex["id"], ex["user"], ex["name"], ex["pipeline"], ex["status"],
                     json.dumps(ex["input_values"]), ex["results_location"], ex["results_dir"],
                     ex["start_ms"], seq),
                )
                for j in jobs:
                    self.db.execute(
                        "INSERT INTO jobs(exec_id, idx, status, invocation) VALUES (?, ?, ?, ?)",
                        (ex["id"], j["idx"], "Queued", json.dumps(j["invocation"])),
                    )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def execution(self, eid: str) -> dict | None:
        with self.lock:
            row = self.db.execute("SELECT * FROM executions WHERE id = ?", (eid,)).fetchone()
        return _ex_row(row) if row else None

    def executions(self, user: str | None = None, status: tuple[str, ...] | None = None,
                   limit: int | None = None) -> list[dict]:
        """Newest first (at most ``limit``)."""
        q = "SELECT * FROM executions WHERE 1=1"
        args: list[str | int] = []
        if user is not None:
            q += " AND user = ?"
            args.append(user)
        if status:
            q += f" AND status IN ({','.join('?' * len(status))})"
            args.extend(status)
        q += " ORDER BY seq DESC"
        if limit is not None:
            q += " LIMIT ?"
            args.append(int(limit))
        with self.lock:
            rows = self.db.execute(q, args).fetchall()
        return [_ex_row(r) for r in rows]

    def count_active(self, user: str) -> int:
        with self.lock:
            return self.db.execute(
                f"SELECT COUNT(*) FROM executions WHERE user = ? AND status IN ({','.join('?' * len(ACTIVE))})",
                (user, *ACTIVE),
            ).fetchone()[0]

    def update_execution(self, eid: str, **fields) -> None:
        if "returned_files" in fields and fields["returned_files"] is not None:
            fields["returned_files"] = json.dumps(fields["returned_files"])
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.lock:
            self.db.execute(f"UPDATE executions SET {sets} WHERE id = ?", (*fields.values(), eid))

    def delete_execution(self, eid: str) -> None:
        with self.lock:
            self.db.execute("DELETE FROM jobs WHERE exec_id = ?", (eid,))
            self.db.execute("DELETE FROM executions WHERE id = ?", (eid,))

    def jobs(self, eid: str) -> list[dict]:
        with self.lock:
            rows = self.db.execute(
                "SELECT * FROM jobs WHERE exec_id = ? ORDER BY idx", (eid,)
            ).fetchall()
        return [_job_row(r) for r in rows]

    def count_jobs(self, eid: str, exclude: tuple[str, ...] = ()) -> int:
        """Number of jobs of ``eid`` whose status is not in ``exclude``."""
        q = "SELECT COUNT(*) FROM jobs WHERE exec_id = ?"
        if exclude:
            q += f" AND status NOT IN ({','.join('?' * len(exclude))})"
        with self.lock:
            return self.db.execute(q, (eid, *exclude)).fetchone()[0]

    def update_job(self, eid: str, idx: int, **fields) -> None:
        if "outputs" in fields and fields["outputs"] is not None:
            fields["outputs"] = json.dumps(fields["outputs"])
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.lock:
            self.db.execute(
                f"UPDATE jobs SET {sets} WHERE exec_id = ? AND idx = ?", (*fields.values(), eid, idx)
            )


def _ex_row(r: sqlite3.Row) -> dict:
    d = dict(r)
    d["input_values"] = json.loads(d["input_values"])
    d["returned_files"] = json.loads(d["returned_files"]) if d["returned_files"] else None
    return d


def _job_row(r: sqlite3.Row) -> dict:
    d = dict(r)
    d["invocation"] = json.loads(d["invocation"])
    d["outputs"] = json.loads(d["outputs"]) if d["outputs"] else None
    return d


#: Python's own table, not the host's /etc/mime.types (where .xml may be application/xml): the
#: same answer on every machine; VIP-portal's (Files.probeContentType) says text/xml
_MIME = mimetypes.MimeTypes()


def path_props(vip: str, local: Path) -> dict:
    """VIP PathProperties of a local path (``exists: false`` when it is absent)."""
    try:
        st = local.stat()
    except (FileNotFoundError, NotADirectoryError):
        return {
            "path": vip,
            "lastModificationDate": None,
            "isDirectory": False,
            "exists": False,
            "size": 0,
            "mimeType": None,
        }
    is_dir = local.is_dir()
    if is_dir:
        try:
            size = sum(1 for e in os.scandir(local) if not e.name.startswith(".vip-upload-"))
        except OSError:
            size = 0
        mime = "text/directory"
    else:
        size = st.st_size
        mime = _MIME.guess_type(local.name)[0] or "application/octet-stream"
    return {
        "path": vip,
        "lastModificationDate": int(st.st_mtime),
        "isDirectory": is_dir,
        "exists": True,
        "size": size,
        "mimeType": mime,
    }


def now_ms() -> int:
    return int(time.time() * 1000)

"""Neutral helpers shared by every layer (no VIP knowledge, no network)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["pid_alive", "read_json", "write_json_atomic"]


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 4) -> None:
    """Write ``obj`` as JSON (4-space indent by default, as vip-client) so that a crash leaves
    either the old file or the new one, never a part: temp file in the same directory, fsync,
    ``os.replace``. Parent directories are created. Values JSON cannot encode are written as
    their ``str()``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_writers_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_dead_writers_temps(path: Path) -> None:
    """Temp files of ``path`` left by writers killed mid-write (``.NAME.PID.XXXX.tmp`` whose PID
    is gone): a crash leaves no litter beside the file for long. A live writer's are kept."""
    prefix = f".{path.name}."
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
                continue
            pid = entry.name[len(prefix):].split(".", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def read_json(path: str | os.PathLike, default: Any = None, *, strict: bool = False) -> Any:
    """The JSON value in ``path``; ``default`` when the file is missing, unreadable or not
    JSON. ``strict=True`` raises instead (``OSError`` / ``ValueError``)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        if strict:
            raise
        return default


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` of this host alive (a zombie is not)? Portable: on Windows
    ``os.kill(pid, 0)`` would *terminate* the process, so it asks the OS for the process'
    exit code instead (still active = alive)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - Windows
        return _pid_alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


if sys.platform == "win32":  # pragma: no cover - Windows (so mypy checks it as Windows code)
    def _pid_alive_windows(pid: int) -> bool:  # pragma: no cover - Windows
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.OpenProcess.restype = wintypes.HANDLE
        kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
        process_query_limited_information, still_active, error_access_denied = 0x1000, 259, 5
        handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
        if not handle:  # no such process, or one we may not look at (then it exists)
            return ctypes.get_last_error() == error_access_denied
        try:
            code = wintypes.DWORD()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == still_active
        finally:
            kernel32.CloseHandle(handle)

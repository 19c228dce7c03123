"""vip_smk.util: the atomic JSON writer leaves nothing behind a crash for long."""

from __future__ import annotations

import os
import subprocess
import sys

from vip_smk.util import read_json, write_json_atomic


def test_write_json_atomic_removes_temps_of_dead_writers_only(tmp_path):
    target = tmp_path / "session_data.json"
    write_json_atomic(target, {"a": 1})
    # a writer killed between mkstemp and os.replace leaves its temp file (pid in the name)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f".session_data.json.{dead.pid}.k9x.tmp"
    left.write_text("{\"half\": ")
    alive = tmp_path / f".session_data.json.{os.getpid()}.live.tmp"  # a writer still at work
    alive.write_text("{}")
    other = tmp_path / f".other.json.{dead.pid}.k9x.tmp"  # another file's: not ours to touch
    other.write_text("{}")
    write_json_atomic(target, {"a": 2})
    assert read_json(target) == {"a": 2}
    assert not left.exists() and alive.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["session_data.json", alive.name, other.name])

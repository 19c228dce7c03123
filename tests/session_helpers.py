"""Helpers shared by the VipSession tests (test_session*.py): a temp working directory with a
small dataset and a client of the local VIP (`vip`), the backup and outputs read back, a
session script run in a new process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path, PurePosixPath

from vip_smk import VipClient, VipSession

KEYS = ("session_name", "pipeline_id", "local_input_dir", "local_output_dir", "vip_input_dir",
        "vip_output_dir", "input_settings", "workflows")
API = "/vip/Home/API"


def _name(prefix: str = "s") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _write_data(root: Path) -> Path:
    data = root / "data"
    data.mkdir()
    (data / "a.csv").write_text("x,y\n1,2\n3,4\n5,9\n")
    (data / "b.csv").write_text("x,y\n10,20\n30,40\n")
    sub = data / "sub"
    sub.mkdir()
    (sub / "c.csv").write_text("u,v\n1,1\n2,2\n")
    return data


def session_dir(vip_server, monkeypatch, tmp_path):
    """(The `vip` fixture of test_session*.py.) A temp CWD with a small dataset; VipSession's class configuration restored afterwards."""
    monkeypatch.chdir(tmp_path)
    for attr in ("_default_client", "_VERBOSE", "_AVAILABLE_PIPELINES"):
        monkeypatch.setattr(VipSession, attr, getattr(VipSession, attr))
    _write_data(tmp_path)

    class Ctx:
        url = vip_server.url
        key = vip_server.api_key
        server = vip_server
        root = tmp_path
        client = VipClient(vip_server.url, api_key=vip_server.api_key)

    yield Ctx
    Ctx.client.close()


def _backup(out_dir) -> dict:
    return json.loads((Path(out_dir) / "session_data.json").read_text())


def _local_outputs(out_dir) -> list[Path]:
    return sorted(p for p in Path(out_dir).rglob("*") if p.is_file() and p.name != "session_data.json")


def _script(body: str, vip, name: str, verbose_env: dict | None = None) -> subprocess.CompletedProcess:
    code = "import os\nfrom vip_smk import VipSession\nURL = os.environ['VIP_URL']\n" + \
        textwrap.dedent(body).replace("NAME", repr(name))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIP_")}
    env.update(VIP_URL=vip.url, VIP_API_KEY=vip.key, **(verbose_env or {}))
    proc = subprocess.run([sys.executable, "-c", code], cwd=vip.root, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert vip.key not in proc.stdout + proc.stderr
    return proc


def _uploaded(vip, path) -> set[str]:
    """Relative paths of the files under a VIP directory (server side)."""
    out = set()
    stack = [PurePosixPath(path)]
    while stack:
        d = stack.pop()
        for info in vip.client.list(str(d)):
            if info.is_directory:
                stack.append(PurePosixPath(info.path))
            else:
                out.add(str(PurePosixPath(info.path).relative_to(path)))
    return out

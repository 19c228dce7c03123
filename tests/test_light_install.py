"""The light install: `pip install vip-smk` (requests, urllib3, tqdm, pyyaml) is enough for the
client and the sessions; the async client says which extra it needs. Checked in a fresh
interpreter where the extras' packages cannot be imported."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("httpx", "httpcore", "snakemake", "uvicorn", "starlette", "boutiques", "filelock")


def _run(code: str, block: bool) -> subprocess.CompletedProcess:
    pre = "import sys\n"
    if block:  # as if not installed: `import httpx` raises ImportError
        pre += "".join(f"sys.modules[{m!r}] = None\n" for m in HEAVY)
    return subprocess.run([sys.executable, "-c", pre + code], capture_output=True, text=True, timeout=60)


def test_client_and_sessions_import_without_the_extras_and_load_none():
    p = _run("from vip_smk import VipClient, VipSession, VipLauncher\n"
             f"print(sorted(m for m in {HEAVY!r} if sys.modules.get(m) is not None))", block=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"  # nothing heavy loaded by the client's import
    p = _run("from vip_smk import VipClient, VipSession, VipLauncher; print('ok')", block=True)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def test_async_client_without_httpx_names_the_extra():
    p = _run("from vip_smk import AsyncVipClient", block=True)
    assert p.returncode != 0
    assert "ImportError" in p.stderr and "pip install 'vip-smk[async]'" in p.stderr, p.stderr[-800:]

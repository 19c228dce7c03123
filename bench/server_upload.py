"""Benchmark: a 1 GB streamed upload to the local VIP server (``vip-smk serve``).

Uploads the same file with requests (generator body, chunked) and with curl (``curl -T``, the
baseline), on bare loopback and with the server's ``--latency 30``; prints MB/s for both, the
ratio requests/curl, and the server's peak RSS (VmHWM; goal <= 100 MB).

    .venv/bin/python bench/server_upload.py [--size-mb 1024] [--keep]

Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vip_smk.server import LocalServer  # noqa: E402

CHUNK = 1 << 20


def vm(pid: int, key: str) -> int:
    """A /proc/<pid>/status field, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


def make_file(path: Path, size: int) -> str:
    h = hashlib.md5()
    block = os.urandom(CHUNK)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            b = block[: min(CHUNK, left)]
            f.write(b)
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def upload_requests(url: str, key: str, vip: str, path: Path) -> float:
    def body():
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    t = time.perf_counter()
    r = requests.put(f"{url}/rest/path{vip}", data=body(), timeout=(10, 600),
                     headers={"apikey": key, "Content-Type": "application/octet-stream"})
    dt = time.perf_counter() - t
    r.raise_for_status()
    return dt


def upload_curl(url: str, key: str, vip: str, path: Path) -> float:
    t = time.perf_counter()
    out = subprocess.run(
        ["curl", "-sS", "-f", "-o", "/dev/null", "-T", str(path), "-H", f"apikey: {key}",
         "-H", "Content-Type: application/octet-stream", f"{url}/rest/path{vip}"],
        capture_output=True, text=True,
    )
    dt = time.perf_counter() - t
    if out.returncode:
        raise RuntimeError(f"curl failed: {out.stderr.strip()}")
    return dt


def md5_on_server(url: str, key: str, vip: str) -> str:
    return requests.get(f"{url}/rest/path{vip}?action=md5", headers={"apikey": key}, timeout=600).json()["md5"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2, help="uploads per tool and setting (best kept)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    a = ap.parse_args()
    if not shutil.which("curl"):
        print("curl not found: it is the baseline of this benchmark", file=sys.stderr)
        return 1
    size = a.size_mb * CHUNK
    work = Path(tempfile.mkdtemp(prefix="vip-bench-upload-"))
    try:
        src = work / "payload.bin"
        print(f"writing a {a.size_mb} MB payload ...", flush=True)
        digest = make_file(src, size)
        key = secrets.token_urlsafe(16)
        rows = []
        for latency in (0, 30):
            with LocalServer(work / f"data-{latency}", users=[f"bench:{key}"], latency_ms=latency,
                             md5=True) as srv:  # md5: to check the upload (VIP has none)
                pid = srv.pid
                rss0 = vm(pid, "VmRSS")
                best = {}
                for tool, fn in (("requests", upload_requests), ("curl", upload_curl)):
                    times = []
                    for i in range(a.rounds):
                        vip = f"/vip/Home/{tool}-{i}.bin"
                        times.append(fn(srv.url, key, vip, src))
                        if i == 0:
                            assert md5_on_server(srv.url, key, vip) == digest, f"{tool}: corrupted upload"
                        requests.delete(f"{srv.url}/rest/path{vip}", headers={"apikey": key}, timeout=60)
                    best[tool] = min(times)
                hwm = vm(pid, "VmHWM")
            mbs = {t: a.size_mb / best[t] for t in best}
            rows.append((latency, mbs, rss0, hwm))
        print()
        print(f"1 upload of {a.size_mb} MB (best of {a.rounds}), server = vip-smk serve (uvicorn/h11)")
        print(f"{'setting':<16}{'requests MB/s':>15}{'curl MB/s':>12}{'ratio':>8}{'server RSS start':>18}{'peak (VmHWM)':>14}")
        for latency, mbs, rss0, hwm in rows:
            setting = "loopback" if latency == 0 else f"--latency {latency}"
            print(f"{setting:<16}{mbs['requests']:>15.0f}{mbs['curl']:>12.0f}{mbs['requests'] / mbs['curl']:>8.2f}"
                  f"{rss0 / 1024:>15.1f} MB{hwm / 1024:>11.1f} MB")
        worst = max(r[3] for r in rows) / 1024
        print(f"peak server RSS {worst:.1f} MB: goal <= 100 MB {'met' if worst <= 100 else 'NOT met'}")
    finally:
        if a.keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

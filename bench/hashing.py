#!/usr/bin/env python3
"""Hashing costs (issue 17 §1): what recording an input's content (sha256, `core.content`)
costs against the upload it goes with.

On one file (default 1 GB), same run, medians of `--repeat` (default 3):
  - hash alone: `core.content.digest_file` (a second pass over the file, page cache warm);
  - upload at `--latency` ms (default 30) to a local VIP server (`LocalServer(latency_ms=...,
    max_download_size=0)`), without hashing;
  - the same upload hashing while reading (`VipClient.upload(..., hasher=content.hasher)`:
    what `VipSession.upload_inputs` does).
Prints hash / upload (what a second pass would add) and the overhead ratio of hashing while
reading (with / without).

Usage: .venv/bin/python bench/hashing.py [--mb N] [--repeat N] [--latency MS] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from vip_smk.core import content  # noqa: E402
from vip_smk.core.client import VipClient  # noqa: E402
from vip_smk.server import LocalServer  # noqa: E402


def make_file(path: Path, mb: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as fh:
        for i in range(mb):
            fh.write(block[i % 4096:] + block[:i % 4096])


def median_time(fn, repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--latency", type=float, default=30.0)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    work = Path(a.workdir or tempfile.mkdtemp(prefix="vip-bench-hash-"))
    work.mkdir(parents=True, exist_ok=True)
    big = work / "big.bin"
    try:
        if not big.is_file() or big.stat().st_size != a.mb << 20:
            make_file(big, a.mb)
        size = big.stat().st_size
        key = secrets.token_urlsafe(18)
        hash_s, hash_all = median_time(lambda: content.digest_file(big), a.repeat)
        with LocalServer(work / "server", port=0, users=[f"bench:{key}"], latency_ms=a.latency,
                         max_download_size=0, log_file=str(work / "server.log")) as srv:
            c = VipClient(srv.url, api_key=key, progress=False)
            c.mkdir("/vip/Home/hash")
            digests: list = []
            plain_all, hashed_all = [], []
            for _ in range(a.repeat):  # interleaved: the server's disk writeback drifts
                plain_all += median_time(lambda: c.upload(big, "/vip/Home/hash/big.bin"), 1)[1]
                hashed_all += median_time(lambda: digests.append(
                    c.upload(big, "/vip/Home/hash/big.bin", hasher=content.hasher)), 1)[1]
            plain_s, hashed_s = statistics.median(plain_all), statistics.median(hashed_all)
            c.close()
        assert all(d == digests[0] for d in digests) and digests[0] == content.digest_file(big)
    finally:
        if a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    mb = size / 1e6
    print(f"file: {size:,} bytes; upload at --latency {a.latency:g} ms; medians of {a.repeat}")
    print(f"{'case':42} {'median s':>9} {'MB/s':>8}   runs")
    for label, med, runs in (("hash alone (sha256, second pass)", hash_s, hash_all),
                             ("upload, no hash", plain_s, plain_all),
                             ("upload, hash while reading", hashed_s, hashed_all)):
        print(f"{label:42} {med:9.2f} {mb / med:8.0f}   {', '.join(f'{t:.2f}' for t in runs)}")
    print(f"hash alone / upload:                     {hash_s / plain_s:.2f}  (what a second pass would add)")
    print(f"upload with hash / without (overhead):   {hashed_s / plain_s:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Benchmark (not a test): `AsyncVipClient` next to `VipClient`, same run, same data, on local
VIP servers (`vip-smk serve`), on bare loopback and at `--latency 30` (a WAN round trip to VIP).

  (a) a tree of 1,000 files x 10 KB in 10 folders, uploaded then downloaded, by each client.
      Goal (at --latency 30, where users feel it): async time <= sync time / 0.9 either way
      (ratio sync/async >= 0.9).
  (b) 500 concurrent `GET executions/{id}` through ONE AsyncVipClient (asyncio.gather): every
      one answered, and the requests the server saw in flight at once bounded by the client's
      connection limit (`max_connections`, 32 by default), and more than one (really concurrent).
  (c) one 1 GB file uploaded then downloaded by the AsyncVipClient: peak RSS <= 100 MB,
      byte-identical (the sync client's time beside it, for reference).

Every side runs in a child process of its own (its peak RSS is its VmHWM); the requests are
counted by the server (`--count-requests`, which also records the most requests in flight at
once). Figures are MEDIANS of `--repeat` runs (default 5), the two clients alternating run by run
so that both see the same machine load.

Usage: .venv/bin/python bench/async_client.py [--quick] [--repeat N] [--files N] [--big-mb N]
            [--gets N] [--only a,b,c] [--latency MS] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from vip_smk.api.wire import MAX_CONNECTIONS  # noqa: E402
from vip_smk.core.client import VipClient  # noqa: E402
from vip_smk.server import LocalServer  # noqa: E402

DONE = r"""
def _done(seconds, **extra):
    hwm = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    print(json.dumps({"seconds": seconds, "rss_mb": hwm / 1024, **extra}))
"""

SYNC_CHILD = "import json, sys, time\n" + DONE + r"""
from vip_smk import VipClient
op, url, a, b = sys.argv[1:5]
c = VipClient(url, progress=False)  # the defaults; key: $VIP_API_KEY
if op == "up_file":
    c.mkdir(b.rsplit("/", 1)[0])
t0 = time.perf_counter()
getattr(c, {"up_tree": "upload_tree", "down_tree": "download_tree", "up_file": "upload",
            "down_file": "download"}[op])(a, b)
_done(time.perf_counter() - t0)
"""

ASYNC_CHILD = "import asyncio, json, sys, time\n" + DONE + r"""
from vip_smk import AsyncVipClient
op, url, a, b = sys.argv[1:5]

async def main():
    async with AsyncVipClient(url, progress=False) as c:  # the defaults; key: $VIP_API_KEY
        if op == "up_file":
            await c.mkdir(b.rsplit("/", 1)[0])
        if op == "gets":
            ids = open(a).read().split()
            t0 = time.perf_counter()
            got = await asyncio.gather(*(c.execution(i) for i in ids))
            seconds = time.perf_counter() - t0
            assert [g.identifier for g in got] == ids
            return seconds, {"answered": len(got), "limit": c.transport.max_connections}
        t0 = time.perf_counter()
        await getattr(c, {"up_tree": "upload_tree", "down_tree": "download_tree", "up_file": "upload",
                          "down_file": "download"}[op])(a, b)
        return time.perf_counter() - t0, {}

seconds, extra = asyncio.run(main())
_done(seconds, **extra)
"""


def run_child(code: str, args: list[str], env: dict) -> dict:
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, env=env, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return json.loads([x for x in p.stdout.splitlines() if x.startswith("{")][-1])


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()  # noqa: S324
            for p in sorted(root.rglob("*")) if p.is_file()}


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def make_small_tree(root: Path, n_files: int, size: int) -> None:
    rng = random.Random(42)
    per_dir = max(1, n_files // 10)
    for i in range(n_files):
        d = root / f"sub-{i // per_dir:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:04d}.dat").write_bytes(rng.randbytes(size))


def make_big_file(path: Path, mb: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as fh:
        for i in range(mb):
            fh.write(block[i % 997:] + block[: i % 997])


def seconds_of(runs: list[dict]) -> str:
    return ", ".join(f"{r['seconds']:.2f}" for r in runs)


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 files, 100 MB, 3 runs")
    ap.add_argument("--files", type=int, default=None)
    ap.add_argument("--file-kb", type=int, default=10)
    ap.add_argument("--big-mb", type=int, default=None)
    ap.add_argument("--gets", type=int, default=500, help="concurrent GET executions/{id} in (b)")
    ap.add_argument("--executions", type=int, default=50,
                    help="executions launched for (b); the GETs cycle over them (default 50)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per figure (median; default 5)")
    ap.add_argument("--only", default="a,b,c")
    ap.add_argument("--latency", type=float, default=30.0)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    n_files = args.files or (200 if args.quick else 1000)
    big_mb = args.big_mb or (100 if args.quick else 1024)
    repeat = args.repeat or (3 if args.quick else 5)
    cases = set(args.only.split(","))

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="vip-smk-async-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    small, big, out = work / "data" / "small", work / "data" / "big.bin", work / "out"
    if "a" in cases and (not small.exists() or sum(1 for _ in small.rglob("*.dat")) != n_files):
        shutil.rmtree(small, ignore_errors=True)
        make_small_tree(small, n_files, args.file_kb * 1024)
    if "c" in cases and (not big.exists() or big.stat().st_size != big_mb << 20):
        big.parent.mkdir(parents=True, exist_ok=True)
        make_big_file(big, big_mb)
    print(f"(a) {n_files} x {args.file_kb} KB; (b) {args.gets} GETs; (c) {big_mb} MB; medians of {repeat}; "
          f"work dir {work}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)

    key = secrets.token_urlsafe(18)
    env = {**os.environ, "VIP_API_KEY": key, "PYTHONPATH": str(HERE.parent)}
    kinds = {"sync": SYNC_CHILD, "async": ASYNC_CHILD}
    rows: list[list[str]] = []
    t_start = time.perf_counter()

    for label, lat in (("loopback", 0.0), (f"latency {args.latency:g}", args.latency)):
        data_dir = work / f"server-{lat:g}"
        shutil.rmtree(data_dir, ignore_errors=True)
        with LocalServer(data_dir, users=[f"bench:{key}"], latency_ms=lat, count_requests=True,
                         max_running=0, max_download_size=0, log_file=str(work / "server.log")) as srv:
            if "a" in cases:
                print(f"[{label}] (a) tree of {n_files} files", flush=True)
                runs: dict[tuple[str, str], list[dict]] = {}
                for i in range(repeat):
                    order = list(kinds) if i % 2 == 0 else list(kinds)[::-1]
                    for kind in order:
                        vdir, ldir = f"/vip/Home/{kind}/a{i}", out / kind / str(i)
                        shutil.rmtree(ldir, ignore_errors=True)
                        for op, a, b in (("up_tree", str(small), vdir), ("down_tree", vdir, str(ldir))):
                            srv.reset_request_counts()
                            r = run_child(kinds[kind], [op, srv.url, a, b], env)
                            r["requests"] = srv.request_counts()["total"]
                            runs.setdefault((kind, op), []).append(r)
                        if tree_digest(ldir) != tree_digest(small):
                            sys.exit(f"{kind}: the downloaded tree differs from the uploaded one")
                        shutil.rmtree(ldir)
                for op, case in (("up_tree", "upload"), ("down_tree", "download")):
                    med = {k: statistics.median(r["seconds"] for r in runs[(k, op)]) for k in kinds}
                    req = {k: statistics.median(r["requests"] for r in runs[(k, op)]) for k in kinds}
                    for k in kinds:
                        print(f"  {k:<5} {case:<8} median {med[k]:6.2f}s "
                              f"({seconds_of(runs[(k, op)])})  "
                              f"requests {req[k]:.0f}", flush=True)
                    ratio = med["sync"] / med["async"]
                    goal = lat == args.latency
                    rows.append([label, f"(a) tree {case}", f"{med['async']:.2f}s", f"{med['sync']:.2f}s",
                                 f"{ratio:.2f}x", ">= 0.9x" if goal else "(info)",
                                 verdict(ratio >= 0.9) if goal else "-"])
            if "b" in cases:
                print(f"[{label}] (b) {args.gets} concurrent GET executions/{{id}}", flush=True)
                with VipClient(srv.url, api_key=key, progress=False) as c:
                    c.mkdir("/vip/Home/gets")
                    ids = [c.launch("Sleep/1.0", {"duration": 0}, "/vip/Home/gets", name=f"g{j}").identifier
                           for j in range(min(args.executions, args.gets))]
                ids_file = work / f"ids-{lat:g}.txt"
                ids_file.write_text("\n".join(ids[j % len(ids)] for j in range(args.gets)))
                runs_b = []
                for _ in range(repeat):
                    srv.reset_request_counts()
                    r = run_child(ASYNC_CHILD, ["gets", srv.url, str(ids_file), "-"], env)
                    counts = srv.request_counts()
                    r["in_flight"] = counts["max_in_flight"]
                    r["requests"] = sum(n for route, n in counts["routes"].items()
                                        if route.startswith("GET /rest/executions/{"))
                    runs_b.append(r)
                seen = max(r["in_flight"] for r in runs_b)
                limit = runs_b[0]["limit"]
                med = statistics.median(r["seconds"] for r in runs_b)
                answered = all(r["answered"] == args.gets for r in runs_b)
                # on bare loopback the local VIP answers each request before the next arrives
                # (in flight: 1): concurrency shows where round trips take time (the goal's row)
                goal = lat == args.latency
                ok = answered and (1 < seen <= limit if goal else seen <= limit)
                print(f"  {args.gets} GETs: median {med:.2f}s ({seconds_of(runs_b)}); "
                      f"requests the server got {runs_b[0]['requests']}; most in flight at once "
                      f"{[r['in_flight'] for r in runs_b]} (limit {limit})", flush=True)
                rows.append([label, f"(b) {args.gets} GETs, in flight", f"{seen} at most", f"limit {limit}",
                             f"{med:.2f}s", f"1 < in flight <= {limit}" if goal else f"<= {limit}", verdict(ok)])
            if "c" in cases:
                print(f"[{label}] (c) {big_mb} MB file", flush=True)
                res: dict[str, list[dict]] = {}
                for i in range(max(1, repeat // 2)):
                    for kind in (list(kinds) if i % 2 == 0 else list(kinds)[::-1]):
                        local = out / f"big-{kind}.bin"
                        local.unlink(missing_ok=True)
                        up = run_child(kinds[kind], ["up_file", srv.url, str(big), f"/vip/Home/big/{kind}.bin"], env)
                        down = run_child(kinds[kind], ["down_file", srv.url, f"/vip/Home/big/{kind}.bin", str(local)],
                                         env)
                        if file_digest(local) != file_digest(big):
                            sys.exit(f"{kind}: the downloaded big file differs")
                        local.unlink()
                        res.setdefault(kind, []).append({"seconds": up["seconds"] + down["seconds"],
                                                         "rss_mb": max(up["rss_mb"], down["rss_mb"])})
                for k in kinds:
                    print(f"  {k:<5} up+down median {statistics.median(r['seconds'] for r in res[k]):6.2f}s  "
                          f"peak RSS {max(r['rss_mb'] for r in res[k]):.0f} MB", flush=True)
                rss = max(r["rss_mb"] for r in res["async"])
                rows.append([label, f"(c) {big_mb} MB up+down, async RSS", f"{rss:.0f} MB",
                             f"{statistics.median(r['seconds'] for r in res['async']):.1f}s async",
                             f"{statistics.median(r['seconds'] for r in res['sync']):.1f}s sync",
                             "<= 100 MB", verdict(rss <= 100)])

    print(f"\nmax_connections {MAX_CONNECTIONS}; total {time.perf_counter() - t_start:.0f}s\n")
    head = ["network", "case", "async", "sync", "ratio / time", "goal", "verdict"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    return 0 if all(r[-1] != "MISSED" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark (not a test): 100 VIP jobs with `--executor vip`, next to the study workflow doing
the same work, both against one local VIP server that counts requests.

    .venv/bin/python bench/executor.py [--jobs 100] [--repeat 1] [--workers 4] [--poll 1]

Same work on both sides: N small CSV files made locally, uploaded, smoothed on VIP by Smooth/1.0
(window 5, normalize), every result downloaded, one local report.

- executor: workflow/examples/executor with N subjects: `prep` (local) writes each CSV and
  Snakemake uploads it through the vip:// storage plugin, `smooth` is one VIP execution per
  subject, `report` (local) downloads the N results folders;
- study: the repository's workflow/ with one session on a dataset of the N files
  (`input_file: "*.csv"`): one VIP execution of N jobs, the way a study runs it.

Printed per side (median of --repeat runs): requests counted by the server (total, and the
status requests `GET executions` / `GET executions/{id}`), wall seconds, and the ratio executor /
study. The poll interval is the same on both sides (--poll). `executor*` is the executor run
again with the storage plugin's rate limit lifted (0), to tell the limit's seconds from the work's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vip_smk.server import LocalServer  # noqa: E402

KEY = "bench-key-0123456789abcdef"


def csv_text(i: int) -> str:
    return "t,signal\n" + "".join(f"{t},{(t * (i + 3)) % 17 + (t % 5)}\n" for t in range(40))


def executor_project(root: Path, n: int) -> Path:
    shutil.copytree(REPO / "workflow" / "examples" / "executor", root)
    subjects = [f"sub{i:04d}" for i in range(n)]
    (root / "config.yaml").write_text(yaml.safe_dump({"subjects": subjects, "window": 5}))
    return root


def study_project(root: Path, url: str, n: int, poll: float) -> Path:
    shutil.copytree(REPO / "workflow", root / "workflow", ignore=shutil.ignore_patterns("examples"))
    data = root / "data" / "subjects"
    data.mkdir(parents=True)
    for i in range(n):
        (data / f"sub{i:04d}.csv").write_text(csv_text(i))
    cfg = {
        "name": f"bench{root.name}",
        "vip": {"url": url, "poll_seconds": poll},
        "datasets": {"subjects": "data/subjects"},
        "pipelines": {"smooth": {"id": "Smooth/1.0",
                                 "settings": {"input_file": "*.csv", "window": 5, "normalize": True}}},
        "sessions": {"smooth-all": {"dataset": "subjects", "pipeline": "smooth"}},
    }
    (root / "config").mkdir()
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


def run(cmd: list[str], cwd: Path, srv: LocalServer) -> tuple[float, dict]:
    env = dict(os.environ, VIP_API_KEY=srv.api_key)
    srv.reset_request_counts()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed in {cwd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed, srv.request_counts()


def status_requests(counts: dict) -> tuple[int, int]:
    routes = counts["routes"]
    listing = routes.get("GET /rest/executions", 0)
    per_id = sum(v for k, v in routes.items() if k.startswith("GET /rest/executions/{"))
    return listing, per_id


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workers", type=int, default=4, help="the server's parallel VIP jobs")
    ap.add_argument("--poll", type=float, default=1.0, help="seconds between status rounds (both sides)")
    args = ap.parse_args()
    py = sys.executable
    results: dict[str, list[tuple[float, dict]]] = {"executor": [], "executor*": [], "study": []}
    with tempfile.TemporaryDirectory(prefix="vip-smk-bench-exec-") as tmp:
        tmp = Path(tmp)
        with LocalServer(tmp / "server", port=0, users=[f"bench:{KEY}"], workers=args.workers,
                         count_requests=True) as srv:
            srv.start(timeout=60)
            for r in range(args.repeat):
                ex = executor_project(tmp / f"executor{r}", args.jobs)
                cmd = [py, "-m", "snakemake", "--executor", "vip", "--jobs", str(args.jobs),
                       "--configfile", "config.yaml",
                       "--default-storage-provider", "vip",
                       "--default-storage-prefix", f"vip://vip/Home/bench-executor-{r}",
                       "--vip-url", srv.url, "--storage-vip-url", srv.url,
                       "--vip-poll-interval", str(args.poll)]
                results["executor"].append(run(cmd, ex, srv))
                ex2 = executor_project(tmp / f"executor-unthrottled{r}", args.jobs)
                cmd2 = [a.replace(f"bench-executor-{r}", f"bench-executor-unthrottled-{r}") for a in cmd]
                results["executor*"].append(run(cmd2 + ["--storage-vip-max-requests-per-second",
                                                        "0"], ex2, srv))
                st = study_project(tmp / f"study{r}", srv.url, args.jobs, args.poll)
                results["study"].append(run([py, "-m", "snakemake", "--cores", "1"], st, srv))
    print(f"{args.jobs} VIP jobs of Smooth/1.0 (upload, run, download, report), local VIP server with "
          f"{args.workers} workers, status every {args.poll:g} s, median of {args.repeat} run(s)")
    print(f"  {'':10} {'requests':>9} {'GET executions':>15} {'GET executions/{id}':>20} {'seconds':>8}")
    med = {}
    for side, runs in results.items():
        secs = statistics.median(e for e, _ in runs)
        total = statistics.median(c["total"] for _, c in runs)
        listing = statistics.median(status_requests(c)[0] for _, c in runs)
        per_id = statistics.median(status_requests(c)[1] for _, c in runs)
        med[side] = (total, secs)
        how = (f"1 execution of {args.jobs} jobs" if side == "study" else f"{args.jobs} executions of 1 job")
        print(f"  {side:10} {total:9.0f} {listing:15.0f} {per_id:20.0f} {secs:8.1f}   ({how})")
    (te, se), (ts, ss), (_, su) = med["executor"], med["study"], med["executor*"]
    print(f"  executor / study: requests {te / max(ts, 1):.2f}x, seconds {se / ss:.2f}x")
    print(f"  executor*: the same with --storage-vip-max-requests-per-second 0 (no limit): the "
          f"vip:// plugin's default limit (20 questions a second to VIP, in bursts of 50; answers "
          f"from its listings are free) accounts for {se - su:.1f} of the executor's {se:.1f} s")
    routes = results["executor"][-1][1]["routes"]
    own = sum(v for k, v in routes.items() if k.split(" ", 1)[1].startswith("/rest/executions"))
    print(f"  executor: {own} requests on executions (launches, adoption checks, status rounds); "
          f"the other {sum(routes.values()) - own} are Snakemake's staging through the vip:// "
          "storage plugin (uploads of prep, listings of folders for existence and dates, "
          "downloads for report)")
    top = sorted(routes.items(), key=lambda kv: -kv[1])[:8]
    print("  executor's busiest routes: " + ", ".join(f"{k} {v}" for k, v in top))
    return 0


if __name__ == "__main__":
    sys.exit(main())

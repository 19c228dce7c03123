"""Benchmark (not a test): 100 VIP jobs with `--executor vip`, next to the study workflow doing
the same work, both against one local VIP server that counts requests.

    .venv/bin/python bench/executor.py [--jobs 100] [--repeat 1] [--workers 4] [--poll 1]
                                       [--capacities 1,0]

The executor runs twice: with its default batch size (a rule's jobs as one VIP execution
with list inputs) and with --vip-batch-size 1 (one execution per job); their downloaded
result trees must be identical. MET / MISSED: executor wall time <= 1.5x the study's, <= 3
executions launched, identical results.

Same work on both sides: N small CSV files made locally, uploaded, smoothed on VIP by Smooth/1.0
(window 5, normalize), every result downloaded, one local report.

- executor: workflow/examples/executor with N subjects: `prep` (local) writes each CSV and
  Snakemake uploads it through the vip:// storage plugin, `smooth` runs on VIP (batched: the
  ready subjects as one execution, each result copied to its subject's folder; unbatched: one
  execution per subject), `report` (local) downloads the N results folders;
- study: the repository's workflow/ with one session on a dataset of the N files
  (`input_file: "*.csv"`): one VIP execution of N jobs, the way a study runs it.

Timed on both sides: the whole `snakemake` process, start-up to exit (its result files
written, its VIP folders left as it leaves them). The study's CSV files are written by this
script before its timer starts; the executor's by its `prep` jobs, inside its timer.

Printed per side (median of --repeat runs): requests counted by the server (total, and the
status requests `GET executions`), executions launched, wall seconds and the kB of batch
results the executor copied into its jobs' folders (VIP has no server-side copy), for executor and
study at each VIP capacity of --capacities (running executions per user: 1 is a new VIP
account and the local server's default, 0 unlimited). The poll
interval is the same on both sides (--poll).
"""

from __future__ import annotations

import argparse
import os
import re
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


def run(cmd: list[str], cwd: Path, srv: LocalServer) -> tuple[float, dict, str]:
    env = dict(os.environ, VIP_API_KEY=srv.api_key)
    srv.reset_request_counts()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed in {cwd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed, srv.request_counts(), proc.stdout + proc.stderr


def copied_bytes(output: str) -> int:
    """The bytes of batch results the executor copied to its jobs' folders (its own count,
    logged at the end of the run; 0 when nothing was copied)."""
    m = re.search(r"(\d+) bytes of batch results copied", output)
    return int(m.group(1)) if m else 0


def status_requests(counts: dict) -> tuple[int, int]:
    routes = counts["routes"]
    listing = routes.get("GET /rest/executions", 0)
    per_id = sum(v for k, v in routes.items() if k.startswith("GET /rest/executions/{"))
    return listing, per_id


def executions_launched(srv: LocalServer) -> int:
    """How many executions the server holds (each run uses its own server: all are this run's)."""
    from vip_smk.core.client import VipClient

    with VipClient(srv.url, api_key=srv.api_key, progress=False) as c:
        return len(c.executions())


def result_tree(srv: LocalServer, prefix: str, dest: Path) -> dict[str, dict[str, str]]:
    """Every subject's results as downloaded from VIP: subject -> {file name (its dated
    folder left out: a launch time) -> digest of each tarball member's bytes (tar headers
    carry the run's time)}; the batch folder must be gone."""
    import hashlib
    import tarfile

    from vip_smk.core.client import VipClient

    out: dict[str, dict[str, str]] = {}
    with VipClient(srv.url, api_key=srv.api_key, progress=False) as c:
        root = f"/vip/Home/{prefix}/smoothed"
        c.download_tree(root, dest)
    for sub in sorted(p for p in dest.iterdir()):
        files: dict[str, str] = {}
        for f in sorted(sub.rglob("*")):
            if f.is_file():
                rel = f.relative_to(sub)
                key = f"{len(rel.parts)}:{rel.name}"
                with tarfile.open(f) as tar:
                    files[key] = hashlib.sha256(b"".join(
                        m.name.encode() + tar.extractfile(m).read()
                        for m in tar.getmembers() if m.isfile())).hexdigest()
        out[sub.name] = files
    return out


def run_sides(args, tmp: Path, capacity: int) -> dict[str, list[tuple[float, dict, int]]]:
    """Both sides against servers of ``capacity`` running executions per user (0: unlimited);
    one fresh server per side and repeat, so that "executions launched" counts that run only."""
    py = sys.executable
    results: dict[str, list[tuple[float, dict, int]]] = {"executor": [], "unbatched": [],
                                                         "study": []}
    trees: dict[str, list] = {"executor": [], "unbatched": []}
    for r in range(args.repeat):
        for side in ("executor", "unbatched", "study"):
            where = tmp / f"c{capacity}-{side}{r}"
            with LocalServer(where / "server", port=0, users=[f"bench:{KEY}"],
                             workers=args.workers, count_requests=True,
                             max_running=capacity) as srv:
                srv.start(timeout=60)
                if side != "study":
                    proj = executor_project(where / "project", args.jobs)
                    cmd = [py, "-m", "snakemake", "--executor", "vip", "--jobs", str(args.jobs),
                           "--configfile", "config.yaml",
                           "--default-storage-provider", "vip",
                           "--default-storage-prefix", f"vip://vip/Home/bench-executor-{r}",
                           "--vip-url", srv.url, "--storage-vip-url", srv.url,
                           "--vip-poll-interval", str(args.poll)]
                    if side == "unbatched":
                        cmd += ["--vip-batch-size", "1"]
                else:
                    proj = study_project(where / "project", srv.url, args.jobs, args.poll)
                    cmd = [py, "-m", "snakemake", "--cores", "1"]
                secs, counts, output = run(cmd, proj, srv)
                counts["copied"] = copied_bytes(output)
                results[side].append((secs, counts, executions_launched(srv)))
                if side != "study":
                    trees[side].append(result_tree(srv, f"bench-executor-{r}", where / "tree"))
    same = all(a == b and len(a) == args.jobs and all(a.values())
               for a, b in zip(trees["executor"], trees["unbatched"]))
    return results, same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workers", type=int, default=4, help="the server's parallel VIP jobs")
    ap.add_argument("--poll", type=float, default=1.0, help="seconds between status rounds (both sides)")
    ap.add_argument("--capacities", default="1,0",
                    help="VIP's running executions per user, comma-separated (1: a new VIP "
                    "account, the local server's default; 0: unlimited)")
    args = ap.parse_args()
    capacities = [int(c) for c in args.capacities.split(",")]
    with tempfile.TemporaryDirectory(prefix="vip-smk-bench-exec-") as tmp:
        by_cap, same = {}, {}
        for c in capacities:
            by_cap[c], same[c] = run_sides(args, Path(tmp), c)
    print(f"{args.jobs} subjects of Smooth/1.0 (upload, run, download, report), local VIP server "
          f"with {args.workers} workers, status every {args.poll:g} s, median of {args.repeat} run(s)")
    print(f"  {'capacity':>9} {'side':9} {'requests':>9} {'GET executions':>15} "
          f"{'executions':>11} {'seconds':>8} {'copied kB':>10}")
    for cap, results in by_cap.items():
        for side, runs in results.items():
            secs = statistics.median(e for e, _, _ in runs)
            total = statistics.median(c["total"] for _, c, _ in runs)
            listing = statistics.median(status_requests(c)[0] for _, c, _ in runs)
            launched = statistics.median(n for _, _, n in runs)
            copied = statistics.median(c["copied"] for _, c, _ in runs) / 1000
            how = {"study": f"1 execution of {args.jobs} jobs",
                   "unbatched": "--vip-batch-size 1",
                   "executor": "default --vip-batch-size"}[side]
            print(f"  {cap or 'unlimited':>9} {side:9} {total:9.0f} {listing:15.0f} "
                  f"{launched:11.0f} {secs:8.1f} {copied:10.1f}   ({how})")
    ok = True
    for cap, results in by_cap.items():
        med = {side: statistics.median(e for e, _, _ in runs) for side, runs in results.items()}
        launched = statistics.median(n for _, _, n in results["executor"])
        ratio = med["executor"] / med["study"]
        goals = [(f"executor / study wall time {ratio:.2f} <= 1.5", ratio <= 1.5),
                 (f"executions launched {launched:.0f} <= 3", launched <= 3),
                 ("every result identical to the unbatched run (downloaded trees)", same[cap])]
        for text, met in goals:
            ok = ok and met
            print(f"  capacity {cap or 'unlimited'}: {'MET' if met else 'MISSED'}: {text}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

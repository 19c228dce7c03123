"""Benchmark (not a test): time `snakemake -n` on a generated 500-session study.

    .venv/bin/python bench/study_dryrun.py [--sessions 500] [--files 50] [--repeat 3]

Generates a study project in a temp directory (the repository's workflow/ + a dataset of
`--files` small CSV files + a config crossing 2 pipelines x N/2 parameter values, every session
on a glob of the whole dataset) and times `snakemake --cores 1 -n` on it with `url: local`, as
the demo runs: the shipped descriptors are read as files, no server is started (checked: no
`.vip-local/` appears). `--remote` instead starts a local VIP server and gives its URL (the dry
run then reads the pipelines from it, one request each). Baseline measured in the same run: the
same command on a 1-session study (Snakemake's and Python's fixed start-up cost). Goal: < 10 s
for 500 sessions.
"""

from __future__ import annotations

import argparse
import contextlib
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

GOAL_S = 10.0


def make_project(root: Path, url: str, sessions: int, files: int) -> Path:
    shutil.copytree(REPO / "workflow", root / "workflow")
    data = root / "data" / "subjects"
    data.mkdir(parents=True)
    for i in range(files):
        (data / f"sub{i:04d}.csv").write_text("t,x\n" + "".join(f"{t},{(t * i) % 7}\n" for t in range(20)))
    half = max(1, sessions // 2)
    cfg = {
        "name": "bench",
        "vip": {"url": url, "poll_seconds": 30},
        "datasets": {"subjects": "data/subjects"},
        "pipelines": {
            "stats": {"id": "TextStats/1.0", "settings": {"input_file": "*.csv"}},
            "smooth": {"id": "Smooth/1.0", "settings": {"input_file": "*.csv"}},
        },
        "study": [
            {"datasets": ["subjects"], "pipelines": ["smooth"], "grid": {"window": list(range(1, half + 1))}},
        ],
    }
    if sessions > 1:
        cfg["study"].append(
            {"datasets": ["subjects"], "pipelines": ["stats"],
             "grid": {"precision": list(range(1, sessions - half + 1))}}
        )
    (root / "config").mkdir()
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


def dry_run(project: Path, key: str | None) -> tuple[float, str]:
    env = dict(os.environ, VIP_API_KEY=key) if key else dict(os.environ)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "-n"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"snakemake -n failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if (project / ".vip-local").exists():
        raise SystemExit("the dry run started the local VIP server (.vip-local/ appeared)")
    return elapsed, proc.stdout + proc.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=500)
    ap.add_argument("--files", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--remote", action="store_true", help="dry run against a server's URL")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vip-smk-bench-") as tmp:
        tmp = Path(tmp)
        with contextlib.ExitStack() as stack:
            url, key = "local", None
            if args.remote:
                srv = stack.enter_context(LocalServer(tmp / "server", port=0, users=["bench:bench-key-0123456789abcdef"]))
                url, key = srv.url, srv.api_key
            big = make_project(tmp / "big", url, args.sessions, args.files)
            small = make_project(tmp / "small", url, 1, args.files)
            dry_run(small, key)  # warm the file-system and bytecode caches
            base = [dry_run(small, key)[0] for _ in range(args.repeat)]
            runs = []
            for _ in range(args.repeat):
                elapsed, out = dry_run(big, key)
                runs.append(elapsed)
            jobs = next((line.split()[-1] for line in out.splitlines() if line.startswith("total")), "?")
    b, t = statistics.median(base), statistics.median(runs)
    where = "a server's URL" if args.remote else "url: local, no server started"
    print(f"study dry run: {args.sessions} sessions x {args.files}-file glob, {jobs} jobs ({where})")
    print(f"  baseline (1-session study):   {b:6.2f} s  (median of {args.repeat})")
    print(f"  snakemake -n, {args.sessions} sessions:  {t:6.2f} s  (median of {args.repeat}; runs {', '.join(f'{r:.2f}' for r in runs)})")
    print(f"  ratio to baseline: {t / b:.2f}x; per session above baseline: {(t - b) / max(1, args.sessions - 1) * 1000:.1f} ms")
    print(f"  goal < {GOAL_S:.0f} s: {'MET' if t < GOAL_S else 'NOT MET'}")
    return 0 if t < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())

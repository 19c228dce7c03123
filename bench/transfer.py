#!/usr/bin/env python3
"""Transfer benchmark: vip-smk vs VIP's own client (vip-client 0.1.10) vs curl, same run,
same data, on local VIP servers (`vip-smk serve`) modelling the network and VIP's storage.

  (a) 1,000 files x 10 KB in 10 folders, upload and download, at `--latency 30` and again
      with `--storage-delay 200` (VIP's per-file grid transfer time).
      Goals: upload >= 20x vip-client (`VipSession.upload_inputs`), download >= 3x vip-client
      (its 10-thread `download_parallel`).
  (b) one 1 GB file up and down, on bare loopback and at `--latency 30`.
      Goals: <= 1.3x curl's time; client and server peak RSS <= 100 MB.
  (c) re-sync of (a) unchanged (at `--latency 30`). Goal: 0 bytes, 1 request per folder.

Every figure is the MEDIAN of `--repeat` runs (default 5; vip-client: `--vc-repeat`, default
3, and 1 for its upload with the storage delay: about 4 minutes a run). Each row prints the
floor of its case: requests x round trip / requests in flight (the time no client can beat
with that many connections), then MET or MISSED.

Every measured side runs in its own process: vip-smk and vip-client are Python children
(requests counted at urllib3's `urlopen`, which both go through), curl is curl (peak RSS by
/usr/bin/time). The server's peak RSS is its VmHWM, reset before each (b) run.
vip-client is installed in a venv under the work dir (`pip install vip-client==0.1.10`).

Usage: .venv/bin/python bench/transfer.py [--quick] [--repeat N] [--vc-repeat N]
            [--only a,b,c] [--files N] [--big-mb N] [--workdir DIR] [--no-vip-client]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
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

from vip_smk.api.transport import MAX_CONNECTIONS  # noqa: E402
from vip_smk.server import LocalServer  # noqa: E402

# ------------------------------------------------------------------------------ child code

COUNTER = r"""
import json, os, sys, time
import urllib3.connectionpool as _cp
_stats = {"requests": 0, "bytes_sent": 0}
_urlopen = _cp.HTTPConnectionPool.urlopen
def _counting_urlopen(self, method, url, body=None, headers=None, *a, **kw):
    _stats["requests"] += 1
    if method in ("PUT", "POST"):
        _stats["bytes_sent"] += int((headers or {}).get("Content-Length") or 0)
    return _urlopen(self, method, url, body, headers, *a, **kw)
_cp.HTTPConnectionPool.urlopen = _counting_urlopen
def _done(seconds, **extra):
    hwm = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    print(json.dumps({"seconds": seconds, "hwm_kb": hwm, **_stats, **extra}))
"""

SMK_CHILD = COUNTER + r"""
from vip_smk.core.client import VipClient
op, url, a, b = sys.argv[1:5]
c = VipClient(url, progress=False)  # the defaults; key: $VIP_API_KEY
if op == "up_file":
    c.mkdir(b.rsplit("/", 1)[0])  # the folder exists for curl too: not timed
t0 = time.perf_counter()
if op == "up_tree":
    c.upload_tree(a, b)
elif op == "down_tree":
    c.download_tree(a, b)
elif op == "up_file":
    c.upload(a, b)
elif op == "down_file":
    c.download(a, b)
_done(time.perf_counter() - t0)
"""

VC_CHILD = COUNTER + r"""
import io, contextlib
from pathlib import Path, PurePosixPath
from vip_client.utils import vip
op, url, a, b, session = sys.argv[1:6]
vip.set_vip_url(url)
assert vip.setApiKey(os.environ["VIP_API_KEY"])
t0 = time.perf_counter()
if op == "up_tree":
    from vip_client import VipSession
    with contextlib.redirect_stdout(io.StringIO()):
        VipSession.init(api_key="VIP_API_KEY", vip_portal_url=url, verbose=False)
        s = VipSession(session, input_dir=a, output_dir=b, verbose=False)
        s.upload_inputs()
elif op == "down_tree":
    # vip-client has no tree download: list each folder, skip existing files (as its
    # download_outputs does), then its 10-thread download_parallel.
    todo, stack = [], [a]
    while stack:
        d = stack.pop()
        for e in vip.list_content(d):
            if e["isDirectory"]:
                stack.append(e["path"])
            else:
                local = Path(b) / PurePosixPath(e["path"]).relative_to(a)
                if not local.exists():
                    local.parent.mkdir(parents=True, exist_ok=True)
                    todo.append((e["path"], str(local)))
    if todo:
        failed = [f for f, ok in vip.download_parallel(todo) if not ok]
        assert not failed, failed[:3]
_done(time.perf_counter() - t0)
"""

# ------------------------------------------------------------------------------ helpers

TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run_child(cmd: list[str], env: dict) -> dict:
    """Run a side; return its JSON line (Python children) plus wall time and peak RSS."""
    measured = list(cmd)
    rss_file = None
    if cmd[0] == "curl" and TIME_BIN:
        fd, rss_file = tempfile.mkstemp(prefix="rss-")
        os.close(fd)
        measured = [TIME_BIN, "-f", "%M", "-o", rss_file] + cmd
    t0 = time.perf_counter()
    p = subprocess.run(measured, capture_output=True, env=env, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        shown = " ".join(cmd[3:] if len(cmd) > 1 and cmd[1] == "-c" else cmd[1:])
        raise RuntimeError(f"{cmd[0]} {shown} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    line = [x for x in p.stdout.splitlines() if x.startswith("{")]
    res = json.loads(line[-1]) if line else {}
    res.setdefault("seconds", wall)
    if "hwm_kb" in res:
        res["rss_mb"] = res["hwm_kb"] / 1024
    elif rss_file:
        res["rss_mb"] = int(Path(rss_file).read_text().split()[-1]) / 1024
        os.unlink(rss_file)
    else:
        res["rss_mb"] = float("nan")
    return res


def server_hwm_reset(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := current RSS
    except OSError:
        pass


def server_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


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


def ensure_vip_client(work: Path) -> Path:
    shared = HERE.parent / ".cache" / "vip-client-0.1.10" / "bin" / "python"  # tests' venv
    for py in (shared, work / "vip-client-venv" / "bin" / "python"):
        if py.exists() and subprocess.run([str(py), "-c", "import vip_client"],
                                          capture_output=True).returncode == 0:
            return py
    venv = work / "vip-client-venv"
    print(f"installing vip-client==0.1.10 into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "vip-client==0.1.10"], check=True)
    return py


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("MET" if ok else "MISSED")


# ------------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="200 files, 100 MB, 3 runs, vip-client once (a few minutes)")
    ap.add_argument("--files", type=int, default=None)
    ap.add_argument("--file-kb", type=int, default=10)
    ap.add_argument("--big-mb", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=None, help="runs per vip-smk/curl figure (median; default 5)")
    ap.add_argument("--vc-repeat", type=int, default=None, help="runs per vip-client figure (median; default 3)")
    ap.add_argument("--vc-slow-repeat", type=int, default=1,
                    help="runs of vip-client's upload with the storage delay (default 1)")
    ap.add_argument("--only", default="a,b,c", help="cases to run, among a,b,c")
    ap.add_argument("--latency", type=float, default=30.0)
    ap.add_argument("--storage-delay", type=float, default=200.0)
    ap.add_argument("--workdir", default=None, help="keep the venv and data here (reused)")
    ap.add_argument("--no-vip-client", action="store_true", help="skip vip-client (no ratios for (a))")
    args = ap.parse_args()
    n_files = args.files or (200 if args.quick else 1000)
    big_mb = args.big_mb or (100 if args.quick else 1024)
    repeat = args.repeat or (3 if args.quick else 5)
    vc_repeat = args.vc_repeat or (1 if args.quick else 3)
    cases = set(args.only.split(","))
    lat, sd = args.latency, args.storage_delay

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="vip-smk-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    vc_py = None if args.no_vip_client or "a" not in cases else ensure_vip_client(work)
    data = work / "data"
    small = data / "small"
    big = data / "big.bin"
    if ({"a", "c"} & cases) and (not small.exists() or sum(1 for _ in small.rglob("*.dat")) != n_files):
        shutil.rmtree(small, ignore_errors=True)
        make_small_tree(small, n_files, args.file_kb * 1024)
    if "b" in cases and (not big.exists() or big.stat().st_size != big_mb << 20):
        make_big_file(big, big_mb)
    n_dirs = len({p.parent for p in small.rglob("*.dat")}) if small.exists() else 0
    print(f"data: {n_files} x {args.file_kb} KB in {n_dirs} folders; 1 x {big_mb} MB; medians of {repeat} "
          f"(vip-client: {vc_repeat}); work dir {work}; load average {os.getloadavg()[0]:.1f}", flush=True)

    key = secrets.token_urlsafe(18)
    env = {**os.environ, "VIP_API_KEY": key, "PYTHONPATH": str(HERE.parent)}
    curl_hdr = work / "curl-headers"
    curl_hdr.write_text(f"apikey: {key}\n")
    curl_hdr.chmod(0o600)
    smk = [sys.executable, "-c", SMK_CHILD]
    vc = [str(vc_py), "-c", VC_CHILD] if vc_py else None
    rows: list[list[str]] = []
    out = work / "out"

    def median_of(label: str, n: int, make_cmd, before=None, after=None) -> dict:
        runs = []
        for i in range(n):
            if before:
                before(i)
            runs.append(run_child(make_cmd(i), env))
            if after:
                after(i, runs[-1])
        med = {"seconds": statistics.median(r["seconds"] for r in runs),
               "rss_mb": max(r["rss_mb"] for r in runs),
               "requests": statistics.median(r.get("requests", 0) for r in runs),
               "bytes_sent": max(r.get("bytes_sent", 0) for r in runs),
               "runs": n, "all": [r["seconds"] for r in runs]}
        print(f"  {label:<34} median {med['seconds']:7.2f}s of {n} "
              f"({', '.join(f'{x:.2f}' for x in med['all'])})  requests {med['requests']:.0f}  "
              f"peak RSS {med['rss_mb']:.0f} MB", flush=True)
        return med

    def fresh(path: Path):
        return lambda i: shutil.rmtree(path / str(i), ignore_errors=True)

    # ---------------------------------------------------------------- (a) and (c)
    if {"a", "c"} & cases:
        settings = [("latency %g" % lat, lat, 0.0)] + ([("latency %g + storage %g" % (lat, sd), lat, sd)]
                                                        if "a" in cases and sd else [])
        for label, l_ms, s_ms in settings:
            shutil.rmtree(work / f"server-a-{l_ms:g}-{s_ms:g}", ignore_errors=True)  # fresh VIP space
            with LocalServer(work / f"server-a-{l_ms:g}-{s_ms:g}", port=0, users=[f"bench:{key}"],
                             latency_ms=l_ms, storage_delay_ms=s_ms,
                             log_file=str(work / "server-a.log")) as srv:
                url = srv.url
                rtt = (l_ms + s_ms) / 1000
                in_flight = min(MAX_CONNECTIONS, n_files)
                # floor: the files' requests in rounds of `in_flight`, plus two listing/mkdir rounds
                floor = math.ceil(n_files / in_flight) * rtt + 2 * l_ms / 1000
                print(f"[{label}] (a) {n_files} files", flush=True)
                up = median_of("vip-smk upload", repeat,
                               lambda i: smk + ["up_tree", url, str(small), f"/vip/Home/smk/a{i}"])
                down = median_of("vip-smk download", repeat,
                                 lambda i: smk + ["down_tree", url, f"/vip/Home/smk/a{i}", str(out / "smk" / str(i))],
                                 before=fresh(out / "smk"),
                                 after=lambda i, r: tree_digest(out / "smk" / str(i)) == tree_digest(small)
                                 or sys.exit("vip-smk: downloaded tree differs"))
                vc_up = vc_down = None
                if vc:
                    n_up = vc_repeat if not s_ms else args.vc_slow_repeat
                    vc_up = median_of("vip-client upload_inputs", n_up,
                                      lambda i: vc + ["up_tree", url, str(small), str(out / f"vc-session{i}"),
                                                      f"bench{i}"])
                    vc_down = median_of("vip-client download_parallel", vc_repeat,
                                        lambda i: vc + ["down_tree", url, "/vip/Home/API/bench0/INPUTS",
                                                        str(out / "vc" / str(i)), "-"],
                                        before=fresh(out / "vc"))
                for case, mine, theirs, goal in (("upload", up, vc_up, 20.0), ("download", down, vc_down, 3.0)):
                    ratio = theirs["seconds"] / mine["seconds"] if theirs else None
                    rows.append([label, f"(a) {case}", f"{mine['seconds']:.2f}s",
                                 f"{floor:.2f}s", f"{theirs['seconds']:.2f}s (n={theirs['runs']})" if theirs else "-",
                                 f"{ratio:.1f}x" if ratio else "-", f">= {goal:g}x",
                                 verdict(None if ratio is None else ratio >= goal)])
                if "c" in cases and not s_ms:
                    print(f"[{label}] (c) re-sync unchanged", flush=True)
                    folders = n_dirs + 1  # + the root
                    for case, cmd in (("upload", lambda i: smk + ["up_tree", url, str(small), "/vip/Home/smk/a0"]),
                                      ("download", lambda i: smk + ["down_tree", url, "/vip/Home/smk/a0",
                                                                    str(out / "smk" / "0")])):
                        r = median_of(f"vip-smk re-sync {case}", repeat, cmd)
                        ok = r["bytes_sent"] == 0 and r["requests"] <= folders
                        rows.append([label, f"(c) re-sync {case}", f"{r['seconds']:.2f}s",
                                     f"{math.ceil(folders / MAX_CONNECTIONS) * l_ms / 1000 + l_ms / 1000:.2f}s",
                                     "-", f"{r['requests']:.0f} req, {r['bytes_sent']} B",
                                     f"0 B, <= {folders} req", verdict(ok)])
                shutil.rmtree(out, ignore_errors=True)

    # ---------------------------------------------------------------- (b)
    if "b" in cases:
        big_sha = sha256(big)
        for label, l_ms in (("bare loopback", 0.0), ("latency %g" % lat, lat)):
            shutil.rmtree(work / f"server-b-{l_ms:g}", ignore_errors=True)
            with LocalServer(work / f"server-b-{l_ms:g}", port=0, users=[f"bench:{key}"], latency_ms=l_ms,
                             max_download_size=0,  # no direct-download cap: VIP-portal's 15 MB would refuse the 1 GB file
                             log_file=str(work / "server-b.log")) as srv:
                url, pid = srv.url, srv.pid
                base = f"{url}/rest/path/vip/Home/curl"
                subprocess.run(["curl", "-sf", "-X", "PUT", "-H", f"@{curl_hdr}", "-H", "Content-Length: 0",
                                f"{base}/"], check=True, capture_output=True)
                print(f"[{label}] (b) 1 x {big_mb} MB", flush=True)
                srv_peak = {"upload": 0.0, "download": 0.0}

                def track(case):
                    def after(i, r):
                        srv_peak[case] = max(srv_peak[case], server_hwm_mb(pid))
                    return after

                def reset(extra=None):
                    def before(i):
                        if extra:
                            extra(i)
                        server_hwm_reset(pid)
                    return before

                rm = lambda p: (lambda i: Path(p).unlink(missing_ok=True))  # noqa: E731
                s_up = median_of("vip-smk upload", repeat,
                                 lambda i: smk + ["up_file", url, str(big), "/vip/Home/smk/big/big.bin"],
                                 before=reset(), after=track("upload"))
                c_up = median_of("curl upload", repeat,
                                 lambda i: ["curl", "-sS", "-f", "-o", "/dev/null", "-H", f"@{curl_hdr}", "-H",
                                            "Content-Type: application/octet-stream", "-T", str(big),
                                            f"{base}/big.bin"], before=reset(), after=track("upload"))
                s_down = median_of("vip-smk download", repeat,
                                   lambda i: smk + ["down_file", url, "/vip/Home/smk/big/big.bin",
                                                    str(work / "smk-big.bin")],
                                   before=reset(rm(work / "smk-big.bin")), after=track("download"))
                assert sha256(work / "smk-big.bin") == big_sha, "vip-smk big file differs"
                c_down = median_of("curl download", repeat,
                                   lambda i: ["curl", "-sS", "-f", "-H", f"@{curl_hdr}", "-o",
                                              str(work / "curl-big.bin"), f"{base}/big.bin?action=content"],
                                   before=reset(rm(work / "curl-big.bin")), after=track("download"))
                assert sha256(work / "curl-big.bin") == big_sha, "curl big file differs"
                for p in (work / "smk-big.bin", work / "curl-big.bin"):
                    p.unlink(missing_ok=True)
            for case, mine, curl in (("upload", s_up, c_up), ("download", s_down, c_down)):
                ratio = mine["seconds"] / curl["seconds"]
                rss_ok = mine["rss_mb"] <= 100 and srv_peak[case] <= 100
                rows.append([label, f"(b) {case}", f"{mine['seconds']:.2f}s", f"{l_ms / 1000:.2f}s",
                             f"curl {curl['seconds']:.2f}s", f"{ratio:.2f}x curl",
                             "<= 1.3x curl", verdict(ratio <= 1.3)])
                rows.append([label, f"(b) {case} peak RSS", f"client {mine['rss_mb']:.0f} MB",
                             "-", f"curl {curl['rss_mb']:.0f} MB", f"server {srv_peak[case]:.0f} MB",
                             "<= 100 MB", verdict(rss_ok)])

    # ---------------------------------------------------------------- table
    print()
    print(f"(a) {n_files} files x {args.file_kb} KB in {n_dirs} folders; (b) 1 file of {big_mb} MB; (c) re-sync "
          f"of (a). Medians of {repeat} runs (vip-client: n shown); floor = requests x round trip / in flight "
          f"({MAX_CONNECTIONS} connections)")
    head = ["server", "case", "vip-smk", "floor", "baseline", "ratio", "goal", "verdict"]
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("-" * (sum(widths) + 2 * len(widths)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    print(f"\ntotal bench time {time.perf_counter() - t_start:.0f} s; load average {os.getloadavg()[0]:.1f}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

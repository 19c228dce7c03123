#!/usr/bin/env python3
"""Transfer benchmark: vip-smk vs VIP's own client (vip-client 0.1.10) vs curl, same run,
same data, same local servers (bare loopback and `--latency 30`).

  (a) 1,000 files x 10 KB (10 folders of 100) up and down
  (b) one 1 GB file up and down, with the peak RSS of each side (VmHWM of its process)
  (c) re-sync of (a) unchanged: bytes sent and requests made

Every measured side runs in its own subprocess (vip-smk and vip-client are Python children,
curl is curl); requests and bytes are counted client-side in the child (requests'
Session.send for both Python clients). vip-client is installed by this script in a separate
venv under the work dir (`pip install vip-client==0.1.10`).

Usage: .venv/bin/python bench/transfer.py [--quick] [--workdir DIR] [--keep]
                                          [--big-mb N] [--files N] [--no-latency]
Goals: (a) >= 10x faster than vip-client; (b) <= 1.3x curl's time, peak RSS <= 100 MB;
(c) 0 bytes sent, <= 1 request per directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from vip_smk.server import LocalServer  # noqa: E402

# ------------------------------------------------------------------------------ child code

COUNTER = r"""
import json, os, sys, time
import requests
_stats = {"requests": 0, "bytes_sent": 0}
_send = requests.sessions.Session.send
def _counting_send(self, request, **kw):
    _stats["requests"] += 1
    if request.method in ("PUT", "POST"):
        _stats["bytes_sent"] += int(request.headers.get("Content-Length") or 0)
    return _send(self, request, **kw)
requests.sessions.Session.send = _counting_send
def _done(seconds, **extra):
    hwm = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    print(json.dumps({"seconds": seconds, "hwm_kb": hwm, **_stats, **extra}))
"""

SMK_CHILD = COUNTER + r"""
from vip_smk.client import VipClient
op, url, a, b, workers = sys.argv[1:6]
c = VipClient(url, workers=int(workers), progress=False)  # key: $VIP_API_KEY
t0 = time.perf_counter()
if op == "up_tree":
    r = c.upload_tree(a, b)
elif op == "down_tree":
    r = c.download_tree(a, b)
elif op == "up_file":
    c.mkdir(b.rsplit("/", 1)[0])
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
elif op == "up_file":
    parts = b.split("/")[:-1]
    for i in range(4, len(parts) + 1):
        d = "/".join(parts[:i])
        if not vip.exists(d):
            assert vip.create_dir(d), d
    assert vip.upload(a, b)
elif op == "down_file":
    assert vip.download(a, b)
_done(time.perf_counter() - t0)
"""

# ------------------------------------------------------------------------------ helpers


TIME_BIN = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run_child(cmd: list[str], env: dict) -> dict:
    """Run a side; return its JSON line (Python children) plus wall time and peak RSS.

    Peak RSS: a Python child reports its own VmHWM; curl is run under /usr/bin/time (%M), as
    the rusage of a child forked from this (bigger) process would count the parent's pages."""
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
        shown = " ".join(cmd[3:] if cmd[1] == "-c" else cmd[1:])
        raise RuntimeError(f"{cmd[0]} {shown} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    line = [x for x in p.stdout.splitlines() if x.startswith("{")]
    res = json.loads(line[-1]) if line else {}
    res.setdefault("seconds", wall)
    res["wall"] = wall
    if "hwm_kb" in res:
        res["rss_mb"] = res["hwm_kb"] / 1024
    elif rss_file:
        res["rss_mb"] = int(Path(rss_file).read_text().split()[-1]) / 1024
        os.unlink(rss_file)
    else:
        res["rss_mb"] = float("nan")
    return res


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
    venv = work / "vip-client-venv"
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import vip_client"], capture_output=True).returncode == 0:
        return py
    print(f"installing vip-client==0.1.10 into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "vip-client==0.1.10"], check=True)
    return py


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}s"


def fmt_x(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


# ------------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 files, 100 MB (about a minute)")
    ap.add_argument("--files", type=int, default=None)
    ap.add_argument("--file-kb", type=int, default=10)
    ap.add_argument("--big-mb", type=int, default=None)
    ap.add_argument("--workers", type=int, default=8, help="vip-smk workers (default: the client default, 8)")
    ap.add_argument("--tuned-workers", type=int, default=32,
                    help="also run (a) with this many workers (0: skip)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="(b) runs per side for vip-smk and curl, best time kept (default 3)")
    ap.add_argument("--workdir", default=None, help="keep the venv and data here (reused)")
    ap.add_argument("--keep", action="store_true", help="do not delete the work dir")
    ap.add_argument("--no-latency", action="store_true", help="skip the --latency 30 server")
    ap.add_argument("--no-vip-client", action="store_true", help="skip vip-client (no pip install)")
    args = ap.parse_args()
    n_files = args.files or (200 if args.quick else 1000)
    big_mb = args.big_mb or (100 if args.quick else 1024)

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="vip-smk-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    vc_py = None if args.no_vip_client else ensure_vip_client(work)
    data = work / "data"
    small = data / "small"
    big = data / "big.bin"
    if not small.exists() or sum(1 for _ in small.rglob("*.dat")) != n_files:
        shutil.rmtree(small, ignore_errors=True)
        make_small_tree(small, n_files, args.file_kb * 1024)
    if not big.exists() or big.stat().st_size != big_mb << 20:
        make_big_file(big, big_mb)
    small_digest = tree_digest(small)
    big_sha = sha256(big)
    n_dirs = len({p.parent for p in small.rglob("*.dat")})
    print(f"data: {n_files} x {args.file_kb} KB in {n_dirs} folders; 1 x {big_mb} MB; "
          f"work dir {work}; load average {os.getloadavg()[0]:.1f}", flush=True)

    key = secrets.token_urlsafe(18)
    env = {**os.environ, "VIP_API_KEY": key, "PYTHONPATH": str(HERE.parent)}
    curl_hdr = work / "curl-headers"
    curl_hdr.write_text(f"apikey: {key}\n")
    curl_hdr.chmod(0o600)
    table: list[list[str]] = []
    resync: list[list[str]] = []
    verdicts: list[str] = []
    for lat in ([0] if args.no_latency else [0, 30]):
        label = "bare" if lat == 0 else f"latency {lat}ms"
        srv_dir = work / f"server-{lat}"
        shutil.rmtree(srv_dir, ignore_errors=True)
        with LocalServer(srv_dir, port=0, users=[f"bench:{key}"], latency_ms=lat,
                         log_file=str(work / f"server-{lat}.log")) as srv:
            url = srv.url
            smk = [sys.executable, "-c", SMK_CHILD]
            vc = [str(vc_py), "-c", VC_CHILD] if vc_py else None
            res: dict[str, dict] = {}
            out = work / "out"
            shutil.rmtree(out, ignore_errors=True)

            def side(name, cmd, *argv, repeat=1, before=None):
                best = None
                for _ in range(repeat):
                    if before:
                        before()
                    r = run_child(cmd + [str(a) for a in argv], env)
                    if best is None or r["seconds"] < best["seconds"]:
                        r["rss_mb"] = max(r["rss_mb"], best["rss_mb"]) if best else r["rss_mb"]
                        best = r
                res[name] = best
                print(f"  [{label}] {name:<16} {best['seconds']:7.2f}s  requests {best.get('requests', '-'):>5}"
                      f"  sent {best.get('bytes_sent', 0) / 1e6:9.2f} MB  peak RSS {best['rss_mb']:7.1f} MB",
                      flush=True)
                return best

            # (a) small files up and down, then (c) re-sync, for vip-smk (default and tuned workers)
            variants = [("smk", args.workers)]
            if args.tuned_workers and args.tuned_workers != args.workers:
                variants.append((f"smk-w{args.tuned_workers}", args.tuned_workers))
            for tag, w in variants:
                remote = f"/vip/Home/{tag}/small"
                side(f"{tag} a-up", smk, "up_tree", url, small, remote, w)
                side(f"{tag} a-down", smk, "down_tree", url, remote, out / f"{tag}-small", w)
                assert tree_digest(out / f"{tag}-small") == small_digest, f"{tag}: small tree differs"
                side(f"{tag} c-up", smk, "up_tree", url, small, remote, w)
                side(f"{tag} c-down", smk, "down_tree", url, remote, out / f"{tag}-small", w)
            if vc:
                side("vc a-up", vc, "up_tree", url, small, out / "vc-session", "bench")
                vc_dir = "/vip/Home/API/bench/INPUTS"
                side("vc a-down", vc, "down_tree", url, vc_dir, out / "vc-small", "-")
                assert tree_digest(out / "vc-small") == small_digest, "vip-client small tree differs"
                side("vc c-up", vc, "up_tree", url, small, out / "vc-session", "bench")
                side("vc c-down", vc, "down_tree", url, vc_dir, out / "vc-small", "-")
            # (b) one big file up and down
            rm = lambda p: (lambda: Path(p).unlink(missing_ok=True))  # noqa: E731
            side("smk b-up", smk, "up_file", url, big, "/vip/Home/smk/big/big.bin", args.workers,
                 repeat=args.repeat)
            side("smk b-down", smk, "down_file", url, "/vip/Home/smk/big/big.bin", out / "smk-big.bin",
                 args.workers, repeat=args.repeat, before=rm(out / "smk-big.bin"))
            assert sha256(out / "smk-big.bin") == big_sha, "vip-smk big file differs"
            (out / "smk-big.bin").unlink()
            base = f"{url}/rest/path/vip/Home/curl"
            subprocess.run(["curl", "-sf", "-X", "PUT", "-H", f"@{curl_hdr}", "-H", "Content-Length: 0",
                            f"{base}/"], check=True, capture_output=True)
            side("curl b-up", ["curl", "-sS", "-f", "-o", "/dev/null", "-H", f"@{curl_hdr}", "-H",
                               "Content-Type: application/octet-stream", "-T", str(big), f"{base}/big.bin"],
                 repeat=args.repeat)
            side("curl b-down", ["curl", "-sS", "-f", "-H", f"@{curl_hdr}", "-o", str(out / "curl-big.bin"),
                                 f"{base}/big.bin?action=content"], repeat=args.repeat,
                 before=rm(out / "curl-big.bin"))
            assert sha256(out / "curl-big.bin") == big_sha, "curl big file differs"
            (out / "curl-big.bin").unlink()
            if vc:
                side("vc b-up", vc, "up_file", url, big, "/vip/Home/vc/big/big.bin", "-")
                side("vc b-down", vc, "down_file", url, "/vip/Home/vc/big/big.bin", out / "vc-big.bin", "-")
                assert sha256(out / "vc-big.bin") == big_sha, "vip-client big file differs"
                (out / "vc-big.bin").unlink()
            shutil.rmtree(out, ignore_errors=True)

        def t(name):
            return res[name]["seconds"] if name in res else None

        def div(a, b):
            return None if a is None or b is None or b == 0 else a / b

        for tag, w in variants:
            up_down = t(f"{tag} a-up") + t(f"{tag} a-down")
            vc_ud = (t("vc a-up") + t("vc a-down")) if vc_py else None
            for case, s_, v_ in (("up", t(f"{tag} a-up"), t("vc a-up")),
                                 ("down", t(f"{tag} a-down"), t("vc a-down")),
                                 ("up+down", up_down, vc_ud)):
                table.append([label, f"(a) {case}", f"w={w}", fmt_s(s_), fmt_s(v_), "-",
                              fmt_x(div(v_, s_)) + "x" if v_ else "-", "-", "-", "-", "-"])
            if vc_ud:
                r = vc_ud / up_down
                verdicts.append(f"[{label}] (a) w={w}: vip-client/vip-smk up+down = {r:.1f}x (goal >= 10x): "
                                f"{'OK' if r >= 10 else 'MISSED'}")
        for d in ("up", "down"):
            s_, v_, c_ = t(f"smk b-{d}"), t(f"vc b-{d}"), t(f"curl b-{d}")
            rs = res[f"smk b-{d}"]["rss_mb"]
            table.append([label, f"(b) {d}", f"w={args.workers}", fmt_s(s_), fmt_s(v_), fmt_s(c_),
                          fmt_x(div(v_, s_)) + "x" if v_ else "-", fmt_x(div(s_, c_), 2),
                          f"{rs:.0f}M", f"{res[f'vc b-{d}']['rss_mb']:.0f}M" if v_ else "-",
                          f"{res[f'curl b-{d}']['rss_mb']:.0f}M"])
            r = s_ / c_
            verdicts.append(f"[{label}] (b) {d}: vip-smk/curl = {r:.2f} (goal <= 1.3): {'OK' if r <= 1.3 else 'MISSED'};"
                            f" vip-smk peak RSS {rs:.0f} MB (goal <= 100): {'OK' if rs <= 100 else 'MISSED'}")
        for k in [f"{tag} c-{d}" for tag, _ in variants for d in ("up", "down")] + ["vc c-up", "vc c-down"]:
            if k in res:
                r = res[k]
                resync.append([label, k, fmt_s(r["seconds"]), str(r["requests"]), str(r["bytes_sent"])])
                if k.startswith("smk "):
                    ok = r["bytes_sent"] == 0 and r["requests"] <= n_dirs + 1
                    verdicts.append(f"[{label}] (c) {k[4:]}: {r['bytes_sent']} bytes sent, {r['requests']} "
                                    f"requests for {n_dirs} folders + the root (goal 0 bytes, <= 1 request "
                                    f"per folder): {'OK' if ok else 'MISSED'}")

    # ---------------------------------------------------------------- table
    print()
    print(f"(a) {n_files} files x {args.file_kb} KB in {n_dirs} folders; (b) 1 file of {big_mb} MB "
          f"(best of {args.repeat} for vip-smk and curl); times measured inside each client process")
    head = ["server", "case", "smk", "vip-smk", "vip-client", "curl", "vc/smk", "smk/curl",
            "RSS smk", "RSS vc", "RSS curl"]
    widths = [max(len(head[i]), *(len(r[i]) for r in table)) for i in range(len(head))]
    print("  ".join(h.ljust(w) if i < 3 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))))
    print("-" * (sum(widths) + 2 * len(widths)))
    for row in table:
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print()
    print(f"(c) re-sync of (a), unchanged ({n_dirs} folders):")
    head = ["server", "side", "time", "requests", "bytes sent"]
    widths = [max(len(head[i]), *(len(r[i]) for r in resync)) for i in range(len(head))]
    print("  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths))))
    for row in resync:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print()
    for v in verdicts:
        print(v)
    print(f"\ntotal bench time {time.perf_counter() - t_start:.0f} s; load average {os.getloadavg()[0]:.1f}")
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

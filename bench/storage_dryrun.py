"""`snakemake -n` over 1,000 `vip://` targets in 10 folders: HTTP requests and seconds.

    .venv/bin/python bench/storage_dryrun.py [--files 1000] [--folders 10] [--repeat 3] [--latency MS]

A local VIP server counts the requests it receives (`count_requests`). Two dry runs of a
workflow whose 1,000 outputs are on VIP:

- "up to date": every output exists (Snakemake says "Nothing to be done");
- "missing":    the output folders do not exist yet (1,000 jobs would run).

Goal: at most folders + 1 requests each (one `action=list` per folder, thanks to `inventory`).
Baseline, measured in the same run: the same 1,000 outputs checked one by one, one
`action=properties` each (what a plugin without inventory nor listings asks: the plugin itself
now answers `exists()` / `mtime()` from one listing per folder even without inventory, which the
third column shows). Medians of --repeat runs.
"""

import argparse
import logging
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vip_smk.core.client import NotFound, VipClient  # noqa: E402
from vip_smk.server import LocalServer  # noqa: E402
from vip_smk.snakemake.storage import StorageProvider, StorageProviderSettings  # noqa: E402

SNAKEFILE = """
FILES = {files}
FOLDERS = {folders}
PER = FILES // FOLDERS

rule all:
    input: storage.vip(expand("{prefix}/d{{d}}/f{{i}}.txt", d=range(FOLDERS), i=range(PER)))

rule make:
    output: storage.vip("{prefix}/d{{d}}/f{{i}}.txt")
    shell: "echo {{wildcards.d}} {{wildcards.i}} > {{output}}"
"""

KEY_ENV = "VIP_SMK_BENCH_KEY"


def dry_run(srv: LocalServer, work: Path) -> tuple[int, float, str]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    env[KEY_ENV] = srv.api_key
    srv.reset_request_counts()
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "-n", "--cores", "1", "--quiet", "all",
         "--storage-vip-url", srv.url, "--storage-vip-api-key-env", KEY_ENV],
        cwd=work, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"snakemake failed:\n{proc.stderr[-3000:]}")
    return srv.request_counts()["total"], seconds, proc.stdout + proc.stderr


def one_by_one(srv: LocalServer, prefix: str, files: int, folders: int, tmp: Path) -> tuple[int, float, int, float]:
    os.environ[KEY_ENV] = srv.api_key
    provider = StorageProvider(local_prefix=tmp / "prefix", logger=logging.getLogger("bench"),
                               settings=StorageProviderSettings(url=srv.url, api_key_env=KEY_ENV))
    per = files // folders
    paths = [f"{prefix}/d{d}/f{i}.txt" for d in range(folders) for i in range(per)]
    srv.reset_request_counts()
    t0 = time.monotonic()
    for path in paths:  # the plugin's objects, no inventory: answered from the listings
        obj = provider.object(path)
        if obj.exists():
            obj.mtime()
    plugin = (srv.request_counts()["total"], time.monotonic() - t0)
    srv.reset_request_counts()
    t0 = time.monotonic()
    for path in paths:  # one question per file
        try:
            provider.client.properties(path[len("vip:/"):])
        except NotFound:
            pass
    seconds = time.monotonic() - t0
    provider.client.close()
    return srv.request_counts()["total"], seconds, *plugin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--folders", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.0, metavar="MS",
                    help="server latency per request (e.g. 20 for a distant VIP; default 0)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vip-storage-bench-") as tmp:
        tmp = Path(tmp)
        key = secrets.token_urlsafe(18)
        with LocalServer(tmp / "server", port=0, users=[f"bench:{key}"], count_requests=True,
                         latency_ms=args.latency) as srv:
            srv.start(timeout=60)
            rows = []
            for label, prefix in (("missing", "vip://vip/Home/bench/missing"),
                                  ("up to date", "vip://vip/Home/bench/present")):
                if label == "up to date":
                    src = tmp / "src"
                    per = args.files // args.folders
                    for d in range(args.folders):
                        (src / f"d{d}").mkdir(parents=True)
                        for i in range(per):
                            (src / f"d{d}" / f"f{i}.txt").write_text(f"{d} {i}\n")
                    with VipClient(srv.url, api_key=key, progress=False) as c:
                        c.upload_tree(src, "/vip/Home/bench/present")
                work = tmp / label.replace(" ", "-")
                work.mkdir()
                (work / "Snakefile").write_text(textwrap.dedent(SNAKEFILE.format(
                    files=args.files, folders=args.folders, prefix=prefix)))
                runs = [dry_run(srv, work) for _ in range(args.repeat)]
                reqs = statistics.median(r[0] for r in runs)
                secs = statistics.median(r[1] for r in runs)
                if label == "up to date":
                    assert "Nothing to be done" in runs[-1][2], runs[-1][2][-2000:]
                base = [one_by_one(srv, prefix, args.files, args.folders, tmp / f"b{i}")
                        for i in range(args.repeat)]
                breqs = statistics.median(b[0] for b in base)
                bsecs = statistics.median(b[1] for b in base)
                preqs = statistics.median(b[2] for b in base)
                rows.append((label, reqs, secs, breqs, bsecs, preqs))
    print(f"snakemake -n over {args.files} vip:// targets in {args.folders} folders "
          f"(medians of {args.repeat}, server latency {args.latency:g} ms; goal <= "
          f"{args.folders + 1} requests)")
    print(f"{'case':<12} {'requests':>9} {'seconds':>8}   {'one-by-one requests':>20} {'seconds':>8}  "
          f"ratio{'':18} {'no-inventory requests':>22}")
    ok = True
    for label, reqs, secs, breqs, bsecs, preqs in rows:
        print(f"{label:<12} {reqs:>9.0f} {secs:>8.2f}   {breqs:>20.0f} {bsecs:>8.2f}  "
              f"{breqs / max(reqs, 1):>4.0f}x fewer requests {preqs:>22.0f}")
        ok &= reqs <= args.folders + 1
    print("(seconds of the dry runs include Snakemake's own start, ~1 s; the one-by-one "
          "baseline runs in-process)")
    print("goal met" if ok else "GOAL MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

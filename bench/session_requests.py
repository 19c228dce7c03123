"""VipSession vs vip-client 0.1.10 on the reference scenario (vip-api.md section 5): HTTP
requests and seconds per step, through a counting relay in front of a local VIP server, on bare
loopback and with the server's `--latency 30`.

    .venv/bin/python bench/session_requests.py                 # VipSession only
    VIP_CLIENT_PYTHON=/path/to/venv-with-vip-client/bin/python \\
        .venv/bin/python bench/session_requests.py             # + vip-client baseline, ratios

The scenario: upload a dataset (4 files in 2 folders + an empty folder), add a file and upload
again, launch Smooth/1.0 on a list of 2 files with nb_runs=2, monitor once the executions are
over, download twice, finish, resume by name.

Then monitoring alone: `monitor_workflows` on 1, 4 and 20 running executions, HTTP requests per
monitoring round counted by the server (`count_requests`); vip-client makes one `GET
executions/{id}` per execution per round (reference 4.7), VipSession one request per round.

    .venv/bin/python bench/session_requests.py --monitor-only   # just that part
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import requests

SCENARIO = r'''
import json, os, sys, time, urllib.request
which, url, key = sys.argv[1:4]
if which == "vip-smk":
    from vip_smk import VipSession
    refresh = 0.5
else:
    from vip_client import VipSession
    refresh = 1
def count():
    return int(urllib.request.urlopen(url + "/__count").read())
steps = {}
def step(name, fn):
    c0, t0 = count(), time.monotonic()
    fn()
    steps[name] = (count() - c0, time.monotonic() - t0)
name = "bench_" + which.replace("-", "_")
step("init", lambda: VipSession.init(api_key=key, vip_portal_url=url, verbose=False))
s = VipSession(name, input_dir="data", pipeline_id="Smooth/1.0",
               input_settings={"input_file": ["data/signals/001.csv", "data/signals/002.csv"],
                               "window": "2"})
step("upload", lambda: s.upload_inputs())
open("data/signals/003.csv", "w").write("x\n1\n2\n3\n")
step("upload again (+1 file)", lambda: s.upload_inputs())
step("launch nb_runs=2", lambda: s.launch_pipeline(nb_runs=2))
time.sleep(3)
step("monitor (all over)", lambda: s.monitor_workflows(refresh_time=refresh))
step("download", lambda: s.download_outputs())
step("download again", lambda: s.download_outputs())
step("finish", lambda: s.finish())
step("resume", lambda: VipSession(name))
print(json.dumps(steps))
'''


class CountingRelay:
    """HTTP relay on 127.0.0.1 that counts the requests it forwards (GET /__count reads it)."""

    def __init__(self, target: str):
        self.count = 0
        lock = threading.Lock()
        session = requests.Session()
        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status, headers, data):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _relay(self):
                if self.path == "/__count":
                    return self._reply(200, [], str(relay.count).encode())
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                r = session.request(self.command, target + self.path, data=body or None,
                                    headers=headers, allow_redirects=False)
                with lock:
                    relay.count += 1
                skip = ("content-length", "transfer-encoding", "connection", "content-encoding",
                        "date", "server")
                self._reply(r.status_code, [(k, v) for k, v in r.headers.items()
                                            if k.lower() not in skip], r.content)

            do_GET = do_PUT = do_POST = do_DELETE = _relay

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def run(python: str, which: str, url: str, key: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"bench-{which}-"))
    data = work / "data"
    (data / "signals").mkdir(parents=True)
    (data / "empty").mkdir()
    for rel, text in (("params.csv", "a,b\n1,2\n"), ("basis.csv", "a,b\n3,4\n"),
                      ("signals/001.csv", "x\n1\n2\n"), ("signals/002.csv", "x\n5\n6\n7\n")):
        (data / rel).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIP_")}
    proc = subprocess.run([python, "-c", SCENARIO, which, url, key], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode:
        raise SystemExit(f"{which} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def monitor_rounds(sizes=(1, 4, 20), duration: float = 2.0, refresh: float = 0.25) -> None:
    """Requests per monitoring round of VipSession for ``sizes`` running executions."""
    import logging

    from vip_smk import VipSession
    from vip_smk.core import executions as core  # wait() looks poll up there
    from vip_smk.server import LocalServer

    logging.getLogger("vip_smk").setLevel(logging.WARNING)
    key = "bench-" + os.urandom(8).hex()
    work = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    (work / "data").mkdir()
    (work / "data" / "x.csv").write_text("x\n1\n")
    os.chdir(work)
    print(f"\nmonitor_workflows: requests per round (Sleep {duration} s jobs, refresh_time {refresh} s)")
    print(f"{'executions':>10s} {'rounds':>7s} {'requests':>9s} {'per round':>10s} {'vip-client per round':>21s}")
    with LocalServer(tempfile.mkdtemp(prefix="bench-vip-"), port=0, users=[f"alice:{key}"],
                     workers=max(sizes), count_requests=True) as srv:
        VipSession.init(api_key=key, vip_portal_url=srv.url, verbose=False)
        real_poll = core.poll
        for n in sizes:
            s = VipSession(f"monitor{n}", input_dir="data", pipeline_id="Sleep/1.0",
                           input_settings={"duration": duration}).launch_pipeline(nb_runs=n)
            rounds = 0

            def counting_poll(client, ids):
                nonlocal rounds
                rounds += 1
                return real_poll(client, ids)

            core.poll = counting_poll
            srv.reset_request_counts()
            try:
                s.monitor_workflows(refresh_time=refresh)
            finally:
                core.poll = real_poll
            counts = srv.request_counts()
            assert all(w["status"] == "Finished" for w in s.workflows.values()), s.workflows
            print(f"{n:10d} {rounds:7d} {counts['total']:9d} {counts['total'] / rounds:10.2f} {n:21d}")
            s.finish()


def main() -> None:
    from vip_smk.server import LocalServer

    if "--monitor-only" in sys.argv:
        monitor_rounds()
        return
    baseline = os.environ.get("VIP_CLIENT_PYTHON")
    key = "bench-" + os.urandom(8).hex()
    for latency in (0, 30):
        with LocalServer(tempfile.mkdtemp(prefix="bench-vip-"), port=0, users=[f"alice:{key}"],
                         latency_ms=latency) as srv:
            relay = CountingRelay(srv.url)
            try:
                ours = run(sys.executable, "vip-smk", relay.url, key)
                theirs = run(baseline, "vip-client", relay.url, key) if baseline else None
            finally:
                relay.close()
        print(f"\nserver --latency {latency} ms: requests / seconds per step")
        print(f"{'step':26s} {'vip-client 0.1.10':>20s} {'VipSession':>18s}")
        tot_o, tot_t = [0, 0.0], [0, 0.0]
        for step, (n, sec) in ours.items():
            tot_o[0] += n
            tot_o[1] += sec
            left = ""
            if theirs:
                tn, ts = theirs[step]
                tot_t[0] += tn
                tot_t[1] += ts
                left = f"{tn:6d} / {ts:6.2f}s"
            print(f"{step:26s} {left:>20s} {n:8d} / {sec:6.2f}s")
        line = f"{'total':26s} {(f'{tot_t[0]:6d} / {tot_t[1]:6.2f}s' if theirs else ''):>20s} " \
               f"{tot_o[0]:8d} / {tot_o[1]:6.2f}s"
        print(line)
        if theirs:
            print(f"ratio VipSession / vip-client: requests {tot_o[0] / tot_t[0]:.2f}, "
                  f"time {tot_o[1] / tot_t[1]:.2f}")
    monitor_rounds()


if __name__ == "__main__":
    main()

"""Local VIP server as a process: restart persistence, CLI, LocalServer, fault injection, latency."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from vipapi import Api, T

from vip_smk.server import LocalServer


def test_restart_keeps_files_and_reruns_running_executions(make_server):
    srv = make_server(workers=1, max_running=0)
    users = srv.user_specs
    a = Api(srv.url, srv.users["alice"])
    assert a.put("/path/vip/Home/keep").status_code == 201
    assert a.put("/path/vip/Home/keep/f.txt", data=b"persistent").status_code == 201
    done = a.launch("Sleep/1.0", {"duration": 0}, name="before")["identifier"]
    a.wait(done)
    running = a.launch("Sleep/1.0", {"duration": 1.5, "message": "survived"}, name="interrupted")["identifier"]
    queued = a.launch("Sleep/1.0", {"duration": 0}, name="queued")["identifier"]  # waits for the single worker
    a.wait(running, until=lambda e: e["jobs"]["1"]["status"] == "Running")
    data_dir = srv.data_dir
    srv.stop()
    assert not (data_dir / "server.json").exists()

    srv2 = make_server(data_dir=data_dir, users=users, workers=1, max_running=0)
    b = Api(srv2.url, srv2.users["alice"])
    assert b.get("/path/vip/Home/keep/f.txt?action=content").content == b"persistent"
    ex = b.get(f"/executions/{done}").json()
    assert ex["status"] == "Finished" and ex["name"] == "before"
    assert {e["identifier"] for e in b.get("/executions").json()} >= {done, running, queued}
    ex = b.wait(running)
    assert ex["status"] == "Finished", ex
    (log,) = ex["returnedFiles"]["log"]
    assert b.get(f"/path{log}?action=content").text.startswith("survived")
    assert b.wait(queued)["status"] == "Finished"


def test_cli_default_user_and_server_json(tmp_path):
    data = tmp_path / "d"
    proc = subprocess.Popen([sys.executable, "-m", "vip_smk.server", "--port", "0", "--data-dir", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url_line = proc.stdout.readline()
        key_line = proc.stdout.readline()
        m = re.fullmatch(r"VIP portal URL: (http://127\.0\.0\.1:(\d+))\n", url_line)
        assert m, url_line
        assert key_line.startswith("API key: ") and str(data / "apikey") in key_line, key_line
        key = (data / "apikey").read_text().strip()
        assert key and key not in key_line  # output not a terminal (a log): the key is not in it
        assert oct((data / "apikey").stat().st_mode & 0o777) == "0o600"
        info = json.loads((data / "server.json").read_text())
        assert info == {"url": m.group(1), "port": int(m.group(2)), "pid": proc.pid}
        r = requests.put(m.group(1) + "/rest/platform", headers={"apikey": key}, timeout=T)
        assert r.status_code == 200
        attached = LocalServer.attach(data)
        assert attached is not None and attached.url == m.group(1) and attached.pid == proc.pid
        assert attached.api_key == key
    finally:
        proc.terminate()
        proc.wait(15)
    assert not (data / "server.json").exists()
    assert LocalServer.attach(data) is None
    # second start: same key, not printed again
    with LocalServer(data) as srv:
        assert srv.api_key == key and srv.users == {"local": key}
        assert requests.get(srv.url + "/rest/pipelines", headers={"apikey": key}, timeout=T).status_code == 200
    log = (data / "server.log").read_text()
    assert "VIP portal URL" in log and "API key" not in log


def test_vip_smk_serve_help():
    out = subprocess.run([sys.executable, "-m", "vip_smk.cli", "serve", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    for opt in ("--host", "--port", "--data-dir", "--apps-dir", "--user", "--workers", "--max-running",
                "--fault-rate", "--latency", "--seed"):
        assert opt in out.stdout
    assert "re-run" in out.stdout.replace("\n", " ") or "run again" in out.stdout.replace("\n", " ")


def test_start_failure_reports_log_tail(tmp_path):
    srv = LocalServer(tmp_path / "bad", users=["broken-user-spec"])
    with pytest.raises(RuntimeError, match="NAME:KEY"):
        srv.start(timeout=30)


def test_second_server_on_same_data_dir_refused(make_server):
    srv = make_server()
    with pytest.raises(RuntimeError, match="already running"):
        LocalServer(srv.data_dir, users=srv.user_specs).start()


def test_fault_injection_statistics(make_server):
    rate, n = 0.3, 200
    srv = make_server(fault_rate=rate, seed=7)
    a = Api(srv.url, srv.users["alice"])
    got = Counter()
    for _ in range(n):
        try:
            r = requests.get(srv.url + "/rest/path/vip/Home?action=exists",
                             headers={"apikey": srv.users["alice"]}, timeout=T)
            got[r.status_code] += 1
            if r.status_code == 503:
                assert list(r.json()) == ["errorCode", "errorMessage"]
        except requests.ConnectionError:
            got["reset"] += 1
    faults = n - got[200]
    assert got[200] + got[503] + got["reset"] == n
    assert 0.18 * n <= faults <= 0.42 * n, got
    assert got[503] > 0 and got["reset"] > 0, got
    # non-GET: some replies are lost although the action happened
    lost_but_done = 0
    for i in range(60):
        path = f"/vip/Home/fault-{i}"
        try:
            ok = requests.put(srv.url + f"/rest/path{path}", headers={"apikey": srv.users["alice"]},
                              timeout=T).status_code == 201
        except requests.ConnectionError:
            ok = False
        if not ok:
            for _ in range(20):  # the check itself may hit a fault
                try:
                    r = a.get(f"/path{path}?action=exists")
                    if r.status_code == 200:
                        lost_but_done += r.json()["exists"]
                        break
                except requests.ConnectionError:
                    pass
    assert lost_but_done > 0
    attached = LocalServer.attach(srv.data_dir)  # answers despite the faults
    assert attached is not None and attached.pid == srv.pid
    # same seed, same decisions
    def answers(server, n=30):
        seq = []
        for _ in range(n):
            try:
                seq.append(requests.get(server.url + "/rest/platform", timeout=T).status_code)
            except requests.ConnectionError:
                seq.append("reset")
        return seq

    seq = answers(make_server(fault_rate=rate, seed=7))
    assert seq == answers(make_server(fault_rate=rate, seed=7)) and set(seq) != {200}


def test_latency(make_server):
    srv = make_server(latency_ms=150)
    t0 = time.monotonic()
    for _ in range(3):
        assert requests.get(srv.url + "/rest/platform", timeout=T).status_code == 200
    assert time.monotonic() - t0 >= 0.45


def test_request_counter(make_server, vip_server):
    srv = make_server(count_requests=True, fault_rate=0.3, seed=3)
    srv.reset_request_counts()
    assert srv.request_counts() == {"total": 0, "routes": {}, "in_flight": 0, "max_in_flight": 0}
    api = Api(srv.url, srv.api_key)

    def call(method, path, **kw):
        try:
            getattr(api, method)(path, **kw)
        except requests.ConnectionError:  # an injected reset
            pass

    for _ in range(4):
        call("get", "/path/vip/Home", params={"action": "list"})
    call("get", "/path/vip/Home", params={"action": "exists"})
    call("get", "/executions/workflow-XXXXXX")
    call("put", "/executions/workflow-XXXXXX/kill")
    call("delete", "/platform")  # no such method: counted under its route
    counts = srv.request_counts()
    assert counts["routes"] == {  # injected faults are counted too
        "DELETE /rest/platform": 1,
        "GET /rest/executions/{eid}": 1,
        "GET /rest/path/{path}?action=exists": 1,
        "GET /rest/path/{path}?action=list": 4,
        "PUT /rest/executions/{eid}/kill": 1,
    }
    assert counts["total"] == 8
    assert counts["max_in_flight"] == 1  # one after the other
    srv.reset_request_counts()
    assert srv.request_counts()["total"] == 0
    # off by default: no such path on a normal server
    assert requests.get(vip_server.url + "/__vip_smk/requests", timeout=T).status_code == 404


def test_request_counter_sees_requests_in_flight(make_server):
    srv = make_server(count_requests=True, latency_ms=300)
    srv.reset_request_counts()
    h = {"apikey": srv.api_key}
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda _: requests.get(srv.url + "/rest/platform", headers=h, timeout=T).status_code,
                              range(6)))
    assert codes == [200] * 6
    counts = srv.request_counts()
    assert counts["total"] == 6 and counts["in_flight"] == 0
    assert 2 <= counts["max_in_flight"] <= 6, counts  # 6 requests of 300 ms sent at once overlap
    srv.reset_request_counts()
    assert srv.request_counts()["max_in_flight"] == 0


def test_no_faults_by_default(vip_server):
    h = {"apikey": vip_server.api_key}
    codes = {requests.get(vip_server.url + "/rest/platform", headers=h, timeout=T).status_code
             for _ in range(50)}
    assert codes == {200}


def test_apps_run_with_the_server_interpreter_without_python_on_path(make_server, tmp_path, monkeypatch):
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "which.json").write_text(json.dumps({
        "name": "WhichPython", "tool-version": "1", "schema-version": "0.5", "description": "d",
        "command-line": "python3 -c 'import sys; print(sys.prefix)' > [OUT]",
        "inputs": [], "output-files": [{"id": "out", "name": "o", "path-template": "prefix.txt",
                                        "value-key": "[OUT]"}]}))
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no python3 at all for the server and its jobs
    srv = make_server(apps_dirs=[apps])
    a = Api(srv.url, srv.users["alice"])
    for pipeline, inputs in (("Sleep/1.0", {"duration": 0}), ("WhichPython/1", {})):
        ex = a.wait(a.launch(pipeline, inputs)["identifier"])
        assert ex["status"] == "Finished", (ex, a.get(f"/executions/{ex['identifier']}/stderr").text)
    (out,) = ex["returnedFiles"]["out"]
    assert a.get(f"/path{out}?action=content").text.strip() == sys.prefix


def test_keys_not_in_process_list_nor_in_jobs(make_server, tmp_path):
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "env.json").write_text(json.dumps({
        "name": "Env", "tool-version": "1", "schema-version": "0.5", "description": "d",
        "command-line": "env > [OUT]", "inputs": [],
        "output-files": [{"id": "out", "name": "o", "path-template": "env.txt", "value-key": "[OUT]"}]}))
    srv = make_server(apps_dirs=[apps])
    keys = list(srv.users.values())
    cmdline = open(f"/proc/{srv.pid}/cmdline", "rb").read().decode()
    assert not any(k in cmdline for k in keys)
    a = Api(srv.url, srv.users["alice"])
    ex = a.wait(a.launch("Env/1", {})["identifier"])
    assert ex["status"] == "Finished"
    env = a.get(f"/path{ex['returnedFiles']['out'][0]}?action=content").text
    assert "VIP_SMK_JOB=" in env and not any(k in env for k in keys)
    log = (srv.data_dir / "server.log").read_text()
    assert not any(k in log for k in keys)


def _job_pids(eid):
    marker = f"VIP_SMK_JOB={eid}/".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                env = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
                state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and any(v.startswith(marker) for v in env):
                pids.append(int(entry))
    return pids


def test_crash_recovery_kills_orphans_and_reruns(make_server):
    srv = make_server(workers=1)
    a = Api(srv.url, srv.users["alice"])
    eid = a.launch("Sleep/1.0", {"duration": 20, "message": "after crash"})["identifier"]
    a.wait(eid, until=lambda e: e["jobs"]["1"]["status"] == "Running")
    deadline = time.monotonic() + 10
    while not _job_pids(eid):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    orphans = _job_pids(eid)
    srv.kill()  # SIGKILL: no clean-up at all
    assert all(os.path.exists(f"/proc/{p}") for p in orphans)  # the job outlived the server
    srv2 = make_server(data_dir=srv.data_dir, users=srv.user_specs, workers=1)
    b = Api(srv2.url, srv2.users["alice"])
    deadline = time.monotonic() + 10
    while any(p in _job_pids(eid) for p in orphans):
        assert time.monotonic() < deadline, "the orphaned job was not killed"
        time.sleep(0.05)
    ex = b.wait(eid, until=lambda e: e["jobs"]["1"]["status"] == "Running")
    assert ex["status"] == "Running"
    assert b.put(f"/executions/{eid}/kill").status_code == 204
    assert _job_pids(eid) == []


def test_second_server_process_on_same_data_dir_exits(make_server):
    srv = make_server()
    out = subprocess.run([sys.executable, "-m", "vip_smk.server", "--port", "0", "--data-dir", str(srv.data_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "already running" in out.stderr
    assert requests.get(srv.url + "/rest/platform", timeout=T).status_code == 200
    assert json.loads((srv.data_dir / "server.json").read_text())["pid"] == srv.pid


PARENT = """
import json, sys, time
from vip_smk.server import LocalServer
srv = LocalServer(sys.argv[1], users=[sys.argv[2]], workers=1, detach=sys.argv[3] == "detach")
srv.start(timeout=60)
print(json.dumps({"url": srv.url, "pid": srv.pid}), flush=True)
time.sleep(600)
"""


def _orphaned_server(tmp_path, detach):
    """A LocalServer started by a process killed -9 while an app runs: (server pid, app pids)."""
    user = f"alice:{os.urandom(9).hex()}"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "d"), user,
                               "detach" if detach else "attached"], stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(parent.stdout.readline())
        a = Api(info["url"], user.split(":")[1])
        eid = a.launch("Sleep/1.0", {"duration": 60})["identifier"]
        deadline = time.monotonic() + 15
        while not _job_pids(eid):
            assert time.monotonic() < deadline, "the app did not start"
            time.sleep(0.05)
        apps = _job_pids(eid)
    finally:
        parent.kill()  # SIGKILL: the parent cleans nothing up
        parent.wait(10)
    return info["pid"], apps


def test_server_of_a_killed_parent_stops_with_its_apps(tmp_path):
    from vip_smk.util import pid_alive

    server, apps = _orphaned_server(tmp_path, detach=False)
    deadline = time.monotonic() + 10
    while pid_alive(server) or any(pid_alive(p) for p in apps):
        if time.monotonic() > deadline:
            for p in [server, *apps]:
                with contextlib.suppress(OSError):
                    os.kill(p, 9)
            raise AssertionError("the server or its apps outlived the process that started them")
        time.sleep(0.05)
    assert not (tmp_path / "d" / "server.json").exists()  # a clean stop
    assert "parent process" in (tmp_path / "d" / "server.log").read_text()


def test_detached_server_outlives_its_parent(tmp_path):
    server, apps = _orphaned_server(tmp_path, detach=True)
    try:
        time.sleep(1.5)  # longer than the watch's period
        srv = LocalServer.attach(tmp_path / "d")
        assert srv is not None and srv.pid == server
        assert all(os.path.exists(f"/proc/{p}") for p in apps)
    finally:
        LocalServer.attach(tmp_path / "d").stop()

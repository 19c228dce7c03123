"""Local VIP server: executions, engine, kill, validation codes, max-running, and the
"Done when" scenario (upload -> launch -> wait -> results -> download -> delete, requests only)."""

from __future__ import annotations

import io
import os
import re
import secrets
import tarfile
import time
from pathlib import Path

import pytest
import requests
from vipapi import ACTIVE, Api, T

from vip_smk.server import LocalServer

CSV = b"t,x,y\n0,1,10\n1,2,20\n2,3,30\n3,4,40\n4,5,50\n"



@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """This module's own server: timing and worker availability do not depend on what other
    test modules left running on the shared ``vip_server``."""
    users = [f"{name}:{secrets.token_urlsafe(18)}" for name in ("alice", "bob")]
    # several executions at once per user: asks for more than a new VIP account's 1
    srv = LocalServer(tmp_path_factory.mktemp("vip-exec"), port=0, users=users, workers=2, max_running=0)
    srv.start(timeout=60)
    yield srv
    srv.stop()


@pytest.fixture
def api(server):
    return Api(server.url, server.users["alice"])


def upload_dir(api, n=1, content=CSV):
    d = f"/vip/Home/ex-{secrets.token_hex(4)}"
    assert api.put(f"/path{d}").status_code == 201
    files = []
    for i in range(n):
        p = f"{d}/subject{i:02d}.csv"
        assert api.put(f"/path{p}", data=content).status_code == 201
        files.append(p)
    return d, files


def assert_error(r, code, status=400):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert list(r.json()) == ["errorCode", "errorMessage"]
    assert r.json()["errorCode"] == code, r.json()
    return r.json()["errorMessage"]


def job_pids(eid):
    """Pids of live processes belonging to jobs of ``eid`` (marked in their environment)."""
    marker = f"VIP_SMK_JOB={eid}/".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(v.startswith(marker) for v in env.split(b"\0")):
            pids.append(int(entry))
    return pids


# ------------------------------------------------------------------ "Done when"
def test_done_when_scenario_requests_only(server, tmp_path):
    """A client written only from VIP's API: upload -> launch -> wait -> results -> download -> delete."""
    url = server.url + "/rest"
    h = {"apikey": server.users["alice"]}
    study = f"/vip/Home/API/study-{secrets.token_hex(3)}"
    for p in ("/vip/Home/API", study, f"{study}/INPUTS", f"{study}/OUTPUTS"):
        if not requests.get(f"{url}/path{p}?action=exists", headers=h, timeout=T).json()["exists"]:
            assert requests.put(f"{url}/path{p}/", headers=h, timeout=T).status_code == 201
    local = tmp_path / "in.csv"
    local.write_bytes(CSV)
    with open(local, "rb") as f:
        r = requests.put(f"{url}/path{study}/INPUTS/in.csv", headers={**h, "Content-Type": "application/octet-stream"},
                         data=f, timeout=T)
    assert r.status_code == 201
    r = requests.post(f"{url}/executions", headers=h, timeout=T, json={
        "name": "done when", "pipelineIdentifier": "TextStats/1.0",
        "inputValues": {"input_file": f"{study}/INPUTS/in.csv", "precision": 2},
        "resultsLocation": f"{study}/OUTPUTS"})
    assert r.status_code == 200, r.text
    ex = r.json()
    eid = ex["identifier"]
    assert re.fullmatch(r"workflow-[A-Za-z0-9]{6}", eid)
    assert ex["status"] in ("Ready", "Running") and ex["returnedFiles"] is None
    assert abs(ex["startDate"] - time.time() * 1000) < 60_000  # milliseconds
    deadline = time.monotonic() + 30
    while True:
        ex = requests.get(f"{url}/executions/{eid}", headers=h, timeout=T).json()
        if ex["status"] not in ACTIVE:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert ex["status"] == "Finished", ex
    assert ex["endDate"] >= ex["startDate"]
    assert ex["jobs"] == {"1": {"status": "Completed", "exitCode": 0, "exitMessage": "ok"}}
    (out,) = ex["returnedFiles"]["stats"]
    assert re.fullmatch(re.escape(f"{study}/OUTPUTS/") + r"\d\d-\d\d-\d{4}_\d\d:\d\d:\d\d/in\.csv\.stats\.txt", out)
    results = requests.get(f"{url}/executions/{eid}/results", headers=h, timeout=T).json()
    assert [(p["path"], p["executionId"], p["isDirectory"], p["exists"]) for p in results] == \
        [(out, eid, False, True)]
    r = requests.get(f"{url}/path{out}?action=content", headers=h, timeout=T, stream=True)
    dest = tmp_path / "stats.txt"
    with open(dest, "wb") as f:
        for chunk in r.iter_content(1 << 16):
            f.write(chunk)
    text = dest.read_text()
    assert "rows: 5" in text and "columns: 3" in text and "x: mean=3.00 min=1.00 max=5.00" in text
    assert results[0]["size"] == dest.stat().st_size
    assert "TextStats: 5 rows" in requests.get(f"{url}/executions/{eid}/stdout", headers=h, timeout=T).text
    assert requests.delete(f"{url}/path{study}", headers=h, timeout=T).status_code == 204
    Api(server.url, server.users["alice"]).gone(study)  # VIP deletes asynchronously


# ------------------------------------------------------------------ engine
def test_list_input_gives_one_job_per_file_and_tarballs(api):
    d, files = upload_dir(api, n=3)
    ex = api.launch("Smooth/1.0", {"input_file": files, "window": 2, "normalize": True},
                    resultsLocation=d)
    assert len(ex["jobs"]) == 3
    ex = api.wait(ex["identifier"])
    assert ex["status"] == "Finished", ex
    assert all(j["status"] == "Completed" and j["exitCode"] == 0 for j in ex["jobs"].values())
    outs = ex["returnedFiles"]["archive"]
    assert sorted(p.rsplit("/", 1)[1] for p in outs) == [f"subject{i:02d}.csv--w2.tgz" for i in range(3)]
    assert len({p.rsplit("/", 1)[0] for p in outs}) == 1  # one results folder
    data = api.get(f"/path{outs[0]}?action=content").content
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert sorted(tar.getnames()) == ["smoothed.csv", "summary.txt"]
        smoothed = tar.extractfile("smoothed.csv").read().decode().splitlines()
    assert smoothed[0] == "t,x,y" and smoothed[1] == "0,0,0" and smoothed[-1] == "1,1,1"


def test_cross_product_and_same_output_names_do_not_overwrite(api):
    ex = api.launch("Sleep/1.0", {"duration": [0, 0.1], "message": ["a", "b"]})
    assert len(ex["jobs"]) == 4
    ex = api.wait(ex["identifier"])
    assert ex["status"] == "Finished"
    logs = ex["returnedFiles"]["log"]
    assert len(logs) == 4 and len(set(logs)) == 4
    texts = sorted(api.get(f"/path{p}?action=content").text.split("\n")[0] for p in logs)
    assert texts == ["a", "a", "b", "b"]


def test_sleep_zero_is_quick_and_folders_are_unique(api):
    t0 = time.monotonic()
    e1 = api.launch("Sleep/1.0", {"duration": 0})
    e2 = api.launch("Sleep/1.0", {"duration": 0})
    e1, e2 = api.wait(e1["identifier"]), api.wait(e2["identifier"])
    assert time.monotonic() - t0 < 10
    assert e1["status"] == e2["status"] == "Finished"
    f1 = e1["returnedFiles"]["log"][0].rsplit("/", 1)[0]
    f2 = e2["returnedFiles"]["log"][0].rsplit("/", 1)[0]
    assert f1 != f2 and f1.startswith("/vip/Home/") and f2.startswith("/vip/Home/")


def test_failing_app_keeps_stderr(api):
    ex = api.launch("Fail/1.0", {"message": "boom here"})
    ex = api.wait(ex["identifier"])
    assert ex["status"] == "ExecutionFailed"
    assert ex["jobs"]["1"]["status"] == "Failed" and ex["jobs"]["1"]["exitCode"] == 1
    assert ex["returnedFiles"] == {}
    assert "boom here" in api.get(f"/executions/{ex['identifier']}/stderr").text
    assert "about to fail" in api.get(f"/executions/{ex['identifier']}/stdout").text
    assert api.get(f"/executions/{ex['identifier']}/results").json() == []


def test_list_count_and_delete_executions(server, api):
    ex = api.launch("Sleep/1.0", {"duration": 0}, name="listed one")
    api.wait(ex["identifier"])
    listed = api.get("/executions").json()
    mine = {e["identifier"]: e for e in listed}
    assert mine[ex["identifier"]]["name"] == "listed one"
    count = api.get("/executions/count")
    assert count.headers["content-type"].startswith("text/plain")
    assert int(count.text) == len(listed)
    bob = Api(server.url, server.users["bob"])
    assert ex["identifier"] not in {e["identifier"] for e in bob.get("/executions").json()}
    assert_error(bob.get(f"/executions/{ex['identifier']}"), 8000)
    # PUT .../delete with deleteFiles removes the results folder too
    out = api.get(f"/executions/{ex['identifier']}").json()["returnedFiles"]["log"][0]
    folder = out.rsplit("/", 1)[0]
    r = api.put(f"/executions/{ex['identifier']}/delete", json={"deleteFiles": True})
    assert r.status_code == 204
    assert_error(api.get(f"/executions/{ex['identifier']}"), 8000)
    assert api.get(f"/path{folder}?action=exists").json() == {"exists": False}
    assert int(api.get("/executions/count").text) == len(listed) - 1
    # DELETE keeps the files unless deleteFiles=true
    ex2 = api.wait(api.launch("Sleep/1.0", {"duration": 0})["identifier"])
    out2 = ex2["returnedFiles"]["log"][0]
    assert api.delete(f"/executions/{ex2['identifier']}").status_code == 204
    assert_error(api.get(f"/executions/{ex2['identifier']}"), 8000)
    assert api.get(f"/path{out2}?action=exists").json() == {"exists": True}


def test_kill_stops_the_processes(api):
    ex = api.launch("Sleep/1.0", {"duration": 60})
    eid = ex["identifier"]
    api.wait(eid, until=lambda e: e["jobs"]["1"]["status"] == "Running")
    deadline = time.monotonic() + 10
    while not job_pids(eid):
        assert time.monotonic() < deadline, "job process never seen"
        time.sleep(0.05)
    assert api.put(f"/executions/{eid}/kill").status_code == 204
    ex = api.get(f"/executions/{eid}").json()
    assert ex["status"] == "Killed"
    assert job_pids(eid) == []
    ex = api.wait(eid, until=lambda e: e["jobs"]["1"]["status"] == "Killed")
    assert ex["status"] == "Killed" and ex["endDate"] is not None
    assert api.put(f"/executions/{eid}/kill").status_code == 204  # idempotent
    done = api.wait(api.launch("Sleep/1.0", {"duration": 0})["identifier"])
    assert_error(api.put(f"/executions/{done['identifier']}/kill"), 8000)
    assert_error(api.put("/executions/workflow-XXXXXX/kill"), 8000)


# ------------------------------------------------------------------ validation
def test_launch_validation_codes(api):
    d, (f,) = upload_dir(api)

    def post(body):
        return api.post("/executions", json=body)

    ok = {"name": "ok", "pipelineIdentifier": "TextStats/1.0", "inputValues": {"input_file": f}}
    assert_error(post({**ok, "pipelineIdentifier": "TextStats"}), 8005)
    # VIP-portal's itest: a launch with {} is 8009 (a null required field of the Execution)
    assert_error(post({}), 8009)
    for field in ok:
        assert field in assert_error(post({k: v for k, v in ok.items() if k != field}), 8009)
    assert_error(post({**ok, "pipelineIdentifier": "NoSuch/1.0"}), 8007)
    assert_error(post({**ok, "name": "bad;name"}), 8019)
    assert_error(post({**ok, "name": ""}), 8019)
    msg = assert_error(post({**ok, "inputValues": {}}), 8018)
    assert "input_file" in msg
    msg = assert_error(post({**ok, "inputValues": {"input_file": f, "delimiter": "$"}}), 8009)
    assert "delimiter" in msg
    assert_error(post({**ok, "inputValues": {"input_file": f + "|rm"}}), 8009)
    assert_error(post({**ok, "inputValues": {"input_file": f, "delimiter": "a\nb"}}), 8009)
    msg = assert_error(post({**ok, "inputValues": {"input_file": d + "/absent.csv"}}), 8009)
    assert "absent.csv" in msg and "does not exist" in msg
    assert_error(post({**ok, "inputValues": {"input_file": f, "precision": "2.5"}}), 8009)
    assert_error(post({**ok, "inputValues": {"input_file": f, "precision": "many"}}), 8009)
    assert_error(post({**ok, "inputValues": {"input_file": f, "bogus": "1"}}), 8009)
    assert_error(post({**ok, "inputValues": {"input_file": []}}), 8009)
    assert_error(post({"name": "x", "pipelineIdentifier": "Smooth/1.0",
                       "inputValues": {"input_file": f, "normalize": "maybe"}}), 8009)
    assert_error(post({**ok, "inputValues": ["not", "a", "dict"]}), 8000)  # unreadable (Spring)
    assert_error(api.post("/executions", data=b"{not json"), 8000)
    assert_error(post({**ok, "resultsLocation": "/vip"}), 8013)
    assert_error(post({**ok, "resultsLocation": f}), 8020)
    assert_error(api.get("/executions/workflow-ZZZZZZ"), 8000)
    for sub in ("results", "stdout", "stderr"):
        assert_error(api.get(f"/executions/workflow-ZZZZZZ/{sub}"), 8000)
    # values with VIP's allowed punctuation pass
    ex = api.launch("Sleep/1.0", {"duration": "0", "message": "a-b_c (d) [e] ?&=+@:,."})
    assert api.wait(ex["identifier"])["status"] == "Finished"


def test_max_running_per_user(make_server):
    srv = make_server(max_running=1, workers=2)
    alice = Api(srv.url, srv.users["alice"])
    bob = Api(srv.url, srv.users["bob"])
    first = alice.launch("Sleep/1.0", {"duration": 30})
    r = alice.post("/executions", json={"name": "second", "pipelineIdentifier": "Sleep/1.0",
                                        "inputValues": {"duration": 0}})
    assert "Max" in assert_error(r, 2001)
    assert int(alice.get("/executions/count").text) == 1  # nothing was created
    other = bob.launch("Sleep/1.0", {"duration": 0})  # the limit is per user
    assert bob.wait(other["identifier"])["status"] == "Finished"
    assert alice.put(f"/executions/{first['identifier']}/kill").status_code == 204
    again = alice.launch("Sleep/1.0", {"duration": 0})
    assert alice.wait(again["identifier"])["status"] == "Finished"


# ------------------------------------------------------------------ VIP-portal's itests
def test_put_execution_renames_it(api):
    eid = api.launch("Sleep/1.0", {"duration": 0}, name="old name")["identifier"]
    full = {"pipelineIdentifier": "Sleep/1.0", "inputValues": {}}  # VIP reads a whole Execution
    r = api.put(f"/executions/{eid}", json={"name": "new name", "status": "Killed", **full})
    assert r.status_code == 200, r.text
    ex = r.json()
    assert ex["identifier"] == eid and ex["name"] == "new name"
    assert ex["status"] != "Killed"  # only the name is changed
    assert api.get(f"/executions/{eid}").json()["name"] == "new name"
    assert_error(api.put(f"/executions/{eid}", json={"name": "bad;name", **full}), 8019)
    assert api.get(f"/executions/{eid}").json()["name"] == "new name"
    assert_error(api.put("/executions/workflow-nope", json={"name": "x", **full}), 8000)


def test_put_execution_play_is_not_implemented(api):
    eid = api.launch("Sleep/1.0", {"duration": 0})["identifier"]
    assert_error(api.put(f"/executions/{eid}/play"), 8001)
    assert_error(api.put("/executions/workflow-nope/play"), 8001)  # VIP never looks it up

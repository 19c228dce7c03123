"""Local VIP server: VIP's limits by default and the options that change them; vip:dot job
expansion; results folders never shared; DELETE racing a job (issues 12, 13, 9)."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import secrets
import time
import zipfile

import pytest
from vipapi import ACTIVE, Api

CSV = "x,y\n1,10\n2,20\n3,30\n"


@pytest.fixture(scope="module")
def kind(tmp_path_factory):
    """A server with every kinder / configurable mode set (one worker: queues are visible)."""
    from vip_smk.server import LocalServer

    users = [f"{n}:{secrets.token_urlsafe(18)}" for n in ("alice", "bob")]
    srv = LocalServer(tmp_path_factory.mktemp("vip-kind"), port=0, users=users, workers=1,
                      max_running=0, list_limit=3, max_download_size=1000, md5=True, archive_uploads=True,
                      null_dates=0.5, seed=11, delete_delay_ms=1500)
    srv.start(timeout=60)
    yield srv
    srv.stop()


@pytest.fixture
def kapi(kind):
    return Api(kind.url, kind.users["alice"])


@pytest.fixture
def api(vip_server):
    return Api(vip_server.url, vip_server.users["alice"])


def folder(api, prefix="t"):
    d = f"/vip/Home/{prefix}-{secrets.token_hex(4)}"
    assert api.put(f"/path{d}").status_code == 201
    return d


def assert_error(r, code, status=400):
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["errorCode", "errorMessage"] and body["errorCode"] == code, body
    return body["errorMessage"]


# ------------------------------------------------------------------ defaults = VIP
def test_defaults_are_vips(api):
    info = api.get("/platform").json()
    assert info["defaultLimitListExecutions"] == 500
    d = folder(api, "strict")
    assert api.put(f"/path{d}/f.txt", data=b"abc").status_code == 201
    assert_error(api.get(f"/path{d}/f.txt?action=md5"), 8001)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "A")
    body = {"type": "Archive", "base64Content": base64.b64encode(buf.getvalue()).decode()}
    r = api.put(f"/path{d}/arch", json=body, headers={"Content-Type": "application/carmin+json"})
    assert "archive upload not supported" in assert_error(r, 8000)
    listing = api.get(f"/path{d}?action=list").json()
    assert [isinstance(p["lastModificationDate"], int) for p in listing] == [True]


def test_default_serve_is_a_new_vip_account(tmp_path):
    """`vip-smk serve` with no option: maxSizeDirectTransfer 15000000 and one execution at a
    time per user (a second concurrent launch: 2001), as a new VIP account."""
    import os
    import subprocess
    import sys

    key = secrets.token_urlsafe(18)
    env = {**os.environ, "VIP_SMK_SERVE_USERS": f"alice:{key}"}
    proc = subprocess.Popen([sys.executable, "-m", "vip_smk.server", "--port", "0", "--data-dir",
                             str(tmp_path / "d")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    try:
        url = proc.stdout.readline().split("VIP portal URL: ", 1)[1].strip()
        a = Api(url, key)
        assert a.get("/platform").json()["maxSizeDirectTransfer"] == 15_000_000
        first = a.launch("Sleep/1.0", {"duration": 30}, name="first")["identifier"]
        r = a.post("/executions", json={"name": "second", "pipelineIdentifier": "Sleep/1.0",
                                        "inputValues": {"duration": 0}})
        assert "(1)" in assert_error(r, 2001)
        assert [e["identifier"] for e in a.get("/executions").json()] == [first]  # nothing queued
        assert a.put(f"/executions/{first}/kill").status_code == 204
        a.wait(first)
        assert a.launch("Sleep/1.0", {"duration": 0}, name="after")["status"] in ("Ready", "Running")
    finally:
        proc.terminate()
        proc.wait(15)


def test_default_local_server_is_a_new_vip_account(make_server):
    srv = make_server(vip_defaults=True)  # LocalServer's defaults
    a = Api(srv.url, srv.users["alice"])
    assert a.get("/platform").json()["maxSizeDirectTransfer"] == 15_000_000
    a.launch("Sleep/1.0", {"duration": 30}, name="first")
    r = a.post("/executions", json={"name": "second", "pipelineIdentifier": "Sleep/1.0",
                                    "inputValues": {"duration": 0}})
    assert_error(r, 2001)
    b = Api(srv.url, srv.users["bob"])  # the limit is per user
    assert b.launch("Sleep/1.0", {"duration": 0}, name="bobs")["identifier"]


# ------------------------------------------------------------------ options
def test_platform_reports_the_limits(kapi):
    info = kapi.get("/platform").json()
    assert info["defaultLimitListExecutions"] == 3
    assert info["maxSizeDirectTransfer"] == 1000


def test_md5_and_archive_options(kapi):
    d = folder(kapi, "opts")
    assert kapi.put(f"/path{d}/f.txt", data=b"abc").status_code == 201
    assert kapi.get(f"/path{d}/f.txt?action=md5").json() == {"md5": hashlib.md5(b"abc").hexdigest()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a/b.txt", "B")
    body = {"type": "Archive", "base64Content": base64.b64encode(buf.getvalue()).decode()}
    r = kapi.put(f"/path{d}/arch", json=body, headers={"Content-Type": "application/carmin+json"})
    assert r.status_code == 201, r.text
    assert kapi.get(f"/path{d}/arch/a/b.txt?action=content").content == b"B"


def test_download_size_limit(kapi):
    d = folder(kapi, "big")
    assert kapi.put(f"/path{d}/ok.bin", data=b"x" * 1000).status_code == 201
    assert kapi.put(f"/path{d}/big.bin", data=b"x" * 1001).status_code == 201
    assert kapi.get(f"/path{d}/ok.bin?action=content").content == b"x" * 1000
    msg = assert_error(kapi.get(f"/path{d}/big.bin?action=content"), 8000)
    assert f"{d}/big.bin" in msg and "1001" in msg and "1000" in msg
    # the file itself is still listed, with its size (a client can check before downloading)
    sizes = {p["path"]: p["size"] for p in kapi.get(f"/path{d}?action=list").json()}
    assert sizes[f"{d}/big.bin"] == 1001


def test_null_dates_for_a_share_of_files_deterministic(kind, kapi):
    d = folder(kapi, "dates")
    assert kapi.put(f"/path{d}/sub").status_code == 201
    for i in range(40):
        assert kapi.put(f"/path{d}/f{i}.txt", data=b"x").status_code == 201
    listing = kapi.get(f"/path{d}?action=list").json()
    files = {p["path"]: p["lastModificationDate"] for p in listing if not p["isDirectory"]}
    nulls = [p for p, date in files.items() if date is None]
    assert 8 <= len(nulls) <= 32, nulls  # about half, with seed 11
    assert all(isinstance(v, int) for v in files.values() if v is not None)
    assert [p["lastModificationDate"] is not None for p in listing if p["isDirectory"]] == [True]
    # the same files every time, in properties too
    again = {p["path"]: p["lastModificationDate"] for p in kapi.get(f"/path{d}?action=list").json()}
    assert [p for p in files if again[p] is None] == nulls
    assert kapi.get(f"/path{nulls[0]}?action=properties").json()["lastModificationDate"] is None


def test_delete_is_asynchronous(kapi):
    d = folder(kapi, "del")
    assert kapi.put(f"/path{d}/f.txt", data=b"x").status_code == 201
    t0 = time.monotonic()
    assert kapi.delete(f"/path{d}").status_code == 204
    assert kapi.get(f"/path{d}?action=exists").json() == {"exists": True}  # not yet (1.5 s)
    kapi.gone(d)
    assert time.monotonic() - t0 >= 1.4


def test_list_limit_gives_the_newest(kapi):
    ids = [kapi.launch("Sleep/1.0", {"duration": 0}, name=f"l{i}")["identifier"] for i in range(5)]
    listed = [e["identifier"] for e in kapi.get("/executions").json()]
    assert listed == ids[::-1][:3]
    assert int(kapi.get("/executions/count").text) >= 5
    for eid in ids:
        kapi.wait(eid)


def test_queued_execution_is_ready_then_running(kapi):
    first = kapi.launch("Sleep/1.0", {"duration": 1.5}, name="first")["identifier"]
    kapi.wait(first, until=lambda e: e["status"] == "Running")
    second = kapi.launch("Sleep/1.0", {"duration": 0}, name="second")
    assert second["status"] == "Ready"  # one worker, busy: VIP's queued state
    ex = kapi.get(f"/executions/{second['identifier']}").json()
    assert ex["status"] == "Ready" and ex["returnedFiles"] is None
    seen = set()
    ex = kapi.wait(second["identifier"], until=lambda e: seen.add(e["status"]) or e["status"] not in ACTIVE)
    assert ex["status"] == "Finished"
    assert "Ready" in seen
    assert kapi.wait(first)["status"] == "Finished"


def test_storage_delay(make_server):
    srv = make_server(storage_delay_ms=300)
    a = Api(srv.url, srv.api_key)
    d = folder(a, "slow")
    t0 = time.monotonic()
    assert a.put(f"/path{d}/f.txt", data=b"x").status_code == 201
    t1 = time.monotonic()
    assert a.get(f"/path{d}/f.txt?action=content").content == b"x"
    t2 = time.monotonic()
    a.get(f"/path{d}?action=list")
    assert t1 - t0 >= 0.3 and t2 - t1 >= 0.3


# ------------------------------------------------------------------ vip:dot (issue 13)
def _pairs(api, n):
    d = folder(api, "pairs")
    a, b = [], []
    for i in range(n):
        for kind, factor in (("a", 1), ("b", 2)):
            body = "x,y\n" + "".join(f"{i + k},{(i + k) * factor}\n" for k in range(3))
            path = f"{d}/sub{i}_{kind}.csv"
            assert api.put(f"/path{path}", data=body.encode()).status_code == 201
            (a if kind == "a" else b).append(path)
    return d, a, b


def test_vip_dot_pairs_lists_and_crosses_the_rest(api):
    p = api.get("/pipelines/PairStats/1.0").json()
    assert {x["name"] for x in p["parameters"]} == {"image_a", "image_b", "precision"}
    d, a, b = _pairs(api, 3)
    ex = api.launch("PairStats/1.0", {"image_a": a, "image_b": b}, resultsLocation=f"{d}/out")
    ex = api.wait(ex["identifier"])
    assert ex["status"] == "Finished", ex
    assert len(ex["jobs"]) == 3  # one per subject, not 3 x 3
    for i, out in enumerate(sorted(ex["returnedFiles"]["report"])):
        text = api.get(f"/path{out}?action=content").text
        assert f"sub{i}_a.csv" in text and f"sub{i}_b.csv" in text  # paired, never crossed
        assert f"y: mean_a={i + 1:.3f} mean_b={2 * (i + 1):.3f}" in text
    # a list given to an input outside vip:dot is crossed with the pairs
    ex = api.launch("PairStats/1.0", {"image_a": a[:2], "image_b": b[:2], "precision": [1, 2]},
                    resultsLocation=f"{d}/out")
    ex = api.wait(ex["identifier"])
    assert ex["status"] == "Finished" and len(ex["jobs"]) == 4


def test_vip_dot_unequal_lists_refused_at_launch(api):
    d, a, b = _pairs(api, 3)
    before = int(api.get("/executions/count").text)
    r = api.post("/executions", json={"name": "bad", "pipelineIdentifier": "PairStats/1.0",
                                      "inputValues": {"image_a": a, "image_b": b[:2]},
                                      "resultsLocation": f"{d}/out"})
    msg = assert_error(r, 8009)
    assert "vip:dot" in msg and "'image_a' 3" in msg and "'image_b' 2" in msg
    assert int(api.get("/executions/count").text) == before
    assert api.get(f"/path{d}/out?action=exists").json() == {"exists": False}


def test_vip_dot_in_an_apps_dir_descriptor(make_server, tmp_path):
    import json

    desc = {
        "name": "Four", "tool-version": "1", "schema-version": "0.5",
        "command-line": "echo [A] [B] [C] [D] [E] > out.txt",
        "inputs": [{"id": k, "name": k, "type": "String", "value-key": f"[{k.upper()}]"}
                   for k in "abcde"],
        "output-files": [{"id": "out", "name": "out", "path-template": "out.txt"}],
        "custom": {"vip:dot": ["a", "b", "c", "d"], "vip:cross": ["e"]},
    }
    (tmp_path / "four.json").write_text(json.dumps(desc))
    bad = dict(desc, name="Bad", custom={"vip:dot": ["a", "nope"]})  # VIP refuses it at import
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    srv = make_server(apps_dirs=[tmp_path])
    a = Api(srv.url, srv.api_key)
    ids = [p["identifier"] for p in a.get("/pipelines").json()]
    assert "Four/1" in ids and "Bad/1" not in ids
    values = {k: [f"{k}{i}" for i in range(3)] for k in "abcd"}
    ex = a.wait(a.launch("Four/1", {**values, "e": ["x", "y"]})["identifier"])
    assert ex["status"] == "Finished" and len(ex["jobs"]) == 6  # 3 pairs x 2, not 3**4 x 2
    texts = sorted(a.get(f"/path{p}?action=content").text.strip()
                   for p in ex["returnedFiles"]["out"])
    assert texts == sorted(f"a{i} b{i} c{i} d{i} {e}" for i in range(3) for e in "xy")


# ------------------------------------------------------------------ issue 9, items 9 and 10
def test_results_folder_never_reused(api):
    """Two executions in the same second with the same resultsLocation, the first one's folder
    deleted in between: each gets its own dated folder (item 9)."""
    same_second = 0
    for _ in range(6):
        loc = folder(api, "reuse") + "/OUTPUTS"
        while time.time() % 1 > 0.3:  # start early in a second
            time.sleep(0.02)
        first = api.launch("Sleep/1.0", {"duration": 0}, resultsLocation=loc)
        (f1,) = [p["path"] for p in api.get(f"/path{loc}?action=list").json()]
        assert api.delete(f"/path{f1}").status_code == 204
        api.gone(f1)
        second = api.launch("Sleep/1.0", {"duration": 0}, resultsLocation=loc)
        e1, e2 = api.wait(first["identifier"]), api.wait(second["identifier"])
        assert e1["status"] == e2["status"] == "Finished"
        (o1,), (o2,) = e1["returnedFiles"]["log"], e2["returnedFiles"]["log"]
        assert o1.rsplit("/", 1)[0] != o2.rsplit("/", 1)[0], (o1, o2)
        if first["startDate"] // 1000 == second["startDate"] // 1000:
            same_second += 1
            if same_second >= 2:
                break
    assert same_second >= 1, "could not launch two executions within one second"


def test_delete_while_a_job_writes_into_the_folder(vip_server, api):
    """DELETE of a results folder while jobs move their outputs into it: always 204 (or 'does
    not exist' while it is gone), and no job fails for it (item 10)."""
    import threading

    d = folder(api, "race")
    files = []
    for i in range(40):
        assert api.put(f"/path{d}/in{i}.csv", data=CSV.encode()).status_code == 201
        files.append(f"{d}/in{i}.csv")
    loc = f"{d}/OUTPUTS"
    eid = api.launch("Smooth/1.0", {"input_file": files}, resultsLocation=loc)["identifier"]
    (target,) = [p["path"] for p in api.get(f"/path{loc}?action=list").json()]
    answers, over = [], threading.Event()

    def hammer():
        mine = Api(vip_server.url, vip_server.users["alice"])
        while not over.is_set():
            r = mine.delete(f"/path{target}")
            answers.append(r.status_code if r.status_code == 204 else r.json()["errorMessage"])

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        ex = api.wait(eid, timeout=60)
    finally:
        over.set()
        for t in threads:
            t.join()
    assert ex["status"] == "Finished", ex
    assert all(j["exitMessage"] == "ok" for j in ex["jobs"].values()), ex["jobs"]
    assert 204 in answers
    assert [a for a in answers if a != 204 and not re.search("does not exist", a)] == []

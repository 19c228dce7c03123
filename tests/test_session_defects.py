"""VipSession against the local VIP server: each vip-client 0.1.10 defect that VipSession fixes,
and those found trying it as a new user (issue 9)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path, PurePosixPath

import pytest
from relays import Relay
from session_helpers import API, _backup, _local_outputs, _name, session_dir

from vip_smk import VipClient, VipSession

vip = pytest.fixture(name="vip")(session_dir)

# ---- fixed defects of vip-client 0.1.10 (reference section 7) ----------------------------------


def _ready_when_queued(seen: list[str]):
    """A ``rewrite`` for :class:`relays.Relay`: an execution whose jobs are all still queued is
    reported ``Ready``, the way VIP maps its Queued state (reference 2.3); the local server itself
    reports it ``Running``. Every execution status relayed is appended to ``seen``."""

    def rewrite(path: str, response, data: bytes) -> bytes:
        if not re.match(r"^/rest/executions(/[^/?]+)?$", path.split("?")[0]) or \
                not response.headers.get("content-type", "").startswith("application/json"):
            return data
        doc = json.loads(data)
        for ex in doc if isinstance(doc, list) else [doc]:  # listing or one execution
            jobs = ex.get("jobs")
            if ex.get("status") == "Running" and jobs and \
                    all(j.get("status") == "Queued" for j in jobs.values()):
                ex["status"] = "Ready"
            seen.append(str(ex.get("status")))
        return json.dumps(doc).encode()

    return rewrite


def test_defect4_queued_counts_as_running(vip, make_server):
    """#4: a queued execution (VIP status Ready) counts as running: monitor_workflows waits for
    it and finish() refuses to delete its data (vip-client ended monitoring and deleted)."""
    srv = make_server(workers=1, max_running=0)  # queued by the worker, not refused (2001)
    seen: list[str] = []
    relay = Relay(srv.url, rewrite=_ready_when_queued(seen))
    try:
        direct = VipClient(srv.url, api_key=srv.api_key)
        VipSession.init(api_key=srv.api_key, vip_portal_url=relay.url, verbose=False)
        blocker = VipSession(_name("blocker"), input_dir="data", pipeline_id="Sleep/1.0",
                             input_settings={"duration": 2.5}).launch_pipeline()
        time.sleep(0.3)  # the blocker occupies the only worker
        s = VipSession(_name("queued"), input_dir="data", pipeline_id="Sleep/1.0",
                       input_settings={"duration": 0.1})
        s.launch_pipeline()
        wid, = s.workflows
        s.finish()  # refused: the queued execution may still produce data
        assert s.workflows[wid]["status"] == "Ready"
        assert direct.exists(str(s.vip_output_dir))
        s.monitor_workflows(refresh_time=0.1)
        assert s.workflows[wid]["status"] == "Finished"
        assert "Ready" in seen and "Running" in seen
        s.download_outputs()
        assert [p.name for p in _local_outputs(s.output_dir)] == ["sleep.txt"]
        s.finish()
        assert not direct.exists(f"{API}/{s.session_name}")
        blocker.monitor_workflows(refresh_time=0.1).finish()
        # #11: no global state: a session with its own client talks to another server while
        # the class default (set by init) still points to this one
        other = VipSession(_name("other"), input_dir="data", client=vip.client).upload_inputs()
        assert vip.client.exists(str(other.vip_input_dir))
        assert not direct.exists(str(other.vip_input_dir))
        assert VipSession._default_client.url == relay.url
        other.finish()
        direct.close()
    finally:
        relay.close()


def test_defect2_invalid_characters_value_error(vip):
    """#2: invalid characters raise ValueError naming parameter and value (not TypeError)."""
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    with pytest.raises(ValueError, match=r"delimiter='a;b'.*;"):
        VipSession(input_settings={"input_file": "data/a.csv", "delimiter": "a;b"})
    s = VipSession(_name("chars"), pipeline_id="TextStats/1.0")
    with pytest.raises(ValueError, match=r"delimiter='\$x'"):
        s.launch_pipeline(input_settings={"input_file": "/vip/Home/x.csv", "delimiter": "$x"})
    with pytest.raises(ValueError, match="Missing input value"):
        VipSession(input_settings={"input_file": ""})


def test_validation_before_any_upload(vip):
    """Required parameters, Boolean/Int64/Double values, unknown names and File inputs are
    checked before anything is uploaded (nothing on VIP after each failure)."""
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)

    def fresh(pid, settings):
        return VipSession(_name("val"), input_dir="data", pipeline_id=pid, input_settings=settings)

    cases = [
        ("TextStats/1.0", {"precision": 2}, AttributeError, "Missing input parameter.*input_file"),
        ("TextStats/1.0", {"input_file": "data/a.csv", "precison": 2}, ValueError,
         "Unknown input parameter.*precison.*Valid parameters: delimiter, input_file, precision"),
        ("TextStats/1.0", {"input_file": "data/a.csv", "precision": "two"}, ValueError,
         r"precision \(Int64\): 'two'"),
        ("TextStats/1.0", {"input_file": "data/a.csv", "precision": 2.5}, ValueError, "Int64"),
        ("Smooth/1.0", {"input_file": "data/a.csv", "normalize": "yes"}, ValueError,
         r"normalize \(Boolean\): 'yes'"),
        ("Sleep/1.0", {"duration": "soon"}, ValueError, r"duration \(Double\): 'soon'"),
        ("TextStats/1.0", {"input_file": ["data/a.csv", "data/missing.csv"]}, FileNotFoundError,
         "missing.csv"),
        ("TextStats/1.0", {"input_file": "/vip/Home/API/nowhere/x.csv"}, FileNotFoundError,
         "nowhere/x.csv"),
    ]
    for pid, settings, exc, pattern in cases:
        s = fresh(pid, settings)
        with pytest.raises(exc, match=pattern):
            s.upload_inputs()
        assert not vip.client.exists(f"{API}/{s.session_name}"), (pid, settings)
        assert not s.output_dir.exists() or not vip.client.exists(str(s.vip_input_dir))
    # Python booleans and numeric strings are accepted (vip-client refused True)
    s = fresh("Smooth/1.0", {"input_file": "data/a.csv", "normalize": True, "window": "2"})
    assert s.input_settings["normalize"] == "true"
    s.upload_inputs()
    assert vip.client.exists(str(s.vip_input_dir))
    s.finish()


def test_file_inputs_checked_with_one_listing_per_directory(vip, make_server):
    """#12: File inputs are checked with one `action=list` per directory, never one request per
    file (counted by the server)."""
    srv = make_server(count_requests=True)
    data = vip.root / "many"
    data.mkdir()
    files = []
    for i in range(12):
        (data / f"f{i:02d}.csv").write_text(f"x\n{i}\n")
        files.append(f"many/f{i:02d}.csv")
    VipSession.init(api_key=srv.api_key, vip_portal_url=srv.url, verbose=False)
    s = VipSession(_name("many"), input_dir="many", pipeline_id="TextStats/1.0").upload_inputs()
    s.input_settings = {"input_file": files}
    s._pipeline(), s.client.descriptor("TextStats/1.0")  # both asked once per client
    srv.reset_request_counts()
    s._check_input_settings(location="vip")
    assert srv.request_counts()["routes"] == {"GET /rest/path/{path}?action=list": 1}
    s.finish()


def test_changed_inputs_resent_and_partial_downloads_refetched(vip):
    """#6: a changed input file is re-sent; #5: failed (empty) or truncated downloads are
    fetched again on the next call."""
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    s = VipSession(_name("incr"), input_dir="data", pipeline_id="TextStats/1.0",
                   input_settings={"input_file": ["data/a.csv", "data/b.csv"]})
    s.upload_inputs()
    time.sleep(0.05)
    (vip.root / "data" / "b.csv").write_text("x,y\n11,22\n33,44\n")  # same size, new content
    s.upload_inputs()
    remote_b = vip.root / "remote_b.csv"
    vip.client.download(f"{s.vip_input_dir}/b.csv", remote_b)
    assert remote_b.read_text() == "x,y\n11,22\n33,44\n"
    (vip.root / "data" / "a.csv").write_text("x,y\n100,200\n")  # same name, new size
    s.upload_inputs()
    s.launch_pipeline().monitor_workflows(refresh_time=0.1).download_outputs()
    outs = {p.name: p for p in _local_outputs(s.output_dir)}
    assert set(outs) == {"a.csv.stats.txt", "b.csv.stats.txt"}
    good = {k: p.read_bytes() for k, p in outs.items()}
    assert b"rows: 1" in good["a.csv.stats.txt"]  # the jobs saw the re-sent files
    assert b"x: mean=22.000" in good["b.csv.stats.txt"]
    outs["a.csv.stats.txt"].write_bytes(b"")  # what vip-client leaves after a failure
    outs["b.csv.stats.txt"].write_bytes(good["b.csv.stats.txt"][:5])  # truncated
    s.download_outputs()
    assert {k: p.read_bytes() for k, p in outs.items()} == good
    outs["b.csv.stats.txt"].unlink()
    VipSession(s.session_name).download_outputs()  # also after a resume
    assert outs["b.csv.stats.txt"].read_bytes() == good["b.csv.stats.txt"]
    s.finish()


def test_monitor_progress_and_timeout(vip, capsys):
    """monitor_workflows shows jobs done/total (tqdm) and returns after `timeout`."""
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url)
    s = VipSession(_name("mon"), input_dir="data", pipeline_id="Sleep/1.0",
                   input_settings={"duration": [0.2, 30]})  # two jobs, one long
    s.launch_pipeline()
    t0 = time.monotonic()
    s.monitor_workflows(refresh_time=0.1, timeout=1.5)
    elapsed = time.monotonic() - t0
    assert 1.4 <= elapsed < 10
    err = capsys.readouterr().err
    assert "1/2" in err and "job" in err  # the progress bar: jobs done / total
    wid, = s.workflows
    assert s.workflows[wid]["status"] == "Running"
    s.finish()  # refused while running
    assert vip.client.exists(str(s.vip_output_dir))
    vip.client.kill(wid)
    s.monitor_workflows(refresh_time=0.1, timeout=20)
    assert s.workflows[wid]["status"] == "Killed"
    s.finish()
    assert not vip.client.exists(f"{API}/{s.session_name}")


def test_dataset_problems_refused_before_any_upload(vip):
    """#6: names VIP would rename (spaces, non-ASCII) and empty files are refused before
    anything is sent (vip-client re-sent renamed files forever and failed on empty ones)."""
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    for bad, content, pattern in (("my file.csv", "x\n1\n", "would rename.*my file.csv"),
                                  ("empty.csv", "", "Empty file.*empty.csv")):
        (vip.root / "data" / bad).write_text(content)
        s = VipSession(_name("bad"), input_dir="data")
        with pytest.raises(ValueError, match=pattern):
            s.upload_inputs()
        assert not vip.client.exists(str(s.vip_input_dir))
        (vip.root / "data" / bad).unlink()


def test_vip_errors_are_runtime_errors_and_hide_the_key(vip):
    """vip-client raises RuntimeError for VIP errors: ours are RuntimeErrors too, keep their
    type, give vip-client's hint, and never show the key (#10: 8002/401 is a bad key)."""
    from vip_smk.core.client import AuthError

    bad_key = "not-a-valid-key-" + uuid.uuid4().hex
    with pytest.raises(RuntimeError, match=r"init\(\) with a valid API key") as info:
        VipSession.init(api_key=bad_key, vip_portal_url=vip.url)
    assert isinstance(info.value, AuthError)
    assert bad_key not in str(info.value)


def test_resume_from_another_directory(vip, tmp_path_factory, monkeypatch):
    """#11: the backup holds absolute local paths and no temp file lands in the CWD: a session
    resumes from another working directory by its output_dir."""
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    s = VipSession(_name("cwd"), input_dir="data").upload_inputs()
    backup = _backup(s.output_dir)
    assert Path(backup["local_input_dir"]).is_absolute()
    assert Path(backup["local_output_dir"]).is_absolute()
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    r = VipSession(output_dir=s.output_dir)
    assert r.session_name == s.session_name and r.input_dir == s.input_dir
    r.upload_inputs()  # nothing changed: nothing sent, still works from here
    assert list(elsewhere.iterdir()) == []
    r.finish()
    assert not vip.client.exists(f"{API}/{s.session_name}")


def test_cross_resume_with_vip_client(vip, vip_client_python):
    """With VIP's own client (vip-client 0.1.10, in another interpreter): a session started by
    VipSession is downloaded and finished by vip-client, and one started by vip-client is
    monitored, downloaded and finished by VipSession."""
    ours, theirs = _name("ours"), _name("theirs")
    settings = {"input_file": "data/a.csv", "precision": "1"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIP_")}

    def vip_client(code: str) -> None:
        head = (f"from vip_client import VipSession\n"
                f"VipSession.init(api_key={vip.key!r}, vip_portal_url={vip.url!r}, verbose=False)\n")
        proc = subprocess.run([vip_client_python, "-c", head + textwrap.dedent(code)],
                              cwd=vip.root, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr

    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    VipSession(ours, input_dir="data", pipeline_id="TextStats/1.0", input_settings=settings
               ).upload_inputs().launch_pipeline().monitor_workflows(refresh_time=0.1)
    vip_client(f"VipSession({ours!r}).download_outputs().finish()")
    assert [p.name for p in _local_outputs(f"vip_outputs/{ours}")] == ["a.csv.stats.txt"]
    assert _backup(f"vip_outputs/{ours}")["vip_smk"]  # our extra key survived vip-client's saves
    assert not vip.client.exists(f"{API}/{ours}")

    vip_client(f"VipSession({theirs!r}, input_dir='data', pipeline_id='TextStats/1.0', "
               f"input_settings={settings!r}).upload_inputs().launch_pipeline()")
    VipSession(theirs).monitor_workflows(refresh_time=0.1).download_outputs().finish()
    assert [p.name for p in _local_outputs(f"vip_outputs/{theirs}")] == ["a.csv.stats.txt"]
    assert not vip.client.exists(f"{API}/{theirs}")


def test_finish_keep_input_keep_output(vip):
    """#3 (vip-client's VipLauncher inverted keep_output): keep_output keeps exactly the outputs,
    keep_input exactly the inputs; both keep everything; local files are never touched."""
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    s = VipSession(_name("keep"), input_dir="data", pipeline_id="TextStats/1.0",
                   input_settings={"input_file": "data/b.csv"})
    s.run_session(refresh_time=0.1)
    vin, vout = str(s.vip_input_dir), str(s.vip_output_dir)
    s.finish(keep_input=True, keep_output=True)
    assert vip.client.exists(vin) and vip.client.exists(vout)
    s.finish(keep_output=True)
    assert not vip.client.exists(vin) and vip.client.exists(vout)
    assert all(w["status"] == "Finished" for w in s.workflows.values())  # outputs still there
    s.upload_inputs()
    s.finish(keep_input=True)
    assert vip.client.exists(vin) and not vip.client.exists(vout)
    assert all(w["status"] == "Removed" for w in s.workflows.values())
    s.finish()
    assert not vip.client.exists(f"{API}/{s.session_name}")
    assert [p.name for p in _local_outputs(s.output_dir)] == ["b.csv.stats.txt"]


def test_download_unzip_later_and_failed_workflow(vip):
    """Tarballs kept with unzip=False are extracted by a later download_outputs(); a failed
    execution is reported with its status and has nothing to download."""
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    s = VipSession(_name("tgz"), input_dir="data", pipeline_id="Smooth/1.0",
                   input_settings={"input_file": "data/a.csv"})
    s.run_session(refresh_time=0.1, unzip=False)
    tgz, = _local_outputs(s.output_dir)
    assert tgz.name == "a.csv--w3.tgz" and tgz.is_file()
    s.download_outputs()
    assert tgz.is_dir() and (tgz / "smoothed.csv").is_file()
    s.finish()
    f = VipSession(_name("fail"), input_dir="data", pipeline_id="Fail/1.0",
                   input_settings={"message": "boom"})
    f.upload_inputs().launch_pipeline().monitor_workflows(refresh_time=0.1)
    assert [w["status"] for w in f.workflows.values()] == ["ExecutionFailed"]
    f.download_outputs()
    assert _local_outputs(f.output_dir) == []
    f.finish()
    assert not vip.client.exists(f"{API}/{f.session_name}")


def test_get_inputs_rules(vip):
    """get_inputs as in vip-client: copies pipeline/settings on request, no-op when already
    shared, FileExistsError if the session has its own inputs on VIP, FileNotFoundError if the
    other session's inputs are gone."""
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    a = VipSession(_name("a"), input_dir="data", pipeline_id="TextStats/1.0",
                   input_settings={"input_file": "data/a.csv"}).upload_inputs()
    b = VipSession(_name("b")).get_inputs(a, get_pipeline=True, get_settings=True)
    assert b.pipeline_id == a.pipeline_id and b.input_settings == a.input_settings
    assert b.get_inputs(a) is b  # already shared: no-op
    c = VipSession(_name("c"), input_dir="data").upload_inputs()
    with pytest.raises(FileExistsError):
        c.get_inputs(a)
    c.finish()
    b.finish()
    a.finish()
    with pytest.raises(FileNotFoundError):
        VipSession(_name("d")).get_inputs(a)
    assert not vip.client.exists(f"{API}/{a.session_name}")


# ---- issue 9: defects found trying VipSession as a new user --------------------------------------


def test_issue9_4_resumed_session_goes_on_monitoring_its_execution(vip):
    """#4: `run_session` killed (-9) while monitoring, then the same script again: the session
    adopts the execution it launched instead of launching a second one (vip-client 0.1.10
    launches a second one: 2 workflows in session_data.json)."""
    name = _name("kill")
    code = ("import os\nfrom vip_smk import VipSession\n"
            "VipSession.init(api_key='VIP_API_KEY', vip_portal_url=os.environ['VIP_URL'])\n"
            f"VipSession({name!r}, input_dir='data', pipeline_id='Sleep/1.0', "
            "input_settings={'duration': 3}).run_session(refresh_time=1)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIP_")}
    env.update(VIP_URL=vip.url, VIP_API_KEY=vip.key)
    first = subprocess.Popen([sys.executable, "-c", code], cwd=vip.root, env=env,
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = ""
    while "=== MONITOR WORKFLOWS ===" not in seen:
        line = first.stderr.readline()
        assert line, seen
        seen += line
    first.kill()
    first.wait()
    wid, = _backup(f"vip_outputs/{name}")["workflows"]
    second = subprocess.run([sys.executable, "-c", code], cwd=vip.root, env=env,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "Session restored" in second.stderr and "adopted" in second.stderr
    wfs = _backup(f"vip_outputs/{name}")["workflows"]
    assert list(wfs) == [wid] and wfs[wid]["status"] == "Finished"
    assert [p.name for p in _local_outputs(f"vip_outputs/{name}")] == ["sleep.txt"]
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    VipSession(name).finish()


def test_issue9_13_polls_soon_after_launch(vip):
    """#13: with the default refresh_time (30 s) a 0.3 s job is seen over within seconds
    (polls soon after launch, backing off up to refresh_time)."""
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    s = VipSession(_name("soon"), input_dir="data", pipeline_id="Sleep/1.0",
                   input_settings={"duration": 0.3}).launch_pipeline()
    t0 = time.monotonic()
    s.monitor_workflows()
    assert time.monotonic() - t0 < 10
    assert [w["status"] for w in s.workflows.values()] == ["Finished"]
    s.finish()


def test_issue9_12_and_9_local_names_and_one_execution_per_file(vip):
    """#12: local folder names are valid on Windows and Unix (VIP's dated folder has ':'), the
    mapping of rules.local_name. #9 (client side): when an earlier workflow of the session
    claims the same VIP path (a results folder reused), the later one's file is downloaded into
    its own folder, never skipped as if it were the earlier one's."""
    from vip_smk.rules import local_name

    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    name = _name("names")
    s = VipSession(name, input_dir="data", pipeline_id="TextStats/1.0",
                   input_settings={"input_file": "data/a.csv"})
    s.upload_inputs().launch_pipeline().monitor_workflows(refresh_time=0.1)
    wid, = s.workflows
    info, = vip.client.results(wid)
    dated = PurePosixPath(info.path).parent.name
    assert ":" in dated
    # an earlier workflow (removed since) whose output had the same VIP path, and its local file
    backup = _backup(s.output_dir)
    old = {"status": "Removed", "start": "2026/01/01 00:00:00",
           "outputs": [{"path": info.path, "isDirectory": False, "size": info.size, "exists": True}]}
    backup["workflows"] = {"workflow-old001": old, **backup["workflows"]}
    (s.output_dir / "session_data.json").write_text(json.dumps(backup, indent=4))
    theirs = s.output_dir / local_name(dated) / "a.csv.stats.txt"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("z" * info.size)  # same size: looks complete
    r = VipSession(name)
    r.download_outputs()
    assert theirs.read_text() == "z" * info.size  # the old workflow's file is untouched
    mine = s.output_dir / f"{local_name(dated)}-{wid}" / "a.csv.stats.txt"
    assert "mean=3.00" in mine.read_text()
    for p in _local_outputs(s.output_dir):
        rel = p.relative_to(s.output_dir)
        assert all(part == local_name(part) for part in rel.parts), rel
        assert not set('<>:"|?*\\') & set(str(rel))
    assert list(_backup(s.output_dir)["workflows"]) == ["workflow-old001", wid]
    r.finish()


def test_launch_adopts_unless_inputs_changed_since(vip):
    """launch_pipeline again: the finished execution is adopted (no duplicate); after an upload
    that sent changed input files, it ran on old data: a new one is launched."""
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    s = VipSession(_name("again"), input_dir="data", pipeline_id="TextStats/1.0",
                   input_settings={"input_file": "data/b.csv"})
    s.run_session(refresh_time=0.1)
    first, = s.workflows
    s.upload_inputs().launch_pipeline()
    assert list(s.workflows) == [first]
    (vip.root / "data" / "b.csv").write_text("x,y\n7,8\n")
    s.upload_inputs().launch_pipeline().monitor_workflows(refresh_time=0.1)
    assert len(s.workflows) == 2 and all(w["status"] == "Finished" for w in s.workflows.values())
    s.finish()


def test_monitor_says_why_an_execution_failed(vip, caplog):
    """A failure seen while monitoring is explained: the failed job and VIP's stderr tail."""
    caplog.set_level("INFO")
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url)
    f = VipSession(_name("why"), input_dir="data", pipeline_id="Fail/1.0",
                   input_settings={"message": "disk quota exceeded"})
    f.launch_pipeline().monitor_workflows(refresh_time=0.1)
    wid, = f.workflows
    assert f"{wid} failed:" in caplog.text and "job 1: Failed (exit code 1)" in caplog.text
    assert "disk quota exceeded" in caplog.text
    f.finish()


def test_execution_without_status_is_neither_running_nor_over():
    """One meaning everywhere: Execution.is_over / is_running are vip_smk.rules' (no status yet:
    neither), so a session never treats an execution it knows nothing about as finished."""
    from vip_smk import rules
    from vip_smk.core.client import Execution

    for status in (None, "Ready", "Running", "Finished", "Killed", "Removed", "Future"):
        ex = Execution.from_json({"identifier": "workflow-x", "status": status})
        assert (ex.is_over, ex.is_running) == (rules.is_over(status), rules.is_running(status))
    ex = Execution.from_json({"identifier": "workflow-x"})
    assert not ex.is_over and not ex.is_running

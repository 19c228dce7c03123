"""VipSession against the local VIP server: the seed README's examples (run verbatim except
for the import line, the key/URL and a short `refresh_time`), backup compatibility with VIP's
client, and each vip-client 0.1.10 defect that VipSession fixes."""

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

from vip_smk import VipClient, VipSession

KEYS = ("session_name", "pipeline_id", "local_input_dir", "local_output_dir", "vip_input_dir",
        "vip_output_dir", "input_settings", "workflows")
API = "/vip/Home/API"


def _name(prefix: str = "s") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _write_data(root: Path) -> Path:
    data = root / "data"
    data.mkdir()
    (data / "a.csv").write_text("x,y\n1,2\n3,4\n5,9\n")
    (data / "b.csv").write_text("x,y\n10,20\n30,40\n")
    sub = data / "sub"
    sub.mkdir()
    (sub / "c.csv").write_text("u,v\n1,1\n2,2\n")
    return data


@pytest.fixture
def vip(vip_server, monkeypatch, tmp_path):
    """A temp CWD with a small dataset; VipSession's class configuration restored afterwards."""
    monkeypatch.chdir(tmp_path)
    for attr in ("_default_client", "_VERBOSE", "_AVAILABLE_PIPELINES"):
        monkeypatch.setattr(VipSession, attr, getattr(VipSession, attr))
    _write_data(tmp_path)

    class Ctx:
        url = vip_server.url
        key = vip_server.api_key
        server = vip_server
        root = tmp_path
        client = VipClient(vip_server.url, api_key=vip_server.api_key)

    yield Ctx
    Ctx.client.close()


def _backup(out_dir) -> dict:
    return json.loads((Path(out_dir) / "session_data.json").read_text())


def _local_outputs(out_dir) -> list[Path]:
    return sorted(p for p in Path(out_dir).rglob("*") if p.is_file() and p.name != "session_data.json")


# ---- the seed README's examples ----------------------------------------------------------------


def test_readme_basic_steps(vip):
    name = _name("basic")
    # 0. Connect with VIP
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url)
    # 1. Create a Session
    session = VipSession(session_name=name)
    # 2. Upload your data on VIP servers
    session.upload_inputs(input_dir="data")
    # 3. Launch a pipeline on VIP
    session.launch_pipeline(pipeline_id="TextStats/1.0", input_settings={"input_file": "data/a.csv"})
    # 4. Monitor its progress on VIP until all executions are over
    session.monitor_workflows(refresh_time=0.1)
    # 5. Download the outputs from VIP servers when all executions are over
    session.download_outputs()
    backup = _backup(f"vip_outputs/{name}")
    # 6. Remove the data from VIP servers (inputs and outputs)
    session.finish()

    outs = _local_outputs(f"vip_outputs/{name}")
    assert [p.name for p in outs] == ["a.csv.stats.txt"]
    assert "rows: 3" in outs[0].read_text()
    # mirrors VIP: <output_dir>/<dated folder>/<file>
    assert outs[0].parent.parent.resolve() == (vip.root / "vip_outputs" / name).resolve()
    assert list(backup) == [*KEYS, "vip_smk"]  # VIP's keys, in VIP's order, + our extra key
    assert backup["input_settings"] == {"input_file": f"{API}/{name}/INPUTS/a.csv"}
    (wid, wf), = backup["workflows"].items()
    assert wf["status"] == "Finished"
    assert wf["outputs"][0]["path"].endswith("/a.csv.stats.txt")
    assert set(wf["outputs"][0]) == {"path", "isDirectory", "size", "exists"}
    final = _backup(f"vip_outputs/{name}")
    assert final["workflows"][wid]["status"] == "Removed"
    assert not vip.client.exists(f"{API}/{name}")


def test_readme_shortcuts_constructor_and_one_liner(vip):
    # VipSession(...) with every property (including the README's `ouput_dir` spelling)
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url)
    name = _name("short")
    session = VipSession(session_name=name, input_dir="data", pipeline_id="Smooth/1.0",
                         input_settings={"input_file": ["data/a.csv", "data/b.csv"], "window": 2},
                         ouput_dir="my_results")
    session.run_session(refresh_time=0.1)
    # Smooth returns one tarball per job: extracted into a folder bearing the archive's name
    dirs = sorted(p for p in Path("my_results").rglob("*.tgz"))
    assert [d.name for d in dirs] == ["a.csv--w2.tgz", "b.csv--w2.tgz"]
    assert all(d.is_dir() and (d / "smoothed.csv").is_file() and (d / "summary.txt").is_file()
               for d in dirs)
    session.finish()
    assert not vip.client.exists(f"{API}/{name}")

    # init(...) returning a session, and the one-liner
    name2 = _name("oneliner")
    s2 = VipSession.init(api_key=vip.key, vip_portal_url=vip.url, session_name=name2,
                         input_dir="data", pipeline_id="TextStats/1.0",
                         input_settings={"input_file": "data/b.csv"})
    assert isinstance(s2, VipSession) and s2.session_name == name2
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, session_name=name2, input_dir="data",
                    pipeline_id="TextStats/1.0",
                    input_settings={"input_file": "data/b.csv"}).run_session(refresh_time=0.1).finish()
    outs = _local_outputs(f"vip_outputs/{name2}")
    assert [p.name for p in outs] == ["b.csv.stats.txt"]
    assert all(w["status"] == "Removed" for w in _backup(f"vip_outputs/{name2}")["workflows"].values())
    assert not vip.client.exists(f"{API}/{name2}")


def _script(body: str, vip, name: str, verbose_env: dict | None = None) -> subprocess.CompletedProcess:
    code = "import os\nfrom vip_smk import VipSession\nURL = os.environ['VIP_URL']\n" + \
        textwrap.dedent(body).replace("NAME", repr(name))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIP_")}
    env.update(VIP_URL=vip.url, VIP_API_KEY=vip.key, **(verbose_env or {}))
    proc = subprocess.run([sys.executable, "-c", code], cwd=vip.root, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert vip.key not in proc.stdout + proc.stderr
    return proc


def test_readme_resume_in_progress_new_processes_then_relaunch(vip):
    """Each step in a NEW Python process (README 'Resume a Session in Progress'), then the
    'Relaunch a Finished Session' example: new outputs next to the old ones."""
    name = _name("resume")
    p1 = _script("""
        # Connect with VIP
        VipSession.init(api_key="VIP_API_KEY", vip_portal_url=URL)
        # Start a Session with a new name and upload your dataset
        VipSession(NAME).upload_inputs(input_dir="data")
    """, vip, name)
    # verbose by default: the step banners on stderr (a handler on the vip_smk logger)
    assert "=== UPLOAD INPUTS ===" in p1.stderr and p1.stdout == ""
    _script("""
        VipSession.init(api_key="VIP_API_KEY", vip_portal_url=URL)
        # When the upload is over, launch the pipeline
        VipSession(NAME).launch_pipeline(pipeline_id="TextStats/1.0",
                                         input_settings={"input_file": "data/sub/c.csv",
                                                         "precision": 1})
    """, vip, name)
    wid, = _backup(f"vip_outputs/{name}")["workflows"]
    p3 = _script("""
        VipSession.init(api_key="VIP_API_KEY", vip_portal_url=URL)
        VipSession(NAME).monitor_workflows(refresh_time=0.1)
    """, vip, name)
    assert "=== MONITOR WORKFLOWS ===" in p3.stderr and "ended with success" in p3.stderr
    _script("""
        # When the execution is over, connect with VIP again and download the outputs
        VipSession.init(api_key="VIP_API_KEY", vip_portal_url=URL, session_name=NAME).download_ouputs()
        # When the download is over, remove your data from VIP servers
        VipSession(NAME).finish()
    """, vip, name)
    outs = _local_outputs(f"vip_outputs/{name}")
    assert [p.name for p in outs] == ["c.csv.stats.txt"]
    assert "u: mean=1.5" in outs[0].read_text()
    backup = _backup(f"vip_outputs/{name}")
    assert backup["workflows"][wid]["status"] == "Removed"
    assert vip.key not in json.dumps(backup)
    assert not vip.client.exists(f"{API}/{name}")

    # Relaunch a Finished Session (in this process)
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url)
    VipSession(name).monitor_workflows()  # the report of a finished session
    VipSession(name).run_session(refresh_time=0.1).finish()
    outs = _local_outputs(f"vip_outputs/{name}")
    assert [p.name for p in outs] == ["c.csv.stats.txt", "c.csv.stats.txt"]
    assert outs[0].parent != outs[1].parent  # two dated folders side by side
    wfs = _backup(f"vip_outputs/{name}")["workflows"]
    assert len(wfs) == 2 and all(w["status"] == "Removed" for w in wfs.values())

    # verbose=False: nothing at all on stdout/stderr
    quiet = _script("""
        VipSession.init(api_key="VIP_API_KEY", vip_portal_url=URL, verbose=False)
        VipSession(NAME).monitor_workflows().download_outputs().display()
    """, vip, name)
    assert quiet.stderr == "" and quiet.stdout == ""


def _uploaded(vip, path) -> set[str]:
    """Relative paths of the files under a VIP directory (server side)."""
    out = set()
    stack = [PurePosixPath(path)]
    while stack:
        d = stack.pop()
        for info in vip.client.list(str(d)):
            if info.is_directory:
                stack.append(PurePosixPath(info.path))
            else:
                out.add(str(PurePosixPath(info.path).relative_to(path)))
    return out


def test_readme_two_sessions_same_dataset_get_inputs(vip):
    # Session Inputs
    my_dataset = "./data"
    settings_A = {"input_file": "./data/a.csv", "precision": 1}
    settings_B = {"input_file": "./data/a.csv", "precision": 4}
    # Connect to VIP
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url)
    # Without get_inputs: each session uploads (and removes) the dataset
    # Run Session A with settings A and finish
    session_a = VipSession(input_dir=my_dataset, pipeline_id="TextStats/1.0", input_settings=settings_A
                           ).run_session(refresh_time=0.1).finish()
    # Run Session B with settings B and finish
    session_b = VipSession(input_dir=my_dataset, pipeline_id="TextStats/1.0", input_settings=settings_B
                           ).run_session(refresh_time=0.1).finish()
    for s in (session_a, session_b):
        assert len(_local_outputs(s.output_dir)) == 1
        assert not vip.client.exists(f"{API}/{s.session_name}")

    # With get_inputs
    # Run Session A
    session_a = VipSession(input_dir=my_dataset, pipeline_id="TextStats/1.0", input_settings=settings_A
                           ).run_session(refresh_time=0.1)  # Do not run `finish()` until the entire process is over.
    # Create Session B using the same inputs as Session A
    session_b = VipSession(pipeline_id="TextStats/1.0", input_settings=settings_B)
    session_b.get_inputs(session_a)
    # server side: the files of A's inputs in the server's storage, untouched by B's run
    stored = Path(vip.server.data_dir, "users", "alice", "Home", "API", session_a.session_name, "INPUTS")
    before = {p: p.stat().st_mtime_ns for p in stored.rglob("*") if p.is_file()}
    assert len(before) == 3
    # Run Session B and finish
    puts = []
    hook = lambda r, *a, **k: puts.append(r.request.url) if r.request.method == "PUT" else None  # noqa: E731
    session_b.client.session.hooks["response"].append(hook)
    session_b.run_session(refresh_time=0.1).finish()
    session_b.client.session.hooks["response"].remove(hook)
    assert not [u for u in puts if "/INPUTS" in u]  # nothing re-sent into A's inputs
    assert {p: p.stat().st_mtime_ns for p in stored.rglob("*") if p.is_file()} == before
    # Session B used A's inputs: the dataset was uploaded once, B's VIP folder had no INPUTS
    assert session_b.vip_input_dir == session_a.vip_input_dir
    assert _uploaded(vip, session_a.vip_input_dir) == {"a.csv", "b.csv", "sub/c.csv"}
    assert not vip.client.exists(f"{API}/{session_b.session_name}")
    assert _backup(session_b.output_dir)["input_settings"]["input_file"] == \
        f"{API}/{session_a.session_name}/INPUTS/a.csv"
    # finishing B kept A's inputs
    assert vip.client.exists(str(session_a.vip_input_dir))
    out_b, = _local_outputs(session_b.output_dir)
    assert "mean=3.0000" in out_b.read_text()
    # Finish Session A
    session_a.finish()
    assert not vip.client.exists(f"{API}/{session_a.session_name}")


def test_finish_keeps_inputs_another_session_uses(vip):
    """A finishes first while B (get_inputs) is still unfinished: A's inputs are kept; B's
    finish then removes them. A third session sees the sharing through the backups only."""
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    a = VipSession(_name("owner"), input_dir="data").upload_inputs()
    b = VipSession(_name("user"))
    b.get_inputs(a.session_name)  # by name: found through its backup
    assert _backup(a.output_dir)["vip_smk"]["input_users"] == [str(b.output_dir)]
    a.finish()
    assert vip.client.exists(str(a.vip_input_dir))  # B still uses them
    # a fresh object resumed from A's backup agrees (state on disk, not in memory)
    VipSession(a.session_name).finish()
    assert vip.client.exists(str(a.vip_input_dir))
    b.finish()  # owner finished, no other user: borrowed inputs removed
    assert not vip.client.exists(f"{API}/{a.session_name}")

    # force_remove=True: the user session removes the owner's inputs while the owner is active
    c = VipSession(_name("owner2"), input_dir="data").upload_inputs()
    d = VipSession(_name("user2")).get_inputs(c)
    d.finish()
    assert vip.client.exists(str(c.vip_input_dir))  # owner active: kept by default
    # the owner's backup is gone (its local output dir deleted): not ours to delete either
    import shutil

    shutil.rmtree(c.output_dir)
    d2 = VipSession(_name("user3")).get_inputs(c)
    d2.finish()
    assert vip.client.exists(str(c.vip_input_dir))
    d3 = VipSession(_name("user4")).get_inputs(c)
    d3.finish(force_remove=True)
    assert not vip.client.exists(str(c.vip_input_dir))


def test_backup_in_vip_client_format_resumed(vip):
    """A session_data.json as vip-client 0.1.10 writes it (hand-written, relative local paths,
    a running workflow) is resumed, monitored, downloaded and finished; the file keeps VIP's
    keys and value forms, and keys unknown to us."""
    name = _name("legacy")
    c = vip.client
    # what vip-client did before: upload the dataset and launch (plain API calls)
    c.mkdir(f"{API}/{name}/INPUTS")
    c.upload(vip.root / "data" / "a.csv", f"{API}/{name}/INPUTS/a.csv")
    c.mkdir(f"{API}/{name}/OUTPUTS")
    ex = c.launch("TextStats/1.0", {"input_file": f"{API}/{name}/INPUTS/a.csv", "precision": "2"},
                  f"{API}/{name}/OUTPUTS", name)
    out_dir = vip.root / "vip_outputs" / name
    out_dir.mkdir(parents=True)
    legacy = {
        "session_name": name,
        "pipeline_id": "TextStats/1.0",
        "local_input_dir": "data",
        "local_output_dir": f"vip_outputs/{name}",
        "vip_input_dir": f"{API}/{name}/INPUTS",
        "vip_output_dir": f"{API}/{name}/OUTPUTS",
        "input_settings": {"input_file": f"{API}/{name}/INPUTS/a.csv", "precision": "2"},
        "workflows": {ex.identifier: {"status": "Running", "start": "2026/11/25 10:00:00",
                                      "outputs": []}},
        "custom_key": {"kept": True},
    }
    (out_dir / "session_data.json").write_text(json.dumps(legacy, indent=4))

    VipSession.init(api_key=vip.key, vip_portal_url=vip.url)
    s = VipSession(name)
    assert s.pipeline_id == "TextStats/1.0"
    assert Path(s.input_dir) == vip.root / "data"
    assert s.input_settings == legacy["input_settings"]
    s.monitor_workflows(refresh_time=0.1).download_outputs()
    out, = _local_outputs(out_dir)
    assert out.name == "a.csv.stats.txt" and "mean=3.00" in out.read_text()
    saved = _backup(out_dir)
    assert list(saved)[:len(KEYS)] == list(KEYS)
    assert saved["custom_key"] == {"kept": True}
    assert saved["input_settings"] == legacy["input_settings"]
    wf = saved["workflows"][ex.identifier]
    assert wf["status"] == "Finished" and isinstance(wf["start"], str)
    assert all(set(o) == {"path", "isDirectory", "size", "exists"} for o in wf["outputs"])
    s.finish()
    assert _backup(out_dir)["workflows"][ex.identifier]["status"] == "Removed"
    assert not c.exists(f"{API}/{name}")


# ---- properties, backup, output --------------------------------------------------------------


def test_properties_locking_defaults_and_backup_file(vip):
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    s = VipSession()
    assert s.session_name.startswith("VipSession-")
    assert s.output_dir == vip.root / "vip_outputs" / s.session_name
    assert str(s.vip_input_dir) == f"{API}/{s.session_name}/INPUTS"
    assert str(s.vip_output_dir) == f"{API}/{s.session_name}/OUTPUTS"
    s.pipeline_id = "TextStats/1.0"
    s.pipeline_id = "TextStats/1.0"  # same value: fine
    with pytest.raises(ValueError, match="'pipeline_id' is already set"):
        s.pipeline_id = "Smooth/1.0"
    del s.pipeline_id
    s.pipeline_id = "Smooth/1.0"
    with pytest.raises(ValueError, match="not available"):
        VipSession(pipeline_id="NoSuchApp/9.9")
    with pytest.raises(ValueError, match="session name"):
        VipSession("bad name!")
    # values naming local files of the dataset become VIP paths; others are sent as given, even
    # when a file of that name exists outside the dataset
    (vip.root / "other").mkdir()
    s.input_settings = {"input_file": "data/sub/c.csv", "delimiter": "other"}
    s.input_dir = "data"
    assert s.input_settings == {"input_file": f"{s.vip_input_dir}/sub/c.csv", "delimiter": "other"}
    del s.input_settings, s.input_dir
    # nothing is written before a step runs; every step writes it atomically
    assert not s.output_dir.exists()
    s.upload_inputs(input_dir="data")
    assert (s.output_dir / "session_data.json").is_file()
    assert [p.name for p in s.output_dir.iterdir()] == ["session_data.json"]  # no temp file left
    with pytest.raises(ValueError, match="already set"):
        s.input_dir = "elsewhere"
    # resume by output_dir gives the same session; a different name on it is refused
    assert VipSession(output_dir=s.output_dir).session_name == s.session_name
    with pytest.raises(ValueError, match="holds session"):
        VipSession("other", output_dir=s.output_dir)
    s.finish()


def test_key_never_in_backup_or_logs(vip, caplog, capfd):
    caplog.set_level("DEBUG")
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url)
    s = VipSession(_name("key"), input_dir="data", pipeline_id="TextStats/1.0",
                   input_settings={"input_file": "data/b.csv"})
    s.run_session(refresh_time=0.1).display().finish()
    VipSession.show_pipeline("TextStats")
    out = capfd.readouterr()
    text = caplog.text + out.out + out.err + (s.output_dir / "session_data.json").read_text()
    assert "=== DOWNLOAD OUTPUTS ===" in caplog.text and "=== FINISH ===" in caplog.text
    assert "INPUT_SETTINGS" in caplog.text and "input_file" in caplog.text
    assert "Downloaded 1 file(s) (0.1kB)" in caplog.text  # #16: the size is known
    assert vip.key not in text


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


# ---- issue 17: change = content; a new VIP account's capacity and download limit ----------------

_REPRO = """\
import os, sys
from pathlib import Path
from vip_smk import VipSession
VipSession.init(api_key=os.environ['VIP_API_KEY'], vip_portal_url=os.environ['VIP_URL'])
Path('in').mkdir(exist_ok=True)
Path('in/x.txt').write_text('x\\n')
Path('in/y.txt').write_text(os.environ.get('Y', 'y') + '\\n')
VipSession(sys.argv[1], input_dir='in', pipeline_id='Sleep/1.0', input_settings={'duration': 8},
           output_dir='out').run_session(refresh_time=1)
"""


def _executions_named(client, name: str) -> list:
    return [e for e in client.executions() if e.name == name]


def test_issue17_rewrite_same_bytes_after_kill_launches_nothing(vip):
    """Issue 17: a script that regenerates its inputs (same bytes, new mtime), killed (-9)
    while monitoring and run again, adopts its execution: nothing re-sent, nothing launched
    (counted on the server). Then one byte changed in one file: exactly that file re-sent and
    the session relaunched. (Before: same-size file with a new mtime re-sent, 'superseded',
    a second execution.)"""
    name = _name("rewrite")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIP_")}
    env.update(VIP_URL=vip.url, VIP_API_KEY=vip.key)
    cmd = [sys.executable, "-c", _REPRO, name]
    first = subprocess.Popen(cmd, cwd=vip.root, env=env, stderr=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, text=True)
    seen = ""
    while "=== MONITOR WORKFLOWS ===" not in seen:
        line = first.stderr.readline()
        assert line, seen
        seen += line
    first.kill()
    first.wait()
    assert len(_executions_named(vip.client, name)) == 1
    remote = {i.path.rsplit("/", 1)[-1]: i.last_modification_date
              for i in vip.client.list(f"{API}/{name}/INPUTS")}
    time.sleep(1.1)  # VIP's dates are whole seconds: a re-send would show
    second = subprocess.run(cmd, cwd=vip.root, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "0 file(s) sent, 2 unchanged file(s) skipped" in second.stderr
    assert "adopted" in second.stderr
    wid, = _executions_named(vip.client, name)[:1]
    assert len(_executions_named(vip.client, name)) == 1  # nothing launched
    from vip_smk.sessions.backup import meta_of

    backup = _backup(vip.root / "out")
    meta = meta_of(backup)
    assert list(backup["workflows"]) == [wid.identifier] and not meta.get("superseded")
    assert set(meta["uploaded"]) == {"x.txt", "y.txt"}
    assert all(len(r["sha256"]) == 64 for r in meta["uploaded"].values())
    assert {i.path.rsplit("/", 1)[-1]: i.last_modification_date
            for i in vip.client.list(f"{API}/{name}/INPUTS")} == remote
    assert [p.name for p in _local_outputs(vip.root / "out")] == ["sleep.txt"]
    # one byte changed in one file (same size): that file only is re-sent, the session relaunches
    third = subprocess.run(cmd, cwd=vip.root, env={**env, "Y": "z"}, capture_output=True,
                           text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert "1 file(s) sent, 1 unchanged file(s) skipped" in third.stderr
    after = {i.path.rsplit("/", 1)[-1]: i.last_modification_date
             for i in vip.client.list(f"{API}/{name}/INPUTS")}
    assert after["x.txt"] == remote["x.txt"] and after["y.txt"] != remote["y.txt"]
    assert len(_executions_named(vip.client, name)) == 2
    assert len(_backup(vip.root / "out")["workflows"]) == 2
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    VipSession(output_dir="out").finish()


def test_issue17_launcher_uploads_nothing_and_adopts_across_reruns(vip):
    """VipLauncher uploads nothing (its inputs are on VIP): a rerun, in a new process, adopts."""
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    name = _name("lrerun")
    vip.client.mkdir(f"{API}/{name}-in")
    vip.client.upload(vip.root / "data" / "b.csv", f"{API}/{name}-in/b.csv")
    body = f"""
        from vip_smk import VipLauncher
        VipLauncher.init(api_key=os.environ['VIP_API_KEY'], vip_portal_url=URL)
        VipLauncher(output_dir='{API}/NAME-out', pipeline_id='TextStats/1.0', session_name=NAME,
                    input_settings={{'input_file': '{API}/NAME-in/b.csv'}}).run_session(refresh_time=0.2)
    """.replace("NAME-", name + "-")
    _script(body, vip, name)
    again = _script(body, vip, name)
    assert "adopted" in again.stderr
    assert len(_executions_named(vip.client, name)) == 1
    vip.client.delete(f"{API}/{name}-in")
    vip.client.delete(f"{API}/{name}-out")


def test_issue17_reused_name_after_finish_launches_anew(vip, tmp_path_factory, monkeypatch):
    """Issue 17 §3: run_session().finish(), then a new session of the same name in another
    folder: the Finished execution's results are gone, so it is not adopted: launched anew, and
    its outputs downloaded. (Before: adopted, 'exists': false, nothing downloaded.)"""
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)
    name = _name("reuse")
    kw = dict(pipeline_id="TextStats/1.0", input_settings={"input_file": "data/b.csv"})
    VipSession(name, input_dir="data", **kw).run_session(refresh_time=0.1).finish()
    assert len(_executions_named(vip.client, name)) == 1
    other = tmp_path_factory.mktemp("elsewhere")
    _write_data(other)
    monkeypatch.chdir(other)
    s = VipSession(name, input_dir="data", **kw)
    s.upload_inputs().launch_pipeline()
    assert len(_executions_named(vip.client, name)) == 2
    s.monitor_workflows(refresh_time=0.1).download_outputs()
    assert [p.name for p in _local_outputs(s.output_dir)] == ["b.csv.stats.txt"]
    s.finish()


def test_issue17_second_session_waits_for_the_slot_at_capacity_1(vip, make_server):
    """A new VIP account runs 1 execution at a time (error 2001 beyond): a second session
    launched while the first runs waits for the slot (no failure, no double launch), and a
    queued status never counts as over."""
    srv = make_server(vip_defaults=True)  # VIP's default: max_running=1
    with VipClient(srv.url, api_key=srv.api_key) as direct:
        VipSession.init(api_key=srv.api_key, vip_portal_url=srv.url, verbose=True)
        a = VipSession(_name("first"), input_dir="data", pipeline_id="Sleep/1.0",
                       input_settings={"duration": 2}).launch_pipeline()
        with pytest.raises(Exception) as refused:  # what VIP itself says to a second launch
            direct.launch("Sleep/1.0", {"duration": 0.1}, "/vip/Home/x", name="probe")
        assert getattr(refused.value, "code", None) == 2001
        b = VipSession(_name("second"), input_dir="data", pipeline_id="Sleep/1.0",
                       input_settings={"duration": 0.1})
        b.launch_pipeline()  # waits for a's slot
        (aid,), (bid,) = a.workflows, b.workflows
        ea, eb = direct.execution(aid), direct.execution(bid)
        assert ea.status == "Finished" and eb.start_date >= ea.end_date - 1000
        b.monitor_workflows(refresh_time=0.1).download_outputs()
        assert b.workflows[bid]["status"] == "Finished"
        assert [p.name for p in _local_outputs(b.output_dir)] == ["sleep.txt"]
        names = sorted(e.name for e in direct.executions())
        assert names == sorted([a.session_name, b.session_name])
        a.monitor_workflows(refresh_time=0.1).finish()
        b.finish()


def test_issue17_too_large_output_one_line_others_kept(vip, make_server, caplog):
    """An output above maxSizeDirectTransfer: ONE line naming the file, its size and the limit;
    every other output downloaded; no traceback."""
    import logging

    srv = make_server(max_download_size=1000)
    wide = vip.root / "data" / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(100)) + "\n" + ",".join("1" * 100) + "\n")
    VipSession.init(api_key=srv.api_key, vip_portal_url=srv.url, verbose=True)
    s = VipSession(_name("big"), input_dir="data", pipeline_id="TextStats/1.0",
                   input_settings={"input_file": ["data/wide.csv", "data/b.csv"]})
    s.upload_inputs().launch_pipeline().monitor_workflows(refresh_time=0.1)
    with caplog.at_level(logging.INFO, logger="vip_smk"):
        s.download_outputs()
    assert [p.name for p in _local_outputs(s.output_dir)] == ["b.csv.stats.txt"]
    lines = [r.getMessage() for r in caplog.records if "wide.csv.stats.txt" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "1,000 bytes" in lines[0] and "maxSizeDirectTransfer" in lines[0]
    size = next(o["size"] for w in s.workflows.values() for o in w["outputs"]
                if o["path"].endswith("wide.csv.stats.txt"))
    assert f"{size:,} bytes" in lines[0]
    assert not any(r.exc_info for r in caplog.records)
    assert "Traceback" not in caplog.text
    s.finish()


def test_issue17_launch_message_says_adopted_or_launched(vip, caplog):
    """Issue 22 #13: no 'Launching 1 execution(s)' right before 'adopted'."""
    import logging

    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, verbose=True)
    s = VipSession(_name("msg"), input_dir="data", pipeline_id="Sleep/1.0",
                   input_settings={"duration": 0.1})
    s.launch_pipeline().monitor_workflows(refresh_time=0.1)
    with caplog.at_level(logging.INFO, logger="vip_smk"):
        s.launch_pipeline()
    text = caplog.text
    assert "adopted" in text and "Launching" not in text and "0 launched, 1 adopted" in text
    s.finish()

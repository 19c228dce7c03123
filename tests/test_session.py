"""VipSession against the local VIP server: the seed README's examples (run verbatim except
for the import line, the key/URL and a short `refresh_time`), backup compatibility with VIP's
client, properties and output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from session_helpers import API, KEYS, _backup, _local_outputs, _name, _script, _uploaded, session_dir

from vip_smk import VipSession

vip = pytest.fixture(name="vip")(session_dir)

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

"""VipSession against the local VIP server: reruns decided by content, never by mtime, and a new
VIP account's capacity and download limit (issue 17)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from session_helpers import API, _backup, _local_outputs, _name, _script, _write_data, session_dir

from vip_smk import VipClient, VipSession

vip = pytest.fixture(name="vip")(session_dir)

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
    srv = make_server()  # VIP's default: max_running=1
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

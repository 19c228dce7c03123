"""VipLauncher (vip-client's class for data already on VIP) and the backup kept on VIP
(``backup_location="vip"``), against the local VIP server; cross-resume with vip-client 0.1.10."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path, PurePosixPath

import pytest

from vip_smk import VipClient, VipLauncher, VipSession, core


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def vip(vip_server, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for cls in (VipLauncher, VipSession):
        for attr in ("_default_client", "_VERBOSE", "_AVAILABLE_PIPELINES", "_BACKUP_LOCATION"):
            monkeypatch.setattr(cls, attr, getattr(cls, attr))

    class Ctx:
        url = vip_server.url
        key = vip_server.api_key
        root = tmp_path
        client = VipClient(vip_server.url, api_key=vip_server.api_key, progress=False)
        home = f"/vip/Home/launcher-{uuid.uuid4().hex[:8]}"

    Ctx.client.mkdir(Ctx.home)
    yield Ctx
    Ctx.client.delete(Ctx.home, missing_ok=True, wait=0)
    Ctx.client.close()


def _saved_text(client, vip_path: str) -> str:
    local = Path(f"saved-{uuid.uuid4().hex}.json")
    client.download(vip_path, local)
    try:
        return local.read_text()
    finally:
        local.unlink()


def _saved_on_vip(client, vip_path: str) -> dict:
    return json.loads(_saved_text(client, vip_path))


KINDS = ("t1", "t1ce", "t2", "flair")
SCRIPT = Path(__file__).resolve().parents[1] / "workflow" / "examples" / "launcher" / "brats_launcher.py"


def _upload_brats(vip, data: str, subjects: list[str]) -> None:
    """A BraTS-like dataset on VIP: four acquisitions per subject, in a group-like folder."""
    for i, sub in enumerate(subjects):
        vip.client.mkdir(f"{data}/{sub}")
        for j, kind in enumerate(KINDS):
            f = vip.root / f"{sub}_{kind}.csv"
            f.write_text(f"x,y\n{i},{j}\n{i + 2},{j + 2}\n")
            vip.client.upload(f, f"{data}/{sub}/{f.name}")
            f.unlink()


def test_brats_tutorial_script_with_four_vip_dot_lists(vip):
    """Issue 13's script, unchanged but for the import (workflow/examples/launcher/brats_launcher.py): data
    uploaded first to a group-like folder; VipLauncher with four vip:dot lists over N subjects ->
    one execution of N jobs (not N^4), results on VIP, the session saved on VIP (nothing in the
    current folder); the same session resumed from its output_dir launches nothing twice;
    finish() removes the outputs (not the inputs)."""
    group = f"/vip/Home/BraTS (group) {uuid.uuid4().hex[:6]}"  # no group folders here: see README
    data, out = f"{group}/BraTS2021", f"{vip.home}/brats results"
    subjects = [f"BraTS2021_{i:05d}" for i in (0, 2, 3)]
    _upload_brats(vip, data, subjects)
    cwd = vip.root / "script-cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIP_", "BRATS_"))}
    env.update(VIP_API_KEY=vip.key, VIP_URL=vip.url, BRATS_DATA=data, BRATS_OUTPUT=out,
               BRATS_SUBJECTS=" ".join(subjects), BRATS_REFRESH="0.2")
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "BraTSStats" in proc.stderr and "t1ce" in proc.stderr  # show_pipeline, verbose
    assert vip.key not in proc.stdout + proc.stderr
    assert list(cwd.iterdir()) == []  # vip-client left tmp_save.json / tmp_load.json here
    # one execution of N jobs, its N results on VIP
    VipLauncher.init(api_key=vip.key, vip_portal_url=vip.url, backup_location="vip", verbose=False)
    session = VipLauncher(output_dir=out)
    assert session.session_name == "BraTS_tutorial" and session.pipeline_id == "BraTSStats/1.0"
    assert session.input_settings["flair"] == [f"{data}/{s}/{s}_flair.csv" for s in subjects]
    wid, = session.workflows
    assert session.workflows[wid]["status"] == "Finished"
    ex = vip.client.execution(wid)
    assert len(ex.jobs) == 3 and len(ex.output_paths) == 3
    reports = sorted(PurePosixPath(p).name for p in ex.output_paths)
    assert reports == [f"{s}_t1.csv.brats.txt" for s in subjects]
    assert all(p.startswith(out + "/") for p in ex.output_paths)
    first = sorted(ex.output_paths)[0]  # subject 0: x=(0, 2) in all; y=(j, j+2), j=0..3
    text = _saved_text(vip.client, first)
    assert f"flair: {subjects[0]}_flair.csv (2 rows)" in text
    assert "x: t1=1.000 t1ce=1.000 t2=1.000 flair=1.000" in text
    assert "y: t1=1.000 t1ce=2.000 t2=3.000 flair=4.000" in text
    saved = _saved_on_vip(vip.client, f"{out}/session_data.json")
    assert list(saved)[:5] == ["session_name", "pipeline_id", "vip_output_dir", "input_settings",
                               "workflows"]
    assert saved["workflows"][wid]["status"] == "Finished" and vip.key not in json.dumps(saved)
    assert not vip.client.exists(f"{out}/session_data.json.new")
    # the script run again resumes the session: nothing launched twice
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert list(VipLauncher(output_dir=out).workflows) == [wid]
    assert [e.identifier for e in vip.client.executions() if e.name == "BraTS_tutorial"] == [wid]
    # finish() as documented: the outputs (and the backup with them) removed; the data kept
    VipLauncher(output_dir=out).finish()
    assert not vip.client.exists(out)
    assert vip.client.exists(f"{data}/{subjects[0]}/{subjects[0]}_t1.csv")
    assert list(cwd.iterdir()) == []
    vip.client.delete(group, missing_ok=True, wait=0)


def test_unequal_vip_dot_lists_named_nothing_launched(vip):
    """Lists of unequal length in the vip:dot group (read from VIP's Boutiques descriptor) are
    a ValueError naming each list and its length before anything is sent (nothing launched,
    not even the backup written), and the corrected session launches."""
    data, out = f"{vip.home}/data", f"{vip.home}/out"
    subjects = ["s1", "s2", "s3"]
    _upload_brats(vip, data, subjects)
    settings = {k: [f"{data}/{s}/{s}_{k}.csv" for s in subjects] for k in KINDS}
    settings["t2"] = settings["t2"][:2]
    VipLauncher.init(api_key=vip.key, vip_portal_url=vip.url, backup_location="vip", verbose=False)
    name = _name("unequal")
    s = VipLauncher(output_dir=out, pipeline_id="BraTSStats/1.0", session_name=name,
                    input_settings=settings)
    with pytest.raises(ValueError, match=r"t1 \(3\), t1ce \(3\), t2 \(2\), flair \(3\)") as err:
        s.launch_pipeline()
    assert isinstance(err.value, core.SettingsError) and err.value.kinds == {"dot"}
    assert name in str(err.value)
    assert s.workflows == {} and not [e for e in vip.client.executions() if e.name == name]
    assert not vip.client.exists(out)  # nothing sent: not even the backup
    del s.input_settings  # vip-client's way to change a locked property
    settings["t2"] = [f"{data}/{x}/{x}_t2.csv" for x in subjects]
    s.input_settings = settings
    wid, = s.run_session(refresh_time=0.2).workflows
    assert s.workflows[wid]["status"] == "Finished" and len(vip.client.execution(wid).jobs) == 3
    s.finish()
    assert not vip.client.exists(out)


def test_finish_removes_outputs_unless_keep_output(vip):
    """vip-client's VipLauncher.finish() had keep_output inverted (deleted nothing by default)."""
    f = vip.root / "a.csv"
    f.write_text("x\n1\n2\n")
    vip.client.upload(f, f"{vip.home}/a.csv")
    out = f"{vip.home}/out"
    VipLauncher.init(api_key=vip.key, vip_portal_url=vip.url, verbose=False)  # no backup
    s = VipLauncher(output_dir=out, pipeline_id="TextStats/1.0",
                    input_settings={"input_file": f"{vip.home}/a.csv"}).run_session(refresh_time=0.2)
    s.finish(keep_output=True)
    assert vip.client.exists(out) and [w["status"] for w in s.workflows.values()] == ["Finished"]
    s.finish()
    assert not vip.client.exists(out) and vip.client.exists(f"{vip.home}/a.csv")  # inputs kept
    assert [w["status"] for w in s.workflows.values()] == ["Removed"]
    with pytest.raises(TypeError, match="output directory"):
        VipLauncher(pipeline_id="TextStats/1.0",
                    input_settings={"input_file": f"{vip.home}/a.csv"}).launch_pipeline()


def test_vip_session_backup_on_vip(vip):
    """VipSession accepts backup_location="vip": session_data.json in vip_output_dir on VIP,
    restored by name; nothing saved locally; finish() leaves nothing on VIP."""
    (vip.root / "data").mkdir()
    (vip.root / "data" / "a.csv").write_text("x\n1\n3\n")
    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, backup_location="vip", verbose=False)
    name = _name("vipbackup")
    s = VipSession(name, input_dir="data", pipeline_id="TextStats/1.0",
                   input_settings={"input_file": "data/a.csv"}).upload_inputs().launch_pipeline()
    wid, = s.workflows
    assert not (s.output_dir / "session_data.json").exists()
    saved = _saved_on_vip(vip.client, f"/vip/Home/API/{name}/OUTPUTS/session_data.json")
    assert saved["session_name"] == name and list(saved["workflows"]) == [wid]
    r = VipSession(name)
    assert list(r.workflows) == [wid] and r.pipeline_id == "TextStats/1.0"
    r.monitor_workflows(refresh_time=0.2).download_outputs().finish()
    assert not vip.client.exists(f"/vip/Home/API/{name}")
    assert [p.name for p in r.output_dir.rglob("*") if p.is_file()] == ["a.csv.stats.txt"]


def test_cross_resume_with_vip_client(vip, vip_client_python):
    """A VipLauncher session saved on VIP by ours is monitored and finished by vip-client 0.1.10,
    and one saved by vip-client is monitored and finished by ours."""
    f = vip.root / "a.csv"
    f.write_text("x\n1\n5\n")
    vip.client.upload(f, f"{vip.home}/a.csv")
    settings = {"input_file": f"{vip.home}/a.csv"}
    ours, theirs = f"{vip.home}/ours", f"{vip.home}/theirs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIP_")}
    work = vip.root / "vip-client-cwd"  # vip-client writes tmp_save.json / tmp_load.json there
    work.mkdir()

    def vip_client(code: str) -> str:
        head = ("from vip_client import VipLauncher\n"
                f"VipLauncher.init(api_key={vip.key!r}, vip_portal_url={vip.url!r}, "
                "backup_location='vip', verbose=False)\n")
        proc = subprocess.run([vip_client_python, "-c", head + textwrap.dedent(code)], cwd=work,
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    VipLauncher.init(api_key=vip.key, vip_portal_url=vip.url, backup_location="vip", verbose=False)
    name = _name("ours")
    wid, = VipLauncher(output_dir=ours, pipeline_id="TextStats/1.0", input_settings=settings,
                       session_name=name).launch_pipeline().workflows
    vip_client(f"s = VipLauncher(output_dir={ours!r})\n"
               f"assert s.session_name == {name!r}, s.session_name\n"
               "s.monitor_workflows(refresh_time=1)\n")
    saved = _saved_on_vip(vip.client, f"{ours}/session_data.json")
    assert saved["workflows"][wid]["status"] == "Finished"
    assert saved.get("vip_smk") is not None  # our extra key survived vip-client's save
    VipLauncher(output_dir=ours).finish()
    assert not vip.client.exists(ours)

    name = _name("theirs")
    vip_client(f"VipLauncher(output_dir={theirs!r}, pipeline_id='TextStats/1.0', "
               f"input_settings={settings!r}, session_name={name!r}).launch_pipeline()\n")
    s = VipLauncher(output_dir=theirs)
    assert s.session_name == name and s.input_settings == settings
    wid, = s.workflows
    s.run_session(refresh_time=0.2)  # adopts vip-client's execution
    assert list(s.workflows) == [wid] and s.workflows[wid]["status"] == "Finished"
    s.finish()
    assert not vip.client.exists(theirs)


def test_cross_resume_vip_session_backup_on_vip(vip, vip_client_python):
    """VipSession with backup_location="vip": a session saved on VIP by vip-client 0.1.10 is
    resumed by ours (by name); one saved by ours is read, monitored and saved by vip-client's
    VipLauncher (vip-client's VipSession restores no backup kept on VIP, not even its own:
    reference 4.8), then resumed, downloaded and finished by ours."""
    (vip.root / "data").mkdir()
    (vip.root / "data" / "a.csv").write_text("x\n1\n3\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIP_")}

    def vip_client(code: str) -> None:
        head = ("from vip_client import VipLauncher, VipSession\n" + "".join(
            f"{cls}.init(api_key={vip.key!r}, vip_portal_url={vip.url!r}, backup_location='vip', "
            "verbose=False)\n" for cls in ("VipSession", "VipLauncher")))
        proc = subprocess.run([vip_client_python, "-c", head + textwrap.dedent(code)],
                              cwd=vip.root, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr

    VipSession.init(api_key=vip.key, vip_portal_url=vip.url, backup_location="vip", verbose=False)
    settings = {"input_file": "data/a.csv"}
    theirs = _name("theirs")
    vip_client(f"VipSession({theirs!r}, input_dir='data', pipeline_id='TextStats/1.0', "
               f"input_settings={settings!r}).upload_inputs().launch_pipeline()\n")
    r = VipSession(theirs)
    wid, = r.workflows
    assert r.input_settings == {"input_file": f"/vip/Home/API/{theirs}/INPUTS/a.csv"}
    r.run_session(refresh_time=0.2)  # uploads nothing new, adopts vip-client's execution
    assert list(r.workflows) == [wid] and r.workflows[wid]["status"] == "Finished"
    r.finish()
    assert not vip.client.exists(f"/vip/Home/API/{theirs}")

    ours = _name("ours")
    wid, = VipSession(ours, input_dir="data", pipeline_id="TextStats/1.0",
                      input_settings=settings).upload_inputs().launch_pipeline().workflows
    vip_client(f"s = VipLauncher(output_dir='/vip/Home/API/{ours}/OUTPUTS')\n"
               f"assert s.session_name == {ours!r} and list(s.workflows) == [{wid!r}]\n"
               "s.monitor_workflows(refresh_time=1)\n")
    saved = _saved_on_vip(vip.client, f"/vip/Home/API/{ours}/OUTPUTS/session_data.json")
    assert saved["workflows"][wid]["status"] == "Finished"
    assert saved["vip_input_dir"] == f"/vip/Home/API/{ours}/INPUTS"  # VipSession's keys kept
    s = VipSession(ours)
    assert s.workflows[wid]["status"] == "Finished"
    s.download_outputs().finish()
    assert [p.name for p in s.output_dir.rglob("*") if p.is_file()] == ["a.csv.stats.txt"]
    assert not vip.client.exists(f"/vip/Home/API/{ours}")

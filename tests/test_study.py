"""vip_smk.study: config -> sessions, validation messages, launch adoption, markers, locks.
Against the shared local VIP server (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from vip_smk import study as vs
from vip_smk.core.client import VipClient

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


@pytest.fixture
def project(tmp_path):
    data = tmp_path / "data" / "mri"
    data.mkdir(parents=True)
    for i in range(3):
        (data / f"sub{i}.csv").write_text(f"a,b\n{i},{i + 1}\n{i + 2},{i * 3}\n")
    (data / "notes.txt").write_text("not a csv\n")
    return tmp_path


@pytest.fixture
def key_env(monkeypatch, vip_server):
    monkeypatch.setenv("VIP_API_KEY", vip_server.api_key)
    return vip_server


def base_config(url: str, name: str | None = None) -> dict:
    return {
        "name": name or f"t{uuid.uuid4().hex[:8]}",
        "vip": {"url": url, "poll_seconds": 0.2},
        "datasets": {"mri": "data/mri"},
        "pipelines": {
            "stats": {"id": "TextStats/1.0", "settings": {"input_file": "*.csv"}},
            "smooth": {"id": "Smooth/1.0", "settings": {"input_file": "*.csv"}},
            "sleep": {"id": "Sleep/1.0"},
        },
        "study": [{"datasets": ["mri"], "pipelines": ["smooth"], "grid": {"window": [3, 5], "normalize": [True, False]}}],
        "sessions": {"one": {"dataset": "mri", "pipeline": "stats", "settings": {"input_file": "sub1.csv", "precision": 2}}},
    }


def load(config: dict, workdir: Path) -> vs.Study:
    config = copy.deepcopy(config)
    validate(config, SCHEMA, set_default=True)
    return vs.load_study(config, workdir)


def test_expansion_names_values_and_defaults(project, key_env):
    st = load(base_config(key_env.url, "exp"), project)
    assert st.vip.max_running is None and st.vip.api_key_env == "VIP_API_KEY"  # defaults filled
    assert sorted(st.sessions) == sorted(
        ["mri-smooth-window3-normalizetrue", "mri-smooth-window3-normalizefalse",
         "mri-smooth-window5-normalizetrue", "mri-smooth-window5-normalizefalse", "one"]
    )
    s = st.sessions["mri-smooth-window5-normalizefalse"]
    assert s.input_values == {
        "input_file": [f"/vip/Home/API/exp/datasets/mri/sub{i}.csv" for i in range(3)],  # glob -> list
        "window": 5,
        "normalize": "false",  # as VIP reads it (core.validate_settings)
    }
    assert s.parameters == {"window": 5, "normalize": False}
    assert st.sessions["one"].input_values == {"input_file": "/vip/Home/API/exp/datasets/mri/sub1.csv", "precision": 2}
    assert st.results_location("one") == "/vip/Home/API/exp/one/OUTPUTS"
    assert st.sessions_of_dataset("mri") == sorted(st.sessions)

    cfg = base_config(key_env.url, "exp")
    cfg["study"][0]["name"] = "w{window}-{normalize}"
    assert sorted(load(cfg, project).sessions) == ["one", "w3-False", "w3-True", "w5-False", "w5-True"]


BAD = [
    # (mutation, substrings expected in the message)
    (lambda c: c["study"][0].update(datasets=["mri", "ct"]), ["session 'ct-smooth-window3-normalizetrue' (study[0])", "study[0].datasets", "unknown dataset 'ct'"]),
    (lambda c: c["sessions"]["one"].update(pipeline="stat"), ["session 'one'", "sessions.one.pipeline", "unknown pipeline 'stat'"]),
    (lambda c: c["pipelines"]["stats"].update(id="TextStats/9.9"), ["pipelines.stats.id", "'TextStats/9.9' not found", "one"]),
    (lambda c: c["sessions"]["one"]["settings"].update(precison=3), ["session 'one'", "sessions.one.settings.precison", "unknown parameter of TextStats/1.0"]),
    (lambda c: c["study"][0]["grid"].update(windw=[1]), ["study[0].grid.windw", "unknown parameter of Smooth/1.0", "and 3 more session(s)"]),
    (lambda c: c["pipelines"]["smooth"]["settings"].update(input_file="*.nii.gz"), ["pipelines.smooth.settings.input_file", "glob '*.nii.gz' matches no file in dataset 'mri'"]),
    (lambda c: c["sessions"]["one"]["settings"].update(input_file="sub9.csv"), ["sessions.one.settings.input_file", "'sub9.csv' is not a file of dataset 'mri'"]),
    (lambda c: c["sessions"]["one"]["settings"].update(input_file="../secret.csv"), ["sessions.one.settings.input_file", "relative to dataset 'mri'"]),
    (lambda c: c["sessions"].update(nap={"dataset": "mri", "pipeline": "sleep"}), ["session 'nap'", "sessions.nap.settings.duration", "Missing input parameter: duration (required by Sleep/1.0)"]),
    (lambda c: c["study"][0]["grid"].update(window=["big"]), ["study[0].grid.window", "'big' is not an integer"]),
    (lambda c: c["sessions"].update(nap={"dataset": "mri", "pipeline": "sleep", "settings": {"duration": 1, "message": "a;b"}}), ["sessions.nap.settings.message", "contains ';'"]),
    (lambda c: c["study"][0].update(name="same"), ["session 'same'", "same name as a session of study[0]"]),
    (lambda c: c["datasets"].update(mri="data/nowhere"), ["datasets.mri", "is not a directory"]),
]


@pytest.mark.parametrize("mutate,expected", BAD, ids=[e[1][1] for e in BAD])
def test_config_mistakes_name_session_and_key(project, key_env, mutate, expected):
    cfg = base_config(key_env.url)
    mutate(cfg)
    with pytest.raises(vs.StudyConfigError) as err:
        load(cfg, project)
    msg = str(err.value)
    for part in expected:
        assert part in msg, msg
    assert key_env.api_key not in msg


def test_all_mistakes_reported_at_once(project, key_env):
    cfg = base_config(key_env.url)
    cfg["sessions"]["one"]["settings"]["precison"] = 1
    cfg["pipelines"]["smooth"]["settings"]["input_file"] = "*.nii"
    with pytest.raises(vs.StudyConfigError, match=r"\(2 errors\)"):
        load(cfg, project)


def test_real_url_needs_the_key_env_var(project, monkeypatch, vip_server):
    monkeypatch.delenv("MY_VIP_KEY", raising=False)
    cfg = base_config(vip_server.url)
    cfg["vip"]["api_key_env"] = "MY_VIP_KEY"
    with pytest.raises(vs.StudyConfigError, match="vip.api_key_env: environment variable MY_VIP_KEY is not set"):
        load(cfg, project)
    monkeypatch.setenv("MY_VIP_KEY", vip_server.api_key)
    assert "one" in load(cfg, project).sessions


def test_launch_adopts_an_execution_already_on_vip(project, key_env, tmp_path):
    """An execution on VIP whose local markers are gone (results/ lost): the next launch finds
    it by name + pipeline + inputs + the input content recorded with it on VIP and does not
    launch again; a changed session (other inputs) or a superseded execution is not adopted."""
    cfg = base_config(key_env.url)
    cfg["study"] = []
    cfg["sessions"] = {"nap": {"dataset": "mri", "pipeline": "sleep", "settings": {"duration": 0.2}}}
    st = load(cfg, project)
    res = project / "results"
    with VipClient(key_env.url, api_key=key_env.api_key) as c:
        vs.upload_dataset(st, "mri", res / "datasets" / "mri" / "uploaded.json", client=c)
        n0 = c.count_executions() + 1
        first = vs.launch_session(st, "nap", res / "nap" / "launched.json", uploaded=res / "datasets/mri/uploaded.json", client=c)
        lost = c.execution(first["executions"][0])
        (res / "nap" / "launched.json").unlink()
        (res / "nap" / "launch-history.json").unlink()
        assert c.count_executions() == n0
        info = vs.launch_session(st, "nap", res / "nap" / "launched.json", uploaded=res / "datasets/mri/uploaded.json", client=c)
        assert info["executions"] == [lost.identifier] and info["adopted"] is True
        assert c.count_executions() == n0
        assert json.loads((res / "nap" / "launched.json").read_text())["executions"] == [lost.identifier]

        # same name, other inputs: a new execution
        cfg["sessions"]["nap"]["settings"]["duration"] = 0.3
        st2 = load(cfg, project)
        info2 = vs.launch_session(st2, "nap", res / "nap" / "launched.json", uploaded=res / "datasets/mri/uploaded.json", client=c)
        assert info2["adopted"] is False and info2["executions"] != [lost.identifier]
        assert c.count_executions() == n0 + 1

        # back to the first inputs; a dataset file changed, but this session uses none: adopted
        (project / "data" / "mri" / "sub0.csv").write_text("a,b\n9,9\n")
        vs.upload_dataset(st, "mri", res / "datasets" / "mri" / "uploaded.json", client=c)
        info3 = vs.launch_session(st, "nap", res / "nap" / "launched.json", uploaded=res / "datasets/mri/uploaded.json", client=c)
        assert info3["adopted"] is True and info3["executions"] == [lost.identifier]
        assert c.count_executions() == n0 + 1
        history = json.loads((res / "nap" / "launch-history.json").read_text())
        assert [h["executions"][0] for h in history] == [lost.identifier, info2["executions"][0]]

        done = vs.wait_session(st, "nap", res / "nap" / "launched.json", res / "nap" / "done.json", client=c)
        assert done["status"] == "Finished" and done["jobs_ok"] == 1
        out = vs.download_session(st, "nap", res / "nap" / "done.json", res / "nap" / "outputs", client=c)
        assert out["files"] == 1 and len(list((res / "nap" / "outputs").glob("*/sleep.txt"))) == 1
        assert not (res / "nap" / "outputs.partial").exists()


def test_write_json_atomic(tmp_path):
    target = tmp_path / "m" / "x.json"
    vs.write_json_atomic(target, {"a": 1})
    vs.write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_stale_snakemake_lock_is_cleared_only_for_a_dead_run(tmp_path):
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    record = tmp_path / ".snakemake" / "vip-smk-run.json"

    def setup(pid, host=None):
        (locks / "0.input.lock").write_text("x")
        record.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname()}))

    live = subprocess.Popen(["sleep", "30"])
    try:
        setup(live.pid)
        assert vs.clear_stale_lock(tmp_path) is False and (locks / "0.input.lock").exists()
        setup(live.pid + 10**7, host="another-node")  # another host's run: never touched
        assert vs.clear_stale_lock(tmp_path) is False and (locks / "0.input.lock").exists()
    finally:
        live.kill()
        live.wait()
    setup(live.pid)  # that process is gone now
    assert vs.clear_stale_lock(tmp_path) is True
    assert not any(locks.iterdir()) and not record.exists()
    # record_run / forget_run round trip
    vs.record_run(tmp_path)
    assert json.loads(record.read_text())["pid"] > 0
    vs.forget_run(tmp_path)
    assert not record.exists()


def test_dataset_that_cannot_be_uploaded_is_a_config_error(project, key_env):
    (project / "data" / "mri" / "empty.csv").write_text("")
    with pytest.raises(vs.StudyConfigError) as err:
        load(base_config(key_env.url), project)
    assert "dataset 'mri': datasets.mri: empty.csv: empty file" in str(err.value)


def test_results_deleted_and_data_changed_then_no_stale_execution_reused(project, key_env):
    """Without any local history (results/ deleted), a finished execution with the same
    inputs is reused only if it ran on the input files as they are on VIP now."""
    cfg = base_config(key_env.url)
    cfg["study"] = []
    cfg["sessions"] = {"st": {"dataset": "mri", "pipeline": "stats", "settings": {"input_file": "sub0.csv"}}}
    st = load(cfg, project)
    res = project / "results"
    with VipClient(key_env.url, api_key=key_env.api_key) as c:
        up = res / "datasets" / "mri" / "uploaded.json"
        vs.upload_dataset(st, "mri", up, client=c)
        first = vs.launch_session(st, "st", res / "st" / "launched.json", uploaded=up, client=c)
        vs.wait_session(st, "st", res / "st" / "launched.json", res / "st" / "done.json", client=c)
        shutil.rmtree(res)
        again = vs.launch_session(st, "st", res / "st" / "launched.json", client=c)
        assert again["adopted"] is True and again["executions"] == first["executions"]  # same data: reused
        shutil.rmtree(res)
        time.sleep(1.1)  # VIP's modification times are in seconds
        (project / "data" / "mri" / "sub0.csv").write_text("a,b\n7,7\n")
        vs.upload_dataset(st, "mri", up, client=c)
        fresh = vs.launch_session(st, "st", res / "st" / "launched.json", uploaded=up, client=c)
        assert fresh["adopted"] is False and fresh["executions"] != first["executions"]


def test_dataset_file_changed_with_same_size_is_uploaded_again(project, key_env, tmp_path, caplog):
    cfg = base_config(key_env.url)
    st = load(cfg, project)
    up = project / "results" / "datasets" / "mri" / "uploaded.json"
    f = project / "data" / "mri" / "sub1.csv"
    with VipClient(key_env.url, api_key=key_env.api_key) as c:
        vs.upload_dataset(st, "mri", up, client=c)
        up.unlink()  # as Snakemake does before rerunning the job
        f.write_text(f.read_text().replace("1", "7"))  # same size, other content
        with caplog.at_level("INFO", logger="vip_smk.study"):
            vs.upload_dataset(st, "mri", up, client=c)
        assert "sub1.csv changed: sending it again" in caplog.text
        c.download(f"{st.remote_dataset_dir('mri')}/sub1.csv", tmp_path / "back.csv")
    assert (tmp_path / "back.csv").read_text() == f.read_text()


def test_schema_requires_a_study_name_and_fills_defaults():
    cfg = {"datasets": {"d": "x"}, "pipelines": {"p": {"id": "A/1"}}}
    with pytest.raises(Exception, match="'name' is a required property"):
        validate(copy.deepcopy(cfg), SCHEMA, set_default=True)
    cfg["name"] = "s"
    validate(cfg, SCHEMA, set_default=True)
    assert cfg["vip"]["url"] == "local" and cfg["vip"]["poll_seconds"] == 30 and cfg["study"] == []


# ---- issue 9: config mistakes in one line, punctuation in grid values; issue 8: no server ----


@pytest.mark.parametrize("mutate,expected", [
    (lambda c: c.update(pipelnes=c.pop("pipelines")),
     "pipelnes: unknown key 'pipelnes' at the top level (did you mean 'pipelines'?)"),
    (lambda c: c["vip"].update(poll_second=3),
     "vip.poll_second: unknown key 'poll_second' in vip (did you mean 'poll_seconds'?)"),
    (lambda c: c["study"][0].update(gird={"window": [1]}),
     "study[0].gird: unknown key 'gird' in study[0] (did you mean 'grid'?)"),
    (lambda c: c["vip"].update(max_running=0), "vip.max_running: 0 is less than the minimum of 1"),
])
def test_schema_mistake_is_one_line_naming_key_and_closest(project, mutate, expected):
    cfg = base_config("local")
    mutate(cfg)
    with pytest.raises(vs.StudyConfigError) as err:
        vs.load_study(cfg, project)
    msg = str(err.value)
    assert expected in msg and "\n" not in msg and len(msg) < 300, msg


def test_grid_values_with_punctuation_give_valid_stable_distinct_names(project):
    cfg = base_config("local", "punct")
    cfg["study"] = [{"datasets": ["mri"], "pipelines": ["stats"],
                     "grid": {"delimiter": [",", ";", "|", "\t", " ", ":", "é", "a.b", 0.5]}}]
    cfg["sessions"] = {}
    specs, errors = vs.expand_sessions(cfg)
    names = [s["name"] for s in specs]
    assert not errors.items and len(set(names)) == len(names) == 9
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,100}", n) for n in names), names
    assert names[:2] == ["mri-stats-delimitercomma", "mri-stats-delimitersemicolon"]
    assert "mri-stats-delimiter0p5" in names
    assert names == [s["name"] for s in vs.expand_sessions(copy.deepcopy(cfg))[0]]  # stable
    # values VIP accepts load as a study; ';' is refused by VIP itself, naming the key
    cfg["study"][0]["grid"]["delimiter"] = [",", ":"]
    assert sorted(vs.load_study(cfg, project).sessions) == ["mri-stats-delimitercolon", "mri-stats-delimitercomma"]
    cfg["study"][0]["grid"]["delimiter"] = [";"]
    with pytest.raises(vs.StudyConfigError, match=r"study\[0\]\.grid\.delimiter: .*contains ';'"):
        vs.load_study(cfg, project)


def test_local_study_loads_without_server_or_request(project):
    """url: local: the shipped descriptors are read as files; no server package, no process."""
    code = (
        "import sys, yaml; from vip_smk import study as vs; "
        f"cfg = yaml.safe_load(open({str(project / 'c.yaml')!r})); "
        f"st = vs.load_study(cfg, {str(project)!r}); "
        "assert not any(m.startswith('vip_smk.server') for m in sys.modules), 'server imported'; "
        "print(len(st.sessions))"
    )
    (project / "c.yaml").write_text(yaml.safe_dump(base_config("local", "offline")))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "5", out.stderr
    assert not (project / ".vip-local").exists()


def test_unused_pipeline_alias_with_a_wrong_id_is_reported_with_the_rest(project, key_env):
    """Against a VIP URL: an alias no session uses is checked too, in the same pass as a
    schema mistake would be."""
    cfg = base_config(key_env.url)
    cfg["pipelines"]["smoothh"] = {"id": "Smoothh/1.0"}
    with pytest.raises(vs.StudyConfigError) as err:
        load(cfg, project)
    msg = str(err.value)
    assert "pipelines.smoothh.id" in msg and "'Smoothh/1.0' not found" in msg and "used by no session" in msg, msg
    assert "did you mean 'Smooth/1.0'?" in msg, msg

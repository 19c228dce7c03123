"""The Snakemake study workflow, run as users run it (`snakemake` in a subprocess) on a temp
copy of workflow/ + a small config, against real local VIP servers over HTTP: the demo, resume,
capacity, dry runs, config files, failures and errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import yaml
from workflow_helpers import (
    REPO,
    SNAKEMAKE,
    client_for,
    make_project,
    run_smk,
    study_config,
    summary,
    wait_for,
    write_config,
)

from vip_smk.server import LocalServer

# --------------------------------------------------------------------------------------------


def test_demo_study_embedded_local_server(tmp_path):
    """The shipped demo config, `url: local`: the server starts in .vip-local, is reused by
    the next run, the study completes, the key never shows up in output or results."""
    project = tmp_path / "p"
    project.mkdir()
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["vip"]["poll_seconds"] = 0.2
    make_project(project, cfg)
    local = project / ".vip-local"
    try:
        first = run_smk(project)
        srv = LocalServer.attach(local)
        assert srv is not None, "the embedded server should keep running for the next run"
        key = (local / "apikey").read_text().strip()
        assert len(key) >= 16

        # one core: every upload and launch before any waiting (rule priorities)
        log = first.stdout + first.stderr
        launches = [i for i in range(len(log)) if log.startswith("rule launch_session:", i)]
        waits = [i for i in range(len(log)) if log.startswith("rule wait_and_download:", i)]
        assert len(launches) == len(waits) >= 4 and max(launches) < min(waits)
        assert log.index("rule upload_dataset:") < min(launches)

        rows = summary(project)
        sessions = set(yaml.safe_load((REPO / "config" / "config.yaml").read_text())["sessions"])
        assert len(rows) >= 4 and sessions <= set(rows)
        pipelines = {r["pipeline_id"] for r in rows.values()}
        assert {"TextStats/1.0", "Smooth/1.0"} <= pipelines
        for name, row in rows.items():
            assert row["status"] == "Finished", row
            assert int(row["jobs_ok"]) == 3 and int(row["jobs_failed"]) == 0  # glob: 3 files
            assert int(row["outputs"]) >= 3 and int(row["output_bytes"]) > 0
        # the core's layout: outputs/<VIP's dated folder, Windows-safe>/<file>; tarballs extracted
        smooth = next(n for n, r in rows.items() if r["pipeline_id"] == "Smooth/1.0")
        dated = [p for p in (project / "results" / smooth / "outputs").iterdir() if p.is_dir()]
        assert len(dated) == 1 and ":" not in dated[0].name
        extracted = sorted(p.name for p in dated[0].iterdir() if p.is_dir())
        assert len(extracted) == 3 and all((dated[0] / d / "smoothed.csv").is_file() for d in extracted)
        html = (project / "results" / "study_summary.html").read_text()
        assert "<svg" in html and all(n in html for n in rows)
        with client_for(srv) as c:
            assert c.count_executions() == len(rows)

        # second run: same server (attached, not restarted), nothing to do
        pid = srv.pid
        again = run_smk(project)
        assert "Nothing to be done" in again.stdout + again.stderr
        assert LocalServer.attach(local).pid == pid
        with client_for(srv) as c:
            assert c.count_executions() == len(rows)

        # issue 17's study reproduction: `touch` every dataset file (same bytes): nothing
        # launched, nothing sent; one byte changed in one file: exactly that file re-sent, and
        # only the sessions using it relaunched (here all: every session globs *.csv)
        data = project / "config" / "data" / "demo"
        time.sleep(0.05)
        for f in data.iterdir():
            f.touch()
        touched = run_smk(project)
        assert "Nothing to be done" in touched.stdout + touched.stderr, touched.stderr[-3000:]
        with client_for(srv) as c:
            assert c.count_executions() == len(rows)
        f = data / "subject02.csv"
        text = f.read_text()
        f.write_text(text[:-2] + ("0" if text[-2] != "0" else "1") + text[-1])  # one byte, same size
        run_smk(project)
        uploaded = json.loads((project / "results" / "datasets" / "demo" / "uploaded.json").read_text())
        assert uploaded["sent"] == ["subject02.csv"]
        with client_for(srv) as c:
            assert c.count_executions() == 2 * len(rows)

        # snakemake --report includes the summary
        run_smk(project, "--report", "report.html", timeout=120)
        assert (project / "report.html").stat().st_size > 1000

        # the key is nowhere but in .vip-local
        for text in (first.stdout, first.stderr, again.stdout, again.stderr):
            assert key not in text
        for root in (project / "results", project / ".snakemake"):
            for p in root.rglob("*"):
                if p.is_file():
                    assert key.encode() not in p.read_bytes(), p
    finally:
        srv = LocalServer.attach(local)
        if srv is not None:
            srv.stop()


def test_kill9_during_wait_then_resume(tmp_path, make_server):
    """kill -9 of snakemake while it waits: the next `snakemake --cores 1` (no --unlock)
    finishes the study; the server's execution count is unchanged."""
    srv = make_server(max_running=0)  # two executions side by side
    sessions = {
        "nap-a": {"dataset": "demo", "pipeline": "sleep", "settings": {"duration": 3}},
        "nap-b": {"dataset": "demo", "pipeline": "sleep", "settings": {"duration": 3, "message": "b"}},
    }
    project = make_project(tmp_path, study_config(srv, sessions))
    env = dict(os.environ, VIP_API_KEY=srv.api_key)
    proc = subprocess.Popen([*SNAKEMAKE, "--cores", "1"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    res = project / "results"
    try:
        deadline = time.monotonic() + 60
        while not all((res / s / "launched.json").exists() for s in sessions):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "sessions were not launched in time"
            time.sleep(0.1)
        time.sleep(0.5)  # inside wait_session now
        assert not any((res / s / "done.json").exists() for s in sessions)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with client_for(srv) as c:
        assert c.count_executions() == 2
    out = run_smk(project, key=srv.api_key)
    assert "removed the lock left by an interrupted run" in out.stderr
    rows = summary(project)
    assert {r["status"] for r in rows.values()} == {"Finished"}
    with client_for(srv) as c:
        assert c.count_executions() == 2
    for s in sessions:
        assert len(list((res / s / "outputs").glob("*/sleep.txt"))) == 1
        assert json.loads((res / s / "launched.json").read_text())["adopted"] is False


def test_changed_parameter_reruns_only_that_session(tmp_path, make_server):
    srv = make_server(count_requests=True)
    sessions = {
        "p2": {"dataset": "demo", "pipeline": "stats", "settings": {"precision": 2}},
        "p5": {"dataset": "demo", "pipeline": "stats", "settings": {"precision": 5}},
    }
    project = make_project(tmp_path, study_config(srv, sessions))
    run_smk(project, key=srv.api_key)
    res = project / "results"
    before = {s: json.loads((res / s / "launched.json").read_text())["executions"] for s in sessions}
    untouched = {p: p.stat().st_mtime_ns for p in (res / "p2").rglob("*") if p.is_file()}
    with client_for(srv) as c:
        assert c.count_executions() == 2

    sessions["p5"]["settings"]["precision"] = 1
    write_config(project, study_config(srv, sessions))
    srv.reset_request_counts()
    dry = run_smk(project, "-n", key=srv.api_key)
    assert "output: results/p5/launched.json" in dry.stdout
    # the dry run read the pipelines the real run cached: not one request to VIP
    assert srv.request_counts()["total"] == 0
    assert "output: results/p2/" not in dry.stdout  # the other session is untouched
    run_smk(project, key=srv.api_key)
    with client_for(srv) as c:
        assert c.count_executions() == 3
    after = {s: json.loads((res / s / "launched.json").read_text())["executions"] for s in sessions}
    assert after["p2"] == before["p2"] and after["p5"] != before["p5"]
    assert {p: p.stat().st_mtime_ns for p in (res / "p2").rglob("*") if p.is_file()} == untouched
    stats = next((res / "p5" / "outputs").glob("*/*.stats.txt")).read_text()
    assert summary(project)["p5"]["parameters"] == "precision=1" and stats


def test_bad_config_fails_dry_run_naming_session_and_key(tmp_path, make_server):
    srv = make_server()
    sessions = {
        "good": {"dataset": "demo", "pipeline": "stats"},
        "typo": {"dataset": "demo", "pipeline": "smooth", "settings": {"windw": 4}},
        "noglob": {"dataset": "demo", "pipeline": "stats", "settings": {"input_file": "*.nii.gz"}},
    }
    project = make_project(tmp_path, study_config(srv, sessions))
    for args in (("-n",), ()):
        out = run_smk(project, *args, key=srv.api_key, check=False)
        assert out.returncode != 0
        err = out.stdout + out.stderr
        assert "session 'typo'" in err and "sessions.typo.settings.windw" in err
        assert "session 'noglob'" in err and "sessions.noglob.settings.input_file" in err
        assert "Traceback" not in err
    # schema error: names the key
    cfg = study_config(srv, {"good": {"dataset": "demo", "pipeline": "stats"}}, max_running=0)
    write_config(project, cfg)
    out = run_smk(project, key=srv.api_key, check=False)
    assert out.returncode != 0 and "max_running" in out.stdout + out.stderr
    # nothing reached the server
    with client_for(srv) as c:
        assert c.count_executions() == 0
        assert not c.exists("/vip/Home/API")
    assert not (project / "results").exists()


def test_capacity_failures_and_cleanup(tmp_path, make_server):
    """VIP's cap (error 2001, server max_running=1): launches wait for a slot instead of
    failing; a failing app is reported, not fatal; vip.cleanup removes remote data."""
    srv = make_server(max_running=1)
    sessions = {
        "s1": {"dataset": "demo", "pipeline": "sleep", "settings": {"duration": 0.5}},
        "s2": {"dataset": "demo", "pipeline": "sleep", "settings": {"duration": 0.5, "message": "two"}},
        "bad": {"dataset": "demo", "pipeline": "fail", "settings": {"input_file": "subject01.csv"}},
    }
    project = make_project(tmp_path, study_config(srv, sessions, cleanup=True, allow_failures=True))
    out = run_smk(project, key=srv.api_key)
    assert "waiting for a slot" in out.stderr
    rows = summary(project)
    assert rows["s1"]["status"] == rows["s2"]["status"] == "Finished"
    assert rows["bad"]["status"] != "Finished" and int(rows["bad"]["jobs_failed"]) == 1
    res = project / "results"
    with client_for(srv) as c:
        execs = [c.execution(e.identifier) for e in c.executions()]
        assert len(execs) == 3
        spans = sorted((e.start_date, e.end_date) for e in execs)
        assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)), spans
        for s in sessions:
            assert (res / s / "finished").is_file()
            assert not c.exists(f"/vip/Home/API/t/{s}")
        assert (res / "datasets" / "demo" / "finished").is_file()
        assert not c.exists("/vip/Home/API/t/datasets/demo")

    # a session added after the cleanup: its dataset is uploaded again, then removed again
    sessions["late"] = {"dataset": "demo", "pipeline": "stats", "settings": {"input_file": "subject02.csv"}}
    write_config(project, study_config(srv, sessions, cleanup=True, allow_failures=True))
    out = run_smk(project, key=srv.api_key)
    assert "dataset demo is no longer on VIP" in out.stderr
    assert summary(project)["late"]["status"] == "Finished"
    assert len(list((res / "late" / "outputs").glob("*/subject02.csv.stats.txt"))) == 1
    with client_for(srv) as c:
        assert c.count_executions() == 4
        assert not c.exists("/vip/Home/API/t/datasets/demo")

    # a cleaned-up session deleted locally: its finished execution has no outputs left on VIP,
    # so it is launched again (not adopted)
    shutil.rmtree(res / "s1")
    run_smk(project, key=srv.api_key)
    assert len(list((res / "s1" / "outputs").glob("*/sleep.txt"))) == 1
    with client_for(srv) as c:
        assert c.count_executions() == 5


def test_max_running_caps_executions_in_flight(tmp_path, make_server):
    """vip.max_running alone keeps the study's executions one at a time: the server would run
    all three at once, and Snakemake has the cores to launch them together."""
    srv = make_server(max_running=0)
    sessions = {f"n{i}": {"dataset": "demo", "pipeline": "sleep", "settings": {"duration": 1.5, "message": f"m{i}"}}
                for i in range(3)}
    project = make_project(tmp_path, study_config(srv, sessions, max_running=1))
    out = run_smk(project, "--cores", "4", key=srv.api_key)
    assert "vip.max_running" in out.stderr
    with client_for(srv) as c:
        execs = [c.execution(e.identifier) for e in c.executions()]
    spans = sorted((e.start_date, e.end_date) for e in execs)
    assert len(spans) == 3
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)), spans


def test_snakefmt_and_lint(tmp_path, make_server):
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", str(REPO / "workflow")],
                         capture_output=True, text=True, timeout=60)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    srv = make_server()
    project = make_project(tmp_path, study_config(srv, {"a": {"dataset": "demo", "pipeline": "stats"}}))
    lint = run_smk(project, "--lint", key=srv.api_key, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Lints for" not in lint.stdout + lint.stderr, lint.stdout + lint.stderr


# ---- issue 8 item 7: a dry run touches nothing; issue 9: resume, config files, failures, errors ----


def test_dry_run_lint_dag_start_nothing_and_still_report_mistakes(tmp_path):
    """A fresh copy of the demo (url: local): -n, --lint and --dag read the shipped descriptors,
    start no server, write no .vip-local/; a config mistake is still reported by -n."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    project = make_project(tmp_path, cfg)
    dry = run_smk(project, "-n")
    assert "launch_session" in dry.stdout and "demo-smooth-normalized" in dry.stdout
    run_smk(project, "--lint", check=False)
    dag = run_smk(project, "--dag")
    assert "digraph" in dag.stdout
    assert not (project / ".vip-local").exists() and not (project / "results").exists()
    cfg["pipelines"]["smooth"]["settings"]["windw"] = 4
    write_config(project, cfg)
    out = run_smk(project, "-n", check=False)
    err = out.stdout + out.stderr
    assert out.returncode != 0 and "pipelines.smooth.settings.windw" in err and "did you mean 'window'?" in err
    assert "Traceback" not in err and not (project / ".vip-local").exists()


def test_configfile_is_the_whole_study(tmp_path, vip_server):
    """--configfile other.yaml: the demo's sessions (config/config.yaml) do not join in."""
    project = make_project(tmp_path, yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    other = study_config(vip_server, {"mine": {"dataset": "demo", "pipeline": "stats"}})
    (project / "other.yaml").write_text(yaml.safe_dump(other))
    out = run_smk(project, "-n", "--configfile", "other.yaml", key=vip_server.api_key).stdout
    assert "results/mine/launched.json" in out and "demo-smooth" not in out and "demo-stats" not in out


def test_deleting_under_results_redoes_exactly_what_is_missing(tmp_path, make_server):
    srv = make_server()
    sessions = {"st": {"dataset": "demo", "pipeline": "stats", "settings": {"input_file": "subject01.csv"}},
                "other": {"dataset": "demo", "pipeline": "stats", "settings": {"input_file": "subject02.csv"}}}
    project = make_project(tmp_path, study_config(srv, sessions))
    run_smk(project, key=srv.api_key)
    res = project / "results"
    untouched = {p: p.stat().st_mtime_ns for p in (res / "other").rglob("*") if p.is_file()}
    for victim in (res / "st" / "outputs", res / "st" / "done.json", res / "st"):
        shutil.rmtree(victim) if victim.is_dir() else victim.unlink()
        out = run_smk(project, key=srv.api_key)
        assert "Nothing to be done" not in out.stdout + out.stderr, victim
        assert len(list((res / "st" / "outputs").glob("*/subject01.csv.stats.txt"))) == 1, victim
        assert (res / "st" / "done.json").is_file() and summary(project)["st"]["status"] == "Finished"
        with client_for(srv) as c:
            assert c.count_executions() == 2, victim  # downloaded again from the same execution
    assert {p: p.stat().st_mtime_ns for p in (res / "other").rglob("*") if p.is_file()} == untouched
    assert "Nothing to be done" in run_smk(project, key=srv.api_key).stderr


def test_failed_study_exits_nonzero_then_retry_by_deleting_done(tmp_path, make_server):
    """A failed session: outputs downloaded, summary written, exit status 1 naming it;
    vip.allow_failures keeps 0; deleting its done.json launches it again."""
    srv = make_server()
    sessions = {"good": {"dataset": "demo", "pipeline": "stats", "settings": {"input_file": "subject01.csv"}},
                "bad": {"dataset": "demo", "pipeline": "fail", "settings": {"message": "boom"}}}
    project = make_project(tmp_path, study_config(srv, sessions))
    out = run_smk(project, key=srv.api_key, check=False)
    err = out.stdout + out.stderr
    assert out.returncode != 0 and "1 of 2 session(s) did not finish: bad (ExecutionFailed)" in err
    assert "Traceback" not in err and "vip_smk/" not in err  # no frame of ours, one line
    assert "boom" in (project / "results" / "logs" / "wait_and_download" / "bad.log").read_text()
    rows = summary(project)
    assert rows["good"]["status"] == "Finished" and rows["bad"]["status"] == "ExecutionFailed"
    # the summary: VIP's error on the failed row, in each form; the time says it includes the queue
    assert "boom" in rows["bad"]["error"] and not rows["good"]["error"] and rows["good"]["queued_run_s"] != ""
    txt = (project / "results" / "study_summary.txt").read_text()
    assert "queued + run" in txt and "boom" in txt.split("VIP's errors:")[1], txt
    page = (project / "results" / "study_summary.html").read_text()
    table = page[page.index("<table"):]
    assert "<th>queued + run</th>" in table and "<th>VIP's error</th>" in table, table
    assert "output_bytes" not in table and "jobs_ok" not in table  # headings, not column names
    size = int(rows["good"]["output_bytes"])
    assert f"<td>{size}</td>" not in table and re.search(r"<td>\d+(\.\d)? (B|kB)</td>", table), table
    assert re.search(r"<td>\d+\.\d s</td>", table) and "boom" in table, table
    assert run_smk(project, key=srv.api_key, check=False).returncode != 0  # still failed, still says so

    write_config(project, study_config(srv, sessions, allow_failures=True))
    assert run_smk(project, key=srv.api_key).returncode == 0
    (project / "results" / "bad" / "done.json").unlink()
    out = run_smk(project, key=srv.api_key)
    assert "failed and its done.json was removed: launching again" in out.stderr
    with client_for(srv) as c:
        assert c.count_executions() == 3


def test_dead_embedded_server_is_restarted(tmp_path):
    """url: local, kill -9 of the .vip-local server while the study waits: the study starts
    it again and finishes (the server runs the interrupted execution again)."""
    sessions = {"nap": {"dataset": "demo", "pipeline": "sleep", "settings": {"duration": 3}}}
    project = make_project(tmp_path, study_config(None, sessions, retry_seconds=2))
    local = project / ".vip-local"
    proc = subprocess.Popen([*SNAKEMAKE, "--cores", "1"], cwd=project, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(project / "results" / "nap" / "launched.json", proc)
        first = LocalServer.attach(local)
        os.kill(first.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err[-3000:]
        assert "is gone: starting it again" in err
        second = LocalServer.attach(local)
        assert second is not None and second.pid != first.pid
        assert summary(project)["nap"]["status"] == "Finished"
    finally:
        if proc.poll() is None:
            proc.kill()
        srv = LocalServer.attach(local)
        if srv is not None:
            srv.stop()


def test_remote_vip_gone_stops_within_budget_naming_url(tmp_path, make_server):
    srv = make_server()
    sessions = {"nap": {"dataset": "demo", "pipeline": "sleep", "settings": {"duration": 30}}}
    project = make_project(tmp_path, study_config(srv, sessions, retry_seconds=2))
    env = dict(os.environ, VIP_API_KEY=srv.api_key)
    proc = subprocess.Popen([*SNAKEMAKE, "--cores", "1"], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(project / "results" / "nap" / "launched.json", proc)
        srv.kill()
        t0 = time.monotonic()
        out, _ = proc.communicate(timeout=60)
        assert time.monotonic() - t0 < 30
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert f"cannot reach VIP at {srv.url}" in out and "vip.url" in out and "Traceback" not in out
    assert "vip_smk/" not in out


def test_unreachable_url_and_bad_key_say_what_to_fix(tmp_path, vip_server):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = study_config(vip_server, {"a": {"dataset": "demo", "pipeline": "stats"}}, retry_seconds=1.5)
    cfg["vip"]["url"] = f"http://127.0.0.1:{port}"
    project = make_project(tmp_path, cfg)
    out = run_smk(project, "-n", key="some-key-123456", check=False)
    err = out.stdout + out.stderr
    assert out.returncode != 0 and f"cannot reach VIP at http://127.0.0.1:{port}" in err and "Traceback" not in err
    # retry warnings printed while the workflow is parsed: time and logger name, like the others
    assert re.search(r"^\d\d:\d\d:\d\d WARNING vip_smk\.api\.transport: .*\(retry 1 ", err, re.M), err
    write_config(project, study_config(vip_server, {"a": {"dataset": "demo", "pipeline": "stats"}}))
    out = run_smk(project, "-n", key="wrong-key-" + "x" * 20, check=False)
    err = out.stdout + out.stderr
    assert out.returncode != 0 and "environment variable VIP_API_KEY" in err and "vip.api_key_env" in err
    assert "Traceback" not in err and "client.py" not in err and "transport.py" not in err

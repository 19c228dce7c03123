"""The study workflow, as users run it: what counts as a change (content, never mtime alone),
markers made again, a too-large output, Ctrl-C, an outage, config mistakes, the demo install."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
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

# --------------------------------------------------------------------------------------------
# Content decides (issues 17 and 22): touch, rm -rf results, one byte, hidden / excluded files
# --------------------------------------------------------------------------------------------


def _counts(srv) -> int:
    with client_for(srv) as c:
        return c.count_executions()


def _sent(project: Path) -> list[str]:
    return json.loads((project / "results" / "datasets" / "demo" / "uploaded.json").read_text())["sent"]


def test_content_decides_touch_results_deleted_one_byte_and_unmatched_files(tmp_path, make_server):
    """Default server (capacity 1). A `touch` of every dataset file: "Nothing to be done";
    then `rm -rf results`: everything adopted, nothing re-sent; a .DS_Store and an excluded file:
    nothing uploaded, nothing relaunched; one byte changed in one file: exactly that file
    re-sent and only the sessions using it relaunched."""
    srv = make_server()  # a new VIP account: one execution at a time
    sessions = {"all": {"dataset": "demo", "pipeline": "stats"},
                "one": {"dataset": "demo", "pipeline": "stats", "settings": {"input_file": "subject01.csv"}},
                "two": {"dataset": "demo", "pipeline": "smooth", "settings": {"input_file": "subject02.csv"}}}
    cfg = study_config(srv, sessions)
    cfg["datasets"]["demo"] = {"path": "config/data/demo", "exclude": ["*.txt"]}
    project = make_project(tmp_path, cfg)
    data = project / "config" / "data" / "demo"
    run_smk(project, key=srv.api_key)
    assert _counts(srv) == 3 and sorted(_sent(project)) == sorted(p.name for p in data.glob("*.csv"))
    res = project / "results"
    first = {s: json.loads((res / s / "launched.json").read_text())["executions"] for s in sessions}

    time.sleep(0.05)
    for f in data.glob("*.csv"):
        f.touch()
    out = run_smk(project, key=srv.api_key)
    assert "Nothing to be done" in out.stderr, out.stderr[-3000:]
    assert _counts(srv) == 3
    shutil.rmtree(res)
    out = run_smk(project, key=srv.api_key)
    log = out.stdout + out.stderr
    assert _counts(srv) == 3, log[-3000:]
    assert "not reused" not in log and _sent(project) == []
    assert {s: json.loads((res / s / "launched.json").read_text())["executions"] for s in sessions} == first

    (data / ".DS_Store").write_bytes(b"\0\1junk")
    (data / "notes.txt").write_text("not data\n")
    out = run_smk(project, key=srv.api_key)
    assert "Nothing to be done" in out.stderr, out.stderr[-3000:]
    shutil.rmtree(res)
    run_smk(project, key=srv.api_key)
    assert _counts(srv) == 3 and _sent(project) == []
    with client_for(srv) as c:
        names = {i.path.rsplit("/", 1)[-1] for i in c.list("/vip/Home/API/t/datasets/demo")}
    assert ".DS_Store" not in names and "notes.txt" not in names

    f = data / "subject02.csv"
    text = f.read_text()
    f.write_text(text[:-2] + ("0" if text[-2] != "0" else "1") + text[-1])  # one byte, same size
    out = run_smk(project, key=srv.api_key)
    assert _sent(project) == ["subject02.csv"]
    assert _counts(srv) == 5, out.stderr[-6000:]  # "all" and "two" use subject02.csv; "one" does not
    after = {s: json.loads((res / s / "launched.json").read_text())["executions"] for s in sessions}
    assert after["one"] == first["one"] and after["all"] != first["all"] and after["two"] != first["two"]


def test_rewritten_dataset_marker_never_relaunches_a_session_whose_inputs_did_not_change(tmp_path, make_server):
    """vip.cleanup: a finished session's execution has nothing left on VIP, so it cannot be
    adopted. When the dataset marker is rewritten (one byte of ANOTHER file changed: the
    dataset is sent again), the session whose own input digest did not
    change is not re-entered at all: no new execution, its outputs untouched; only the session
    using the changed file relaunches."""
    srv = make_server()
    sessions = {"a": {"dataset": "demo", "pipeline": "stats", "settings": {"input_file": "subject01.csv"}},
                "b": {"dataset": "demo", "pipeline": "stats", "settings": {"input_file": "subject02.csv"}}}
    project = make_project(tmp_path, study_config(srv, sessions, cleanup=True))
    run_smk(project, key=srv.api_key)
    res = project / "results"
    assert _counts(srv) == 2
    b_first = json.loads((res / "b" / "launched.json").read_text())["executions"]
    untouched = {p: p.stat().st_mtime_ns for p in (res / "b").rglob("*") if p.is_file()}

    f = project / "config" / "data" / "demo" / "subject01.csv"
    text = f.read_text()
    f.write_text(text[:-2] + ("0" if text[-2] != "0" else "1") + text[-1])  # one byte, same size
    out = run_smk(project, key=srv.api_key)
    assert _counts(srv) == 3, out.stderr[-6000:]  # "a" relaunched, "b" not
    assert json.loads((res / "b" / "launched.json").read_text())["executions"] == b_first
    assert {p: p.stat().st_mtime_ns for p in (res / "b").rglob("*") if p.is_file()} == untouched

    assert "Nothing to be done" in run_smk(project, key=srv.api_key).stderr


def test_deleted_markers_are_made_again_by_adoption(tmp_path, make_server):
    """launched.json and datasets/<d>/uploaded.json deleted: the next run makes them again,
    adopting (never relaunching) and sending nothing."""
    srv = make_server()
    sessions = {"st": {"dataset": "demo", "pipeline": "stats", "settings": {"input_file": "subject01.csv"}}}
    project = make_project(tmp_path, study_config(srv, sessions))
    run_smk(project, key=srv.api_key)
    res = project / "results"
    first = json.loads((res / "st" / "launched.json").read_text())["executions"]
    for victim in (res / "st" / "launched.json", res / "datasets" / "demo" / "uploaded.json"):
        victim.unlink()
        out = run_smk(project, key=srv.api_key)
        assert victim.is_file(), f"{victim} not made again:\n{out.stderr[-2000:]}"
        assert json.loads((res / "st" / "launched.json").read_text())["executions"] == first
        assert _counts(srv) == 1
        assert victim.name != "uploaded.json" or _sent(project) == []
    assert "Nothing to be done" in run_smk(project, key=srv.api_key).stderr


def test_another_study_with_the_same_session_names_is_not_called_stale(tmp_path, make_server):
    """Two studies on one VIP account, same session names: each ignores the other's executions
    (another results location) without calling them "older" or "not reused"."""
    srv = make_server()
    sessions = {"st": {"dataset": "demo", "pipeline": "stats", "settings": {"input_file": "subject01.csv"}}}
    a = make_project(tmp_path / "a", study_config(srv, sessions))
    run_smk(a, key=srv.api_key)
    cfg = study_config(srv, sessions)
    cfg["name"] = "t2"
    b = make_project(tmp_path / "b", cfg)
    out = run_smk(b, key=srv.api_key)
    log = out.stdout + out.stderr
    assert "not reused" not in log and "older input" not in log, log[-3000:]
    assert _counts(srv) == 2


def test_output_over_the_direct_transfer_limit_is_one_line_and_the_rest_is_kept(tmp_path, make_server):
    """maxSizeDirectTransfer (here 300 bytes): the session whose output is over it fails with one
    line naming the file, its size and the limit (no "run again"); every other output is kept."""
    srv = make_server(max_download_size=300)
    sessions = {"st": {"dataset": "demo", "pipeline": "stats", "settings": {"input_file": "subject01.csv"}},
                "sm": {"dataset": "demo", "pipeline": "smooth", "settings": {"input_file": "subject02.csv"}}}
    project = make_project(tmp_path, study_config(srv, sessions))
    out = run_smk(project, key=srv.api_key, check=False)
    log = out.stdout + out.stderr
    assert out.returncode != 0
    line = re.search(r"session sm: output (\S+) is ([\d,]+) bytes, over VIP's direct-transfer limit of 300 bytes"
                     r" \(maxSizeDirectTransfer\)[^\n]*", log)
    assert line, log[-4000:]
    assert line.group(1).endswith(".tgz") and int(line.group(2).replace(",", "")) > 300
    assert "run again to resume" not in line.group(0)
    res = project / "results"
    assert len(list((res / "st" / "outputs").glob("*/subject01.csv.stats.txt"))) == 1
    with client_for(srv) as c:
        assert c.count_executions() == 2


def _ctrl_c_works() -> None:
    """In the child: SIGINT as in a terminal (a suite started in the background by a shell
    without job control inherits SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("waiting", ["execution", "slot"])
def test_ctrl_c_during_wait_exits_soon_leaves_executions_running_then_resumes(tmp_path, make_server, waiting):
    """Ctrl-C while a session waits for its execution, or (VIP's default capacity of 1) while
    the next session waits for a slot: snakemake exits within seconds (not when the execution
    ends), says the execution keeps running on VIP, prints no traceback, even on a second
    Ctrl-C; the next run resumes it (no new execution) and finishes the study."""
    srv = make_server()  # VIP's default: one execution at a time
    sessions = {"nap": {"dataset": "demo", "pipeline": "sleep", "settings": {"duration": 15}}}
    if waiting == "slot":
        sessions = {s: {"dataset": "demo", "pipeline": "sleep", "settings": {"duration": 8, "message": s}}
                    for s in ("nap", "nap-b")}
    project = make_project(tmp_path, study_config(srv, sessions, poll_seconds=30))
    env = dict(os.environ, VIP_API_KEY=srv.api_key)
    proc = subprocess.Popen([*SNAKEMAKE, "--cores", "1"], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=_ctrl_c_works)
    try:
        deadline = time.monotonic() + 60  # snakemake picks either session first
        while not (first := [s for s in sessions if (project / "results" / s / "launched.json").exists()]):
            assert proc.poll() is None and time.monotonic() < deadline, "no session launched"
            time.sleep(0.1)
        waiting_one = next((s for s in sessions if s not in first), None)
        time.sleep(3)  # inside the wait now (first rounds done, then a long pause)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # an impatient second Ctrl-C
        out, _ = proc.communicate(timeout=30)
        took = time.monotonic() - t0
        assert took < 10, f"snakemake took {took:.0f} s to stop:\n{out[-3000:]}"
        assert proc.returncode != 0
        assert "Traceback" not in out and "Cannot close a running event loop" not in out, out[-4000:]
        assert "keep running on VIP" in out and "run again" in out, out[-3000:]
        if waiting == "slot":
            assert f"{waiting_one}: stopped (Ctrl-C) while waiting for a slot" in out, out[-3000:]
        with client_for(srv) as c:
            running = [e for e in c.executions() if e.is_running]
            assert len(running) == 1 and c.count_executions() == 1
        assert not any((project / "results" / s / "done.json").exists() for s in sessions)
        # the rerun polls often (its waits are not what is tested; the poll is no session's input)
        write_config(project, study_config(srv, sessions, poll_seconds=0.5))
        again = run_smk(project, key=srv.api_key, timeout=120)
        assert {r["status"] for r in summary(project).values()} == {"Finished"}, again.stderr[-2000:]
        with client_for(srv) as c:
            assert c.count_executions() == len(sessions)  # resumed, not launched again
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with client_for(srv) as c:  # on failure, leave no execution running
            for e in c.executions():
                if e.is_running:
                    c.kill(e.identifier)


def test_remote_vip_down_is_retried_for_retry_seconds_then_clear_error(tmp_path, make_server):
    """vip.retry_seconds is a time: with VIP down the step keeps trying that long (not a
    fixed count of attempts), then stops with one line naming the URL."""
    srv = make_server()
    sessions = {"nap": {"dataset": "demo", "pipeline": "sleep", "settings": {"duration": 30}}}
    project = make_project(tmp_path, study_config(srv, sessions, retry_seconds=10))
    env = dict(os.environ, VIP_API_KEY=srv.api_key)
    proc = subprocess.Popen([*SNAKEMAKE, "--cores", "1"], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(project / "results" / "nap" / "launched.json", proc)
        time.sleep(1)  # waiting now
        srv.kill()
        t0 = time.monotonic()
        out, _ = proc.communicate(timeout=90)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert took >= 9.5, f"gave up after {took:.1f} s, not vip.retry_seconds=10:\n{out[-2000:]}"
    assert took < 35, out[-2000:]
    assert f"cannot reach VIP at {srv.url}" in out and "vip.url" in out and "Traceback" not in out


def test_five_config_mistakes_reported_in_one_dry_run_without_frames(tmp_path):
    """A schema key, a file name VIP would rename, a parameter of the wrong type, a glob
    matching nothing and an unused pipeline alias with a wrong id: one `snakemake -n` names
    all five (key by key), with no Python frame of ours; nothing is started."""
    sessions = {
        "typed": {"dataset": "demo", "pipeline": "stats", "settings": {"precision": "two"}},
        "noglob": {"dataset": "demo", "pipeline": "stats", "settings": {"input_file": "*.nii.gz"}},
    }
    cfg = study_config(None, sessions)
    cfg["vip"]["poll_secnds"] = 5  # 1. a key the schema does not know
    cfg["pipelines"]["smoothh"] = {"id": "Smoothh/1.0"}  # 5. used by no session
    project = make_project(tmp_path, cfg)
    (project / "config" / "data" / "demo" / "subject 04.csv").write_text("a,b\n1,2\n")  # 2. renamed by VIP
    out = run_smk(project, "-n", check=False)
    err = out.stdout + out.stderr
    assert out.returncode != 0
    for part in ("vip.poll_secnds", "poll_seconds",  # the key and the closest known one
                 "subject 04.csv", "datasets.demo",
                 "sessions.typed.settings.precision",
                 "sessions.noglob.settings.input_file", "*.nii.gz",
                 "pipelines.smoothh.id", "Smoothh/1.0"):
        assert part in err, f"{part!r} not reported:\n{err[-3000:]}"
    assert "(5 errors)" in err, err[-3000:]
    assert "Traceback" not in err and "vip_smk/" not in err, err[-3000:]
    frames = [ln for ln in err.splitlines() if ln.strip().startswith('File "')]
    assert all("/workflow/Snakefile" in ln for ln in frames), frames  # only where the study is read
    assert not (project / ".vip-local" / "server.json").exists() and not (project / "results").exists()


# -- what `make demo` installs (`pip install -e .[all]`), not the test install -------------------

_ONLY_INSTALLED = """
import importlib.abc, sys
blocked = set(sys.argv[1].split(","))

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
sys.argv = ["snakemake", *sys.argv[2:]]
from snakemake.cli import main
main()
"""


def _demo_install_closure() -> set[str]:
    """The distributions `pip install .[all]` brings: vip-smk's requirements read from
    pyproject.toml (this tree, not the installed metadata), then those of each dependency."""
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    own = canonicalize_name(project["name"])
    extras = project.get("optional-dependencies", {})
    seen: dict[str, set[str]] = {}
    todo = [Requirement(f"{project['name']}[all]")]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        wanted = set(req.extras)
        if name in seen and wanted <= seen[name]:
            continue
        seen.setdefault(name, set()).update(wanted)
        if name == own:
            reqs = list(project["dependencies"]) + [r for e in seen[name] for r in extras.get(e, [])]
            todo += [Requirement(r) for r in reqs]
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in {"", *seen[name]}):
                todo.append(sub)
    return set(seen)


def run_as_demo_install(project: Path, *args: str, key: str | None = None, timeout: float = 120):
    """snakemake where only the modules of the demo's install can be imported (those the
    test install adds, pytest's pygments among them, are not there)."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    keep = _demo_install_closure()
    blocked = sorted(mod for mod, dists in metadata.packages_distributions().items()
                     if not any(canonicalize_name(d) in keep for d in dists) and not mod.startswith("_"))
    env = dict(os.environ)
    env.pop("VIP_API_KEY", None)
    if key is not None:
        env["VIP_API_KEY"] = key
    return subprocess.run([sys.executable, "-c", _ONLY_INSTALLED, ",".join(blocked), "--cores", "1", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=timeout), blocked


def test_report_works_with_the_demo_install(tmp_path, make_server):
    """`snakemake --report` on a finished study, with only what `make demo` installs ([all]):
    the report's own needs (pygments) are declared, not borrowed from the test install."""
    srv = make_server()
    sessions = {"one": {"dataset": "demo", "pipeline": "stats", "settings": {"input_file": "subject01.csv"}}}
    project = make_project(tmp_path, study_config(srv, sessions))
    done, blocked = run_as_demo_install(project, key=srv.api_key)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pytest" in blocked  # the test install's extras really are out of reach
    out, _ = run_as_demo_install(project, "--report", "report.html", key=srv.api_key)
    assert out.returncode == 0, out.stderr[-3000:]
    page = (project / "report.html").read_text(errors="replace")
    assert len(page) > 1000 and "study_summary" in page

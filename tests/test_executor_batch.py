"""`--executor vip` batches (issue 21): a rule's ready jobs as ONE VIP execution with list
inputs, each job getting exactly its own results; against a real local VIP server, Snakemake
run as a process."""

from __future__ import annotations

import json
import secrets
import shutil
import tarfile
from functools import partial
from pathlib import Path

import pytest
import test_executor_plugin as plugin_tests
from test_executor_plugin import EXAMPLE, executions_under, project, wait_for

from vip_smk.core.client import VipClient
from vip_smk.server import LocalServer

pytestmark = pytest.mark.timeout(600)
run_smk = partial(plugin_tests.run_smk, batch=None)  # the executor's default batch size
start_smk = partial(plugin_tests.start_smk, batch=None)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    key = secrets.token_urlsafe(18)
    srv = LocalServer(max_running=0, max_download_size=0, results_location=True,
                      data_dir=tmp_path_factory.mktemp("vip-batch"), port=0,
                      users=[f"bea:{key}"], workers=4, count_requests=True)
    srv.start(timeout=60)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def vip(server):
    c = VipClient(server.url, api_key=server.api_key, retry_budget=5, progress=False)
    yield c
    c.close()


SMOOTH = """
    SUBJECTS = [f"s{{i:02d}}" for i in range({n})]
    BAD = {empty!r}

    localrules:
        all,
        prep,


    rule all:
        input:
            expand("smoothed/{{s}}", s=SUBJECTS),


    rule prep:
        output:
            "prep/{{s}}.csv",
        run:
            with open(output[0], "w") as f:
                if wildcards.s in BAD:  # no numeric column: Smooth fails on it
                    f.write("t,signal\\nx,y\\n")
                else:
                    n = sum(map(ord, wildcards.s))
                    f.write("t,signal\\n" + "".join(f"{{t}},{{(t * n) % 17}}\\n" for t in range(30)))


    rule smooth:
        input:
            input_file="prep/{{s}}.csv",
        output:
            directory("smoothed/{{s}}"),
        resources:
            vip_pipeline="Smooth/1.0",
        params:
            window={window},
            normalize=True,
        shell:
            "# runs on VIP"
"""


def own_results(vip: VipClient, folder: str, subject: str) -> list[str]:
    """The files in a job's own results folder, relative to it."""
    root = f"/vip/Home/{folder}/smoothed/{subject}"
    out = []
    for dated in vip.list(root):
        assert dated.is_directory, dated
        out += [f"{Path(dated.path).name}/{Path(f.path).name}" for f in vip.list(dated.path)]
    return out


def summary_input(vip: VipClient, tmp: Path, folder: str, subject: str) -> str:
    [rel] = own_results(vip, folder, subject)
    local = tmp / f"{subject}.tgz"
    vip.download(f"/vip/Home/{folder}/smoothed/{subject}/{rel}", local)
    with tarfile.open(local) as tar:
        text = tar.extractfile("summary.txt").read().decode()
    return next(ln for ln in text.splitlines() if ln.startswith("input:"))


def test_batch_of_10_with_one_failing_input(server, vip, tmp_path):
    """One execution of 10 jobs; the job whose input is empty fails with its own VIP job's
    stderr, the nine others succeed, each with exactly its own result."""
    work = project(tmp_path / "w", SMOOTH.format(n=10, empty=["s04"], window=3))
    run = run_smk(server, work, "b-fail", "--keep-going")
    assert run.returncode != 0, run.output[-3000:]
    ran = executions_under(vip, "b-fail")
    assert len(ran) == 1, [e.name for e in ran]
    assert len(ran[0].jobs) == 10 and ran[0].status == "ExecutionFailed"
    assert "s04.csv: no numeric column" in run.output  # that job's stderr
    assert "job 5 of 10" in run.output  # VIP's job of s04 (found by its values)
    for i in range(10):
        s = f"s{i:02d}"
        if s == "s04":
            assert not vip.exists(f"/vip/Home/b-fail/smoothed/{s}") or not own_results(vip, "b-fail", s)
            continue
        [rel] = own_results(vip, "b-fail", s)
        assert rel.endswith(f"/{s}.csv--w3.tgz"), rel
        assert summary_input(vip, tmp_path, "b-fail", s) == f"input: {s}.csv"
    assert run.output.count("Finished jobid") >= 10  # 9 smooth + 1 prep at least
    # only the failed job is launched again, alone, once the input is fixed
    snake = work / "Snakefile"
    snake.write_text(snake.read_text().replace("BAD = ['s04']", "BAD = []"))
    # (prep written again: the same bytes are not re-sent and the nine adopt their batch)
    fixed = run_smk(server, work, "b-fail", "--forcerun", "prep")
    assert fixed.returncode == 0, fixed.output[-3000:]
    ran = executions_under(vip, "b-fail")
    assert len(ran) == 2
    new = max(ran, key=lambda e: e.start_date)
    assert len(new.jobs) == 1 and new.status == "Finished"
    assert summary_input(vip, tmp_path, "b-fail", "s04") == "input: s04.csv"
    assert fixed.output.count("adopted VIP execution") == 9
    for i in range(10):
        s = f"s{i:02d}"
        assert summary_input(vip, tmp_path, "b-fail", s) == f"input: {s}.csv"


def test_example_batched_then_nothing_to_be_done(server, vip, tmp_path):
    """The shipped example, 12 subjects: one execution; the report sees every subject's own
    result; a second run is "Nothing to be done"; the same bytes written again relaunch
    nothing (the results kept); the batch's own folder is gone at the end."""
    work = tmp_path / "example"
    shutil.copytree(EXAMPLE, work)
    subjects = [f"sub{i:02d}" for i in range(12)]
    (work / "config.yaml").write_text(json.dumps({"subjects": subjects}))
    first = run_smk(server, work, "b-example", "--configfile", "config.yaml")
    assert first.returncode == 0, first.output[-4000:]
    ran = executions_under(vip, "b-example")
    assert len(ran) == 1 and len(ran[0].jobs) == 12 and ran[0].status == "Finished"
    report = (work / "results" / "report.txt").read_text()
    for s in subjects:
        assert f"== {s} ({s}.csv--w5.tgz)\ninput: {s}.csv" in report
    assert [i.name for i in vip.list("/vip/Home/b-example/smoothed")] == subjects
    second = run_smk(server, work, "b-example", "--configfile", "config.yaml")
    assert second.returncode == 0 and "Nothing to be done" in second.output, second.output[-3000:]
    same = run_smk(server, work, "b-example", "--configfile", "config.yaml", "--forcerun", "prep")
    assert same.returncode == 0, same.output[-4000:]
    assert "launched VIP" not in same.output
    assert same.output.count("adopted VIP execution") == 12
    assert len(executions_under(vip, "b-example")) == 1
    assert "Nothing to be done" in run_smk(server, work, "b-example", "--configfile",
                                           "config.yaml").output


def test_mixed_parameters_split_into_separate_executions(server, vip, tmp_path):
    snake = SMOOTH.format(n=6, empty=[], window="lambda wc: 3 if int(wc.s[1:]) % 2 else 5")
    work = project(tmp_path / "w", snake)
    run = run_smk(server, work, "b-mixed")
    assert run.returncode == 0, run.output[-3000:]
    ran = executions_under(vip, "b-mixed")
    assert sorted(len(e.jobs) for e in ran) == [3, 3]
    assert sorted(str(e.input_values["window"]) for e in ran) == ["3", "5"]
    for i in range(6):
        s = f"s{i:02d}"
        [rel] = own_results(vip, "b-mixed", s)
        assert rel.endswith(f"/{s}.csv--w{3 if i % 2 else 5}.tgz"), rel


def test_batch_size_1_is_one_execution_per_job(server, vip, tmp_path):
    work = project(tmp_path / "w", SMOOTH.format(n=3, empty=[], window=3))
    run = run_smk(server, work, "b-one", "--vip-batch-size", "1")
    assert run.returncode == 0, run.output[-3000:]
    ran = executions_under(vip, "b-one")
    assert sorted(e.name.rsplit("-", 1)[0] for e in ran) == ["smooth-s00", "smooth-s01", "smooth-s02"]


PAIRS = """
    SUBJECTS = ["p1", "p2", "p3", "p4"]

    localrules:
        all,
        prep,


    rule all:
        input:
            expand("pairs/{s}", s=SUBJECTS),


    rule prep:
        output:
            a="raw/{s}_a.csv",
            b="raw/{s}_b.csv",
        run:
            k = int(wildcards.s[1:])
            open(output.a, "w").write(f"x\\n{k}\\n")
            open(output.b, "w").write(f"x\\n{10 * k}\\n")


    rule pair:
        input:
            image_a="raw/{s}_a.csv",
            image_b="raw/{s}_b.csv",
        output:
            directory("pairs/{s}"),
        resources:
            vip_pipeline="PairStats/1.0",
        shell:
            "# runs on VIP"
"""


def test_vip_dot_rules_batched_pairwise(server, vip, tmp_path):
    """PairStats pairs image_a and image_b (vip:dot): 4 subjects are one execution of 4 jobs
    (not 16), each subject's report its own pair."""
    work = project(tmp_path / "w", PAIRS)
    run = run_smk(server, work, "b-dot")
    assert run.returncode == 0, run.output[-3000:]
    [ex] = executions_under(vip, "b-dot")
    assert len(ex.jobs) == 4 and ex.status == "Finished"
    for k in range(1, 5):
        [dated] = vip.list(f"/vip/Home/b-dot/pairs/p{k}")
        [report] = vip.list(dated.path)
        assert Path(report.path).name == f"p{k}_a.csv.pair.txt"
        text = vip.read_bytes(report.path).decode()
        assert f"file_a: p{k}_a.csv" in text and f"file_b: p{k}_b.csv" in text
        assert f"mean_a={k:.3f} mean_b={10 * k:.3f}" in text


LAG_APP = {
    "name": "Lag", "tool-version": "1.0", "schema-version": "0.5",
    "description": "Waits, then copies its input (a slow File pipeline for kill tests).",
    "command-line": "sleep [DURATION] && cp [INPUT_FILE] [COPY]",
    "inputs": [
        {"id": "input_file", "name": "Input", "type": "File", "value-key": "[INPUT_FILE]"},
        {"id": "duration", "name": "Duration", "type": "Number", "value-key": "[DURATION]"},
    ],
    "output-files": [
        {"id": "copy", "name": "Copy", "path-template": "[INPUT_FILE].lag", "value-key": "[COPY]"},
    ],
}

LAGS = """
    localrules:
        all,
        prep,


    rule all:
        input:
            expand("lagged/{i}", i=range(6)),


    rule prep:
        output:
            "in/{i}.txt",
        shell:
            "echo {wildcards.i} > {output}"


    rule lag:
        input:
            input_file="in/{i}.txt",
        output:
            directory("lagged/{i}"),
        resources:
            vip_pipeline="Lag/1.0",
        params:
            duration=4,
        shell:
            "# runs on VIP"
"""


def test_kill9_during_a_batch_then_same_command_launches_nothing_twice(make_server, tmp_path):
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "lag.json").write_text(json.dumps(LAG_APP))
    server = make_server(max_running=1, results_location=True, apps_dirs=[apps], workers=6)
    vip = VipClient(server.url, api_key=server.api_key, retry_budget=5, progress=False)
    work = project(tmp_path / "w", LAGS)
    first = start_smk(server, work, "b-kill9")
    try:
        wait_for(lambda: any(e.status == "Running" for e in executions_under(vip, "b-kill9")),
                 90, "the batch running", first)
    finally:
        first.kill()  # SIGKILL: Snakemake gets no chance to clean up
        first.wait()
    [ex] = executions_under(vip, "b-kill9")
    assert len(ex.jobs) == 6 and ex.is_running
    shutil.copytree(EXAMPLE / "profiles", work / "profiles")  # rerun-incomplete
    rerun = run_smk(server, work, "b-kill9")
    assert rerun.returncode == 0, rerun.output[-4000:]
    assert "launched VIP" not in rerun.output
    assert rerun.output.count("adopted VIP execution") == 6
    [done] = executions_under(vip, "b-kill9")
    assert done.identifier == ex.identifier and done.status == "Finished"
    for i in range(6):
        [dated] = vip.list(f"/vip/Home/b-kill9/lagged/{i}")
        [copy] = vip.list(dated.path)
        assert Path(copy.path).name == f"{i}.txt.lag"
        assert vip.read_bytes(copy.path) == f"{i}\n".encode()
    again = run_smk(server, work, "b-kill9")
    assert "Nothing to be done" in again.output, again.output[-3000:]
    assert len(executions_under(vip, "b-kill9")) == 1


def test_batch_ended_while_killed_then_jobs_handed_two_at_a_time_all_adopt_and_get_copies(make_server, tmp_path):
    """The batch ran on while Snakemake was dead (kill -9) and ended; the rerun gets its jobs
    two at a time (--jobs 2): each pair adopts the ended execution and gets its own copy (the
    batch's folder is kept until no job of the rule is to come). Before: the first pair's end
    removed the batch's folder, and the later jobs launched a second execution."""
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "lag.json").write_text(json.dumps(LAG_APP))
    server = make_server(max_running=1, results_location=True, apps_dirs=[apps], workers=6)
    vip = VipClient(server.url, api_key=server.api_key, retry_budget=5, progress=False)
    work = project(tmp_path / "w", LAGS.replace("duration=4", "duration=2"))
    first = start_smk(server, work, "b-late")
    try:
        wait_for(lambda: any(e.status == "Running" for e in executions_under(vip, "b-late")),
                 90, "the batch running", first)
    finally:
        first.kill()
        first.wait()
    wait_for(lambda: all(e.status == "Finished" for e in executions_under(vip, "b-late")), 60,
             "the batch ended")
    [ex] = executions_under(vip, "b-late")
    assert len(ex.jobs) == 6
    shutil.copytree(EXAMPLE / "profiles", work / "profiles")  # rerun-incomplete
    rerun = run_smk(server, work, "b-late", jobs=2)
    assert rerun.returncode == 0, rerun.output[-4000:]
    assert "launched VIP" not in rerun.output, rerun.output[-4000:]
    assert rerun.output.count("adopted VIP execution") == 6
    assert [e.identifier for e in executions_under(vip, "b-late")] == [ex.identifier]
    for i in range(6):
        [dated] = vip.list(f"/vip/Home/b-late/lagged/{i}")
        [copy] = vip.list(dated.path)
        assert vip.read_bytes(copy.path) == f"{i}\n".encode()
    assert not vip.exists("/vip/Home/b-late/lagged/.vip-batches")  # removed at the end


def test_batches_wait_for_a_slot_at_capacity_1(make_server, tmp_path):
    """Batches of 2 at VIP's capacity 1: three executions, one after another (error 2001
    makes each wait for the slot), every job its own result."""
    server = make_server(max_running=1, results_location=True)
    vip = VipClient(server.url, api_key=server.api_key, retry_budget=5, progress=False)
    work = project(tmp_path / "w", SMOOTH.format(n=6, empty=[], window=3))
    run = run_smk(server, work, "b-cap", "--vip-batch-size", "2")
    assert run.returncode == 0, run.output[-3000:]
    ran = sorted(executions_under(vip, "b-cap"), key=lambda e: e.start_date)
    assert [len(e.jobs) for e in ran] == [2, 2, 2]
    assert "waiting for a slot" in run.output
    for a, b in zip(ran, ran[1:]):
        assert b.start_date >= a.end_date  # one at a time
    for i in range(6):
        assert summary_input(vip, tmp_path, "b-cap", f"s{i:02d}") == f"input: s{i:02d}.csv"


def test_a_freed_slot_is_used_within_one_round(make_server, tmp_path):
    """Capacity 1 and --vip-poll-interval 30: six batches one after another. Each waiting batch
    is launched by the status round that sees the previous one end, and the rounds come again
    at 1, 2, 4 ... s after a launch; so the next batch starts within the previous one's run
    time (+ whole-second dates), never after a full back-off (up to 30 s)."""
    server = make_server(max_running=1, results_location=True)
    vip = VipClient(server.url, api_key=server.api_key, retry_budget=5, progress=False)
    work = project(tmp_path / "w", SMOOTH.format(n=12, empty=[], window=3))
    run = run_smk(server, work, "b-round", "--vip-batch-size", "2", "--vip-poll-interval", "30",
                  timeout=400)
    assert run.returncode == 0, run.output[-3000:]
    ran = sorted(executions_under(vip, "b-round"), key=lambda e: e.start_date)
    assert [len(e.jobs) for e in ran] == [2] * 6
    for a, b in zip(ran, ran[1:]):
        took = a.end_date - a.start_date
        assert a.end_date <= b.start_date <= a.end_date + took + 2000, (
            f"{b.name} started {(b.start_date - a.end_date) / 1000:.1f} s after {a.name} ended "
            f"(which ran {took / 1000:.1f} s)")


SLOW_HANDOVER = """
    import time

    localrules:
        all,
        prep,


    rule all:
        input:
            expand("copied/{i}", i=range(4)),


    rule prep:
        output:
            "in/{i}.txt",
        params:
            pause=lambda wc: 1 if wc.i == "0" else 0,
        shell:
            "sleep {params.pause}; echo {wildcards.i} > {output}"


    rule lag:
        input:
            input_file="in/{i}.txt",
        output:
            directory("copied/{i}"),
        resources:
            vip_pipeline="Lag/1.0",
            # slow to compute for job 0 (as a resource read off a big input can be): Snakemake
            # takes seconds to hand that job over, with nothing else of the run running
            pause=lambda wc: time.sleep(4) or 1 if wc.i == "0" else 1,
        params:
            duration=0,
        shell:
            "# runs on VIP"
"""


def test_a_job_slow_to_be_handed_over_still_joins_its_batch(make_server, tmp_path):
    """Job 0 of the rule becomes ready last, and Snakemake takes 4 s to hand it over (its
    resources are slow to compute) while only our jobs run: it is still to come, so the batch
    waits for it. Before: the pool saw "Snakemake runs only ours" in that gap (the job neither
    running nor handed) and launched the three others alone, then job 0 in a second execution."""
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "lag.json").write_text(json.dumps(LAG_APP))
    server = make_server(results_location=True, apps_dirs=[apps])
    vip = VipClient(server.url, api_key=server.api_key, retry_budget=5, progress=False)
    work = project(tmp_path / "w", SLOW_HANDOVER)
    run = run_smk(server, work, "b-slow")
    assert run.returncode == 0, run.output[-4000:]
    [ex] = executions_under(vip, "b-slow")
    assert len(ex.jobs) == 4, run.output[-4000:]

"""`snakemake --executor vip` against a real local VIP server (Snakemake run as a process).

One server for the module (request counting on); each test works under its own VIP folder, so
its executions are told apart by their results location.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from snakemake.common.tests import TestWorkflowsBase
from snakemake.settings import types as smk_settings
from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_common.plugin_registry.plugin import TaggedSettings

from vip_smk.core.client import VipClient
from vip_smk.server import LocalServer
from vip_smk.snakemake.executor import ExecutorSettings
from vip_smk.snakemake.storage import StorageProviderSettings

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "workflow" / "examples" / "executor"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    key = secrets.token_urlsafe(18)
    srv = LocalServer(max_running=0, max_download_size=0, results_location=True, data_dir=tmp_path_factory.mktemp("vip-executor"), port=0, users=[f"erin:{key}"],
                      workers=4, count_requests=True)
    srv.start(timeout=60)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def vip(server):
    c = VipClient(server.url, api_key=server.api_key, retry_budget=5, progress=False)
    yield c
    c.close()


def smk_cmd(server, folder: str, *args: str, jobs: int = 20, batch: int | None = 1) -> list[str]:
    """Batch size 1 (one execution per job) unless ``batch`` says otherwise (None: the
    executor's default; batches are tested in test_executor_batch.py)."""
    size = [] if batch is None else ["--vip-batch-size", str(batch)]
    return [sys.executable, "-m", "snakemake", "--executor", "vip", "--jobs", str(jobs),
            "--default-storage-provider", "vip",
            "--default-storage-prefix", f"vip://vip/Home/{folder}",
            "--vip-url", server.url, "--storage-vip-url", server.url,
            "--vip-poll-interval", "0.5", "--latency-wait", "5",
            "--storage-vip-max-requests-per-second", "1000", *args, *size]  # a local server: no need


def smk_env(server) -> dict:
    return dict(os.environ, VIP_API_KEY=server.api_key)


def run_smk(server, workdir: Path, folder: str, *args: str, timeout: float = 180, jobs: int = 20,
            batch: int | None = 1):
    proc = subprocess.run(smk_cmd(server, folder, *args, jobs=jobs, batch=batch), cwd=workdir,
                          env=smk_env(server), capture_output=True, text=True, timeout=timeout)
    proc.output = proc.stdout + proc.stderr
    return proc


def _ctrl_c_works() -> None:
    """In the child: Ctrl-C as in a terminal. A suite started in the background by a shell
    without job control (`make test &`, nohup, some CI runners) inherits SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler: the SIGINT the test sends would be lost."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_smk(server, workdir: Path, folder: str, *args: str, jobs: int = 20,
              batch: int | None = 1):
    log = open(workdir / "snakemake.out", "w")
    proc = subprocess.Popen(smk_cmd(server, folder, *args, jobs=jobs, batch=batch), cwd=workdir,
                            env=smk_env(server), stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_ctrl_c_works)
    log.close()
    return proc


def project(tmp_path: Path, snakefile: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "Snakefile").write_text(textwrap.dedent(snakefile))
    return tmp_path


def executions_under(vip: VipClient, folder: str) -> list:
    """This test's executions: those whose results go under /vip/Home/<folder>/."""
    out = []
    for e in vip.executions():
        full = vip.execution(e.identifier) if e.extra.get("resultsLocation") is None else e
        loc = full.extra.get("resultsLocation") or ""
        if f"/vip/Home/{folder}/" in loc + "/":
            out.append(full)
    return out


def wait_for(predicate, timeout: float, what: str, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"snakemake ended (rc {proc.returncode}) before {what}")
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


SLEEPS = """
    N = {n}

    localrules:
        all,


    rule all:
        input:
            expand("naps/{{i}}", i=range(N)),


    rule nap:
        output:
            directory("naps/{{i}}"),
        resources:
            vip_pipeline="Sleep/1.0",
        params:
            duration={duration},
            message="{tag}",
        shell:
            "# runs on VIP"
"""


def test_snakemake_lists_the_plugin_and_its_settings():
    out = subprocess.run([sys.executable, "-m", "snakemake", "--help"], capture_output=True,
                         text=True, timeout=120).stdout
    assert "vip" in out.split("--executor {", 1)[1].split("}", 1)[0]
    for opt in ("--vip-url", "--vip-api-key-env", "--vip-poll-interval"):
        assert opt in out


def test_example_runs_on_vip_then_nothing_to_be_done(server, vip, tmp_path):
    work = tmp_path / "example"
    shutil.copytree(EXAMPLE, work)
    first = run_smk(server, work, "ex-example")
    assert first.returncode == 0, first.output[-4000:]
    report = (work / "results" / "report.txt").read_text()
    for s in ("s01", "s02", "s03"):
        assert f"== {s} ({s}.csv--w5.tgz)" in report
    assert "window: 5" in report and "normalize: True" in report
    ran = executions_under(vip, "ex-example")
    assert sorted(e.name.rsplit("-", 1)[0] for e in ran) == ["smooth-s01", "smooth-s02", "smooth-s03"]
    assert {e.status for e in ran} == {"Finished"}
    assert server.api_key not in first.output
    for f in work.rglob("*"):  # logs, metadata, local copies: never the key
        if f.is_file():
            assert server.api_key.encode() not in f.read_bytes(), f

    second = run_smk(server, work, "ex-example")
    assert second.returncode == 0, second.output[-4000:]
    assert "Nothing to be done" in second.output
    assert len(executions_under(vip, "ex-example")) == 3

    # the inputs written again with the same bytes (Snakemake reruns everything downstream on
    # mtimes): not re-sent, and each `smooth` adopts its execution, whose results Snakemake's
    # removal before the job did not delete: nothing launched (issue 17 §1)
    same = run_smk(server, work, "ex-example", "--forcerun", "prep")
    assert same.returncode == 0, same.output[-4000:]
    assert same.output.count("adopted VIP execution") == 3 and "launched VIP" not in same.output
    assert len(executions_under(vip, "ex-example")) == 3
    assert "Nothing to be done" in run_smk(server, work, "ex-example").output

    # new inputs (same paths, same parameters): the finished executions are older than the
    # inputs, so they are not adopted; each old results folder is replaced, not added to
    snakefile = work / "Snakefile"
    snakefile.write_text(snakefile.read_text().replace("range(40)", "range(41)"))
    third = run_smk(server, work, "ex-example")
    assert third.returncode == 0, third.output[-4000:]
    assert third.output.count("launched VIP execution") == 3
    assert "adopted" not in third.output
    assert len(executions_under(vip, "ex-example")) == 6
    for s in ("s01", "s02", "s03"):
        dated = vip.list(f"/vip/Home/ex-example/smoothed/{s}")
        assert len(dated) == 1, dated  # one results folder: the new execution's
    assert (work / "results" / "report.txt").read_text().count("== ") == 3


def test_rerun_with_nothing_changed_is_nothing_to_be_done_every_time(make_server, tmp_path):
    """Issue 17 §3: an input we uploaded and the results made from it are ordered by what we
    know (we wrote the input, the execution started after), not by VIP's whole seconds: with
    30 ms per request, 10 reruns in a row are all "Nothing to be done"."""
    import json
    from types import SimpleNamespace

    from relays import Relay

    def behind(obj):  # VIP's whole-second dates 1 s behind ours (a skew too small to correct)
        if isinstance(obj, list):
            return [behind(o) for o in obj]
        if isinstance(obj, dict):
            return {k: (v - 1 if k == "lastModificationDate" and isinstance(v, int) and v > 0
                        else behind(v)) for k, v in obj.items()}
        return obj

    def rewrite(path, response, data):
        if response.headers.get("Content-Type", "").startswith("application/json") and data:
            try:
                return json.dumps(behind(json.loads(data))).encode()
            except ValueError:
                pass
        return data

    srv = make_server(latency_ms=30, results_location=True)
    with Relay(srv.url, rewrite=rewrite, clock_offset=-1.0) as relay:
        vip = SimpleNamespace(url=relay.url, api_key=srv.api_key)
        work = tmp_path / "example"
        shutil.copytree(EXAMPLE, work)
        args = ("--config", "subjects=[s01,s02]")
        first = run_smk(vip, work, "ex-ten", *args)
        assert first.returncode == 0, first.output[-4000:]
        for i in range(10):
            again = run_smk(vip, work, "ex-ten", *args)
            assert again.returncode == 0 and "Nothing to be done" in again.output, (i, again.output[-3000:])


def test_touched_local_input_relaunches_nothing(server, vip, tmp_path):
    """Issue 17 §1: `touch` of a local input (same bytes). Snakemake decides on mtimes (here for
    any size: --max-checksum-file-size 1B, as for a file past its checksum threshold) and reruns
    the chain: the upload is skipped (same bytes) and the VIP job adopts its execution."""
    work = project(tmp_path, """
        localrules: all, prep

        rule all:
            input: "smoothed/s01"

        rule prep:
            input: local("data/s01.csv")
            output: "prep/s01.csv"
            shell: "cp {input} {output}"

        rule smooth:
            input: input_file="prep/{s}.csv"
            output: directory("smoothed/{s}")
            resources: vip_pipeline="Smooth/1.0"
            params: window=3
            shell: "# runs on VIP"
    """)
    (work / "data").mkdir()
    (work / "data" / "s01.csv").write_text("t,signal\n" + "".join(f"{t},{t % 7}\n" for t in range(30)))
    args = ("--max-checksum-file-size", "1B")
    first = run_smk(server, work, "ex-touch", *args)
    assert first.returncode == 0, first.output[-4000:]
    assert len(executions_under(vip, "ex-touch")) == 1
    date = vip.properties("/vip/Home/ex-touch/prep/s01.csv").last_modification_date
    time.sleep(1.1)  # a re-sent file would get a later VIP date
    os.utime(work / "data" / "s01.csv")  # touch: new mtime, same bytes
    again = run_smk(server, work, "ex-touch", *args)
    assert again.returncode == 0, again.output[-4000:]
    assert "rule prep" in again.output and "adopted VIP execution" in again.output, again.output[-3000:]
    assert "launched VIP" not in again.output
    assert len(executions_under(vip, "ex-touch")) == 1  # counted on the server: unchanged
    assert vip.properties("/vip/Home/ex-touch/prep/s01.csv").last_modification_date == date
    assert "Nothing to be done" in run_smk(server, work, "ex-touch", *args).output


def test_finished_execution_adopted_only_with_its_results_on_vip(server, vip, tmp_path):
    """Issue 17 §3: the executor adopts a Finished execution only while its results are on VIP
    (core.adoptable_on_vip); results deleted on VIP: the job launches anew and succeeds."""
    work = tmp_path / "example"
    shutil.copytree(EXAMPLE, work)
    args = ("--config", "subjects=[s01]")
    first = run_smk(server, work, "ex-gone", *args)
    assert first.returncode == 0, first.output[-4000:]
    assert len(executions_under(vip, "ex-gone")) == 1
    for d in vip.list("/vip/Home/ex-gone/smoothed/s01"):
        vip.delete(d.path)  # the results, not the folder: Snakemake still sees its output
    again = run_smk(server, work, "ex-gone", "--forcerun", "smooth", *args)
    assert again.returncode == 0, again.output[-4000:]
    assert "adopted" not in again.output and again.output.count("launched VIP execution") == 1
    assert len(executions_under(vip, "ex-gone")) == 2
    assert "== s01 (s01.csv--w5.tgz)" in (work / "results" / "report.txt").read_text()


def test_wildcard_with_a_space_reports_our_reason_first(server, vip, tmp_path):
    """Issue 22 item 12: a wildcard value VIP would rename: our reason, at parse time, without
    Snakemake's advice about --default-storage-prefix schemes; nothing uploaded or launched."""
    work = project(tmp_path, """
        localrules: all, prep

        rule all:
            input: expand("smoothed/{s}", s=["s 1"])

        rule prep:
            output: "prep/{s}.csv"
            shell: "echo x > {output}"

        rule smooth:
            input: input_file="prep/{s}.csv"
            output: directory("smoothed/{s}")
            resources: vip_pipeline="Smooth/1.0"
            shell: "# runs on VIP"
    """)
    run = run_smk(server, work, "ex-space")
    assert run.returncode != 0
    assert "'s 1': VIP would rename it to 's_1'" in run.output, run.output[-3000:]
    assert "vip://vip/Home/ex-space/smoothed/s 1" in run.output
    assert "like 's3://'" not in run.output and "default-storage-prefix" not in run.output, run.output[-3000:]
    assert "Traceback" not in run.output
    assert not vip.exists("/vip/Home/ex-space") and executions_under(vip, "ex-space") == []


def test_problems_stop_the_run_before_anything_is_uploaded_or_launched(server, vip, tmp_path):
    work = project(tmp_path, """
        localrules:
            all,
            prep,


        rule all:
            input:
                "out/nopipe",
                "out/unknown",
                "out/badtype",
                "out/missing",
                "out/localin",
                "out/notdir",
                "out/two1",
                "out/unnamed",


        rule prep:
            output:
                "prep/a.csv",
            shell:
                "echo 't,x' > {output}; echo '1,2' >> {output}"


        rule nopipe:
            output:
                directory("out/nopipe"),
            shell:
                "# forgot the pipeline"


        rule unknown:
            input:
                input_file="prep/a.csv",
            output:
                directory("out/unknown"),
            resources:
                vip_pipeline="Smooth/1.0",
            params:
                windw=4,
            shell:
                "# VIP"


        rule badtype:
            input:
                input_file="prep/a.csv",
            output:
                directory("out/badtype"),
            resources:
                vip_pipeline="Smooth/1.0",
            params:
                window="wide",
            shell:
                "# VIP"


        rule missing:
            output:
                directory("out/missing"),
            resources:
                vip_pipeline="Sleep/1.0",
            params:
                message="no duration",
            shell:
                "# VIP"


        rule localin:
            input:
                input_file=local("Snakefile"),
            output:
                directory("out/localin"),
            resources:
                vip_pipeline="Smooth/1.0",
            shell:
                "# VIP"


        rule notdir:
            input:
                input_file="prep/a.csv",
            output:
                "out/notdir",
            resources:
                vip_pipeline="Smooth/1.0",
            shell:
                "# VIP"


        rule two:
            input:
                input_file="prep/a.csv",
            output:
                directory("out/two1"),
                directory("out/two2"),
            resources:
                vip_pipeline="Smooth/1.0",
            shell:
                "# VIP"


        rule unnamed:
            input:
                "prep/a.csv",
            output:
                directory("out/unnamed"),
            resources:
                vip_pipeline="Smooth/1.0",
            shell:
                "# VIP"
    """)
    before = len(vip.executions())
    proc = run_smk(server, work, "ex-problems")
    assert proc.returncode != 0
    out = proc.output
    assert "nothing was launched" in out
    assert 'File "' not in out  # one message: no frame of our code under it
    assert "rule nopipe: no resources.vip_pipeline" in out
    assert "rule unknown: Unknown input parameter: windw" in out
    assert "rule badtype: window (Int64): 'wide'" in out
    assert "rule missing: Missing input parameter: duration" in out
    assert "rule localin: names vip_pipeline=Smooth/1.0 but 'Snakefile' is a local() file" in out
    assert "rule notdir: output" in out and "must be a directory()" in out
    assert "rule two: a VIP rule has exactly one output" in out and "not 2" in out
    assert "rule unnamed: input 'vip://vip/Home/ex-problems/prep/a.csv' has no name" in out
    assert len(vip.executions()) == before
    assert not vip.exists("/vip/Home/ex-problems")  # prep did not even run


def test_failing_pipeline_fails_its_rule_with_vips_stderr(server, vip, tmp_path):
    work = project(tmp_path, """
        rule broken:
            output:
                directory("out/broken"),
            resources:
                vip_pipeline="Fail/1.0",
            params:
                message="the culprit is line 42",
            shell:
                "# VIP"
    """)
    proc = run_smk(server, work, "ex-fail")
    assert proc.returncode != 0
    assert "the culprit is line 42" in proc.output
    assert "ExecutionFailed" in proc.output
    assert "Error in rule broken" in proc.output


def test_kill9_at_capacity_1_then_rerun_adopts_and_launches_nothing_twice(make_server, tmp_path):
    """At VIP's default capacity (1 running execution per user) jobs queue for the slot (2001);
    after kill -9 the rerun adopts the running one and launches the rest, each exactly once."""
    server = make_server(results_location=True)
    assert server.max_running == 1
    vip = VipClient(server.url, api_key=server.api_key, retry_budget=5, progress=False)
    work = project(tmp_path, SLEEPS.format(n=4, duration=3, tag="kill9"))
    first = start_smk(server, work, "ex-kill9")
    try:
        wait_for(lambda: len(executions_under(vip, "ex-kill9")) == 2, 90, "2 executions", first)
    finally:
        first.kill()  # SIGKILL: Snakemake gets no chance to clean up
        first.wait()
    assert "waiting for a slot" in (work / "snakemake.out").read_text()
    assert sum(e.is_running for e in executions_under(vip, "ex-kill9")) == 1
    assert list((work / ".snakemake" / "locks").iterdir())  # the dead run's lock is left
    # the user types the same command again: the example's profile (rerun-incomplete) and the
    # stale lock removed by the plugin make it resume: no --unlock, no --rerun-incomplete
    shutil.copytree(EXAMPLE / "profiles", work / "profiles")
    rerun = run_smk(server, work, "ex-kill9")
    assert rerun.returncode == 0, rerun.output[-4000:]
    assert rerun.output.count("adopted VIP execution") >= 1
    ran = executions_under(vip, "ex-kill9")
    names = [e.name for e in ran]
    assert len(names) == 4 and len(set(names)) == 4, names  # nothing launched twice
    assert {e.status for e in ran} == {"Finished"}
    again = run_smk(server, work, "ex-kill9")
    assert "Nothing to be done" in again.output


def test_50_active_one_request_per_round_then_ctrl_c_kills_them(make_server, tmp_path):
    server = make_server(max_running=0, workers=4, count_requests=True, results_location=True)  # 50 at once: unlimited
    vip = VipClient(server.url, api_key=server.api_key, retry_budget=5, progress=False)
    work = project(tmp_path, SLEEPS.format(n=50, duration=300, tag="ctrlc"))
    proc = start_smk(server, work, "ex-ctrlc", jobs=50)
    try:
        wait_for(lambda: len(executions_under(vip, "ex-ctrlc")) == 50, 120, "50 executions", proc)
        wait_for(lambda: "launched VIP execution" in (work / "snakemake.out").read_text()
                 and (work / "snakemake.out").read_text().count("launched VIP execution") == 50,
                 60, "50 launches reported", proc)
        server.reset_request_counts()
        time.sleep(4)  # rounds every 0.5 s
        counts = server.request_counts()
        rounds = counts["routes"].get("GET /rest/executions", 0)
        assert rounds >= 3, counts
        per_id = {k: v for k, v in counts["routes"].items() if k.startswith("GET /rest/executions/")}
        assert not per_id, counts  # no per-execution request: one listing per round
        assert counts["total"] == rounds, counts
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        left = [e for e in executions_under(vip, "ex-ctrlc") if e.is_running]
        for e in left:  # on failure, free the module's server for the next tests
            vip.kill(e.identifier)
    assert not left, [(e.identifier, e.status) for e in left]
    assert {e.status for e in executions_under(vip, "ex-ctrlc")} == {"Killed"}


def test_vip_user_limit_makes_jobs_wait_for_a_slot(make_server, tmp_path):
    srv = make_server(max_running=2, workers=2, results_location=True)
    work = project(tmp_path, SLEEPS.format(n=5, duration=1, tag="limit"))
    proc = run_smk(srv, work, "ex-limit")
    assert proc.returncode == 0, proc.output[-4000:]
    assert "waiting for a slot" in proc.output
    with VipClient(srv.url, api_key=srv.api_key, progress=False) as c:
        ran = c.executions()
    assert len(ran) == 5 and {e.status for e in ran} == {"Finished"}


class TestSnakemakeExecutorSuite(TestWorkflowsBase):
    """Snakemake's own executor test suite (`snakemake.common.tests`), in-process through
    Snakemake's API and plugin registry. Its workflows are shell rules without `vip_pipeline`
    (and a `group:`), which --executor vip must refuse before running or launching anything."""

    __test__ = True
    expect_exception = WorkflowError
    KEY_ENV = "VIP_SMK_EXECUTOR_SUITE_KEY"

    @pytest.fixture(autouse=True)
    def _server(self, server, monkeypatch):
        monkeypatch.setenv(self.KEY_ENV, server.api_key)
        self.url = server.url
        self.prefix = f"vip://vip/Home/ex-suite-{secrets.token_hex(4)}"

    def get_executor(self):
        return "vip"

    def get_executor_settings(self):
        return ExecutorSettings(url=self.url, api_key_env=self.KEY_ENV, poll_interval=0.5)

    def get_assume_shared_fs(self):
        return False

    def get_remote_execution_settings(self):
        return smk_settings.RemoteExecutionSettings(seconds_between_status_checks=0,
                                                    job_deploy_sources=False)

    def get_default_storage_provider(self):
        return "vip"

    def get_default_storage_prefix(self):
        return self.prefix

    def get_default_storage_provider_settings(self):
        tagged = TaggedSettings()
        tagged.register_settings(StorageProviderSettings(url=self.url, api_key_env=self.KEY_ENV))
        return {"vip": tagged}

    def cleanup_test(self):
        with VipClient(self.url, api_key_env=self.KEY_ENV, progress=False) as c:
            assert not [e for e in c.executions() if "/ex-suite-" in str(e.extra.get("resultsLocation"))]


def test_flaky_network_never_duplicates_a_launch(make_server, tmp_path):
    """20% of VIP's replies fail (503 or a reset connection; a third of the non-GET ones after
    the action took place): every job completes with exactly one execution each."""
    srv = make_server(fault_rate=0.2, seed=7, workers=4, results_location=True)
    work = project(tmp_path, SLEEPS.format(n=8, duration=0.5, tag="flaky"))
    proc = run_smk(srv, work, "ex-flaky", timeout=300)
    assert proc.returncode == 0, proc.output[-4000:]
    with VipClient(srv.url, api_key=srv.api_key, progress=False, retries=20) as c:
        ran = c.executions()
    names = sorted(e.name for e in ran)
    assert len(names) == 8 and len(set(names)) == 8, names
    assert {e.status for e in ran} == {"Finished"}


def test_a_list_input_is_one_execution_with_one_job_per_file(server, vip, tmp_path):
    work = project(tmp_path, """
        localrules:
            prep,


        rule smooth_all:
            input:
                input_file=expand("prep/{s}.csv", s=["a", "b", "c"]),
            output:
                directory("smoothed"),
            resources:
                vip_pipeline="Smooth/1.0",
            params:
                window=2,
            shell:
                "# VIP"


        rule prep:
            output:
                "prep/{s}.csv",
            shell:
                "printf 't,x\\\\n1,2\\\\n2,5\\\\n' > {output}"
    """)
    proc = run_smk(server, work, "ex-list")
    assert proc.returncode == 0, proc.output[-4000:]
    (ex,) = executions_under(vip, "ex-list")
    assert ex.status == "Finished" and len(ex.jobs or {}) == 3
    files = sorted(p.rsplit("/", 1)[1] for p in ex.output_paths)
    assert files == ["a.csv--w2.tgz", "b.csv--w2.tgz", "c.csv--w2.tgz"]


def test_key_from_a_named_variable_never_on_the_command_line(server, vip, tmp_path):
    work = project(tmp_path, SLEEPS.format(n=1, duration=0.1, tag="keyenv"))
    env = {k: v for k, v in os.environ.items() if k != "VIP_API_KEY"}
    cmd = smk_cmd(server, "ex-keyenv", "--storage-vip-api-key-env", "MY_VIP_KEY")
    env["MY_VIP_KEY"] = server.api_key
    missing = subprocess.run(cmd + ["--vip-api-key-env", "NOT_SET_ANYWHERE"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0
    assert "NOT_SET_ANYWHERE" in missing.stdout + missing.stderr
    assert not executions_under(vip, "ex-keyenv")
    ok = subprocess.run(cmd + ["--vip-api-key-env", "MY_VIP_KEY"], cwd=work, env=env,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert server.api_key not in ok.stdout + ok.stderr
    assert [e.status for e in executions_under(vip, "ex-keyenv")] == ["Finished"]

"""Job engine of the local VIP server.

Each job of an execution runs its app's Boutiques descriptor on this machine: the command line
is built by ``boutiques``' executor from the job's invocation, then run by us with
``subprocess.Popen(start_new_session=True)`` in ``<data-dir>/work/<execution>/<job>/`` (so that
kill can signal the whole process group). stdout / stderr are captured per job; declared
outputs are moved into the execution's results folder. A bounded pool (``--workers``) runs the
jobs. Apps run with the server's own interpreter: ``$VIP_SMK_PYTHON`` is ``sys.executable``
and ``python3`` / ``python`` on the job's PATH point to it too.
"""

from __future__ import annotations

import errno
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vip_smk.server.pipelines import Pipeline
from vip_smk.server.store import ACTIVE, Store, now_ms

log = logging.getLogger(__name__)

TERMINAL_JOB = ("Completed", "Failed", "Killed")


def _make_executor(pipeline: Pipeline, invocation: dict, workdir: Path):
    """Boutiques executor for one job, its command line built (nothing run)."""
    from boutiques.localExec import LocalExecutor, addDefaultValues

    class _Executor(LocalExecutor):
        # boutiques writes configuration files relative to the CWD: write them in the job dir
        def _writeConfigurationFiles(self):
            for out in self.outputs:
                tmpl = out.get("file-template")
                if tmpl is None:
                    continue
                se = out.get("path-template-stripped-extensions") or []
                lines = [
                    self._rkit(line, use_flags=False, unfound_keys="clear", stripped_extensions=se,
                               is_output=False, escape_special_chars=True)
                    for line in tmpl
                ]
                target = workdir / self.out_dict[out["id"]]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(os.linesep.join(lines))

    ex = _Executor(
        str(pipeline.descriptor_path), None, {"skipDataCollect": True, "sandbox": False, "debug": False}
    )
    ex.in_dict = OrderedDict(invocation)
    addDefaultValues(ex.desc_dict, ex.in_dict)
    ex.cmd_line = [ex._generateCmdLineFromInDict()]
    return ex


def _place(src: Path, dest: Path, attempts: int = 100) -> None:
    """Move a job's output to ``dest``, creating its folders; if the user deletes the results
    folder meanwhile (VIP lets them), it is made again: the job does not fail for it."""
    for _ in range(attempts):
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(src, dest)
            return
        except FileNotFoundError:
            if not (src.exists() or src.is_symlink()):
                raise
        except OSError as e:  # a folder of dest's emptied while being removed
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    raise OSError(errno.EBUSY, "results folder deleted again and again while placing", str(dest))


def _group_alive(pgid: int) -> bool:
    """Is any non-zombie process left in the process group ``pgid``?"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # zombies count as gone (their parent may be slow to reap them)
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _kill_group(pgid: int, grace: float = 1.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Engine:
    def __init__(self, store: Store, pipelines: dict[str, Pipeline], workers: int = 2):
        self.store = store
        self.pipelines = pipelines
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="vip-job")
        self.lock = threading.RLock()
        self.procs: dict[tuple[str, int], subprocess.Popen] = {}
        self._taken: dict[str, dict[str, int]] = {}  # execution -> output name -> job
        self.stopping = False
        self.shim_dir = store.data_dir / "bin"
        self._make_shims()
        # import boutiques' executor now (~0.2 s) rather than in the first job
        threading.Thread(target=self._preload, name="boutiques-import", daemon=True).start()

    @staticmethod
    def _preload() -> None:
        try:
            import boutiques.localExec  # noqa: F401
        except Exception:  # reported when a job needs it
            pass

    # ------------------------------------------------------------ setup
    def _make_shims(self) -> None:
        """``python3`` / ``python`` on the jobs' PATH run the server's interpreter (small sh
        scripts rather than symlinks, so that a venv interpreter keeps its site-packages)."""
        self.shim_dir.mkdir(exist_ok=True)
        script = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n'
        for name in ("python3", "python"):
            shim = self.shim_dir / name
            try:
                if shim.is_symlink() or not shim.exists() or shim.read_text() != script:
                    shim.unlink(missing_ok=True)
                    shim.write_text(script)
                    shim.chmod(0o755)
            except OSError as e:  # pragma: no cover - exotic file systems
                log.warning("cannot create %s: %s", shim, e)

    def job_env(self, pipeline: Pipeline, eid: str, idx: int) -> dict:
        env = dict(os.environ)
        env["VIP_SMK_PYTHON"] = sys.executable
        env["VIP_SMK_APP_DIR"] = str(pipeline.descriptor_path.parent)
        env["VIP_SMK_JOB"] = f"{eid}/{idx}"
        env["PYTHONUNBUFFERED"] = "1"
        env["PATH"] = str(self.shim_dir) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
        return env

    def workdir(self, eid: str, idx: int | None = None) -> Path:
        d = self.store.work_dir / eid
        return d if idx is None else d / str(idx)

    # ------------------------------------------------------------ lifecycle
    def recover(self) -> None:
        """Re-run the executions that were running when the server stopped."""
        for ex in self.store.executions(status=ACTIVE):
            for job in self.store.jobs(ex["id"]):
                if job["status"] == "Running":
                    self._kill_stale(ex["id"], job)
                if job["status"] not in TERMINAL_JOB:
                    self.store.update_job(ex["id"], job["idx"], status="Queued", pid=None)
            log.info("re-running execution %s (was running when the server stopped)", ex["id"])
            self.submit(ex["id"])

    def _kill_stale(self, eid: str, job: dict) -> None:
        pid = job.get("pid")
        if not pid:
            return
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return
        if f"VIP_SMK_JOB={eid}/{job['idx']}".encode() in env:
            log.info("killing leftover process group %s of %s/%s", pid, eid, job["idx"])
            _kill_group(pid, grace=0.5)

    def submit(self, eid: str) -> None:
        for job in self.store.jobs(eid):
            if job["status"] == "Queued":
                self.pool.submit(self._run_job_safe, eid, job["idx"])
        self._maybe_finish(eid)

    def shutdown(self) -> None:
        """Stop: kill running jobs but keep them Running in the database (re-run on restart)."""
        with self.lock:
            self.stopping = True
            procs = list(self.procs.values())
        for p in procs:
            _kill_group(p.pid, grace=0.5)
        self.pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------ kill
    def kill(self, eid: str) -> None:
        """Mark the execution Killed, cancel its queued jobs and stop its processes."""
        with self.lock:
            self.store.update_execution(eid, status="Killed", end_ms=now_ms())
            for job in self.store.jobs(eid):
                if job["status"] == "Queued":
                    self.store.update_job(eid, job["idx"], status="Killed", exit_message="killed before start")
            procs = [p for (e, _), p in self.procs.items() if e == eid]
        for p in procs:
            _kill_group(p.pid)
        deadline = time.monotonic() + 5
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in procs:  # the whole group is gone (not just the shell) before we answer
            while _group_alive(p.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        self._maybe_finish(eid)

    # ------------------------------------------------------------ running
    def _run_job_safe(self, eid: str, idx: int) -> None:
        try:
            self._run_job(eid, idx)
        except Exception as e:  # never lose a job silently
            log.exception("job %s/%s crashed in the engine", eid, idx)
            try:
                self.store.update_job(eid, idx, status="Failed", exit_code=None,
                                      exit_message=f"server error: {e}")
                self._maybe_finish(eid)
            except Exception:
                log.exception("cannot record the failure of %s/%s", eid, idx)

    def _run_job(self, eid: str, idx: int) -> None:
        if self.stopping:
            return
        ex = self.store.execution(eid)
        if ex is None or ex["status"] not in ACTIVE:
            return
        job = next((j for j in self.store.jobs(eid) if j["idx"] == idx), None)
        if job is None or job["status"] != "Queued":
            return
        pipeline = self.pipelines.get(ex["pipeline"])
        wd = self.workdir(eid, idx)
        if wd.exists():
            shutil.rmtree(wd)
        wd.mkdir(parents=True)
        out_f = open(wd / "stdout.txt", "wb")
        err_f = open(wd / "stderr.txt", "wb")
        try:
            if pipeline is None:
                msg = f"pipeline {ex['pipeline']} is no longer available on this server"
                err_f.write(msg.encode() + b"\n")
                self.store.update_job(eid, idx, status="Failed", exit_message=msg)
                return
            invocation = self._stage_inputs(ex["user"], pipeline, job["invocation"], wd)
            try:
                executor = _make_executor(pipeline, invocation, wd)
            except Exception as e:
                msg = f"cannot build the command line: {e}"
                err_f.write(msg.encode() + b"\n")
                self.store.update_job(eid, idx, status="Failed", exit_message=msg)
                return
            cmd = executor.cmd_line[0]
            shell = pipeline.descriptor.get("shell") or "/bin/sh"
            with self.lock:
                now = self.store.execution(eid)
                if self.stopping or now is None or now["status"] not in ACTIVE:
                    return
                p = subprocess.Popen(
                    [shell, "-c", cmd], cwd=wd, stdin=subprocess.DEVNULL, stdout=out_f,
                    stderr=err_f, env=self.job_env(pipeline, eid, idx), start_new_session=True,
                )
                self.procs[(eid, idx)] = p
                self.store.update_job(eid, idx, status="Running", pid=p.pid)
                if now["status"] == "Ready":  # VIP's queued state, until a job starts
                    self.store.update_execution(eid, status="Running")
            log.info("job %s/%s started (pid %s): %s", eid, idx, p.pid, cmd)
            rc = p.wait()
            if _group_alive(p.pid):  # stray background processes of the job
                _kill_group(p.pid, grace=0.2)
            with self.lock:
                self.procs.pop((eid, idx), None)
                if self.stopping:
                    return  # stays Running in the database: re-run on restart
                now = self.store.execution(eid)
                killed = now is None or now["status"] == "Killed"
            if killed:
                self.store.update_job(eid, idx, status="Killed", exit_code=rc, exit_message="killed")
                return
            outputs, missing = self._collect(ex, pipeline, executor, wd, idx)
            if rc != 0:
                status, msg = "Failed", f"exit code {rc}"
            elif missing:
                status, msg = "Failed", "missing output(s): " + ", ".join(missing)
                err_f.write((msg + "\n").encode())
            else:
                status, msg = "Completed", "ok"
            self.store.update_job(eid, idx, status=status, exit_code=rc, exit_message=msg,
                                  outputs=outputs)
            log.info("job %s/%s: %s (%s)", eid, idx, status, msg)
        finally:
            out_f.close()
            err_f.close()
            self._maybe_finish(eid)

    def _stage_inputs(self, user: str, pipeline: Pipeline, invocation: dict, wd: Path) -> dict:
        """Link the File inputs into the job dir (as VIP copies them) and pass relative names."""
        inv = dict(invocation)
        used: set[str] = set()
        k = 0
        for pid, value in invocation.items():
            inp = pipeline.input(pid)
            if inp is None or inp.get("type") != "File":
                continue
            values = value if isinstance(value, list) else [value]
            staged = []
            for v in values:
                res = self.store.resolve(user, str(v))
                assert res.local is not None  # (validate_inputs() refused the launch otherwise)
                name = res.local.name
                rel = name if name not in used else f"in{k}/{name}"
                k += 1
                used.add(name)
                target = wd / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(res.local)
                staged.append(rel)
            inv[pid] = staged if isinstance(value, list) else staged[0]
        return inv

    def _collect(self, ex: dict, pipeline: Pipeline, executor, wd: Path, idx: int):
        """Move the declared outputs into the results folder; return ({id: [vip]}, missing)."""
        res = self.store.resolve(ex["user"], ex["results_dir"])
        results = res.local
        assert results is not None  # (a folder under the resultsLocation the launch checked)
        outputs: dict[str, list[str]] = {}
        missing = []
        for out in pipeline.descriptor.get("output-files") or []:
            rel = executor.out_dict.get(out["id"])
            src = (wd / rel) if rel else None
            if src is None or not (src.exists() or src.is_symlink()) or src.is_symlink():
                if not out.get("optional", False):
                    missing.append(out["id"])
                continue
            with self.lock:
                taken = self._taken.get(ex["id"])
                if taken is None:  # names already produced by the execution's jobs
                    taken = self._taken[ex["id"]] = {
                        Path(p).name: j["idx"]
                        for j in self.store.jobs(ex["id"])
                        if j["outputs"]
                        for paths in j["outputs"].values()
                        for p in paths
                    }
                dest = results / src.name
                if taken.setdefault(src.name, idx) != idx:  # another job made the same name
                    dest = results / f"job{idx}" / src.name
                _place(src, dest)
            outputs.setdefault(out["id"], []).append(self.store.to_vip(ex["user"], dest))
        return outputs, missing

    def _maybe_finish(self, eid: str) -> None:
        with self.lock:
            if self.stopping:
                return
            ex = self.store.execution(eid)
            if ex is None:
                return
            if self.store.count_jobs(eid, exclude=TERMINAL_JOB):
                return
            jobs = self.store.jobs(eid)
            self._taken.pop(eid, None)
            if ex["returned_files"] is not None and ex["end_ms"] and ex["status"] not in ACTIVE:
                return
            returned: dict[str, list[str]] = {}
            for j in jobs:
                for k, paths in (j["outputs"] or {}).items():
                    returned.setdefault(k, []).extend(paths)
            if ex["status"] == "Killed":
                status = "Killed"
            elif any(j["status"] != "Completed" for j in jobs):
                status = "ExecutionFailed"
            else:
                status = "Finished"
            self.store.update_execution(
                eid, status=status, end_ms=ex["end_ms"] or now_ms(), returned_files=returned
            )
            log.info("execution %s: %s", eid, status)

    # ------------------------------------------------------------ logs
    def log_text(self, eid: str, which: str) -> str:
        jobs = self.store.jobs(eid)
        parts = []
        for j in jobs:
            f = self.workdir(eid, j["idx"]) / f"{which}.txt"
            try:
                text = f.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            if len(jobs) > 1:
                parts.append(f"==> job {j['idx']} ({j['status']}) <==\n{text}")
            else:
                parts.append(text)
        return "".join(parts) if len(jobs) <= 1 else "\n".join(parts)

    def forget(self, eid: str) -> None:
        with self.lock:
            self._taken.pop(eid, None)
        shutil.rmtree(self.workdir(eid), ignore_errors=True)

"""``LocalServer``: start / stop / attach a local VIP server process from Python."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from vip_smk.util import pid_alive

log = logging.getLogger(__name__)

USERS_ENV = "VIP_SMK_SERVE_USERS"  # same name as in vip_smk.server.__main__


def _answers(url: str, timeout: float = 2.0, tries: int = 1) -> bool:
    """Does a VIP server answer at ``url``? Any HTTP reply counts (an injected 503 too)."""
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url + "/rest/platform", timeout=timeout) as r:
                return r.status == 200
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError, ValueError):
            continue
    return False


class LocalServer:
    """A ``vip-smk serve`` process on ``data_dir`` (see docs/architecture.md section 1).

    Strict as VIP by default: ``max_running=1`` (a new VIP account's capacity; 0 = unlimited) and
    ``max_download_size=15_000_000`` (VIP-portal's shipped maxSizeDirectTransfer; 0 = no limit);
    ``list_limit``, ``max_download_size``, ``md5``,
    ``archive_uploads``, ``results_location``, ``null_dates``, ``storage_delay_ms``, ``delete_delay_ms`` map to the
    options of the same name (``vip-smk serve --help``).

    Not detached (the default: tests, notebooks), the server watches this process and stops,
    killing its running apps, within a second of its end, even a ``kill -9`` (``--parent-pid``).
    ``detach=True`` (the study's and the demo's server) outlives it, in a session of its own.

    ``users``: ``["NAME:KEY[:PASSWORD]", ...]``; with none, the server's user ``local`` is
    used (its key read from ``<data_dir>/apikey``). ``port=0`` lets the server pick a free port
    (it binds it itself and reports it through ``server.json``: no race).
    """

    def __init__(self, data_dir, port: int = 0, users=(), workers: int = 2, max_running: int = 1,
                 fault_rate: float = 0.0, latency_ms: float = 0, seed=None, apps_dirs=(),
                 detach: bool = False, log_file=None, host: str = "127.0.0.1",
                 count_requests: bool = False, list_limit: int | None = None,
                 max_download_size: int = 15_000_000, md5: bool = False,
                 archive_uploads: bool = False, null_dates: float = 0.0,
                 results_location: bool = False,
                 storage_delay_ms: float = 0, delete_delay_ms: float | None = None,
                 boutiques_format: bool = True):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.requested_port = port
        self.host = host
        self.user_specs = list(users)
        self.workers = workers
        self.max_running = max_running
        self.fault_rate = fault_rate
        self.latency_ms = latency_ms
        self.seed = seed
        self.apps_dirs = [str(Path(d).resolve()) for d in apps_dirs]
        self.detach = detach
        self.count_requests = count_requests
        # VIP's limits (None / False / 0: the server's strict default)
        self.list_limit = list_limit
        self.max_download_size = max_download_size
        self.md5 = md5
        self.archive_uploads = archive_uploads
        self.results_location = results_location
        self.null_dates = null_dates
        self.storage_delay_ms = storage_delay_ms
        self.delete_delay_ms = delete_delay_ms
        self.boutiques_format = boutiques_format  # False: a portal older than 4.6
        self.log_file = Path(log_file) if log_file else self.data_dir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self._pid: int | None = None

    # ---------------------------------------------------------------- properties
    @property
    def users(self) -> dict[str, str]:
        out = {}
        for spec in self.user_specs:
            name, key = spec.split(":", 2)[:2]
            out[name] = key
        if not out:
            keyfile = self.data_dir / "apikey"
            if keyfile.exists():
                out["local"] = keyfile.read_text().strip()
        return out

    @property
    def api_key(self) -> str | None:
        users = self.users
        return next(iter(users.values())) if users else None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else self._pid

    @property
    def server_json(self) -> Path:
        return self.data_dir / "server.json"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "vip_smk.server", "--host", self.host, "--port", str(self.requested_port),
               "--data-dir", str(self.data_dir), "--workers", str(self.workers)]
        for d in self.apps_dirs:
            cmd += ["--apps-dir", d]
        cmd += ["--max-running", str(self.max_running or 0)]
        if self.fault_rate:
            cmd += ["--fault-rate", str(self.fault_rate)]
        if self.latency_ms:
            cmd += ["--latency", str(self.latency_ms)]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        if self.count_requests:
            cmd += ["--count-requests"]
        for flag, value in (("--list-limit", self.list_limit), ("--max-download-size", self.max_download_size or 0),
                            ("--delete-delay", self.delete_delay_ms)):
            if value is not None:
                cmd += [flag, str(value)]
        if self.null_dates:
            cmd += ["--null-dates", str(self.null_dates)]
        if self.storage_delay_ms:
            cmd += ["--storage-delay", str(self.storage_delay_ms)]
        if self.md5:
            cmd += ["--md5"]
        if self.archive_uploads:
            cmd += ["--archive-uploads"]
        if self.results_location:
            cmd += ["--results-location"]
        if not self.boutiques_format:
            cmd += ["--no-boutiques-format"]
        if not self.detach:  # a server for this process only: it stops when we are gone
            cmd += ["--parent-pid", str(os.getpid())]
        return cmd

    # ---------------------------------------------------------------- request counts
    def request_counts(self) -> dict:
        """``{"total": N, "routes": {"GET /rest/executions": n, ...}}`` since the start or the
        last :meth:`reset_request_counts` (needs ``count_requests=True``)."""
        with urllib.request.urlopen(self._counts_url(), timeout=10) as r:
            return json.loads(r.read())

    def reset_request_counts(self) -> None:
        req = urllib.request.Request(self._counts_url(), method="DELETE")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def _counts_url(self) -> str:
        if self.url is None:
            raise RuntimeError("the VIP server is not started")
        return self.url + "/__vip_smk/requests"

    # ---------------------------------------------------------------- start / stop
    def start(self, timeout: float = 30) -> "LocalServer":
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        other = LocalServer.attach(self.data_dir)
        if other is not None:
            raise RuntimeError(f"a VIP server (pid {other.pid}) is already running on {self.data_dir} "
                               f"at {other.url}")
        self.server_json.unlink(missing_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_file, "ab")
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop(USERS_ENV, None)
        if self.user_specs:  # through the environment: keys never in the process list
            env[USERS_ENV] = "\n".join(self.user_specs)
        try:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                env=env, start_new_session=self.detach,
            )
        finally:
            logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(f"the VIP server exited with status {rc} at start-up; "
                                   f"end of {self.log_file}:\n{self._log_tail()}")
            info = self._read_server_json()
            if info and info.get("pid") == self.proc.pid:
                self.url = info["url"]
                self.port = info["port"]
                if _answers(self.url, timeout=max(0.5, deadline - time.monotonic())):
                    log.info("local VIP server at %s (pid %s)", self.url, self.proc.pid)
                    return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the VIP server did not answer within {timeout:g} s; "
                           f"end of {self.log_file}:\n{self._log_tail()}")

    def _read_server_json(self) -> dict | None:
        try:
            return json.loads(self.server_json.read_text())
        except (OSError, ValueError):
            return None

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, wait (running jobs are stopped and re-run at the next start); SIGKILL if stuck."""
        pid = self.pid
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if not self._wait(timeout):
            self.kill()
            return
        self._forget()

    def kill(self) -> None:
        pid = self.pid
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._wait(10)
        self._forget()

    def _wait(self, timeout: float) -> bool:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        assert self._pid is not None  # (stop()/kill() wait only for a server they have a pid of)
        while time.monotonic() < deadline:
            if not pid_alive(self._pid):
                return True
            time.sleep(0.05)
        return False

    def _forget(self) -> None:
        self.proc = None
        self._pid = None

    def is_running(self) -> bool:
        pid = self.pid
        if self.proc is not None:
            return self.proc.poll() is None
        return pid is not None and pid_alive(pid)

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalServer(data_dir={str(self.data_dir)!r}, url={self.url!r}, pid={self.pid})"

    # ---------------------------------------------------------------- attach
    @classmethod
    def attach(cls, data_dir) -> "LocalServer | None":
        """The server already running on ``data_dir`` (server.json, alive, answering), or None."""
        data_dir = Path(data_dir).resolve()
        try:
            info = json.loads((data_dir / "server.json").read_text())
            pid, url = int(info["pid"]), str(info["url"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not pid_alive(pid) or not _answers(url, tries=5):
            return None
        srv = cls(data_dir, port=int(info.get("port", 0)))
        srv.url = url
        srv._pid = pid
        return srv

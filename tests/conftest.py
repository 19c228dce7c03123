"""Shared fixtures: real local VIP servers over HTTP on 127.0.0.1 (free ports)."""

from __future__ import annotations

import secrets

import pytest
from filelock import FileLock

from vip_smk.server import LocalServer


def _user_specs() -> list[str]:
    # NAME:KEY:PASSWORD (the password enables POST /rest/authenticate)
    return [f"{name}:{secrets.token_urlsafe(18)}:{name}-pw" for name in ("alice", "bob")]


@pytest.fixture(scope="session")
def vip_server(tmp_path_factory):
    """A LocalServer shared by the session: users alice (``.api_key``) and bob (``.users``).

    It asks for no execution limit and no download limit: every test of the session uses it,
    and executions one test leaves running (killed at its end, but VIP-like, asynchronously)
    must not hold the next test's only slot. Tests of VIP's limits use ``make_server()``.
    """
    srv = LocalServer(tmp_path_factory.mktemp("vip-server"), port=0, users=_user_specs(), workers=2,
                      max_running=0, max_download_size=0)
    srv.start(timeout=60)
    yield srv
    srv.stop()


@pytest.fixture
def client(vip_server):
    """A VipClient for alice on the shared server (short retry budget, no progress bars)."""
    from vip_smk.core.client import VipClient

    c = VipClient(vip_server.url, api_key=vip_server.api_key, retry_budget=5, progress=False)
    yield c
    c.close()


@pytest.fixture
def make_server(tmp_path_factory):
    """Factory of extra servers: ``make_server(**LocalServer kwargs)``; stopped at teardown.

    Defaults: a fresh data dir, port 0, users alice and bob with random keys, and VIP's own
    limits (max_running 1, maxSizeDirectTransfer 15 MB). Pass
    ``data_dir=`` (e.g. ``srv.data_dir``) to restart on the same data.
    """
    started: list[LocalServer] = []

    def factory(data_dir=None, **kwargs) -> LocalServer:
        kwargs.setdefault("users", _user_specs())
        # No limit lifted here: a server of this factory has a new VIP account's defaults (one
        # execution at a time, 15 MB direct downloads); a test that needs more asks for it
        # (max_running=0 / max_download_size=0) and says why.
        kwargs.setdefault("port", 0)
        srv = LocalServer(data_dir or tmp_path_factory.mktemp("vip-extra"), **kwargs)
        srv.start(timeout=60)
        started.append(srv)
        return srv

    yield factory
    for srv in reversed(started):
        try:
            srv.stop()
        except Exception:  # pragma: no cover - teardown must go on
            srv.kill()


@pytest.fixture(scope="session")
def vip_client_python() -> str:
    """A Python interpreter with VIP's own client (vip-client 0.1.10) installed, for the
    compatibility tests: $VIP_CLIENT_PYTHON if set, else a venv made once under .cache/ (PyPI)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if os.environ.get("VIP_CLIENT_PYTHON"):
        return os.environ["VIP_CLIENT_PYTHON"]
    venv = Path(__file__).resolve().parent.parent / ".cache" / "vip-client-0.1.10"
    python = venv / "bin" / "python"
    ready = venv / ".installed"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(venv) + ".lock"):  # pytest-xdist: one worker makes it, the other waits
        if not ready.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                                   "--disable-pip-version-check", "vip-client==0.1.10"],
                                  capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:  # no package index reachable: say why, do not fail the suite
                pytest.skip(f"could not install vip-client 0.1.10: {proc.stderr.strip()[-300:]}")
            ready.touch()
    return str(python)

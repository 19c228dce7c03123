"""Shared fixtures: real local VIP servers over HTTP on 127.0.0.1 (free ports)."""

from __future__ import annotations

import secrets

import pytest

from vip_smk.server import LocalServer


def _user_specs() -> list[str]:
    # NAME:KEY:PASSWORD (the password enables POST /rest/authenticate)
    return [f"{name}:{secrets.token_urlsafe(18)}:{name}-pw" for name in ("alice", "bob")]


@pytest.fixture(scope="session")
def vip_server(tmp_path_factory):
    """A LocalServer shared by the session: users alice (``.api_key``) and bob (``.users``)."""
    srv = LocalServer(tmp_path_factory.mktemp("vip-server"), port=0, users=_user_specs(), workers=2)
    srv.start(timeout=60)
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path_factory):
    """Factory of extra servers: ``make_server(**LocalServer kwargs)``; stopped at teardown.

    Defaults: a fresh data dir, port 0, users alice and bob with random keys. Pass
    ``data_dir=`` (e.g. ``srv.data_dir``) to restart on the same data.
    """
    started: list[LocalServer] = []

    def factory(data_dir=None, **kwargs) -> LocalServer:
        kwargs.setdefault("users", _user_specs())
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

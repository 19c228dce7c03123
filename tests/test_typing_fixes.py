"""Bugs that mypy found (issue 19), against the local VIP server over HTTP: each test failed
before its fix."""

from __future__ import annotations

import uuid

import pytest
from relays import Relay

from vip_smk import VipClient, VipLauncher
from vip_smk.core.client import ServerError


def test_count_executions_not_a_number_is_a_server_error(vip_server):
    """A reply to ``GET executions/count`` that is not a number is a ServerError naming the
    call (it was a TypeError: the error was built without its ``target``)."""

    def not_a_count(path, response, body):
        return b"\"many\"" if path.endswith("/executions/count") else body

    with Relay(vip_server.url, rewrite=not_a_count) as relay:
        c = VipClient(relay.url, api_key=vip_server.api_key, retry_budget=2, progress=False)
        try:
            with pytest.raises(ServerError, match=r"count_executions: not a count: '\"many\"'"):
                c.count_executions()
        finally:
            c.close()


def test_launch_with_session_name_deleted_is_refused_before_anything(vip_server, monkeypatch, tmp_path):
    """``del session.session_name`` then launch: a TypeError saying so, and nothing created on
    VIP (the output folder was created and the launch sent with a null name)."""
    monkeypatch.chdir(tmp_path)
    for attr in ("_default_client", "_VERBOSE", "_AVAILABLE_PIPELINES", "_BACKUP_LOCATION"):
        monkeypatch.setattr(VipLauncher, attr, getattr(VipLauncher, attr))
    client = VipClient(vip_server.url, api_key=vip_server.api_key, progress=False)
    home = f"/vip/Home/typing-{uuid.uuid4().hex[:8]}"
    try:
        (tmp_path / "a.csv").write_text("x\n1\n2\n")
        client.upload(tmp_path / "a.csv", f"{home}/a.csv")
        VipLauncher.init(api_key=vip_server.api_key, vip_portal_url=vip_server.url, verbose=False)
        s = VipLauncher(output_dir=f"{home}/out", pipeline_id="TextStats/1.0",
                        input_settings={"input_file": f"{home}/a.csv"}, session_name="named")
        del s.session_name
        before = client.count_executions()
        with pytest.raises(TypeError, match="no session_name"):
            s.launch_pipeline()
        assert not client.exists(f"{home}/out")
        assert client.count_executions() == before and not s.workflows
    finally:
        client.delete(home, missing_ok=True, wait=0)
        client.close()

"""Boutiques descriptors from VIP (`GET pipelines/{id}?format=boutiques`), checked before anything
is sent: VipClient.descriptor, the pure checks (vip_smk.boutiques), the one core step every face
calls (core.check_against_descriptor), counted against the local VIP server (--count-requests)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from vip_smk import VipClient, VipLauncher, VipSession, boutiques, core
from vip_smk.core.client import DescriptorUnavailable, NotFound, VipError

KINDS = ("t1", "t1ce", "t2", "flair")

# an app whose descriptor says what CARMIN cannot: value-choices, bounds, groups, requires
CHECKS_APP = {
    "name": "Checks", "tool-version": "1.0", "schema-version": "0.5", "description": "checks",
    "command-line": "echo [MODE] [RATE] [COUNT] [A] [B] [C] [D] > out.txt",
    "inputs": [
        {"id": "mode", "name": "Mode", "type": "String", "value-key": "[MODE]",
         "value-choices": ["fast", "slow"]},
        {"id": "rate", "name": "Rate", "type": "Number", "value-key": "[RATE]", "optional": True,
         "minimum": 0, "exclusive-minimum": True, "maximum": 1},
        {"id": "count", "name": "Count", "type": "Number", "integer": True, "value-key": "[COUNT]",
         "optional": True, "minimum": 1, "maximum": 10, "exclusive-maximum": True},
        {"id": "a", "name": "A", "type": "String", "value-key": "[A]", "optional": True},
        {"id": "b", "name": "B", "type": "String", "value-key": "[B]", "optional": True},
        {"id": "c", "name": "C", "type": "String", "value-key": "[C]", "optional": True},
        {"id": "d", "name": "D", "type": "String", "value-key": "[D]", "optional": True,
         "requires-inputs": ["a"]},
    ],
    "groups": [
        {"id": "ab", "name": "a or b", "members": ["a", "b"], "mutually-exclusive": True},
        {"id": "bc", "name": "b and c", "members": ["b", "c"], "all-or-none": True},
        {"id": "abc", "name": "one of a b c", "members": ["a", "b", "c"], "one-is-required": True},
    ],
    "output-files": [{"id": "out", "name": "Out", "path-template": "out.txt"}],
}


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """A server counting requests, with the Checks app besides the shipped ones."""
    from vip_smk.server import LocalServer

    apps = tmp_path_factory.mktemp("apps")
    (apps / "checks.json").write_text(json.dumps(CHECKS_APP))
    srv = LocalServer(tmp_path_factory.mktemp("vip-desc"), port=0, users=["dana:" + uuid.uuid4().hex],
                      max_running=0, max_download_size=0, count_requests=True, apps_dirs=[apps])
    srv.start(timeout=60)
    yield srv
    srv.stop()


@pytest.fixture
def vip(counted, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for cls in (VipLauncher, VipSession):
        for attr in ("_default_client", "_VERBOSE", "_AVAILABLE_PIPELINES", "_BACKUP_LOCATION"):
            monkeypatch.setattr(cls, attr, getattr(cls, attr))
    c = VipClient(counted.url, api_key=counted.api_key, progress=False)
    home = f"/vip/Home/desc-{uuid.uuid4().hex[:8]}"
    c.mkdir(home)
    yield c, home
    c.close()


def _routes(srv) -> dict:
    return srv.request_counts()["routes"]


def _sent(routes: dict, prefix: str) -> int:
    return sum(n for r, n in routes.items() if r.startswith(prefix))


def _brats_on_vip(client, root: str, tmp: Path, subjects) -> dict:
    for i, sub in enumerate(subjects):
        for kind in KINDS:
            f = tmp / f"{sub}_{kind}.csv"
            f.write_text(f"x,y\n{i},1\n{i + 1},2\n")
            client.upload(f, f"{root}/{f.name}")
    return {k: [f"{root}/{s}_{k}.csv" for s in subjects] for k in KINDS}


# ---- VipClient.descriptor -----------------------------------------------------------------------


def test_descriptor_is_boutiques_and_asked_once_per_client(counted, vip):
    client, _ = vip
    counted.reset_request_counts()
    d = client.descriptor("BraTSStats/1.0")
    assert d["name"] == "BraTSStats" and d["custom"]["vip:dot"] == list(KINDS)
    assert d["output-files"][0]["path-template"] == "[T1].brats.txt"
    assert client.descriptor("BraTSStats/1.0") is d
    assert _routes(counted) == {"GET /rest/pipelines/{pid}": 1}
    with pytest.raises(NotFound):
        client.descriptor("NoSuchApp/1.0")


def test_older_portal_descriptor_unavailable_and_faces_fall_back(make_server, tmp_path, monkeypatch):
    """A portal older than 4.6 answers the CARMIN pipeline: DescriptorUnavailable (asked once);
    VipLauncher falls back to today's behaviour: the launch is sent and VIP's 8009 refusal is
    turned into the same clear error naming each list."""
    monkeypatch.chdir(tmp_path)
    srv = make_server(boutiques_format=False, count_requests=True)
    client = VipClient(srv.url, api_key=srv.api_key, progress=False)
    with pytest.raises(DescriptorUnavailable, match="BraTSStats/1.0.*CARMIN") as err:
        client.descriptor("BraTSStats/1.0")
    assert isinstance(err.value, VipError)
    with pytest.raises(DescriptorUnavailable):
        client.descriptor("BraTSStats/1.0")
    assert _routes(srv)["GET /rest/pipelines/{pid}"] == 1
    settings = _brats_on_vip(client, "/vip/Home/old", tmp_path, ["s1", "s2", "s3"])
    settings["t2"] = settings["t2"][:2]
    VipLauncher.init(api_key=srv.api_key, vip_portal_url=srv.url, verbose=False)
    s = VipLauncher(output_dir="/vip/Home/old/out", pipeline_id="BraTSStats/1.0",
                    session_name="old_portal", input_settings=settings)
    srv.reset_request_counts()
    with pytest.raises(core.SettingsError, match=r"t1 \(3\), t1ce \(3\), t2 \(2\), flair \(3\)"):
        s.launch_pipeline()
    assert _routes(srv)["POST /rest/executions"] == 1  # sent: only VIP could tell
    assert client.executions() == []


# ---- the faces: nothing sent when a check fails -------------------------------------------------


def test_launcher_unequal_vip_dot_lists_zero_post(counted, vip, tmp_path):
    client, home = vip
    settings = _brats_on_vip(client, f"{home}/data", tmp_path, ["s1", "s2", "s3"])
    settings["t2"] = settings["t2"][:2]
    VipLauncher.init(api_key=counted.api_key, vip_portal_url=counted.url, verbose=False)
    s = VipLauncher(output_dir=f"{home}/out", pipeline_id="BraTSStats/1.0",
                    session_name="unequal", input_settings=settings)
    counted.reset_request_counts()
    with pytest.raises(ValueError, match=r"t1 \(3\), t1ce \(3\), t2 \(2\), flair \(3\)") as err:
        s.launch_pipeline()
    assert isinstance(err.value, core.SettingsError) and err.value.kinds == {"dot"}
    assert "unequal" in str(err.value) and "BraTSStats/1.0" in str(err.value)
    routes = _routes(counted)
    assert "POST /rest/executions" not in routes, routes
    assert _sent(routes, "PUT ") == 0 and _sent(routes, "POST ") == 0, routes
    assert s.workflows == {}


def test_session_unequal_vip_dot_lists_nothing_uploaded_zero_post(counted, vip, tmp_path):
    client, _ = vip
    data = tmp_path / "data"
    data.mkdir()
    settings = {}
    for k in KINDS:
        n = 2 if k == "t2" else 3
        for i in range(n):
            (data / f"s{i}_{k}.csv").write_text(f"x\n{i}\n")
        settings[k] = [f"data/s{i}_{k}.csv" for i in range(n)]
    VipSession.init(api_key=counted.api_key, vip_portal_url=counted.url, verbose=False)
    s = VipSession(session_name=f"dot_{uuid.uuid4().hex[:6]}", input_dir="data",
                   pipeline_id="BraTSStats/1.0", input_settings=settings)
    counted.reset_request_counts()
    with pytest.raises(ValueError, match=r"t1 \(3\), t1ce \(3\), t2 \(2\), flair \(3\)"):
        s.run_session(refresh_time=0.1)
    routes = _routes(counted)
    assert "POST /rest/executions" not in routes, routes
    assert _sent(routes, "PUT ") == 0 and _sent(routes, "POST ") == 0, routes  # nothing uploaded
    assert not client.exists(str(s.vip_input_dir))


@pytest.mark.parametrize("settings, kind, named", [
    ({"mode": "medium", "a": "x"}, "choice", "mode='medium' is not one of its value-choices: 'fast', 'slow'"),
    ({"mode": "fast", "rate": 0, "a": "x"}, "range", "rate=0 is out of range: it must be > 0"),
    ({"mode": "fast", "rate": 1.5, "a": "x"}, "range", "rate=1.5 is out of range: it must be <= 1"),
    ({"mode": "fast", "count": 10, "a": "x"}, "range", "count=10 is out of range: it must be < 10"),
    ({"mode": "fast", "count": 0, "a": "x"}, "range", "count=0 is out of range: it must be >= 1"),
    ({"mode": "fast", "a": "x", "b": "y", "c": "z"}, "group", "group 'a or b' is mutually exclusive: give one of a, b, not 2"),
    ({"mode": "fast", "b": "y"}, "group", "group 'b and c' is all-or-none: b given, so c must be given too"),
    ({"mode": "fast"}, "group", "group 'one of a b c' needs one of a, b, c"),
    ({"mode": "fast", "b": "y", "c": "z", "d": "w"}, "requires", "d requires a (not given)"),
])
def test_launcher_each_descriptor_check_zero_post(counted, vip, settings, kind, named):
    client, home = vip
    VipLauncher.init(api_key=counted.api_key, vip_portal_url=counted.url, verbose=False)
    s = VipLauncher(output_dir=f"{home}/out", pipeline_id="Checks/1.0", session_name="checks",
                    input_settings=settings)
    counted.reset_request_counts()
    with pytest.raises(core.SettingsError) as err:
        s.launch_pipeline()
    assert err.value.kinds == {kind} and named in str(err.value), str(err.value)
    assert "POST /rest/executions" not in _routes(counted)


def test_every_mistake_in_one_error(counted, vip):
    client, _ = vip
    with pytest.raises(core.SettingsError) as err:
        core.check_against_descriptor(client, "Checks/1.0", {"rate": "x", "count": 2.5, "a": "1", "b": "2"},
                                      where="here")
    text = str(err.value)
    assert err.value.kinds == {"type", "missing", "group"}, text
    assert "here" in text and "Missing input parameter: mode" in text and "count (Int64): 2.5" in text
    assert "'a or b' is mutually exclusive" in text and "'b and c' is all-or-none" in text
    assert text.count("mode") == 1  # required: said once, not by both CARMIN and the descriptor


def test_valid_values_launch(counted, vip):
    client, home = vip
    values = core.check_against_descriptor(client, "Checks/1.0", {"mode": "slow", "rate": 1, "count": 9,
                                                                  "a": "x", "d": "y"})
    ex = client.launch("Checks/1.0", values, f"{home}/ok", "ok")
    assert core.wait(client, [ex.identifier], first=0.1, refresh=0.2, timeout=60)[ex.identifier].status == "Finished"


# ---- the pure checks, directly ------------------------------------------------------------------


def test_pure_dot_message_names_each_list_and_length():
    d = {"inputs": [{"id": k, "type": "File"} for k in KINDS], "custom": {"vip:dot": list(KINDS)}}
    values = {k: ["x"] * (2 if k == "t2" else 3) for k in KINDS}
    found = boutiques.check_values(d, values)
    assert [f.kind for f in found] == ["dot"]
    assert found[0].text.endswith("t1 (3), t1ce (3), t2 (2), flair (3)")
    assert boutiques.check_values(d, {k: ["x"] * 3 for k in KINDS}) == []
    # a single value among vip:dot lists is one value: VIP refuses that too
    assert boutiques.check_values(d, {"t1": ["a", "b"], "t1ce": "c", "t2": ["a", "b"], "flair": ["a", "b"]})[0].kind == "dot"


def test_pure_list_entries_disables_and_flags():
    d = {"inputs": [{"id": "l", "type": "Number", "list": True, "min-list-entries": 2, "max-list-entries": 3},
                    {"id": "f", "type": "Flag", "optional": True, "disables-inputs": ["g"]},
                    {"id": "g", "type": "String", "optional": True}],
         "groups": [{"id": "x", "members": ["f", "g"], "one-is-required": True}]}
    kinds = [f.kind for f in boutiques.check_values(d, {"l": [1], "f": "true", "g": "v"})]
    assert kinds == ["list", "disables"]
    # a Flag set to false is not given: the group still needs one
    assert [f.kind for f in boutiques.check_values(d, {"l": [1, 2], "f": "false"})] == ["group"]

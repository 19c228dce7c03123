"""The procedure's steps (vip_smk.core) against the real local VIP server over HTTP."""

from __future__ import annotations

import os
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from vip_smk import core
from vip_smk.core.client import Execution, Parameter, Pipeline, VipClient


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A server of this module's own, counting the requests it receives by route; unlimited
    executions (these tests run several at once; capacity 1 is tested on its own server)."""
    from vip_smk.server import LocalServer

    server = LocalServer(tmp_path_factory.mktemp("vip-core"), port=0, workers=2, max_running=0,
                         users=[f"alice:core-{uuid.uuid4().hex}"], count_requests=True)
    server.start(timeout=60)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def vc(srv):
    c = VipClient(srv.url, api_key=srv.api_key, retry_budget=5, progress=False)
    yield c
    c.close()


@pytest.fixture(scope="module")
def home(vc):
    root = f"/vip/Home/core-{uuid.uuid4().hex[:8]}"
    vc.mkdir(root)
    yield root
    vc.delete(root, missing_ok=True, wait=0)


@pytest.fixture(scope="module")
def csv(vc, home, tmp_path_factory):
    src = tmp_path_factory.mktemp("data") / "a.csv"
    src.write_text("x,y\n1,2\n3,4\n")
    vc.mkdir(f"{home}/in")
    vc.upload(src, f"{home}/in/a.csv")
    vc.upload(src, f"{home}/in/b.csv")
    return f"{home}/in/a.csv"


class _Counting:
    """The requests the server received inside the block: ``.routes`` {"GET /rest/...": n}."""

    def __init__(self, server):
        self.server = server
        self.routes: dict[str, int] = {}

    def __enter__(self):
        self.server.reset_request_counts()
        return self

    def __exit__(self, *exc):
        self.routes = self.server.request_counts()["routes"]

    @property
    def total(self) -> int:
        return sum(self.routes.values())


# ---- validate_settings ----------------------------------------------------------------------


def test_validate_settings_one_error_listing_every_problem(vc, csv, home):
    p = vc.pipeline("TextStats/1.0")
    with pytest.raises(core.SettingsError) as info:
        core.validate_settings(p, {"precison": 2, "precision": "two", "delimiter": "a;b"},
                               where="session demo")
    err = info.value
    assert isinstance(err, ValueError)
    text = str(err)
    assert text.startswith("session demo: input settings for TextStats/1.0: 4 problem(s)")
    assert "Unknown input parameter: precison. Valid parameters: delimiter, input_file, precision" in text
    assert "Missing input parameter: input_file" in text
    assert "precision (Int64): 'two' is not an integer" in text
    assert "delimiter='a;b' contains ';'" in text
    assert err.kinds == {"unknown", "missing", "type", "chars"}
    assert {pr.param for pr in err.problems} == {"precison", "input_file", "precision", "delimiter"}

    check = core.vip_file_check(vc)
    with pytest.raises(core.SettingsError) as info:
        core.validate_settings(p, {"input_file": [csv, f"{home}/in/nope.csv", "rel/x.csv", f"{home}/in"],
                                   "precision": ""}, check_file=check)
    text = str(info.value)
    assert f"{home}/in/nope.csv does not exist on VIP" in text and "rel/x.csv is not a VIP path" in text
    assert f"{home}/in is a directory" in text and "Missing input value for parameter: precision" in text
    assert csv not in text.replace(f"{home}/in/nope", "")  # the good file is not a problem

    values = core.validate_settings(p, {"input_file": [csv, f"{home}/in/b.csv"], "precision": "2"},
                                    check_file=check)
    assert values == {"input_file": [csv, f"{home}/in/b.csv"], "precision": 2}
    s = vc.pipeline("Smooth/1.0")
    assert core.validate_settings(s, {"input_file": csv, "normalize": True, "window": 2.0}) == {
        "input_file": csv, "normalize": "true", "window": 2}
    with pytest.raises(core.SettingsError, match=r"normalize \(Boolean\): 'yes' is not true or false"):
        core.validate_settings(s, {"input_file": csv, "normalize": "yes"})
    with pytest.raises(core.SettingsError, match=r"duration \(Double\): 'soon' is not a number"):
        core.validate_settings(vc.pipeline("Sleep/1.0"), {"duration": "soon"})


def test_validate_settings_file_checks_one_listing_per_directory(vc, srv, csv, home):
    p = vc.pipeline("TextStats/1.0")
    files = [csv, f"{home}/in/b.csv"] * 10
    with _Counting(srv) as seen:
        core.validate_settings(p, {"input_file": files}, check_file=core.vip_file_check(vc))
    assert seen.routes == {"GET /rest/path/{path}?action=list": 1}


def test_validate_settings_vip_dot_lists():
    p = Pipeline(identifier="Dot/1", parameters=[
        Parameter(name="a", type="String", is_optional=True),
        Parameter(name="b", type="Int64", is_optional=True),
        Parameter(name="c", type="String", is_optional=True)])
    ok = core.validate_settings(p, {"a": ["x", "y"], "b": [1, 2], "c": ["p", "q", "r"]}, dot_inputs=["a", "b"])
    assert ok["b"] == [1, 2]
    with pytest.raises(core.SettingsError, match=r"vip:dot parameters need lists of equal length: a \(2\), b \(3\)"):
        core.validate_settings(p, {"a": ["x", "y"], "b": [1, 2, 3]}, dot_inputs=["a", "b"])
    # the group read from a Boutiques descriptor / a pipeline that carries it
    desc = {"custom": {"vip:dot": ["a", "b"]}}
    assert core.dot_inputs_of(desc) == ["a", "b"]
    p.extra = desc
    with pytest.raises(core.SettingsError, match="vip:dot"):
        core.validate_settings(p, {"a": ["x"], "b": [1, 2]})


# ---- launch_or_adopt, poll, wait ------------------------------------------------------------


def test_launch_or_adopt_never_duplicates(vc, srv, home):
    name = f"adopt-{uuid.uuid4().hex[:6]}"
    out = f"{home}/out-{name}"
    vc.mkdir(out)
    ex, adopted = core.launch_or_adopt(vc, "Sleep/1.0", {"duration": 1.5}, out, name)
    assert not adopted and ex.is_running
    # same name + pipeline + inputs (as VIP echoes them: a string) -> adopted while running
    again, adopted = core.launch_or_adopt(vc, "Sleep/1.0", {"duration": "1.5"}, out, name)
    assert adopted and again.identifier == ex.identifier
    # other inputs -> a new execution
    other, adopted = core.launch_or_adopt(vc, "Sleep/1.0", {"duration": 0.1}, out, name)
    assert not adopted and other.identifier != ex.identifier
    done = core.wait(vc, [ex.identifier, other.identifier], refresh=0.2, first=0.1, timeout=60)
    assert all(e.status == "Finished" for e in done.values())
    # finished -> still adopted (from a listing already fetched: one listing of its results
    # folder, to know its returned files are still there)
    listing = vc.executions()
    with _Counting(srv) as seen:
        again, adopted = core.launch_or_adopt(vc, "Sleep/1.0", {"duration": 1.5}, out, name,
                                              executions=listing)
    assert adopted and again.identifier == ex.identifier
    assert seen.total == 1 and list(seen.routes) == ["GET /rest/path/{path}?action=list"], seen.routes
    # excluded (e.g. its outputs were removed) -> launched again
    new, adopted = core.launch_or_adopt(vc, "Sleep/1.0", {"duration": 1.5}, out, name,
                                        exclude={ex.identifier})
    assert not adopted and new.identifier not in (ex.identifier, other.identifier)
    vc.kill(new.identifier)


def test_finished_execution_whose_results_are_gone_is_not_adopted(vc, home):
    """Issue 17 §3: a Finished execution is adopted only while its returned files are on VIP
    (a name used again after finish() removed them launches anew)."""
    name = f"gone-{uuid.uuid4().hex[:6]}"
    out = f"{home}/out-{name}"
    vc.mkdir(out)
    ex, adopted = core.launch_or_adopt(vc, "Sleep/1.0", {"duration": 0.1}, out, name)
    done = core.wait(vc, [ex.identifier], refresh=0.2, first=0.1, timeout=60)[ex.identifier]
    assert done.status == "Finished" and core.results_on_vip(vc, done)
    again, adopted = core.launch_or_adopt(vc, "Sleep/1.0", {"duration": 0.1}, out, name)
    assert adopted and again.identifier == ex.identifier
    vc.delete(out, wait=30)
    assert not core.results_on_vip(vc, done)
    assert core.adoptable_on_vip(vc, name=name, pipeline_id="Sleep/1.0",
                                 values={"duration": 0.1}) is None
    vc.mkdir(out)
    new, adopted = core.launch_or_adopt(vc, "Sleep/1.0", {"duration": 0.1}, out, name)
    assert not adopted and new.identifier != ex.identifier
    core.wait(vc, [new.identifier], refresh=0.2, first=0.1, timeout=60)


def test_launch_waits_for_a_slot_at_capacity_1(make_server, tmp_path):
    """Issue 17 §2: at a new account's capacity (1; error 2001 beyond) a launch with
    ``wait_for_slot`` waits until the running execution is over, then launches once."""
    from vip_smk.core.client import CapacityError

    srv = make_server(vip_defaults=True)  # VIP's default: max_running=1
    with VipClient(srv.url, api_key=srv.api_key, retry_budget=5, progress=False) as c:
        out = "/vip/Home/cap1"
        c.mkdir(out)
        first, _ = core.launch_or_adopt(c, "Sleep/1.0", {"duration": 2}, out, "one")
        with pytest.raises(CapacityError):
            core.launch_or_adopt(c, "Sleep/1.0", {"duration": 0.1}, out, "two")
        waited = []
        second, adopted = core.launch_or_adopt(c, "Sleep/1.0", {"duration": 0.1}, out, "two",
                                               wait_for_slot=0.5, on_wait=waited.append)
        assert not adopted and len(waited) == 1 and isinstance(waited[0], CapacityError)
        states = core.wait(c, [first.identifier, second.identifier], refresh=0.2, timeout=60)
        assert [e.status for e in states.values()] == ["Finished", "Finished"]
        assert states[second.identifier].start_date >= states[first.identifier].end_date - 1000
        assert sorted(e.name for e in c.executions()) == ["one", "two"]


def test_find_adoptable_rules():
    def ex(i, status, start, **kw):
        return Execution(identifier=i, name="n", pipeline_identifier="P/1", status=status,
                         input_values=kw.get("values", {"x": "1"}), start_date=start)

    execs = [ex("a", "Finished", 1), ex("b", "Running", 2), ex("c", "ExecutionFailed", 3),
             ex("d", "Running", 4, values={"x": "2"})]
    pick = core.find_adoptable
    assert pick(execs, name="n", pipeline_id="P/1", values={"x": 1}).identifier == "b"
    assert pick(execs, name="n", pipeline_id="P/1", values={"x": 1}, exclude={"b"}).identifier == "a"
    assert pick(execs, name="n", pipeline_id="P/1", values={"x": 1}, include_failed=True).identifier == "c"
    assert pick(execs, name="n", pipeline_id="P/1", values={"x": 1}, started_after=3) is None
    assert pick(execs, name="n", pipeline_id="Q/1", values={"x": 1}) is None
    assert pick(execs, name="m", pipeline_id="P/1", values={"x": 1}) is None
    assert core.same_inputs({"l": ["a", "b"], "f": True}, {"l": "a@@b", "f": "true", "extra": "d"})
    assert not core.same_inputs({"l": ["a", "b"]}, {"l": "a"})


def test_poll_one_request_per_round(vc, srv, home):
    out = f"{home}/poll"
    vc.mkdir(out)
    ids = [vc.launch("Sleep/1.0", {"duration": 0}, out, f"poll{i}").identifier for i in range(4)]
    with _Counting(srv) as seen:
        states = core.poll(vc, ids)
    assert list(states) == ids and seen.routes == {"GET /rest/executions": 1}
    with _Counting(srv) as seen:
        assert list(core.poll(vc, ids[:1])) == ids[:1]
    assert seen.routes == {"GET /rest/executions/{eid}": 1}
    with _Counting(srv) as seen:
        states = core.poll(vc, ids + ["workflow-nope00"])  # unknown: one direct GET, left out
    assert list(states) == ids
    assert seen.routes == {"GET /rest/executions": 1, "GET /rest/executions/{eid}": 1}
    with _Counting(srv) as seen:
        assert core.poll(vc, []) == {}
    assert seen.total == 0


def test_poll_beyond_vips_listing_limit(make_server):
    """VIP lists only its newest executions (500; 3 here): the older ids get one direct GET each,
    the listing is still asked once."""
    small = make_server(list_limit=3, count_requests=True, max_running=0)  # 5 at once
    with VipClient(small.url, api_key=small.api_key, progress=False) as c:
        out = "/vip/Home/poll-limit"
        c.mkdir(out)
        ids = [c.launch("Sleep/1.0", {"duration": 0}, out, f"lim{i}").identifier for i in range(5)]
        with _Counting(small) as seen:
            states = core.poll(c, ids)
    assert list(states) == ids and all(ex.identifier == eid for eid, ex in states.items())
    assert seen.routes == {"GET /rest/executions": 1, "GET /rest/executions/{eid}": 2}


def test_wait_polls_soon_and_backs_off(vc, home):
    out = f"{home}/wait"
    vc.mkdir(out)
    quick = vc.launch("Sleep/1.0", {"duration": 0.3}, out, "quick").identifier
    rounds: list[float] = []
    t0 = time.monotonic()
    states = core.wait(vc, [quick], refresh=30, first=0.5,
                       on_round=lambda s: rounds.append(time.monotonic() - t0))
    assert states[quick].status == "Finished"
    assert time.monotonic() - t0 < 10  # not the 30 s refresh
    assert rounds[0] < 0.5  # first round immediate
    slow = vc.launch("Sleep/1.0", {"duration": 30}, out, "slow").identifier
    rounds.clear()
    t0 = time.monotonic()
    states = core.wait(vc, [slow], refresh=0.8, first=0.1, timeout=2.5,
                       on_round=lambda s: rounds.append(time.monotonic() - t0))
    elapsed = time.monotonic() - t0
    assert states[slow].is_running and 2.3 <= elapsed < 6
    gaps = [b - a for a, b in zip(rounds, rounds[1:])]
    assert gaps[0] < 0.5 and max(gaps) < 1.5  # soon first, then backs off up to `refresh`
    vc.kill(slow)


def test_failure_detail(vc, home):
    out = f"{home}/fail"
    vc.mkdir(out)
    ex = vc.launch("Fail/1.0", {"message": "boom here"}, out, "fails")
    ex = core.wait(vc, [ex.identifier], refresh=0.2, first=0.1, timeout=60)[ex.identifier]
    assert ex.status == "ExecutionFailed"
    detail = core.failure_detail(vc, ex)
    assert "boom here" in detail and "job 1" in detail


# ---- download_results, extract_archive, remove_remote ---------------------------------------


def test_download_results_layout_and_extraction(vc, home, csv, tmp_path):
    out = f"{home}/dl"
    vc.mkdir(out)
    ids = [vc.launch("Smooth/1.0", {"input_file": csv}, out, "dl").identifier,
           vc.launch("TextStats/1.0", {"input_file": csv}, out, "dl").identifier]
    execs = list(core.wait(vc, ids, refresh=0.2, first=0.1, timeout=60).values())
    assert [e.status for e in execs] == ["Finished", "Finished"]
    rep = core.download_results(vc, execs, tmp_path, vip_root=out)
    assert rep.ok and len(rep.downloaded) == 2
    tgz, stats = rep.files[ids[0]][0], rep.files[ids[1]][0]
    # one layout: <local_dir>/<dated folder, ':' mapped>/<file>; a tarball -> a directory of its name
    assert tgz.name == "a.csv--w3.tgz" and tgz.is_dir() and (tgz / "smoothed.csv").is_file()
    assert stats.name == "a.csv.stats.txt" and stats.is_file()
    for f in (tgz, stats):
        assert f.parent.parent == tmp_path and ":" not in f.parent.name
    dated = Path(execs[0].output_paths[0]).parent.name
    assert tgz.parent.name == dated.replace(":", "-")
    again = core.download_results(vc, execs, tmp_path, vip_root=out)
    assert again.downloaded == [] and len(again.skipped) == 2
    # unzip=False keeps the tarball; a later call with unzip extracts it
    keep = tmp_path / "keep"
    core.download_results(vc, execs[:1], keep, vip_root=out, unzip=False)
    kept = keep / tgz.parent.name / tgz.name
    assert kept.is_file() and tarfile.is_tarfile(kept)
    core.download_results(vc, execs[:1], keep, vip_root=out)
    assert kept.is_dir() and (kept / "summary.txt").is_file()


def test_download_results_never_takes_one_executions_file_for_another(vc, home, csv, tmp_path):
    """Two executions whose outputs have the same VIP path (a results folder reused): the later
    one gets its own local folder, so its file is downloaded, not skipped as the first's."""
    out = f"{home}/shared"
    vc.mkdir(out)
    ex = vc.launch("TextStats/1.0", {"input_file": csv}, out, "shared")
    ex = core.wait(vc, [ex.identifier], refresh=0.2, first=0.1, timeout=60)[ex.identifier]
    path, = ex.output_paths
    outputs = {"workflow-first1": [path], ex.identifier: [path]}
    layout = core.results_layout(outputs, tmp_path, vip_root=out)
    first, second = layout["workflow-first1"][path], layout[ex.identifier][path]
    assert first != second and second.parent.name.endswith(f"-{ex.identifier}")
    rep = core.download_results(vc, outputs, tmp_path, vip_root=out, select={ex.identifier})
    assert rep.ok and rep.downloaded == [second] and not first.exists()
    assert list(rep.files) == [ex.identifier]


def test_layout_reads_back_vip_clients_unix_names(tmp_path):
    """vip-client on Unix wrote VIP's dated folder as is (with ':'): that file is used."""
    vip = "/vip/Home/API/s/OUTPUTS/24-11-2026_23:37:07/a.txt"
    raw = tmp_path / "24-11-2026_23:37:07" / "a.txt"
    mapped = tmp_path / "24-11-2026_23-37-07" / "a.txt"
    assert core.results_layout({"w": [vip]}, tmp_path, vip_root="/vip/Home/API/s/OUTPUTS")["w"][vip] == mapped
    raw.parent.mkdir()
    raw.write_text("x")
    assert core.results_layout({"w": [vip]}, tmp_path, vip_root="/vip/Home/API/s/OUTPUTS")["w"][vip] == raw
    # outside vip_root: dated folder + name
    assert core.results_layout({"w": ["/vip/x/12-01-2026_10:00:00/b.txt"]}, tmp_path)["w"][
        "/vip/x/12-01-2026_10:00:00/b.txt"] == tmp_path / "12-01-2026_10-00-00" / "b.txt"


def test_extract_archive_rule(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.txt").write_text("member")
    archive = tmp_path / "x.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src / "m.txt", arcname="m.txt")
        evil = tarfile.TarInfo("../evil.txt")
        evil.size = 0
        tf.addfile(evil)
    d = core.extract_archive(archive)
    assert d == archive and d.is_dir() and (d / "m.txt").read_text() == "member"
    assert not (tmp_path / "evil.txt").exists()
    plain = tmp_path / "plain.txt"
    plain.write_text("no")
    with pytest.raises(tarfile.ReadError):
        core.extract_archive(plain)


def test_remove_remote(vc, home, tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    target = f"{home}/rm/sub"
    vc.mkdir(target)
    vc.upload(f, f"{target}/f.txt")
    assert core.remove_remote(vc, f"{home}/rm", timeout=30)
    assert not vc.exists(f"{home}/rm")
    assert core.remove_remote(vc, f"{home}/rm")  # already gone


# ---- content: the one rule for "an input changed" -------------------------------------------


def test_content_rule_same_bytes_new_mtime_is_no_change(tmp_path):
    from vip_smk.core import content

    f = tmp_path / "x.txt"
    f.write_text("x\n")
    rec = content.fingerprint(f)
    assert content.unchanged(f, rec) and content.unchanged(f, rec.to_json())
    ns = rec.mtime_ns + 5_000_000_000
    f.write_text("x\n")
    os.utime(f, ns=(ns, ns))  # rewritten, same bytes, new mtime
    assert content.unchanged(f, rec)
    kept = content.same_content(f, rec)
    assert kept is not None and kept.mtime_ns == ns and kept.sha256 == rec.sha256
    f.write_text("y\n")  # new bytes, same size
    assert not content.unchanged(f, rec) and content.same_content(f, rec) is None
    assert content.changed_files(tmp_path, ["x.txt", "new.txt"], {"x.txt": rec}) == ["x.txt", "new.txt"]
    assert not content.unchanged(f, {"size": 2, "mtime_ns": 1})  # an older record: no digest


def test_content_fingerprint_of_a_file_rewritten_during_its_upload(tmp_path):
    """The record of an upload pairs the digest of the bytes read with the stat taken BEFORE
    the read: a file rewritten meanwhile (same size) is found changed next time."""
    from vip_smk.core import content

    f = tmp_path / "x.txt"
    f.write_text("old\n")
    before = os.stat(f)
    digest = content.digest_file(f)  # what the upload read
    f.write_text("new\n")  # rewritten while the upload ran
    ns = before.st_mtime_ns + 1_000_000_000
    os.utime(f, ns=(ns, ns))
    assert not content.unchanged(f, content.fingerprint(f, digest, before=before))
    assert content.unchanged(f, content.fingerprint(f))

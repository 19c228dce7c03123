"""core.expected_outputs (names a job writes, from the Boutiques path-templates) against what the
local VIP server's engine actually writes, for every shipped app, jobN/ folders included."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from pathlib import Path, PurePosixPath

import pytest

from vip_smk import core
from vip_smk.server.pipelines import SHIPPED_APPS

HOME = "/vip/Home"


def _upload(client, folder: str, names: list[str], tmp: Path) -> list[str]:
    out = []
    for i, name in enumerate(names):
        f = tmp / f"{uuid.uuid4().hex}.csv"
        f.write_text(f"x,y\n{i},1\n{i + 2},3\n")
        vip = f"{folder}/{name}"
        client.upload(f, vip)
        out.append(vip)
    return out


def _run(client, pid: str, values: dict, tag: str):
    """Launch, wait; (the execution, its results relative to its results folder)."""
    location = f"{HOME}/outputs-{tag}-{uuid.uuid4().hex[:6]}"
    ex = client.launch(pid, values, location, f"out-{tag}")
    ex = core.wait(client, [ex.identifier], first=0.1, refresh=0.3, timeout=120)[ex.identifier]
    ex = client.execution(ex.identifier)
    rel = []
    for p in ex.output_paths:
        rest = PurePosixPath(p).relative_to(location)
        rel.append(str(PurePosixPath(*rest.parts[1:])))  # under the dated folder
    folder = {str(PurePosixPath(p).relative_to(location)).split("/")[0] for p in ex.output_paths}
    listed = set()
    for dated in folder:  # the listing agrees with returnedFiles
        for info in client.list(f"{location}/{dated}"):
            name = PurePosixPath(info.path).name
            if info.is_directory:
                listed |= {f"{name}/{PurePosixPath(i.path).name}" for i in client.list(info.path)}
            else:
                listed.add(name)
    assert listed == set(rel)
    return ex, sorted(rel), [f"{location}/{d}" for d in folder]


def _check(expected: list[core.ExpectedOutput], actual: list[str]) -> None:
    """Every expected result where it may land, one plain name per colliding group, nothing else."""
    groups = defaultdict(list)
    for e in expected:
        groups[e.name].append(e)
    want: set[str] = set()
    for name, es in groups.items():
        if not es[0].collides:
            want.add(name)
            continue
        # one job took the plain name: the first to finish; the others are under job<N>/
        winners = [e for e in es if f"job{e.job}/{name}" not in actual]
        assert len(winners) == 1, (name, actual)
        want |= {name} | {f"job{e.job}/{name}" for e in es if e is not winners[0]}
    assert set(actual) == want, (actual, expected)
    assigned = core.assign_results(expected, actual)
    assert sorted(p for ps in assigned.values() for p in ps) == sorted(actual)
    for e in expected:
        assert len([p for p in assigned[e.job] if PurePosixPath(p).name == e.name]) == 1


def _descriptor(client, pid):
    d = client.descriptor(pid)
    assert d == json.loads((SHIPPED_APPS / f"{pid.split('/')[0].lower()}.json").read_text())
    return d


def test_every_shipped_app_is_covered():
    names = {json.loads(p.read_text())["name"] for p in SHIPPED_APPS.glob("*.json")}
    assert names == {"TextStats", "Smooth", "PairStats", "BraTSStats", "Sleep", "Fail"}


def test_textstats_same_file_name_in_two_folders_collides(client, tmp_path):
    base = f"{HOME}/o-ts-{uuid.uuid4().hex[:6]}"
    files = _upload(client, base + "/x", ["a.csv", "b.csv"], tmp_path) + \
        _upload(client, base + "/y", ["a.csv"], tmp_path)
    values = {"input_file": files, "precision": 2}
    exp = core.expected_outputs(_descriptor(client, "TextStats/1.0"), values)
    assert [(e.job, e.name, e.collides) for e in exp] == [
        (1, "a.csv.stats.txt", True), (2, "b.csv.stats.txt", False), (3, "a.csv.stats.txt", True)]
    ex, actual, _ = _run(client, "TextStats/1.0", values, "ts")
    assert ex.status == "Finished"
    _check(exp, actual)


def test_smooth_cross_product_and_default_value(client, tmp_path):
    files = _upload(client, f"{HOME}/o-sm-{uuid.uuid4().hex[:6]}", ["a.csv", "b.csv"], tmp_path)
    d = _descriptor(client, "Smooth/1.0")
    values = {"input_file": files, "window": [2, 4], "normalize": "true"}
    exp = core.expected_outputs(d, values)
    assert [e.name for e in exp] == ["a.csv--w2.tgz", "a.csv--w4.tgz", "b.csv--w2.tgz", "b.csv--w4.tgz"]
    ex, actual, _ = _run(client, "Smooth/1.0", values, "sm")
    assert ex.status == "Finished" and len(ex.jobs) == 4
    _check(exp, actual)
    one = {"input_file": files[0]}  # window not given: its default (3)
    exp = core.expected_outputs(d, one)
    assert [e.name for e in exp] == ["a.csv--w3.tgz"]
    _check(exp, _run(client, "Smooth/1.0", one, "sm1")[1])


def test_pairstats_vip_dot_pairs_crossed_with_precision(client, tmp_path):
    base = f"{HOME}/o-ps-{uuid.uuid4().hex[:6]}"
    a = _upload(client, base, ["a1.csv", "a2.csv", "a3.csv"], tmp_path)
    b = _upload(client, base, ["b1.csv", "b2.csv", "b3.csv"], tmp_path)
    values = {"image_a": a, "image_b": b, "precision": [1, 2]}
    exp = core.expected_outputs(_descriptor(client, "PairStats/1.0"), values)
    # 3 pairs (not 9) x 2 precisions: each name written by 2 jobs
    assert [(e.job, e.name) for e in exp] == [(1, "a1.csv.pair.txt"), (2, "a1.csv.pair.txt"),
                                              (3, "a2.csv.pair.txt"), (4, "a2.csv.pair.txt"),
                                              (5, "a3.csv.pair.txt"), (6, "a3.csv.pair.txt")]
    assert all(e.collides for e in exp)
    ex, actual, _ = _run(client, "PairStats/1.0", values, "ps")
    assert ex.status == "Finished" and len(ex.jobs) == 6
    _check(exp, actual)


def test_bratsstats_four_vip_dot_lists(client, tmp_path):
    base = f"{HOME}/o-br-{uuid.uuid4().hex[:6]}"
    values = {k: _upload(client, base, [f"s{i}_{k}.csv" for i in range(3)], tmp_path)
              for k in ("t1", "t1ce", "t2", "flair")}
    exp = core.expected_outputs(_descriptor(client, "BraTSStats/1.0"), values)
    assert [e.name for e in exp] == [f"s{i}_t1.csv.brats.txt" for i in range(3)]
    ex, actual, _ = _run(client, "BraTSStats/1.0", values, "br")
    assert ex.status == "Finished" and len(ex.jobs) == 3
    _check(exp, actual)


def test_sleep_one_name_for_every_job_mapped_back_to_its_job(client):
    values = {"duration": 0, "message": ["one", "two", "three"]}
    exp = core.expected_outputs(_descriptor(client, "Sleep/1.0"), values)
    assert [(e.job, e.name, e.collides) for e in exp] == [(j, "sleep.txt", True) for j in (1, 2, 3)]
    ex, actual, (folder,) = _run(client, "Sleep/1.0", values, "sl")
    assert ex.status == "Finished"
    _check(exp, actual)
    for job, paths in core.assign_results(exp, actual).items():  # each file is its job's
        (path,) = paths
        text = client.read_bytes(f"{folder}/{path}").decode()
        assert values["message"][job - 1] in text, (job, path, text)


def test_fail_writes_nothing(client):
    values = {"message": "no outputs"}
    assert core.expected_outputs(_descriptor(client, "Fail/1.0"), values) == []
    ex, actual, _ = _run(client, "Fail/1.0", values, "fa")
    assert ex.status == "ExecutionFailed" and actual == []


STRIP_APP = {
    "name": "Strip", "tool-version": "1.0", "schema-version": "0.5", "description": "names",
    "command-line": "echo [TAG] > [OUT]; echo [TAG] > [LIST_OUT]",
    "inputs": [
        {"id": "image", "name": "Image", "type": "File", "value-key": "[IMAGE]"},
        {"id": "tag", "name": "Tag", "type": "String", "value-key": "[TAG]", "optional": True},
        {"id": "sub", "name": "Subject", "type": "String", "value-key": "[SUB]", "optional": True,
         "default-value": "s00"},
    ],
    "output-files": [
        {"id": "out", "name": "Out", "value-key": "[OUT]", "path-template": "[IMAGE]_[TAG].txt",
         "path-template-stripped-extensions": [".nii.gz", ".csv"]},
        {"id": "list_out", "name": "By subject", "value-key": "[LIST_OUT]",
         "path-template": "[SUB]-[IMAGE].log", "path-template-stripped-extensions": [".csv"]},
    ],
}


@pytest.fixture(scope="module")
def strip_server(tmp_path_factory):
    from vip_smk.core.client import VipClient
    from vip_smk.server import LocalServer

    apps = tmp_path_factory.mktemp("strip-apps")
    (apps / "strip.json").write_text(json.dumps(STRIP_APP))
    srv = LocalServer(tmp_path_factory.mktemp("vip-strip"), port=0, users=["sam:" + uuid.uuid4().hex],
                      max_running=0, max_download_size=0, apps_dirs=[apps])
    srv.start(timeout=60)
    c = VipClient(srv.url, api_key=srv.api_key, progress=False)
    yield c
    c.close()
    srv.stop()


def test_stripped_extensions_defaults_and_cross(strip_server, tmp_path):
    c = strip_server
    files = _upload(c, f"{HOME}/strip", ["t1.nii.gz", "t2.csv"], tmp_path)
    values = {"image": files, "tag": ["x", "y"]}
    exp = core.expected_outputs(c.descriptor("Strip/1.0"), values)
    assert [(e.job, e.name) for e in exp] == [
        (1, "t1_x.txt"), (1, "s00-t1.nii.gz.log"), (2, "t1_y.txt"), (2, "s00-t1.nii.gz.log"),
        (3, "t2_x.txt"), (3, "s00-t2.log"), (4, "t2_y.txt"), (4, "s00-t2.log")]
    ex, actual, _ = _run(c, "Strip/1.0", values, "st")
    assert ex.status == "Finished"
    _check(exp, actual)

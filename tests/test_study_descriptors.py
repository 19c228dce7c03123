"""The study checks VIP's Boutiques descriptors at parse time (`snakemake -n` with a real VIP URL):
an unequal vip:dot group is reported before anything is sent, from the descriptors it fetched
(read-only requests) or, after a real run, from the copy kept in .snakemake/vip-smk/ (none)."""

from __future__ import annotations

import json

from workflow_helpers import make_project, run_smk, write_config


def _config(srv, n_b: int) -> dict:
    return {
        "name": "pairs",
        "vip": {"url": srv.url, "poll_seconds": 0.2},
        "datasets": {"pairs": "config/data/pairs"},
        "pipelines": {"pair": {"id": "PairStats/1.0"}},
        "sessions": {"s1": {"dataset": "pairs", "pipeline": "pair",
                            "settings": {"image_a": "a*.csv", "image_b": "b*.csv" if n_b == 3 else "b[12].csv"}}},
    }


def test_unequal_vip_dot_reported_by_dry_run_from_fetched_then_kept_descriptors(tmp_path, make_server):
    srv = make_server(count_requests=True)
    project = make_project(tmp_path, _config(srv, 3))
    data = project / "config" / "data" / "pairs"
    data.mkdir(parents=True)
    for i in (1, 2, 3):
        for k in "ab":
            (data / f"{k}{i}.csv").write_text(f"x\n{i}\n{i + 1}\n")
    # the mistake, no copy kept yet: the dry run reads the descriptor (GET only), sends nothing
    write_config(project, _config(srv, 2))
    srv.reset_request_counts()
    dry = run_smk(project, "-n", key=srv.api_key, check=False)
    assert dry.returncode != 0
    out = dry.stdout + dry.stderr
    assert "image_a (3), image_b (2)" in out, out[-3000:]
    routes = srv.request_counts()["routes"]
    assert set(routes) <= {"GET /rest/platform", "GET /rest/pipelines/{pid}"}, routes
    assert not list((project / ".snakemake" / "vip-smk").glob("pipelines-*.json"))  # read-only
    # a real run with equal lists keeps the descriptor with the CARMIN copy
    write_config(project, _config(srv, 3))
    run_smk(project, key=srv.api_key)
    cache, = (project / ".snakemake" / "vip-smk").glob("pipelines-*.json")
    kept = json.loads(cache.read_text())["PairStats/1.0"]
    assert kept["boutiques"]["custom"]["vip:dot"] == ["image_a", "image_b"]
    # the same mistake again: reported from the kept copy, not one request to VIP
    write_config(project, _config(srv, 2))
    srv.reset_request_counts()
    dry = run_smk(project, "-n", key=srv.api_key, check=False)
    assert dry.returncode != 0 and "image_a (3), image_b (2)" in dry.stdout + dry.stderr
    assert srv.request_counts()["total"] == 0


def test_local_study_checks_the_shipped_descriptors_bounds_offline(tmp_path):
    """url: local: the shipped Boutiques descriptors (no server started) give the bounds the
    CARMIN parameters lack: one StudyConfigError naming the session and the value."""
    import pytest

    import vip_smk.study as vs

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x\n1\n")
    cfg = {"name": "bounds", "vip": {"url": "local"}, "datasets": {"d": "data"},
           "pipelines": {"stats": {"id": "TextStats/1.0"}, "smooth": {"id": "Smooth/1.0"}},
           "sessions": {"p": {"dataset": "d", "pipeline": "stats",
                              "settings": {"input_file": "a.csv", "precision": 20}},
                        "w": {"dataset": "d", "pipeline": "smooth",
                              "settings": {"input_file": "a.csv", "window": 0}}}}
    with pytest.raises(vs.StudyConfigError) as err:
        vs.load_study(cfg, tmp_path)
    text = str(err.value)
    assert "precision=20 is out of range: it must be <= 12" in text
    assert "window=0 is out of range: it must be >= 1" in text
    assert not (tmp_path / ".vip-local").exists()  # nothing started

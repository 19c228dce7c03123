"""Helpers shared by the study workflow tests (test_workflow*.py, test_study_descriptors.py): a
temp copy of workflow/ with a config, `snakemake` run in a subprocess, the summary read back."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vip_smk.core.client import VipClient
from vip_smk.server import LocalServer

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def make_project(tmp_path: Path, config: dict) -> Path:
    """tmp_path/{workflow, config/config.yaml, config/data/demo}: a study project."""
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    shutil.copytree(REPO / "config" / "data", tmp_path / "config" / "data")
    write_config(tmp_path, config)
    return tmp_path


def write_config(project: Path, config: dict) -> None:
    (project / "config").mkdir(exist_ok=True)
    (project / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def study_config(server: LocalServer | None, sessions: dict, **vip) -> dict:
    pipelines = {
        "stats": {"id": "TextStats/1.0", "settings": {"input_file": "*.csv"}},
        "smooth": {"id": "Smooth/1.0", "settings": {"input_file": "*.csv"}},
        "sleep": {"id": "Sleep/1.0"},
        "fail": {"id": "Fail/1.0"},
    }
    settings = {"url": server.url if server else "local", "poll_seconds": 0.2, **vip}
    return {
        "name": "t",
        "vip": settings,
        "datasets": {"demo": "config/data/demo"},
        "pipelines": pipelines,
        "sessions": sessions,
    }


def run_smk(project: Path, *args: str, key: str | None = None, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("VIP_API_KEY", None)
    if key is not None:
        env["VIP_API_KEY"] = key
    proc = subprocess.run(
        [*SNAKEMAKE, "--cores", "1", *args], cwd=project, env=env, capture_output=True,
        text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    if key is not None:
        assert key not in proc.stdout + proc.stderr, "the API key leaked into Snakemake's output"
    return proc


def summary(project: Path) -> dict[str, dict]:
    with open(project / "results" / "study_summary.csv") as fh:
        return {row["session"]: row for row in csv.DictReader(fh)}


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"snakemake ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.1)


def client_for(server: LocalServer) -> VipClient:
    return VipClient(server.url, api_key=server.api_key, retries=1, retry_budget=5)

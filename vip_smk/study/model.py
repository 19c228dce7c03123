"""The study's model: its VIP settings (`VipSettings`), one session (`Session`: dataset x
pipeline x parameter set, its VIP-bound input values) and the whole study (`Study`: paths on VIP
and here). Plain dataclasses: built by `vip_smk.study.config`, read by every other study module.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from vip_smk.study.schema import fill_defaults, schema


@dataclass(frozen=True)
class VipSettings:
    """`vip:` of the config. No defaults here: each is written once, in the schema."""

    url: str
    api_key_env: str
    max_running: int | None
    poll_seconds: float
    cleanup: bool
    allow_failures: bool
    root: str
    local_dir: str
    local_workers: int
    workers: int
    max_wait_hours: float | None
    retry_seconds: float

    @classmethod
    def from_config(cls, vip: Mapping[str, Any] | None) -> VipSettings:
        filled = fill_defaults({"vip": dict(vip or {})}, schema())["vip"]
        return cls(**{f.name: filled[f.name] for f in fields(cls)})

    @property
    def is_local(self) -> bool:
        return self.url == "local"

    def public(self) -> dict[str, Any]:
        """What markers record (never a key: there is none here anyway)."""
        return {"url": self.url, "root": self.root, "max_running": self.max_running, "cleanup": self.cleanup}


@dataclass(frozen=True)
class Session:
    name: str
    dataset: str
    pipeline: str  # alias in `pipelines:`
    pipeline_id: str
    parameters: dict[str, Any]  # what distinguishes it (grid point / explicit settings)
    settings: dict[str, Any]  # merged user-level settings (relative paths / globs)
    input_values: dict[str, Any]  # VIP-bound values (absolute VIP paths)
    origin: str  # "study[i]" or "sessions"

    @property
    def fingerprint(self) -> str:
        blob = json.dumps({"pipeline": self.pipeline_id, "inputs": self.input_values}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Study:
    name: str
    vip: VipSettings
    datasets: dict[str, Path]
    pipelines: dict[str, str]  # alias -> VIP id
    sessions: dict[str, Session]
    results: Path
    workdir: Path = field(default_factory=Path.cwd)
    dataset_exclude: dict[str, list[str]] = field(default_factory=dict)  # `exclude:` globs
    # set on Ctrl-C (runs.stop_on_interrupt): waiting steps end within a second, leaving
    # their executions running on VIP for the next run to resume
    stop: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    # pipelines asked to VIP while loading (id -> VIP JSON): a real run keeps them for dry runs
    learned: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def remote_root(self) -> str:
        return str(PurePosixPath(self.vip.root) / self.name)

    def remote_dataset_dir(self, dataset: str) -> str:
        return f"{self.remote_root}/datasets/{dataset}"

    def remote_session_dir(self, session: str) -> str:
        return f"{self.remote_root}/{session}"

    def results_location(self, session: str) -> str:
        return f"{self.remote_session_dir(session)}/OUTPUTS"

    def sessions_of_dataset(self, dataset: str) -> list[str]:
        return sorted(s.name for s in self.sessions.values() if s.dataset == dataset)

    @property
    def used_datasets(self) -> list[str]:
        return sorted({s.dataset for s in self.sessions.values()})

    def local_dir(self) -> Path:
        return (self.workdir / self.vip.local_dir).resolve()

    def launch_params(self, session: str) -> str:
        """What makes Snakemake rerun a launch when it changes (and only that session's)."""
        s = self.sessions[session]
        return json.dumps(
            {"vip": self.vip.url, "results": self.results_location(s.name), "pipeline": s.pipeline_id,
             "inputs": s.input_values},
            sort_keys=True,
        )

"""What the study's inputs ARE: the files of a dataset it uploads and the content each session
uses, decided by :mod:`vip_smk.core.content` (bytes, never an mtime alone).

- a dataset's files: every regular file under its folder except hidden ones (a name starting
  with '.', e.g. ``.DS_Store``, at any depth) and those matching its ``exclude:`` globs;
- their records (:class:`~vip_smk.core.content.Fingerprint`) are kept in
  ``results/datasets/<d>/inventory.json`` (local) and, after each upload, in
  ``<vip.root>/<study>/datasets/<d>.content.json`` on VIP (VIP serves no md5: our own record is
  the only knowledge of what is there, and it survives ``rm -rf results`` or a fresh clone);
- a session's input digest covers its pipeline, its values and the content of only the files its
  settings resolve to: an unrelated file added to the dataset changes no session.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from vip_smk.core import content
from vip_smk.study.model import Session, Study
from vip_smk.util import read_json, write_json_atomic

log = logging.getLogger(__name__)

INVENTORY = "inventory.json"


def excluded(rel: str, patterns: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether a dataset-relative path is left out: hidden (any part starts with '.') or
    matching one of ``patterns`` (fnmatch on the relative path or on the file's name)."""
    parts = rel.split("/")
    if any(p.startswith(".") for p in parts):
        return True
    return any(fnmatch.fnmatchcase(rel, pat) or fnmatch.fnmatchcase(parts[-1], pat) for pat in patterns)


def dataset_files(study: Study, dataset: str) -> list[str]:
    """The dataset's files to upload, relative (posix), sorted."""
    root = study.datasets[dataset]
    patterns = tuple(study.dataset_exclude.get(dataset, ()))
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if not excluded(rel, patterns) and p.is_file():
            out.append(rel)
    return sorted(out)


def inventory_path(study: Study, dataset: str) -> Path:
    return study.results / "datasets" / dataset / INVENTORY


def remote_record_path(study: Study, dataset: str) -> str:
    """Beside the dataset's folder on VIP (not in it: never a pipeline input)."""
    return f"{study.remote_dataset_dir(dataset)}.content.json"


def read_records(path: str | Path) -> dict[str, content.Fingerprint]:
    data = read_json(path) or {}
    files = data.get("files", []) if isinstance(data, Mapping) else []
    out = {}
    for f in files if isinstance(files, list) else []:
        rec = content.Fingerprint.from_json(f) if isinstance(f, Mapping) else None
        if rec is not None and isinstance(f.get("path"), str):
            out[f["path"]] = rec
    return out


def records_json(dataset: str, records: Mapping[str, content.Fingerprint]) -> dict[str, Any]:
    return {"dataset": dataset, "algorithm": content.ALGORITHM,
            "files": [{"path": rel, **records[rel].to_json()} for rel in sorted(records)]}


class StudyContent:
    """The records of a study's datasets, computed once per process (a 500-session study's
    parse reads each dataset once: a stat per file, a hash only where the mtime moved)."""

    def __init__(self, study: Study, *, update: bool = True):
        self.study = study
        self.update = update  # write back records whose only change is the mtime
        self._records: dict[str, dict[str, content.Fingerprint]] = {}

    def records(self, dataset: str) -> dict[str, content.Fingerprint]:
        if dataset not in self._records:
            root = self.study.datasets[dataset]
            inv = inventory_path(self.study, dataset)
            known = read_records(inv)
            now: dict[str, content.Fingerprint] = {}
            moved = False
            for rel in dataset_files(self.study, dataset):
                rec = content.same_content(root / rel, known.get(rel))
                if rec is None:
                    rec = content.fingerprint(root / rel)
                moved = moved or rec != known.get(rel)
                now[rel] = rec
            if self.update and known and moved and set(now) == set(known) and all(
                    now[r].sha256 == known[r].sha256 for r in now):
                # same bytes, new mtimes: keep the new dates so that the next parse reads nothing
                write_json_atomic(inv, records_json(dataset, now))
            self._records[dataset] = now
        return self._records[dataset]

    def dataset_digest(self, dataset: str) -> str:
        return content.tree_digest(self.records(dataset))

    def session_digest(self, name: str) -> str:
        session = self.study.sessions[name]
        return session_digest(self.study, session, self.records(session.dataset))


def session_files(study: Study, session: Session) -> list[str]:
    """The dataset-relative files a session's values point to."""
    prefix = study.remote_dataset_dir(session.dataset) + "/"
    out = set()
    for v in session.input_values.values():
        for x in v if isinstance(v, list) else [v]:
            if isinstance(x, str) and x.startswith(prefix):
                out.add(str(PurePosixPath(x[len(prefix):])))
    return sorted(out)


def session_digest(study: Study, session: Session, records: Mapping[str, Any]) -> str:
    """One digest of what the session runs: pipeline, values and the content of its files."""
    used = {rel: records.get(rel) for rel in session_files(study, session)}
    h = content.hasher()
    h.update(f"{session.fingerprint}\n{content.tree_digest(used)}".encode())
    return h.hexdigest()

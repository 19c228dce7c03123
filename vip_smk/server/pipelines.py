"""Pipelines of the local VIP server, built from Boutiques descriptors.

The shipped apps live in ``vip_smk/server/apps/``; ``--apps-dir DIR`` adds the ``*.json``
descriptors of DIR. Identifier = ``name/tool-version`` as on VIP.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SHIPPED_APPS = Path(__file__).resolve().parent / "apps"


@dataclass
class Pipeline:
    identifier: str
    name: str
    version: str
    description: str | None
    descriptor_path: Path
    descriptor: dict = field(repr=False)

    @property
    def inputs(self) -> list[dict]:
        return list(self.descriptor.get("inputs") or [])

    def custom_ids(self, key: str) -> list[str]:
        """Input ids listed under ``custom[key]`` (``"vip:dot"``, ``"vip:cross"``)."""
        return _custom_ids(self.descriptor, key)

    @property
    def dot_inputs(self) -> list[str]:
        """Inputs whose lists are paired element by element (VIP's ``vip:dot``)."""
        return self.custom_ids("vip:dot")

    def input(self, pid: str) -> dict | None:
        for i in self.inputs:
            if i["id"] == pid:
                return i
        return None

    def vip_type(self, inp: dict) -> str:
        t = inp.get("type")
        if t == "Number":
            return "Int64" if inp.get("integer") else "Double"
        if t == "Flag":
            return "Boolean"
        return t if t in ("File", "String") else "String"

    def parameters(self) -> list[dict]:
        out = []
        for inp in self.inputs:
            if inp["id"] == "results-directory":
                continue
            out.append(
                {
                    "name": inp["id"],
                    "type": self.vip_type(inp),
                    "isOptional": bool(inp.get("optional", False)) or inp.get("type") == "Flag",
                    "isReturnedValue": False,
                    "defaultValue": inp.get("default-value"),
                    # VIP: the input's description, null when it has none
                    "description": inp.get("description"),
                }
            )
        return out

    def to_json(self, with_parameters: bool = True) -> dict:
        return {
            "identifier": self.identifier,
            "name": self.name,
            "version": self.version,
            # VIP lists pipelines without description nor parameters (appsToPipelines)
            "description": self.description if with_parameters else None,
            "parameters": self.parameters() if with_parameters else [],
            "canExecute": True,
        }


def _custom_ids(desc: dict, key: str) -> list[str]:
    custom = desc.get("custom")
    ids = custom.get(key) if isinstance(custom, dict) else None
    if not ids:
        return []
    return [str(i) for i in ids] if isinstance(ids, list) else [str(ids)]


def load_pipelines(apps_dirs=()) -> dict[str, Pipeline]:
    """Load the shipped descriptors, then those of ``apps_dirs`` (later ones win)."""
    found: dict[str, Pipeline] = {}
    for d in [SHIPPED_APPS, *[Path(x) for x in apps_dirs]]:
        if not d.is_dir():
            raise FileNotFoundError(f"apps directory not found: {d}")
        for path in sorted(d.glob("*.json")):
            try:
                desc = json.loads(path.read_text(encoding="utf-8"))
                name, version = str(desc["name"]), str(desc["tool-version"])
                desc["command-line"], desc["inputs"]  # noqa: B018  (required keys)
            except (ValueError, KeyError, TypeError) as e:
                log.warning("skipping %s: not a Boutiques descriptor (%s)", path, e)
                continue
            pid = f"{name}/{version}"
            ids = {str(i.get("id")) for i in desc["inputs"]}
            unknown = sorted({i for k in ("vip:dot", "vip:cross")
                              for i in _custom_ids(desc, k) if i not in ids})
            if unknown:  # VIP-portal refuses such a descriptor at import
                log.warning("skipping %s: %s listed in vip:dot / vip:cross but not in its inputs",
                            path, ", ".join(unknown))
                continue
            if pid in found:
                log.info("pipeline %s from %s replaces %s", pid, path, found[pid].descriptor_path)
            found[pid] = Pipeline(
                identifier=pid,
                name=name,
                version=version,
                description=desc.get("description"),
                descriptor_path=path.resolve(),
                descriptor=desc,
            )
    return found

"""The pipelines' descriptors a study is checked against, known without touching anything:
the apps the embedded local server ships (read as files: the study never imports the server
package, which needs the `server` extra) or the copy a real run kept of a VIP's."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from vip_smk.study.model import VipSettings

SHIPPED_APPS = Path(__file__).resolve().parents[1] / "server" / "apps"




def _boutiques_to_vip(desc: Mapping[str, Any]) -> dict[str, Any]:
    """A shipped Boutiques descriptor -> the pipeline as the local VIP describes it."""
    params = []
    for inp in desc.get("inputs") or []:
        t = inp.get("type")
        vtype = ("Int64" if inp.get("integer") else "Double") if t == "Number" else (
            "Boolean" if t == "Flag" else (t if t in ("File", "String") else "String"))
        params.append({"name": inp["id"], "type": vtype,
                       "isOptional": bool(inp.get("optional", False)) or t == "Flag",
                       "isReturnedValue": False, "defaultValue": inp.get("default-value"),
                       "description": str(inp.get("description") or "")})
    name, version = str(desc["name"]), str(desc["tool-version"])
    return {"identifier": f"{name}/{version}", "name": name, "version": version,
            "description": str(desc.get("description") or ""), "parameters": params, "canExecute": True,
            "custom": desc.get("custom") or {},  # vip:dot, checked by core.validate_settings
            "boutiques": dict(desc)}  # the whole descriptor, as VIP serves it (core.check_against_descriptor)


def shipped_descriptors() -> dict[str, dict[str, Any]]:
    """Pipeline id -> VIP JSON of the apps the embedded local server runs, read as files (the
    study never imports the server package: it needs the `server` extra)."""
    out = {}
    for path in sorted(SHIPPED_APPS.glob("*.json")):
        try:
            vip = _boutiques_to_vip(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError):
            continue
        out[vip["identifier"]] = vip
    return out


def descriptor_cache(workdir: Path, url: str) -> Path:
    """Where a real run records the pipelines it fetched from `url` (read by dry runs)."""
    tag = re.sub(r"[^A-Za-z0-9]+", "_", url.split("://", 1)[-1]).strip("_")[:60]
    return workdir / ".snakemake" / "vip-smk" / f"pipelines-{tag}.json"


def cached_descriptors(workdir: Path, url: str) -> dict[str, Any] | None:
    try:
        data = json.loads(descriptor_cache(workdir, url).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    # a copy without its Boutiques descriptor (written before they were kept) is asked again
    return {k: v for k, v in data.items() if not isinstance(v, dict) or "boutiques" in v}


def offline_descriptors(vip: VipSettings, workdir: Path) -> dict[str, Any] | None:
    """Descriptors known without any request: the shipped apps for `url: local`, else those
    a real run cached. None when only VIP can tell."""
    if vip.is_local:
        return shipped_descriptors()
    return cached_descriptors(workdir, vip.url)

"""VIP's data models as dataclasses: `Pipeline`, `Parameter`, `Execution`, `PathInfo`.

JSON <-> dataclass with VIP's camelCase keys (`from_json` / `to_json`); keys unknown to this
code are kept in `extra` (and written back), so a newer VIP never loses data here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from vip_smk.rules import is_over as status_is_over
from vip_smk.rules import is_running as status_is_running


class _Model:
    """JSON <-> dataclass with camelCase keys; unknown keys are kept in `extra`."""

    _keys: dict[str, str] = {}  # attribute -> JSON key (class constant, never mutated)
    extra: dict[str, Any]  # (each model's dataclass field)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]):
        data = dict(data or {})
        kwargs = {}
        for attr, key in cls._keys.items():
            if key in data:
                kwargs[attr] = data.pop(key)
        obj = cls(**kwargs)
        obj.extra = data
        obj._post_load()
        return obj

    def _post_load(self) -> None:
        pass

    def to_json(self) -> dict[str, Any]:
        out = {}
        for attr, key in self._keys.items():
            value = getattr(self, attr)
            if isinstance(value, list):
                value = [v.to_json() if isinstance(v, _Model) else v for v in value]
            out[key] = value
        out.update(self.extra)
        return out


@dataclass
class Parameter(_Model):
    name: str = ""
    type: str = "String"
    is_optional: bool = False
    default_value: Any = None
    description: str | None = None
    is_returned_value: bool = False
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _keys = {
        "name": "name",
        "type": "type",
        "is_optional": "isOptional",
        "default_value": "defaultValue",
        "description": "description",
        "is_returned_value": "isReturnedValue",
    }

    @property
    def is_required(self) -> bool:
        """Required = not optional and no default value (VIP's rule)."""
        return not self.is_optional and self.default_value is None


@dataclass
class Pipeline(_Model):
    identifier: str = ""
    name: str = ""
    version: str = ""
    description: str | None = None
    parameters: list[Parameter] = field(default_factory=list)
    can_execute: bool = True
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _keys = {
        "identifier": "identifier",
        "name": "name",
        "version": "version",
        "description": "description",
        "parameters": "parameters",
        "can_execute": "canExecute",
    }

    def _post_load(self) -> None:
        self.parameters = [
            p if isinstance(p, Parameter) else Parameter.from_json(p) for p in (self.parameters or [])
        ]

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)


@dataclass
class Execution(_Model):
    identifier: str = ""
    name: str | None = None
    pipeline_identifier: str | None = None
    status: str | None = None
    input_values: dict[str, Any] = field(default_factory=dict)
    returned_files: dict[str, list[str]] | None = None
    start_date: int | None = None  # milliseconds since the epoch (VIP's unit)
    end_date: int | None = None
    jobs: dict[str, Any] | None = None
    error_code: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _keys = {
        "identifier": "identifier",
        "name": "name",
        "pipeline_identifier": "pipelineIdentifier",
        "status": "status",
        "input_values": "inputValues",
        "returned_files": "returnedFiles",
        "start_date": "startDate",
        "end_date": "endDate",
        "jobs": "jobs",
        "error_code": "errorCode",
    }

    @property
    def is_running(self) -> bool:
        """Every non-terminal status (Initializing, Ready, Running, or one unknown to this
        code) counts as running."""
        return status_is_running(self.status)

    @property
    def is_over(self) -> bool:
        """A terminal status (:func:`vip_smk.rules.is_over`); no status yet is neither over nor
        running."""
        return status_is_over(self.status)

    @property
    def output_paths(self) -> list[str]:
        """All returned files, flattened, in the server's order."""
        out: list[str] = []
        for value in (self.returned_files or {}).values():
            if isinstance(value, str):
                out.append(value)
            elif value:
                out.extend(value)
        return out


@dataclass
class PathInfo(_Model):
    path: str = ""
    is_directory: bool = False
    size: int | None = None  # bytes for files, number of entries for directories
    exists: bool = True
    last_modification_date: int | None = None  # seconds
    mime_type: str | None = None
    execution_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _keys = {
        "path": "path",
        "is_directory": "isDirectory",
        "size": "size",
        "exists": "exists",
        "last_modification_date": "lastModificationDate",
        "mime_type": "mimeType",
        "execution_id": "executionId",
    }

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


__all__ = ["Execution", "Parameter", "PathInfo", "Pipeline"]

"""What vip-client's session classes share (its ``VipLauncher``, from which ``VipSession``
derives): class-level configuration set by ``init()``, locked properties and the backup; the
steps that only need VIP (validate, launch, monitor, finish) come from
:class:`~vip_smk.sessions.steps.SessionSteps`. :class:`vip_smk.sessions.session.VipSession` adds the local
side (upload, download), :class:`vip_smk.sessions.launcher.VipLauncher` the results folder on VIP.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
from datetime import datetime
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from vip_smk import rules
from vip_smk.api.keys import DEFAULT_KEY_ENV, vip_client_key_kwargs
from vip_smk.api.urls import resolve_url
from vip_smk.core.client import VipClient
from vip_smk.sessions.backup import META_KEY, meta_of, read_backup, read_backup_vip, save_backup, save_backup_vip
from vip_smk.sessions.output import ensure_log_handler, logger, pipeline_text, vip_errors
from vip_smk.sessions.steps import SessionSteps

__all__ = ["META_KEY", "SessionBase", "logger", "vip_errors"]


def _flatten(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


_CLASS_DEFAULT: Any = object()  # init(backup_location=...) not given: the class's default


class SessionBase(SessionSteps):
    """Configuration, properties, backup and the VIP-only steps of a VIP session (1 pipeline,
    1 dataset, 1 parameter set). Subclasses set the backup keys and location, the default
    paths, and what a settings value means locally."""

    # ---- class-level configuration (set by init(); never module globals) ----------------------
    _VERBOSE: bool = True
    _default_client: VipClient | None = None
    _AVAILABLE_PIPELINES: tuple[str, ...] = ()
    _SAVE_FILE = "session_data.json"
    _SERVER_PATH_PREFIX = "/vip"
    _SERVER_DEFAULT_PATH = "/vip/Home/API"
    _BACKUP_LOCATIONS: tuple[str | None, ...] = ("vip", None)
    _BACKUP_LOCATION: str | None = None  # set by init(backup_location=...)
    _BACKUP_KEYS: tuple[str, ...] = ("session_name", "pipeline_id", "vip_output_dir",
                                     "input_settings", "workflows")
    _LOCKED: tuple[str, ...] = ("session_name", "pipeline_id", "input_settings", "vip_output_dir")

    if TYPE_CHECKING:  # what every session class defines (for mypy)
        @property
        def output_dir(self) -> PurePath | None: ...  # VipSession: local (a Path); VipLauncher: on VIP

        def __init__(self, *, _announce: bool = True, **kwargs: Any) -> None: ...

    def _setup(self, verbose: bool | None, client: VipClient | None) -> None:
        self._verbose = verbose
        self._client = client
        self._values: dict[str, Any] = dict.fromkeys(self._LOCKED)
        self._settings_raw: dict | None = None
        self._workflows: dict[str, dict] = {}
        self._meta: dict[str, Any] = {}
        self._pipeline_cache = None
        self._unlocked = False
        if self.verbose:
            ensure_log_handler()

    # ---- init / class helpers ----------------------------------------------------------------
    @classmethod
    @vip_errors
    def init(cls, api_key: str = "VIP_API_KEY", vip_portal_url: str | None = None,
             verbose: bool = True, *, client: VipClient | None = None,
             backup_location: str | None = _CLASS_DEFAULT, **kwargs):  # type: ignore[assignment]
        """Connect to VIP and set the default client of new sessions of this class.

        ``api_key``: a path to a file holding the key, else the name of an environment variable,
        else the key itself (vip-client's order). ``vip_portal_url``: the portal URL (default
        ``$VIP_URL`` or VIP's). ``backup_location``: where ``session_data.json`` is kept:
        ``"local"`` (VipSession's default: ``output_dir``), ``"vip"`` (``vip_output_dir`` on
        VIP), None (no backup; VipLauncher's default). Returns a session built from ``kwargs``
        (silent when none).
        """
        if backup_location is _CLASS_DEFAULT:
            backup_location = cls._BACKUP_LOCATION
        if backup_location not in cls._BACKUP_LOCATIONS:
            raise ValueError(f"backup_location {backup_location!r} is not supported by "
                             f"{cls.__name__} (supported: {cls._BACKUP_LOCATIONS})")
        if client is None:
            where = resolve_url(vip_portal_url, setting="vip_portal_url")
            # `local` (the local VIP server of ./.vip-local): its key file unless a key is given
            key_kw = ({"api_key_file": where.key_file} if where.is_local and api_key == DEFAULT_KEY_ENV
                      else vip_client_key_kwargs(api_key))
            client = VipClient(url=where.url, **key_kw)
        cls._VERBOSE = bool(verbose)
        cls._BACKUP_LOCATION = backup_location
        client.check_key()
        pipelines = client.pipelines()
        cls._AVAILABLE_PIPELINES = tuple(p.identifier for p in pipelines if p.can_execute is not False)
        cls._default_client = client
        if verbose:
            ensure_log_handler()
            line = "-" * 60
            logger.info(f"{line}\n| You are communicating with VIP ({client.url})\n"
                        f"| {len(cls._AVAILABLE_PIPELINES)} pipeline(s) available\n{line}")
            if not cls._AVAILABLE_PIPELINES:
                logger.warning("(!) This API key gives access to no pipeline: join a group "
                               "on the VIP portal to use its applications.")
        return cls(_announce=bool(kwargs), **kwargs)

    @classmethod
    def _default_name(cls) -> str:
        return f"{cls.__name__}-{datetime.now():%y%m%d-%H%M%S}-{secrets.token_hex(2)[:3]}"

    @property
    def client(self) -> VipClient:
        """The :class:`VipClient` this session talks through."""
        if self._client is not None:
            return self._client
        client = type(self)._default_client
        if client is None:
            if not os.environ.get("VIP_API_KEY"):
                raise RuntimeError(
                    f"Not connected to VIP: call {type(self).__name__}.init(api_key=...) first "
                    "(or pass client=VipClient(...)).")
            client = VipClient()
            type(self)._default_client = client
        return client

    def _set_given(self, restored: bool, **given: Any) -> None:
        """Set the constructor's properties; those a restored backup already has keep the
        saved value (a warning names the ones given differently)."""
        differ = []
        for name, value in given.items():
            if value is None:
                continue
            if restored and getattr(self, name) is not None:
                if not self._same(name, value):
                    differ.append(name)
                continue
            setattr(self, name, value)
        if differ:
            self._warn(
                f"(!) Property(ies) {', '.join(differ)} differ from the backup of session "
                f"'{self.session_name}'; the saved values were kept. Use another session name or "
                f"output directory (or delete the property first) to change them.")

    # ---- output ------------------------------------------------------------------------------
    @property
    def verbose(self) -> bool:
        return type(self)._VERBOSE if self._verbose is None else bool(self._verbose)

    @verbose.setter
    def verbose(self, value: bool | None) -> None:
        self._verbose = value
        if self.verbose:
            ensure_log_handler()

    def _info(self, msg: str) -> None:
        if self.verbose:
            logger.info(msg)

    def _warn(self, msg: str) -> None:
        if self.verbose:
            logger.warning(msg)

    def _progress(self, **kw) -> tqdm:
        return tqdm(disable=not self.verbose, file=sys.stderr, dynamic_ncols=True, **kw)

    # ---- properties and locking --------------------------------------------------------------
    @contextlib.contextmanager
    def _unlock(self):
        previous, self._unlocked = self._unlocked, True
        try:
            yield
        finally:
            self._unlocked = previous

    def _set_locked(self, name: str, value: Any) -> None:
        current = self._values[name]
        if value is None:
            self._values[name] = None
            return
        if current is not None and current != value and not self._unlocked:
            raise ValueError(
                f"'{name}' is already set for session: {self._values['session_name']} "
                f"(current value {current!s}, new value {value!s}); delete it first "
                f"(del session.{name}) to change it.")
        self._values[name] = value

    def _same(self, name: str, value: Any) -> bool:
        if name == "input_settings":
            return self._vip_settings(self._normalize_settings(value)) == self.input_settings
        return value == getattr(self, name)

    @property
    def session_name(self) -> str | None:
        return self._values["session_name"]

    @session_name.setter
    def session_name(self, value: str | None) -> None:
        if value is not None:
            value = str(value)
            problem = rules.name_problem("session", value)
            if problem:
                raise ValueError(f"Invalid session name: {problem}.")
        self._set_locked("session_name", value)

    @session_name.deleter
    def session_name(self) -> None:
        self._values["session_name"] = None

    @property
    def _name(self) -> str:
        """``session_name``, which the constructor always sets: a TypeError if it was deleted."""
        name = self.session_name
        if name is None:
            raise TypeError(f"This {type(self).__name__} has no session_name (deleted?): set one first.")
        return name

    @property
    def pipeline_id(self) -> str | None:
        return self._values["pipeline_id"]

    @pipeline_id.setter
    def pipeline_id(self, value: str | None) -> None:
        if value is not None:
            value = str(value)
            available = type(self)._AVAILABLE_PIPELINES
            if available and value not in available:
                close = [p for p in available if value.lower() in p.lower()]
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                raise ValueError(f"Pipeline '{value}' is not available with this API key.{hint} "
                                 f"Use {type(self).__name__}.show_pipeline() to list them.")
        if value != self._values["pipeline_id"]:
            self._pipeline_cache = None
        self._set_locked("pipeline_id", value)

    @pipeline_id.deleter
    def pipeline_id(self) -> None:
        self._values["pipeline_id"] = None
        self._pipeline_cache = None

    @staticmethod
    def _vip_path_prop(name: str):
        def getter(self) -> PurePosixPath | None:
            return self._values[name]

        def setter(self, value) -> None:
            if value is not None:
                value = PurePosixPath(str(value))
                problem = rules.value_problem(str(value))
                if problem:
                    raise ValueError(f"Invalid {name} {str(value)!r}: {problem}")
            self._set_locked(name, value)

        def deleter(self) -> None:
            self._values[name] = None

        return property(getter, setter, deleter)

    vip_output_dir = _vip_path_prop("vip_output_dir")

    @property
    def workflows(self) -> dict[str, dict]:
        return self._workflows

    @workflows.setter
    def workflows(self, value: dict | None) -> None:
        self._workflows = dict(value or {})

    @workflows.deleter
    def workflows(self) -> None:
        self._workflows = {}

    # input settings: kept as given, exposed in the form sent to VIP
    @property
    def input_settings(self) -> dict | None:
        """Input settings in the form sent to VIP."""
        if self._settings_raw is None:
            return None
        return self._vip_settings(self._settings_raw)

    @input_settings.setter
    def input_settings(self, value: dict | None) -> None:
        if value is None:
            self._settings_raw = None
            self._values["input_settings"] = None
            return
        normalized = self._normalize_settings(value)
        if self._settings_raw is not None and not self._unlocked:
            if self._vip_settings(normalized) != self.input_settings:
                raise ValueError(f"'input_settings' is already set for session: "
                                 f"{self.session_name}; delete it first (del session.input_settings).")
        self._settings_raw = normalized
        self._values["input_settings"] = True

    @input_settings.deleter
    def input_settings(self) -> None:
        self._settings_raw = None
        self._values["input_settings"] = None

    def _local_value(self, name: str, v: Any) -> Any:
        """Hook: a settings value as kept (VipSession remembers where local files are)."""
        return v

    def _is_local_path(self, v: Any) -> bool:
        """Hook: whether ``v`` (VIP form) is a local path still to be mapped to VIP."""
        return False

    def _normalize_settings(self, settings: dict) -> dict:
        """Settings as kept: empty values refused (vip-client), booleans as ``"true"/"false"``,
        path-likes as strings; characters VIP refuses refused at once."""
        if not isinstance(settings, dict):
            raise TypeError(f"input_settings must be a dict, not {type(settings).__name__}")
        out: dict[str, Any] = {}
        missing = []
        for name, value in settings.items():
            values = []
            for v in _flatten(value):
                if isinstance(v, bool):
                    v = "true" if v else "false"
                elif isinstance(v, os.PathLike):
                    v = os.fspath(v)
                if v is None or (isinstance(v, str) and not v.strip()):
                    continue
                if not isinstance(v, (str, int, float)):
                    raise TypeError(f"Unsupported value type for parameter '{name}': "
                                    f"{type(v).__name__} ({v!r})")
                values.append(self._local_value(str(name), v))
            if not values:
                missing.append(str(name))
                continue
            out[str(name)] = values if isinstance(value, (list, tuple)) else values[0]
        if missing:
            raise ValueError(f"Missing input value(s) for parameter(s): {', '.join(sorted(missing))}")
        bad = []
        for n, value in self._vip_settings(out).items():
            for v in _flatten(value):
                problem = None if self._is_local_path(v) else rules.value_problem(v)
                if problem:
                    bad.append(f"{n}={str(v)!r} ({problem})")
        if bad:
            raise ValueError("Invalid character(s) in input value(s) for parameter(s): "
                             + "; ".join(bad) + ". VIP accepts only letters, digits, spaces and "
                             ". , - + @ / _ ( ) : [ ] ? & =")
        return out

    def _vip_value(self, v: Any) -> Any:
        """Hook: a kept settings value in the form sent to VIP."""
        return v

    def _vip_settings(self, settings: dict) -> dict:
        return {name: ([self._vip_value(v) for v in value] if isinstance(value, list)
                       else self._vip_value(value))
                for name, value in settings.items()}

    # ---- backup ------------------------------------------------------------------------------
    @property
    def _backup_path(self) -> Path:
        raise NotImplementedError(f"{type(self).__name__} keeps no local backup")

    @property
    def _vip_backup_path(self) -> str:
        return str(PurePosixPath(str(self.vip_output_dir)) / self._SAVE_FILE)

    def _backup_dict(self) -> dict:
        def s(v):
            return None if v is None else str(v)

        out = {}
        for key in self._BACKUP_KEYS:
            if key == "input_settings":
                out[key] = self.input_settings
            elif key == "workflows":
                out[key] = self._workflows
            else:
                out[key] = s(getattr(self, key))
        return out

    def _save(self, announce: bool = False) -> None:
        location = type(self)._BACKUP_LOCATION
        if location is None:
            return
        if location == "vip":
            where = f"{self._vip_backup_path} (on VIP)"
            self._meta = save_backup_vip(self.client, self._vip_backup_path, self.session_name,
                                         self._backup_dict(), self._meta)
        else:
            where = str(self._backup_path)
            self._meta = save_backup(self._backup_path, self.session_name, self._backup_dict(),
                                     self._meta)
        if announce:
            self._info(f">> Session saved in: {where}")
        else:
            logger.debug("session %s saved in %s", self.session_name, where)

    def _saved_on_vip(self) -> dict | None:
        """The backup kept on VIP (``backup_location="vip"``), or None."""
        if type(self)._BACKUP_LOCATION != "vip" or self.vip_output_dir is None:
            return None
        return read_backup_vip(self.client, self._vip_backup_path)

    def _read_backup(self, path: Path | str, name_given: str | None, data: dict | None = None) -> dict:
        data = read_backup(path) if data is None else data
        if data is None:
            raise ValueError(f"Unreadable session backup: {path}")
        missing = [k for k in self._BACKUP_KEYS if k not in data]
        if missing:
            raise TypeError(f"Session backup {path} lacks key(s): {', '.join(missing)}")
        saved = data["session_name"]
        if name_given is not None and saved is not None and saved != name_given:
            raise ValueError(f"The backup {path} holds session '{saved}', not '{name_given}'.")
        return data

    def _restore_common(self, data: dict, name_given: str | None) -> None:
        """Restore the keys every session class has (called with the properties unlocked)."""
        self.session_name = data["session_name"] or name_given
        self.pipeline_id = None
        self._values["pipeline_id"] = data["pipeline_id"]
        self.vip_output_dir = data["vip_output_dir"]
        settings = data["input_settings"]
        self._settings_raw = dict(settings) if isinstance(settings, dict) else None
        self._values["input_settings"] = True if self._settings_raw is not None else None
        self._workflows = {k: dict(v) if isinstance(v, dict) else {"status": str(v), "outputs": []}
                           for k, v in (data["workflows"] or {}).items()}
        self._meta = meta_of(data)

    # ---- display -----------------------------------------------------------------------------
    @classmethod
    @vip_errors
    def show_pipeline(cls, pipeline_id: str | None = None) -> None:
        """Log the available pipelines (no argument or a partial name) or one pipeline's
        parameters (a unique match)."""
        if not cls._VERBOSE:
            return
        client = cls._default_client
        if client is None:
            raise TypeError(f"Call {cls.__name__}.init() first.")
        ensure_log_handler()
        ids = sorted(cls._AVAILABLE_PIPELINES) or sorted(p.identifier for p in client.pipelines())
        if pipeline_id:
            exact = [p for p in ids if p == pipeline_id]
            ids = exact or [p for p in ids if pipeline_id.lower() in p.lower()]
        if not ids:
            logger.info(f"(!) No pipeline found for pattern '{pipeline_id}'.\n"
                        "    You may need to join the group of this application on the VIP portal.")
            return
        if len(ids) > 1:
            logger.info("Available pipelines:\n" + "\n".join(f"\t{p}" for p in ids))
            return
        logger.info(pipeline_text(client.pipeline(ids[0])))

    def display(self):
        """Log the session's backup data (``key: <json>`` lines)."""
        line = "-" * 50
        body = "\n".join(f"{k}: {json.dumps(v, indent=2)}" for k, v in self._backup_dict().items())
        self._info(f"{line}\n{body}\n{line}")
        return self

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(session_name={self.session_name!r}, "
                f"pipeline_id={self.pipeline_id!r}, output_dir={str(self.output_dir)!r})")



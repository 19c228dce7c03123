"""`VipSession`: the upload -> launch -> monitor -> download -> finish procedure of VIP's own
Python client (vip-client 0.1.10), as a drop-in replacement with its known defects fixed.

Same constructor, properties, methods and ``<output_dir>/session_data.json`` backup as VIP's
client, so that a session started by either client resumes in the other. The work goes through a
:class:`vip_smk.client.VipClient` (one per session, or the default one set by
:meth:`VipSession.init`); nothing global in ``requests`` is touched.

Differences with vip-client (all deliberate fixes, see the project notes):

- every non-terminal status (``Initializing``, ``Ready``, ``Running``) counts as running, in
  :meth:`monitor_workflows` and in :meth:`finish` (a queued workflow's data is never deleted);
- input settings are validated before anything is uploaded or launched: unknown parameter names,
  required parameters, ``Boolean`` / ``Int64`` / ``Double`` values, invalid characters (a
  ``ValueError`` naming parameter and value) and File inputs (one listing per VIP directory);
- transfers are parallel, streaming and incremental: changed input files are re-sent, failed or
  partial downloads are fetched again on the next call;
- :meth:`monitor_workflows` shows a progress bar (jobs done / total) and accepts a ``timeout``;
- :meth:`finish` keeps inputs that another session still uses (``get_inputs``) unless
  ``force_remove=True``;
- output goes through :mod:`logging` (logger ``vip_smk.session``) and tqdm, the backup is written
  atomically and never contains the API key.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import secrets
import sys
import tarfile
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from tqdm.auto import tqdm

from .client import status_is_running

logger = logging.getLogger(__name__)

__all__ = ["VipSession"]

# Job statuses that mean "not done yet" (anything else is counted as done in progress bars).
_JOB_PENDING = frozenset(
    {"initializing", "ready", "queued", "running", "submitted", "pending", "waiting", "stalled",
     "held", "created", "replicating"}
)
# Characters VIP accepts in input values (anything else is refused by the server with 8009).
_INVALID_CHARS = re.compile(r"[^0-9.,A-Za-z\-+@/_():\[\]?&= ]")
_SESSION_NAME_RE = re.compile(r"^[0-9A-Za-z_-]+$")
_INT_RE = re.compile(r"^[+-]?\d+$")
_NO_DEFAULT = (None, "$input.getDefaultValue()")
_META_KEY = "vip_smk"  # extra backup key, ignored (and preserved) by vip-client



class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (notebooks and test runners replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it; always follow sys.stderr
        pass


def _ensure_log_handler() -> None:
    """Attach a plain stderr handler to the ``vip_smk`` logger if logging is not configured."""
    pkg = logging.getLogger("vip_smk")
    if pkg.hasHandlers():
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    pkg.addHandler(handler)
    if pkg.level == logging.NOTSET:
        pkg.setLevel(logging.INFO)


def _fmt_size(size: int | None) -> str:
    if size is None:
        return "?"
    return f"{size / 1e6:.1f}MB" if size >= 50_000 else f"{size / 1e3:.1f}kB"


def _start_string(start: Any) -> str | None:
    """VIP's ``startDate`` (ms since epoch, or a datetime / ISO string) -> ``YYYY/MM/DD HH:MM:SS``."""
    if start is None or start == "":
        return None
    if isinstance(start, datetime):
        dt = start
    elif isinstance(start, (int, float)):
        dt = datetime.fromtimestamp(start / 1000 if start > 1e11 else start)
    else:
        text = str(start)
        try:
            return _start_string(float(text))
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return text
    if dt.tzinfo is not None:
        dt = dt.astimezone().replace(tzinfo=None)
    return dt.strftime("%Y/%m/%d %H:%M:%S")


def _job_counts(jobs: Any) -> tuple[int, int] | None:
    """(done, total) from an Execution's ``jobs`` field, or None when the server gave none."""
    if not jobs:
        return None
    items = jobs.values() if isinstance(jobs, dict) else jobs
    total = done = 0
    for job in items:
        total += 1
        status = job.get("status") if isinstance(job, dict) else getattr(job, "status", job)
        if str(status).lower() not in _JOB_PENDING:
            done += 1
    return done, total


def _flatten(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _attr(obj: Any, *names: str, default: Any = None) -> Any:
    """First attribute (dataclass) or key (dict) found among ``names``."""
    for name in names:
        if isinstance(obj, dict):
            if name in obj:
                return obj[name]
        elif hasattr(obj, name):
            return getattr(obj, name)
    return default


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON (4-space indent, as VIP's client) so that a crash leaves either the old file
    or the new one, never a part: temp file in the same directory, fsync, ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=4, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _backup_is_finished(data: dict) -> bool:
    """Whether the session saved in ``data`` no longer needs its VIP inputs."""
    meta = data.get(_META_KEY)
    if isinstance(meta, dict) and meta.get("finished"):
        return True
    # vip-client's finish() marks every workflow Removed (and does not know our flag)
    workflows = data.get("workflows") or {}
    return bool(workflows) and all(
        isinstance(w, dict) and w.get("status") == "Removed" for w in workflows.values()
    )


def _as_runtime_error(exc: Exception, cls_name: str) -> Exception:
    """A VipError re-raised so that it is also a RuntimeError (what vip-client raises for every
    VIP error), keeping its class (``except AuthError`` still works) and attributes, with
    vip-client's hints for bad keys and capacity."""
    from .client import AuthError, CapacityError

    hint = ""
    if isinstance(exc, AuthError):
        hint = f" Unable to communicate with VIP: run {cls_name}.init() with a valid API key."
    elif isinstance(exc, CapacityError):
        hint = (" Maximum number of executions reached: wait until some are over, or ask "
                "vip-support@creatis.insa-lyon.fr to raise your limit.")
    base = type(exc)
    both = type(base.__name__, (base, RuntimeError), {"__module__": base.__module__,
                                                       "__doc__": base.__doc__})
    new = both.__new__(both)
    new.__dict__.update(exc.__dict__)
    message = f"{getattr(exc, 'message', str(exc))}{hint}"
    new.args = (message,)
    if hasattr(exc, "message"):
        new.message = message
    return new


def _vip_errors(method):
    """Decorator: VIP errors raised by a public step are also RuntimeErrors (vip-client)."""

    @functools.wraps(method)
    def wrapper(self_or_cls, *args, **kwargs):
        try:
            return method(self_or_cls, *args, **kwargs)
        except RuntimeError:
            raise
        except Exception as exc:
            from .client import VipError

            if not isinstance(exc, VipError):
                raise
            cls = self_or_cls if isinstance(self_or_cls, type) else type(self_or_cls)
            raise _as_runtime_error(exc, cls.__name__) from exc

    return wrapper


class VipSession:
    """A VIP session: 1 pipeline, 1 dataset, 1 parameter set (drop-in for vip-client's class).

    ``VipSession(session_name=None, input_dir=None, pipeline_id=None, input_settings=None,
    output_dir=None, verbose=None, *, client=None)``. A session whose ``output_dir`` (default
    ``./vip_outputs/<session_name>``) holds a ``session_data.json`` is resumed from it.
    """

    # ---- class-level configuration (set by init(); never module globals) ----------------------
    _VERBOSE: bool = True
    _default_client = None  # VipClient set by init()
    _AVAILABLE_PIPELINES: tuple[str, ...] = ()
    _SAVE_FILE = "session_data.json"
    _SERVER_PATH_PREFIX = "/vip"
    _SERVER_DEFAULT_PATH = "/vip/Home/API"
    _LOCAL_DEFAULT_PATH = "./vip_outputs"
    _BACKUP_KEYS = (
        "session_name", "pipeline_id", "local_input_dir", "local_output_dir",
        "vip_input_dir", "vip_output_dir", "input_settings", "workflows",
    )
    _LOCKED = ("session_name", "pipeline_id", "input_settings", "local_input_dir",
               "local_output_dir", "vip_input_dir", "vip_output_dir")

    # ------------------------------------------------------------------------------------------
    def __init__(self, session_name: str | None = None, input_dir: str | os.PathLike | None = None,
                 pipeline_id: str | None = None, input_settings: dict | None = None,
                 output_dir: str | os.PathLike | None = None, verbose: bool | None = None, *,
                 client=None, ouput_dir: str | os.PathLike | None = None,
                 _announce: bool = True) -> None:
        # `ouput_dir` is the spelling used in VIP's own README examples; accepted as an alias.
        if output_dir is None and ouput_dir is not None:
            output_dir = ouput_dir
        self._verbose = verbose
        self._client = client
        self._values: dict[str, Any] = dict.fromkeys(self._LOCKED)
        self._settings_raw: dict | None = None
        self._abs_paths: dict[str, str] = {}  # local path values as given -> absolute paths
        self._workflows: dict[str, dict] = {}
        self._meta: dict[str, Any] = {}
        self._pipeline_cache = None
        self._unlocked = False
        if self.verbose:
            _ensure_log_handler()

        if session_name is not None:
            self.session_name = session_name
        if output_dir is not None:
            out = Path(output_dir)
        elif session_name is not None:
            out = Path(self._LOCAL_DEFAULT_PATH) / session_name
        else:
            out = None
        restored = False
        if out is not None and (out / self._SAVE_FILE).is_file():
            self._load_backup(out, name_given=session_name)
            restored = True
        if self.session_name is None:
            self.session_name = self._default_name()
        if out is None:
            out = Path(self._LOCAL_DEFAULT_PATH) / self.session_name
        with self._unlock():
            self.local_output_dir = out
            if self.vip_input_dir is None:
                self.vip_input_dir = PurePosixPath(self._SERVER_DEFAULT_PATH) / self.session_name / "INPUTS"
            if self.vip_output_dir is None:
                self.vip_output_dir = PurePosixPath(self._SERVER_DEFAULT_PATH) / self.session_name / "OUTPUTS"

        if _announce:
            self._info(f"\n=== SESSION '{self.session_name}' ===\n")
            if restored:
                self._info(f"<< Session restored from its output directory: {self.local_output_dir}")
            else:
                self._info(f"New session. Outputs and backup in: {self.local_output_dir}")
        differ = []
        for name, value in (("input_dir", input_dir), ("pipeline_id", pipeline_id),
                            ("input_settings", input_settings)):
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
                f"'{self.session_name}'; the saved values were kept. Use another session name "
                f"(or delete the property first) to change them."
            )
        if self.local_input_dir is not None and not Path(self.local_input_dir).exists():
            self._warn(f"(!) The input directory does not exist (yet): {self.local_input_dir}")

    # ---- init / class helpers ----------------------------------------------------------------
    @classmethod
    @_vip_errors
    def init(cls, api_key: str = "VIP_API_KEY", vip_portal_url: str | None = None,
             verbose: bool = True, *, client=None, backup_location: str = "local",
             **kwargs) -> "VipSession":
        """Connect to VIP and set the default client of new sessions of this class.

        ``api_key``: a path to a file holding the key, else the name of an environment variable,
        else the key itself. ``vip_portal_url``: the portal URL (default ``$VIP_URL`` or VIP's).
        Returns a session built from ``kwargs`` (silently built when none are given).
        """
        if backup_location not in ("local", None):
            raise ValueError(f"backup_location {backup_location!r} is not supported "
                             "(only 'local': <output_dir>/session_data.json)")
        if client is None:
            from .client import VipClient, vip_client_key_kwargs

            client = VipClient(url=vip_portal_url, **vip_client_key_kwargs(api_key))
        cls._VERBOSE = bool(verbose)
        client.check_key()
        pipelines = client.pipelines()
        cls._AVAILABLE_PIPELINES = tuple(
            p.identifier for p in pipelines if _attr(p, "can_execute", default=True) is not False
        )
        cls._default_client = client
        if verbose:
            _ensure_log_handler()
            line = "-" * 60
            logger.info(f"{line}\n| You are communicating with VIP ({_attr(client, 'url', default='')})\n"
                        f"| {len(cls._AVAILABLE_PIPELINES)} pipeline(s) available\n{line}")
            if not cls._AVAILABLE_PIPELINES:
                logger.warning("(!) This API key gives access to no pipeline: join a group "
                               "on the VIP portal to use its applications.")
        return cls(_announce=bool(kwargs), **kwargs)

    @classmethod
    def _default_name(cls) -> str:
        return f"{cls.__name__}-{datetime.now():%y%m%d-%H%M%S}-{secrets.token_hex(2)[:3]}"

    @property
    def client(self):
        """The :class:`VipClient` this session talks through."""
        if self._client is not None:
            return self._client
        client = type(self)._default_client
        if client is None:
            if os.environ.get("VIP_API_KEY"):
                from .client import VipClient

                client = VipClient()
                type(self)._default_client = client
            else:
                raise RuntimeError(
                    f"Not connected to VIP: call {type(self).__name__}.init(api_key=...) first "
                    "(or pass client=VipClient(...))."
                )
        return client

    # ---- output ------------------------------------------------------------------------------
    @property
    def verbose(self) -> bool:
        return type(self)._VERBOSE if self._verbose is None else bool(self._verbose)

    @verbose.setter
    def verbose(self, value: bool | None) -> None:
        self._verbose = value
        if self.verbose:
            _ensure_log_handler()

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
                f"(del session.{name}) to change it."
            )
        self._values[name] = value

    def _same(self, name: str, value: Any) -> bool:
        if name == "input_settings":
            return self._vip_settings(self._normalize_settings(value)) == self.input_settings
        if name in ("input_dir", "output_dir", "local_input_dir", "local_output_dir"):
            return Path(value).expanduser().resolve() == Path(getattr(self, name)).resolve()
        return value == getattr(self, name)

    @property
    def session_name(self) -> str | None:
        return self._values["session_name"]

    @session_name.setter
    def session_name(self, value: str | None) -> None:
        if value is not None:
            value = str(value)
            if not _SESSION_NAME_RE.match(value):
                raise ValueError(f"Invalid session name {value!r}: only letters, digits, '-' "
                                 "and '_' are allowed.")
        self._set_locked("session_name", value)

    @session_name.deleter
    def session_name(self) -> None:
        self._values["session_name"] = None

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

    @property
    def local_input_dir(self) -> Path | None:
        return self._values["local_input_dir"]

    @local_input_dir.setter
    def local_input_dir(self, value) -> None:
        self._set_locked("local_input_dir",
                         None if value is None else Path(value).expanduser().absolute())

    @local_input_dir.deleter
    def local_input_dir(self) -> None:
        self._values["local_input_dir"] = None

    input_dir = local_input_dir

    @property
    def local_output_dir(self) -> Path | None:
        return self._values["local_output_dir"]

    @local_output_dir.setter
    def local_output_dir(self, value) -> None:
        new = None if value is None else Path(value).expanduser().absolute()
        self._set_locked("local_output_dir", new)
        if new is not None and not self._unlocked and (new / self._SAVE_FILE).is_file():
            self._load_backup(new, name_given=self.session_name)

    @local_output_dir.deleter
    def local_output_dir(self) -> None:
        self._values["local_output_dir"] = None

    output_dir = local_output_dir

    def _vip_path_prop(name: str):  # noqa: N805 - property factory used in the class body
        def getter(self) -> PurePosixPath | None:
            return self._values[name]

        def setter(self, value) -> None:
            if value is not None:
                value = PurePosixPath(str(value))
                if _INVALID_CHARS.search(str(value)):
                    raise ValueError(f"Invalid character(s) in {name} {str(value)!r}: "
                                     f"{sorted(set(_INVALID_CHARS.findall(str(value))))}")
            self._set_locked(name, value)

        def deleter(self) -> None:
            self._values[name] = None

        return property(getter, setter, deleter)

    vip_input_dir = _vip_path_prop("vip_input_dir")
    vip_output_dir = _vip_path_prop("vip_output_dir")
    del _vip_path_prop

    @property
    def workflows(self) -> dict[str, dict]:
        return self._workflows

    @workflows.setter
    def workflows(self, value: dict | None) -> None:
        self._workflows = dict(value or {})

    @workflows.deleter
    def workflows(self) -> None:
        self._workflows = {}

    # input settings: kept as given (existing local paths made absolute), exposed in VIP form
    @property
    def input_settings(self) -> dict | None:
        """Input settings in the form sent to VIP (local dataset paths -> VIP paths)."""
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

    def _normalize_settings(self, settings: dict) -> dict:
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
                if isinstance(v, str) and v and not v.startswith(self._SERVER_PATH_PREFIX + "/"):
                    p = Path(v).expanduser()
                    if p.exists():  # remember where it is (the CWD may change); value kept as given
                        self._abs_paths[v] = str(p.absolute())
                if v is None or (isinstance(v, str) and not v.strip()):
                    continue
                if not isinstance(v, (str, int, float)):
                    raise TypeError(f"Unsupported value type for parameter '{name}': "
                                    f"{type(v).__name__} ({v!r})")
                values.append(v)
            if not values:
                missing.append(str(name))
                continue
            out[str(name)] = values if isinstance(value, (list, tuple)) else values[0]
        if missing:
            raise ValueError(f"Missing input value(s) for parameter(s): {', '.join(sorted(missing))}")
        # characters that VIP refuses (local paths still to be mapped to VIP are checked later)
        prefix = self._SERVER_PATH_PREFIX + "/"
        bad = [(n, v) for n, value in self._vip_settings(out).items() for v in _flatten(value)
               if not (isinstance(v, str) and not v.startswith(prefix)
                       and (v in self._abs_paths or Path(v).is_absolute()))]
        self._check_chars(bad)
        return out

    def _check_chars(self, pairs: Iterable[tuple[str, Any]]) -> None:
        bad = []
        for name, v in pairs:
            chars = _INVALID_CHARS.findall(str(v))
            if chars:
                bad.append(f"{name}={str(v)!r} (invalid: {' '.join(sorted(set(chars)))})")
        if bad:
            raise ValueError(
                "Invalid character(s) in input value(s) for parameter(s): " + "; ".join(bad)
                + ". VIP accepts only letters, digits, spaces and . , - + @ / _ ( ) : [ ] ? & ="
            )

    def _vip_value(self, v: Any) -> Any:
        if not isinstance(v, str) or v.startswith(self._SERVER_PATH_PREFIX + "/"):
            return v
        local_dir, vip_dir = self.local_input_dir, self.vip_input_dir
        if local_dir is None or vip_dir is None:
            return v
        p = Path(self._abs_paths.get(v, v))
        if not p.is_absolute():
            return v
        try:
            rel = p.resolve().relative_to(Path(local_dir).resolve())
        except ValueError:
            return v
        return str(vip_dir / rel.as_posix()) if rel.parts else str(vip_dir)

    def _vip_settings(self, settings: dict) -> dict:
        return {name: ([self._vip_value(v) for v in value] if isinstance(value, list)
                       else self._vip_value(value))
                for name, value in settings.items()}

    # ---- backup ------------------------------------------------------------------------------
    @property
    def _backup_path(self) -> Path:
        return Path(self.local_output_dir) / self._SAVE_FILE

    def _backup_dict(self) -> dict:
        def s(v):
            return None if v is None else str(v)

        return {
            "session_name": self.session_name,
            "pipeline_id": self.pipeline_id,
            "local_input_dir": s(self.local_input_dir),
            "local_output_dir": s(self.local_output_dir),
            "vip_input_dir": s(self.vip_input_dir),
            "vip_output_dir": s(self.vip_output_dir),
            "input_settings": self.input_settings,
            "workflows": self._workflows,
        }

    def _save(self, announce: bool = False) -> None:
        path = self._backup_path
        existing = _read_json(path) or {}
        saved_name = existing.get("session_name")
        if saved_name not in (None, self.session_name):
            raise ValueError(f"The backup {path} belongs to session '{saved_name}', not "
                             f"'{self.session_name}': use another output_dir.")
        data = dict(existing)  # keys unknown to this class are preserved
        data.update(self._backup_dict())
        meta = dict(existing.get(_META_KEY) or {}) if isinstance(existing.get(_META_KEY), dict) else {}
        users = list(meta.get("input_users") or [])
        for user in self._meta.get("input_users") or []:
            if user not in users:
                users.append(user)
        meta.update(self._meta)
        if users:
            meta["input_users"] = users
        self._meta = meta
        if meta:
            data[_META_KEY] = meta
        write_json_atomic(path, data)
        if announce:
            self._info(f">> Session saved in: {path}")
        else:
            logger.debug("session %s saved in %s", self.session_name, path)

    def _load_backup(self, out_dir: Path, name_given: str | None) -> None:
        path = Path(out_dir) / self._SAVE_FILE
        data = _read_json(path)
        if data is None:
            raise ValueError(f"Unreadable session backup: {path}")
        missing = [k for k in self._BACKUP_KEYS if k not in data]
        if missing:
            raise TypeError(f"Session backup {path} lacks key(s): {', '.join(missing)}")
        saved = data["session_name"]
        if name_given is not None and saved is not None and saved != name_given:
            raise ValueError(f"The output directory {out_dir} holds session '{saved}', not "
                             f"'{name_given}'.")
        with self._unlock():
            self.session_name = saved or name_given
            self.local_output_dir = Path(out_dir)  # the directory actually used
            self.pipeline_id = None
            self._values["pipeline_id"] = data["pipeline_id"]
            self.local_input_dir = data["local_input_dir"]
            self.vip_input_dir = data["vip_input_dir"]
            self.vip_output_dir = data["vip_output_dir"]
            settings = data["input_settings"]
            self._settings_raw = dict(settings) if isinstance(settings, dict) else None
            self._values["input_settings"] = True if self._settings_raw is not None else None
            self._workflows = {k: dict(v) if isinstance(v, dict) else {"status": str(v), "outputs": []}
                               for k, v in (data["workflows"] or {}).items()}
            meta = data.get(_META_KEY)
            self._meta = dict(meta) if isinstance(meta, dict) else {}

    # ---- VIP helpers -------------------------------------------------------------------------
    def _pipeline(self):
        if self.pipeline_id is None:
            raise ValueError("No pipeline: set pipeline_id (launch_pipeline(pipeline_id=...)).")
        if self._pipeline_cache is None or self._pipeline_cache.identifier != self.pipeline_id:
            self._pipeline_cache = self.client.pipeline(self.pipeline_id)
        return self._pipeline_cache

    def _refresh(self, ids: Iterable[str]) -> dict[str, Any]:
        """GET each execution; update the inventory; return {id: Execution}."""
        from .client import NotFound

        ids = list(ids)
        fetched: dict[str, Any] = {}
        if len(ids) > 1:  # many workflows: GET them in parallel on the client's pool
            from concurrent.futures import ThreadPoolExecutor

            def get(wid):
                try:
                    return self.client.execution(wid)
                except NotFound as exc:
                    return exc

            workers = max(1, min(len(ids), int(getattr(self.client, "workers", 4) or 4)))
            with ThreadPoolExecutor(workers, thread_name_prefix="vip-session") as pool:
                fetched = dict(zip(ids, pool.map(get, ids)))
        execs = {}
        for wid in ids:
            wf = self._workflows.setdefault(wid, {"status": None, "start": None, "outputs": []})
            try:
                ex = fetched.get(wid) or self.client.execution(wid)
                if isinstance(ex, NotFound):
                    raise ex
            except NotFound:
                self._warn(f"(!) Execution {wid} is unknown to VIP (deleted?): status Unknown.")
                wf["status"] = "Unknown"
                continue
            execs[wid] = ex
            wf["status"] = ex.status
            start = _start_string(_attr(ex, "start_date", "startDate"))
            if start:
                wf["start"] = start
            if not wf.get("outputs"):
                files = _attr(ex, "returned_files", "returnedFiles") or {}
                if isinstance(files, dict):
                    paths = [p for v in files.values() for p in _flatten(v) if p]
                else:
                    paths = [p for p in _flatten(files) if p]
                wf["outputs"] = [{"path": str(p)} for p in paths]
        return execs

    def _active_ids(self) -> list[str]:
        return [wid for wid, wf in self._workflows.items() if wf.get("status") != "Removed"]

    def _pending_ids(self) -> list[str]:
        """Workflows whose status may still change (terminal statuses are final on VIP)."""
        return [wid for wid, wf in self._workflows.items()
                if wf.get("status") is None or status_is_running(wf.get("status"))]

    def _exists(self, path) -> bool:
        return bool(self.client.exists(str(path)))

    def _list_names(self, vip_dir: PurePosixPath, cache: dict) -> set[str]:
        """Names of the entries of a VIP directory (one listing per directory, cached)."""
        key = str(vip_dir)
        if key not in cache:
            from .client import NotFound

            try:
                cache[key] = {PurePosixPath(str(_attr(i, "path"))).name for i in self.client.list(key)}
            except NotFound:
                cache[key] = set()
        return cache[key]

    # ---- validation --------------------------------------------------------------------------
    def _check_input_settings(self, location: str) -> dict:
        """Validate input settings against the pipeline descriptor before any transfer or launch.

        ``location``: "local" (File inputs of the dataset must exist locally, others on VIP) or
        "vip" (every File input must exist on VIP). Returns the settings in the form sent to VIP.
        """
        settings = self.input_settings
        if settings is None:
            raise ValueError("No input settings: set input_settings (launch_pipeline(input_settings=...)).")
        pipeline = self._pipeline()
        params = {p.name: p for p in pipeline.parameters
                  if p.name != "results-directory" and not _attr(p, "is_returned_value", default=False)}
        unknown = sorted(set(settings) - set(params))
        if unknown:
            raise ValueError(
                f"Unknown input parameter(s) for pipeline {self.pipeline_id}: {', '.join(unknown)}. "
                f"Valid parameters: {', '.join(sorted(params))}."
            )
        missing = sorted(n for n, p in params.items()
                         if not p.is_optional and p.default_value in _NO_DEFAULT and n not in settings)
        if missing:
            raise AttributeError(f"Missing input parameter(s) for pipeline {self.pipeline_id}: "
                                 f"{', '.join(missing)}")
        self._check_chars((n, v) for n, value in settings.items() for v in _flatten(value))
        wrong = []
        out = {}
        for name, value in settings.items():
            ptype = str(params[name].type)
            fixed = []
            for v in _flatten(value):
                if ptype == "Boolean":
                    if isinstance(v, str) and v.lower() in ("true", "false"):
                        v = v.lower()
                    else:
                        wrong.append(f"{name} (Boolean): {v!r}, expected true or false")
                elif ptype == "Int64":
                    if not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())
                            or (isinstance(v, str) and _INT_RE.match(v.strip()))):
                        wrong.append(f"{name} (Int64): {v!r}, expected an integer")
                elif ptype == "Double":
                    try:
                        float(v)
                    except (TypeError, ValueError):
                        wrong.append(f"{name} (Double): {v!r}, expected a number")
                fixed.append(v)
            out[name] = fixed if isinstance(value, list) else fixed[0]
        if wrong:
            raise ValueError(f"Wrong type(s) for parameter(s): {'; '.join(wrong)}")
        # File inputs: present locally (dataset to upload) or on VIP (one listing per directory)
        absent = []
        listings: dict[str, set[str]] = {}
        vip_in = self.vip_input_dir
        local_in = self.local_input_dir
        for name, value in out.items():
            if str(params[name].type) != "File":
                continue
            for v in _flatten(value):
                v = str(v)
                if not v.startswith(self._SERVER_PATH_PREFIX + "/"):
                    where = ("is not in the input directory" if Path(self._abs_paths.get(v, v)).exists()
                             else "does not exist")
                    absent.append(f"{name}: {v} ({where})")
                    continue
                vp = PurePosixPath(v)
                if location == "local" and local_in is not None and vip_in is not None:
                    try:
                        rel = vp.relative_to(vip_in)
                    except ValueError:
                        rel = None
                    if rel is not None:
                        if not (Path(local_in) / rel).exists():
                            absent.append(f"{name}: {Path(local_in) / rel}")
                        continue
                if vp.name not in self._list_names(vp.parent, listings):
                    absent.append(f"{name}: {v}")
        if absent:
            raise FileNotFoundError(f"Missing file(s) for parameter(s): {'; '.join(absent)}")
        return out

    # ---- steps -------------------------------------------------------------------------------
    @_vip_errors
    def upload_inputs(self, input_dir: str | os.PathLike | None = None,
                      update_files: bool = True) -> "VipSession":
        """Upload the local input directory to ``vip_input_dir`` (incremental: new and changed
        files only). Input settings, when set, are validated first."""
        self._info("\n=== UPLOAD INPUTS ===\n")
        if input_dir is not None:
            self.input_dir = input_dir
        if self.local_input_dir is None:
            raise ValueError("No input directory: upload_inputs(input_dir=...).")
        local = Path(self.local_input_dir)
        if not update_files and self._exists(self.vip_input_dir):
            self._info("Skipped: there are already input data on VIP.")
            return self
        if not local.is_dir():
            raise FileNotFoundError(f"Input directory not found: {local}")
        if self.pipeline_id is not None and self.input_settings is not None:
            self._info("Checking the input settings against the pipeline ...")
            self._check_input_settings(location="local")
            self._info("  --> OK")
        from .client import vip_clean_name

        empty, renamed = [], []
        for p in sorted(local.rglob("*")):
            if p.is_file() and p.stat().st_size == 0:
                empty.append(str(p.relative_to(local)))
            if vip_clean_name(p.name) != p.name:
                renamed.append(str(p.relative_to(local)))
        if empty:
            raise ValueError(f"Empty file(s) in {local}: {', '.join(empty)}. Empty files are not "
                             "supported on VIP (remove them).")
        if renamed:
            raise ValueError(f"File name(s) VIP would rename (spaces or non-ASCII characters) in "
                             f"{local}: {', '.join(renamed)}. Rename them first.")
        self._meta["finished"] = False
        self._info(f"Uploading {local} to {self.vip_input_dir} ...")
        # Files changed since the last upload but with the same size: the tree transfer compares
        # sizes only, so they are re-sent explicitly (local size + mtime recorded in the backup).
        state = {str(p.relative_to(local).as_posix()): [p.stat().st_size, p.stat().st_mtime_ns]
                 for p in sorted(local.rglob("*")) if p.is_file()}
        before = self._meta.get("uploaded") if isinstance(self._meta.get("uploaded"), dict) else {}
        if self._meta.get("uploaded_to") != str(self.vip_input_dir):
            before = {}
        touched = {rel for rel, (size, mtime) in state.items()
                   if rel in before and before[rel] != [size, mtime] and before[rel][0] == size}
        try:
            report = self.client.upload_tree(local, str(self.vip_input_dir),
                                             progress=None if self.verbose else False)
            skipped = {Path(p).resolve() for p in report.skipped}
            resend = [rel for rel in sorted(touched) if (local / rel).resolve() in skipped]
            for rel in resend:
                self.client.upload(local / rel, str(self.vip_input_dir / rel))
            self._meta["uploaded"] = state
            self._meta["uploaded_to"] = str(self.vip_input_dir)
            self._info(f"Upload done: {report.files_transferred + len(resend)} file(s) sent, "
                       f"{report.files_skipped - len(resend)} unchanged file(s) skipped.")
        finally:
            self._save(announce=True)
        return self

    @_vip_errors
    def get_inputs(self, session: "VipSession | str | os.PathLike", get_pipeline: bool = False,
                   get_settings: bool = False) -> "VipSession":
        """Reuse the inputs another session uploaded (replaces :meth:`upload_inputs`).

        ``session``: a VipSession, or the name / output directory of a saved one.
        """
        self._info("\n=== GET INPUTS ===\n")
        if not isinstance(session, VipSession):
            out = Path(session)
            if not (out / self._SAVE_FILE).is_file():
                out = Path(self._LOCAL_DEFAULT_PATH) / str(session)
            if not (out / self._SAVE_FILE).is_file():
                raise FileNotFoundError(f"No saved session found for {str(session)!r}")
            session = type(self)(output_dir=out, verbose=False, client=self._client)
        if session.vip_input_dir is None:
            raise ValueError(f"Session '{session.session_name}' has no VIP input directory.")
        if self.vip_input_dir == session.vip_input_dir:
            self._info(f"Session '{self.session_name}' already uses the inputs of "
                       f"'{session.session_name}'.")
            return self
        own_default = PurePosixPath(self._SERVER_DEFAULT_PATH) / self.session_name / "INPUTS"
        if self.vip_input_dir == own_default and self._exists(self.vip_input_dir):
            raise FileExistsError(f"Session '{self.session_name}' already has input data on VIP "
                                  f"({self.vip_input_dir}): finish it or use a new session.")
        if not self._exists(session.vip_input_dir):
            raise FileNotFoundError(f"The inputs of session '{session.session_name}' are not on "
                                    f"VIP any more ({session.vip_input_dir}).")
        with self._unlock():
            if session.local_input_dir is not None:
                self.local_input_dir = session.local_input_dir
            self.vip_input_dir = session.vip_input_dir
            if get_pipeline and session.pipeline_id is not None:
                self.pipeline_id = session.pipeline_id
            if get_settings and session.input_settings is not None:
                self._settings_raw = dict(session.input_settings)
                self._values["input_settings"] = True
        # Both sides record the sharing, so that neither deletes what the other still uses.
        self._meta["inputs_from"] = str(session.local_output_dir)
        self._meta["finished"] = False
        me = str(self.local_output_dir)
        users = session._meta.setdefault("input_users", [])
        if me not in users:
            users.append(me)
        other_backup = Path(session.local_output_dir) / self._SAVE_FILE
        data = _read_json(other_backup)
        if data is not None:
            meta = data.get(_META_KEY) if isinstance(data.get(_META_KEY), dict) else {}
            if me not in meta.setdefault("input_users", []):
                meta["input_users"].append(me)
                data[_META_KEY] = meta
                write_json_atomic(other_backup, data)
        self._info(f"Session '{self.session_name}' uses the inputs of '{session.session_name}': "
                   f"{self.vip_input_dir}")
        self._save(announce=True)
        return self

    @_vip_errors
    def launch_pipeline(self, pipeline_id: str | None = None, input_settings: dict | None = None,
                        nb_runs: int = 1) -> "VipSession":
        """Validate the settings, then launch ``nb_runs`` execution(s) of the pipeline."""
        self._info("\n=== LAUNCH PIPELINE ===\n")
        if pipeline_id is not None:
            self.pipeline_id = pipeline_id
        if input_settings is not None:
            self.input_settings = input_settings
        if int(nb_runs) < 1:
            raise ValueError(f"nb_runs must be >= 1, not {nb_runs}")
        self._info(f"Pipeline: {self.pipeline_id}\n----------------\nParameter checks")
        values = self._check_input_settings(location="vip")
        self._info("  --> OK")
        self.client.mkdir(str(self.vip_output_dir), parents=True)
        self._meta["finished"] = False
        self._info(f"----------------\nLaunching {nb_runs} new execution(s) on VIP")
        done = 0
        try:
            for _ in range(int(nb_runs)):
                ex = self.client.launch(self.pipeline_id, values, str(self.vip_output_dir),
                                        self.session_name)
                self._workflows[ex.identifier] = {
                    "status": ex.status,
                    "start": _start_string(_attr(ex, "start_date")) or f"{datetime.now():%Y/%m/%d %H:%M:%S}",
                    "outputs": [],
                }
                done += 1
                self._save()
                self._info(f"  [{done}/{nb_runs}] {ex.identifier} ({ex.status})")
        except BaseException:
            self._warn(f"(!) Stopped after {done} execution(s).")
            self._save()
            raise
        self._info("Launch done. Monitor with monitor_workflows().")
        self._save(announce=True)
        return self

    @_vip_errors
    def monitor_workflows(self, refresh_time: float = 30, timeout: float | None = None) -> "VipSession":
        """Wait until every execution is over (Initializing, Ready and Running all count as
        running), showing jobs done / total; return early after ``timeout`` seconds."""
        self._info("\n=== MONITOR WORKFLOWS ===\n")
        if not self._workflows:
            self._info("This session has not yet launched any execution.")
            return self
        ids = self._pending_ids()
        execs = self._refresh(ids)
        self._save()
        running = [w for w in ids if status_is_running(self._workflows[w]["status"])]
        if running:
            self._report()
            self._info(f"Monitoring {len(running)} execution(s) (refresh every {refresh_time}s"
                       f"{'' if timeout is None else f', timeout {timeout}s'}) ...")
            start = time.monotonic()
            done, total, unit = self._counts({w: execs.get(w) for w in running})
            bar = self._progress(desc=f"{self.session_name}", unit=unit, leave=True,
                                 total=total, initial=done)
            timed_out = False
            try:
                while True:
                    self._update_bar(bar, {w: execs.get(w) for w in running})
                    if not any(status_is_running(self._workflows[w]["status"]) for w in running):
                        break
                    elapsed = time.monotonic() - start
                    if timeout is not None and elapsed >= timeout:
                        timed_out = True
                        break
                    pause = float(refresh_time)
                    if timeout is not None:
                        pause = min(pause, max(0.0, timeout - elapsed))
                    time.sleep(pause)
                    before = [self._workflows[w]["status"] for w in running]
                    execs = self._refresh(running)
                    if [self._workflows[w]["status"] for w in running] != before:
                        self._save()  # nothing lost if this process dies during a long wait
            except BaseException:
                bar.close()
                self._warn("(!) Monitoring interrupted; the session was saved.")
                self._save()
                raise
            bar.close()
            if timed_out:
                still = [w for w in running if status_is_running(self._workflows[w]["status"])]
                self._warn(f"(!) Timeout ({timeout}s) reached: {len(still)} execution(s) still "
                           f"running. Call monitor_workflows() again later.")
            else:
                self._info("All executions are over.")
        self._report()
        self._save(announce=True)
        return self

    def _counts(self, execs: dict[str, Any]) -> tuple[int, int, str]:
        """(done, total, unit): jobs when the server reports them, else executions."""
        counts = [(_job_counts(_attr(ex, "jobs")) if ex is not None else None) for ex in execs.values()]
        if counts and all(c is not None for c in counts):
            return sum(c[0] for c in counts), sum(c[1] for c in counts), "job"
        done = sum(not status_is_running(self._workflows[w]["status"]) for w in execs)
        return done, len(execs), "execution"

    def _update_bar(self, bar: tqdm, execs: dict[str, Any]) -> None:
        done, total, unit = self._counts(execs)
        bar.unit, bar.total, bar.n = unit, total, done
        statuses: dict[str, int] = {}
        for w in execs:
            st = str(self._workflows[w]["status"])
            statuses[st] = statuses.get(st, 0) + 1
        bar.set_postfix_str(", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())), refresh=False)
        bar.refresh()

    def _report(self) -> None:
        if not self.verbose or not self._workflows:
            return
        by_status: dict[str, list[str]] = {}
        for wid, wf in self._workflows.items():
            by_status.setdefault(str(wf.get("status")), []).append(wid)
        n = len(self._workflows)
        lines = []
        for status, ids in by_status.items():
            k = len(ids)
            if status_is_running(status):
                head = (f"All executions are currently {status.lower()} on VIP." if k == n
                        else f"{k} execution(s) {'is' if k == 1 else 'are'} currently "
                             f"{status.lower()} on VIP:")
            elif status == "Finished":
                head = (f"All executions ({n}) ended with success." if k == n
                        else f"{k} execution(s) ended with success:")
            elif status == "Removed":
                head = ("This session is over." if k == n
                        else f"Outputs from {k} execution(s) were removed from VIP servers:")
            else:
                head = (f"All executions ({n}) ended with status: {status}" if k == n
                        else f"{k} execution(s) ended with status: {status}")
            lines.append(head)
            for wid in ids:
                lines.append(f"\t{wid} | Started on: {self._workflows[wid].get('start')}")
        self._info("\n".join(lines))

    @_vip_errors
    def download_outputs(self, unzip: bool = True, get_status: Iterable[str] = ("Finished",),
                         init_timeout: float | None = None) -> "VipSession":
        """Download the outputs of the executions whose status is in ``get_status`` into
        ``output_dir`` (mirroring ``vip_output_dir``); tarballs are extracted when ``unzip``.
        Files already complete are skipped; missing, failed or partial ones are fetched again."""
        self._info("\n=== DOWNLOAD OUTPUTS ===\n")
        get_status = [get_status] if isinstance(get_status, str) else list(get_status)
        if "Removed" in get_status:
            raise ValueError("Outputs of 'Removed' executions were deleted from VIP: they cannot "
                             "be downloaded.")
        if not self._workflows:
            self._info("This session has not yet launched any execution.")
            return self
        if init_timeout != 0:
            self._info("Updating workflows status ...")
            self._refresh(self._pending_ids())
            for wid in self._active_ids():
                wf = self._workflows[wid]
                if wf["status"] not in get_status and not wf.get("outputs"):
                    continue
                if status_is_running(wf["status"]):
                    continue
                outs = wf.get("outputs") or []
                if outs and all("size" in o and "exists" in o for o in outs):
                    continue  # the outputs of an execution that is over were already listed
                try:
                    results = self.client.results(wid)
                except Exception as exc:  # a workflow without results must not stop the others
                    self._warn(f"(!) Could not get the outputs of {wid}: {exc}")
                    continue
                wf["outputs"] = [
                    {"path": str(_attr(r, "path")), "isDirectory": bool(_attr(r, "is_directory", default=False)),
                     "size": _attr(r, "size"), "exists": _attr(r, "exists", default=True)}
                    for r in results
                ]
            self._save()
        selected = [w for w, wf in self._workflows.items() if wf.get("status") in get_status]
        if not selected:
            self._info(f"No execution with status {', '.join(get_status)}.")
            return self
        pairs: list[tuple[str, Path]] = []
        expected: dict[Path, Any] = {}  # local path -> expected size
        for i, wid in enumerate(selected, 1):
            wf = self._workflows[wid]
            self._info(f"[{i}/{len(selected)}] Outputs from: {wid} | Started on: {wf.get('start')} "
                       f"| Status: {wf.get('status')}")
            for out in wf.get("outputs") or []:
                if out.get("isDirectory") or out.get("exists") is False:
                    continue
                local = self._local_output_path(out["path"])
                size = out.get("size")
                expected[local] = size
                if local.is_dir():
                    continue  # an extracted tarball
                if local.is_file() and (size is None or local.stat().st_size == size):
                    continue
                local.parent.mkdir(parents=True, exist_ok=True)
                pairs.append((out["path"], local))
        if pairs:
            total = sum(int(expected[local] or 0) for _, local in pairs)
            self._info(f"Downloading {len(pairs)} file(s) ({_fmt_size(total)}) ...")
            from .client import PathInfo

            items = []
            for vip, local in pairs:
                size = expected[local]
                items.append((PathInfo(path=vip, size=size) if size is not None else vip, local))
            try:
                self.client.download_files(items, extract=unzip,
                                           progress=None if self.verbose else False)
            except Exception as exc:  # reported below, per file
                logger.debug("download_outputs %s: %s", self.session_name, exc)
            failed: list[str] = []
            for vip, local in pairs:
                size = expected[local]
                if local.is_dir():
                    continue
                if not local.is_file() or (size is not None and local.stat().st_size != size):
                    failed.append(vip)
            if failed:
                self._warn(f"(!) {len(failed)} file(s) could not be downloaded (they will be fetched "
                           f"again on the next call): {', '.join(failed)}")
            else:
                self._info(f"Download done: {len(pairs)} file(s).")
        else:
            self._info("All outputs are already here.")
        if unzip:
            for local in expected:
                if local.is_file():
                    self._extract(local)
        self._save(announce=True)
        return self

    # the spelling used in VIP's own README example
    download_ouputs = download_outputs

    def _local_output_path(self, vip_path: str) -> Path:
        vp = PurePosixPath(vip_path)
        try:
            rel = vp.relative_to(self.vip_output_dir)
        except ValueError:  # not under vip_output_dir: keep the dated folder and the file name
            rel = PurePosixPath(vp.parent.name, vp.name)
        parts = list(rel.parts)
        if os.name == "nt":
            parts = [re.sub(r'[<>:"?* ]', "-", p) for p in parts]
        return Path(self.local_output_dir, *parts)

    def _extract(self, archive: Path) -> None:
        """Extract a downloaded tarball left unextracted (e.g. by an interrupted call) into a
        directory bearing its name, as VIP's client does (safe "data" filter)."""
        try:
            if not tarfile.is_tarfile(archive):
                return
        except OSError:
            return
        from .transfer import extract_archive

        try:
            refused = extract_archive(archive)
        except (OSError, tarfile.TarError) as exc:
            self._warn(f"(!) Could not extract {archive}: {exc}")
            return
        for line in refused:
            self._warn(f"(!) {line}")
        self._info(f"\tExtracted: {archive.name}")

    @_vip_errors
    def run_session(self, update_files: bool = True, nb_runs: int = 1, refresh_time: float = 30,
                    unzip: bool = True, get_status: Iterable[str] = ("Finished",),
                    timeout: float | None = None) -> "VipSession":
        """upload_inputs -> launch_pipeline -> monitor_workflows -> download_outputs."""
        return (self.upload_inputs(update_files=update_files)
                .launch_pipeline(nb_runs=nb_runs)
                .monitor_workflows(refresh_time=refresh_time, timeout=timeout)
                .download_outputs(unzip=unzip, get_status=get_status))

    # ---- finish ------------------------------------------------------------------------------
    def _input_users(self) -> list[str]:
        """Names of the other unfinished sessions that use this session's VIP input directory."""
        if self.vip_input_dir is None:
            return []
        candidates: set[Path] = set()
        own = self._backup_path.resolve()
        on_disk = _read_json(own) or {}
        meta = on_disk.get(_META_KEY) if isinstance(on_disk.get(_META_KEY), dict) else {}
        for p in list(meta.get("input_users") or []) + list(self._meta.get("input_users") or []):
            candidates.add(Path(p) / self._SAVE_FILE)
        if self._meta.get("inputs_from"):
            candidates.add(Path(self._meta["inputs_from"]) / self._SAVE_FILE)
        for root in {Path(self.local_output_dir).parent, Path(self._LOCAL_DEFAULT_PATH).absolute()}:
            if root.is_dir():
                candidates.update(root.glob(f"*/{self._SAVE_FILE}"))
        users = []
        owner_seen = False
        root = PurePosixPath(self._SERVER_DEFAULT_PATH)
        owner_name = self.vip_input_dir.parent.name if self.vip_input_dir.parent.parent == root else None
        for path in sorted(candidates):
            if not path.is_file() or path.resolve() == own:
                continue
            data = _read_json(path)
            if not data or data.get("vip_input_dir") is None:
                continue
            if PurePosixPath(str(data["vip_input_dir"])) != self.vip_input_dir:
                continue
            name = str(data.get("session_name") or path.parent.name)
            owner_seen = owner_seen or name == owner_name
            if not _backup_is_finished(data):
                users.append(name)
        if not owner_seen and owner_name not in (None, self.session_name):
            # borrowed inputs whose owner session cannot be found: they are not ours to delete
            users.append(f"{owner_name} (owner; its backup was not found)")
        return sorted(set(users))

    def _delete(self, path: PurePosixPath, deadline: float) -> bool:
        """Delete a VIP path and wait until it is gone; False if it is still there at the
        deadline."""
        if not self._exists(path):
            self._info(f"\t{path}: already removed.")
            return True
        self.client.delete(str(path), missing_ok=True, wait=0)
        pause = 0.05
        while self._exists(path):
            if time.monotonic() >= deadline:
                self._warn(f"(!) Timeout reached while removing {path}: it may still be on VIP.")
                return False
            time.sleep(pause)
            pause = min(2.0, pause * 2)
        self._info(f"\t{path}: removed.")
        return True

    @_vip_errors
    def finish(self, timeout: float = 300, keep_input: bool = False, keep_output: bool = False,
               force_remove: bool = False) -> "VipSession":
        """Remove the session's data from VIP, once no execution can produce data any more.

        Inputs that another unfinished session uses (via :meth:`get_inputs`) are kept unless
        ``force_remove=True``.
        """
        self._info("\n=== FINISH ===\n")
        ids = self._pending_ids()
        if ids:
            self._refresh(ids)
            running = [w for w in ids if status_is_running(self._workflows[w]["status"])]
            if running:
                self._save()
                self._warn(
                    f"(!) This session cannot be finished since the pipeline might still generate "
                    f"data: {len(running)} execution(s) not over "
                    f"({', '.join(w + ': ' + str(self._workflows[w]['status']) for w in running)}). "
                    "Run monitor_workflows() first."
                )
                return self
        deadline = time.monotonic() + float(timeout)
        root = PurePosixPath(self._SERVER_DEFAULT_PATH) / self.session_name
        vin, vout = self.vip_input_dir, self.vip_output_dir

        def under(p, parent) -> bool:
            return p is not None and (p == parent or parent in p.parents)

        own_inputs = under(vin, root)
        users = [] if force_remove or keep_input or vin is None else self._input_users()
        targets: list[PurePosixPath] = []
        if not keep_output and vout is not None:
            targets.append(vout)
        if not keep_input and vin is not None:
            if users:
                self._info(f"Inputs kept on VIP ({vin}): still used by session(s) "
                           f"{', '.join(users)} (finish(force_remove=True) removes them anyway).")
            else:
                targets.append(vin)
        if not keep_input and not keep_output and not users and under(vin, root) and under(vout, root):
            targets = [root]  # the whole session folder, as VIP's client does
        self._info("Removing session data\n----------------")
        kept = [t for t in targets if not self._delete(t, deadline)]
        if not keep_input and not users and vin is not None and not own_inputs:
            # borrowed inputs removed: drop the owner's session folder if now empty
            parent = vin.parent
            if under(parent, PurePosixPath(self._SERVER_DEFAULT_PATH)) and parent != PurePosixPath(
                    self._SERVER_DEFAULT_PATH):
                with contextlib.suppress(Exception):
                    if self._exists(parent) and not self.client.list(str(parent)):
                        self._delete(parent, deadline)
        if not keep_output and root not in targets and self._exists(root):
            with contextlib.suppress(Exception):
                if not self.client.list(str(root)):
                    self._delete(root, deadline)
        self._info("----------------\nUpdating workflows status")
        removed = [t for t in targets if t not in kept]
        for wid in self._active_ids():
            outs = self._workflows[wid].get("outputs") or []
            parent = PurePosixPath(outs[0]["path"]).parent if outs else None
            if parent is None or any(under(parent, t) for t in removed) or not self._exists(parent):
                self._workflows[wid]["status"] = "Removed"
        # a session that keeps its inputs still claims them (other sessions will not delete them)
        self._meta["finished"] = not keep_input
        self._save(announce=True)
        self._report()
        return self

    # ---- display -----------------------------------------------------------------------------
    @classmethod
    @_vip_errors
    def show_pipeline(cls, pipeline_id: str | None = None) -> None:
        """Log the available pipelines (no argument or a partial name) or one pipeline's
        parameters (a unique match)."""
        if not cls._VERBOSE:
            return
        client = cls._default_client
        if client is None:
            raise TypeError(f"Call {cls.__name__}.init() first.")
        _ensure_log_handler()
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
        p = client.pipeline(ids[0])
        line = "=" * 70
        desc = re.sub(r"<[^>]+>", "", str(p.description or "")).replace("\n", " ").strip()
        out = [line, f"NAME: {p.name} | VERSION: {p.version}", line]
        if desc:
            out += ["DESCRIPTION:", textwrap.fill(desc, 70, initial_indent="\t", subsequent_indent="\t")]
        out.append("INPUT_SETTINGS:")
        params = [q for q in p.parameters if q.name != "results-directory"]
        for title, opt in (("REQUIRED", False), ("OPTIONAL", True)):
            group = sorted((q for q in params if bool(q.is_optional) is opt), key=lambda q: q.name)
            if not group:
                continue
            out.append(f"{title}..." + "." * 50)
            for q in group:
                out.append(f"- {q.name}")
                extra = "" if q.default_value in _NO_DEFAULT else f" (default: {q.default_value})"
                text = f"[{q.type}] {re.sub(r'<[^>]+>', '', str(q.description or ''))}{extra}"
                out.append(textwrap.fill(text, 70, initial_indent="\t", subsequent_indent="\t"))
        out.append(line)
        logger.info("\n".join(out))

    def display(self) -> "VipSession":
        """Log the session's backup data (``key: <json>`` lines)."""
        line = "-" * 50
        body = "\n".join(f"{k}: {json.dumps(v, indent=2)}" for k, v in self._backup_dict().items())
        self._info(f"{line}\n{body}\n{line}")
        return self

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(session_name={self.session_name!r}, "
                f"pipeline_id={self.pipeline_id!r}, output_dir={str(self.local_output_dir)!r})")

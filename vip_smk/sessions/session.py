"""`VipSession`: the upload -> launch -> monitor -> download -> finish procedure of VIP's own
Python client (vip-client 0.1.10), as a drop-in replacement with its known defects fixed.

Same constructor, properties, methods and ``<output_dir>/session_data.json`` backup as VIP's
client, so that a session started by either client resumes in the other. Every step is a call
into :mod:`vip_smk.core` (validation, launch or adoption, polling, download, removal) through a
:class:`vip_smk.core.client.VipClient` (one per session, or the default one set by
:meth:`VipSession.init`); nothing global in ``requests`` is touched.

Differences with vip-client (all deliberate fixes, see README):

- every non-terminal status (``Initializing``, ``Ready``, ``Running``) counts as running, in
  :meth:`monitor_workflows` and in :meth:`finish` (a queued workflow's data is never deleted);
- input settings are validated before anything is uploaded or launched, one error listing
  every problem (unknown names, required parameters, types, characters, File inputs with one
  listing per VIP directory);
- a resumed session never launches twice: :meth:`launch_pipeline` adopts the execution it
  launched before (same inputs, running or finished, not removed by :meth:`finish`);
- :meth:`monitor_workflows` makes one request per round whatever the number of executions,
  polls soon after launch and backs off up to ``refresh_time``, shows jobs done / total;
- transfers are parallel, streaming and incremental: changed input files are re-sent, failed or
  partial downloads are fetched again on the next call;
- local output names are valid on Windows and Unix (VIP's ``dd-mm-yyyy_HH:MM:SS`` folders are
  stored as ``dd-mm-yyyy_HH-MM-SS``, see :func:`vip_smk.rules.local_name`);
- :meth:`finish` keeps inputs that another session still uses (``get_inputs``) unless
  ``force_remove=True``;
- output goes through :mod:`logging` (logger ``vip_smk.sessions.session``) and tqdm, the backup is written
  atomically and never contains the API key.
"""

from __future__ import annotations

import os
import time
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

from vip_smk import core, rules
from vip_smk.core.client import NotFound
from vip_smk.sessions.backup import add_input_user, meta_of, read_backup, sessions_sharing
from vip_smk.sessions.base import SessionBase, vip_errors
from vip_smk.util import write_json_atomic  # noqa: F401  (re-exported for older imports)

__all__ = ["VipSession"]


def _fmt_size(size: int | None) -> str:
    if size is None:
        return "?"
    return f"{size / 1e6:.1f}MB" if size >= 50_000 else f"{size / 1e3:.1f}kB"


class VipSession(SessionBase):
    """A VIP session: 1 pipeline, 1 dataset, 1 parameter set (drop-in for vip-client's class).

    ``VipSession(session_name=None, input_dir=None, pipeline_id=None, input_settings=None,
    output_dir=None, verbose=None, *, client=None)``. A session whose ``output_dir`` (default
    ``./vip_outputs/<session_name>``) holds a ``session_data.json`` is resumed from it.
    """

    _LOCAL_DEFAULT_PATH = "./vip_outputs"
    _BACKUP_LOCATIONS = ("local", "vip", None)
    _BACKUP_LOCATION = "local"
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
        self._setup(verbose, client)
        self._abs_paths: dict[str, str] = {}  # local path values as given -> absolute paths

        if session_name is not None:
            self.session_name = session_name
        if output_dir is not None:
            out = Path(output_dir)
        elif session_name is not None:
            out = Path(self._LOCAL_DEFAULT_PATH) / session_name
        else:
            out = None
        restored = False
        location = type(self)._BACKUP_LOCATION
        if location == "local" and out is not None and (out / self._SAVE_FILE).is_file():
            self._load_backup(out, name_given=session_name)
            restored = True
        elif location == "vip" and session_name is not None:
            with self._unlock():
                self.vip_output_dir = PurePosixPath(self._SERVER_DEFAULT_PATH) / session_name / "OUTPUTS"
            data = self._saved_on_vip()
            if data is not None:
                where = f"{self._vip_backup_path} (on VIP)"
                self._restore(self._read_backup(where, session_name, data), session_name,
                              out or Path(self._LOCAL_DEFAULT_PATH) / session_name)
                restored = True
        if self.session_name is None:
            self.session_name = self._default_name()
        if out is None:
            out = Path(self._LOCAL_DEFAULT_PATH) / self.session_name
        with self._unlock():
            self.local_output_dir = out
            root = PurePosixPath(self._SERVER_DEFAULT_PATH) / self.session_name
            if self.vip_input_dir is None:
                self.vip_input_dir = root / "INPUTS"
            if self.vip_output_dir is None:
                self.vip_output_dir = root / "OUTPUTS"

        if _announce:
            self._info(f"\n=== SESSION '{self.session_name}' ===\n")
            if restored:
                self._info("<< Session restored from its output directory: "
                           f"{self.local_output_dir if location == 'local' else self._vip_backup_path}")
            else:
                self._info(f"New session. Outputs and backup in: {self.local_output_dir}")
        self._set_given(restored, input_dir=input_dir, pipeline_id=pipeline_id,
                        input_settings=input_settings)
        if self.local_input_dir is not None and not Path(self.local_input_dir).exists():
            self._warn(f"(!) The input directory does not exist (yet): {self.local_input_dir}")

    # ---- local properties --------------------------------------------------------------------
    def _same(self, name: str, value: Any) -> bool:
        if name in ("input_dir", "output_dir", "local_input_dir", "local_output_dir"):
            return Path(value).expanduser().resolve() == Path(getattr(self, name)).resolve()
        return super()._same(name, value)

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
        if new is not None and not self._unlocked and type(self)._BACKUP_LOCATION == "local" \
                and (new / self._SAVE_FILE).is_file():
            self._load_backup(new, name_given=self.session_name)

    @local_output_dir.deleter
    def local_output_dir(self) -> None:
        self._values["local_output_dir"] = None

    output_dir = local_output_dir
    vip_input_dir = SessionBase._vip_path_prop("vip_input_dir")

    # settings values: existing local paths remembered absolute, sent as VIP paths
    def _local_value(self, name: str, v: Any) -> Any:
        if isinstance(v, str) and v and not v.startswith(self._SERVER_PATH_PREFIX + "/"):
            p = Path(v).expanduser()
            if p.exists():  # remember where it is (the CWD may change); value kept as given
                self._abs_paths[v] = str(p.absolute())
        return v

    def _is_local_path(self, v: Any) -> bool:
        return (isinstance(v, str) and not v.startswith(self._SERVER_PATH_PREFIX + "/")
                and (v in self._abs_paths or Path(v).is_absolute()))

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

    # ---- backup ------------------------------------------------------------------------------
    @property
    def _output_path(self) -> Path:
        """``local_output_dir``, which the constructor always sets: a TypeError if it was deleted."""
        out = self.local_output_dir
        if out is None:
            raise TypeError(f"Session '{self.session_name}' has no output_dir (deleted?): set one first.")
        return out

    @property
    def _backup_path(self) -> Path:
        return self._output_path / self._SAVE_FILE

    def _load_backup(self, out_dir: Path, name_given: str | None) -> None:
        self._restore(self._read_backup(Path(out_dir) / self._SAVE_FILE, name_given), name_given,
                      Path(out_dir))

    def _restore(self, data: dict, name_given: str | None, out_dir: Path) -> None:
        with self._unlock():
            self._restore_common(data, name_given)
            self.local_output_dir = Path(out_dir)  # the directory actually used
            self.local_input_dir = data["local_input_dir"]
            self.vip_input_dir = data["vip_input_dir"]

    # ---- validation: File values of the dataset are checked locally ------------------------
    def _file_check(self, location: str) -> Callable[[str], str | None]:
        on_vip = core.vip_file_check(self.client)
        vip_in, local_in = self.vip_input_dir, self.local_input_dir

        def check(value: str) -> str | None:
            if not value.startswith(self._SERVER_PATH_PREFIX + "/"):
                where = ("is not in the input directory" if Path(self._abs_paths.get(value, value)).exists()
                         else "does not exist")
                return f"{value} {where}"
            if location == "local" and local_in is not None and vip_in is not None:
                try:
                    rel = PurePosixPath(value).relative_to(vip_in)
                except ValueError:
                    rel = None
                if rel is not None:  # part of the dataset still to upload
                    local = Path(local_in, *rel.parts)
                    return None if local.is_file() else f"{local} does not exist"
            return on_vip(value)

        return check

    # ---- steps -------------------------------------------------------------------------------
    @vip_errors
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
        files = [p for p in sorted(local.rglob("*")) if p.is_file()]
        empty = [str(p.relative_to(local)) for p in files if p.stat().st_size == 0]
        renamed = [str(p.relative_to(local)) for p in sorted(local.rglob("*"))
                   if rules.clean_name(p.name) != p.name]
        if empty:
            raise ValueError(f"Empty file(s) in {local}: {', '.join(empty)}. Empty files are not "
                             "supported on VIP (remove them).")
        if renamed:
            raise ValueError(f"File name(s) VIP would rename (spaces or non-ASCII characters) in "
                             f"{local}: {', '.join(renamed)}. Rename them first.")
        self._meta["finished"] = False
        self._info(f"Uploading {local} to {self.vip_input_dir} ...")
        # A change is a change of content (core.content): each file's fingerprint (size,
        # mtime_ns, sha256) is recorded in the backup at upload time; a file rewritten with the
        # same bytes is neither re-sent nor a reason to relaunch, new bytes (same size
        # included) are re-sent and the executions so far superseded.
        content = core.content
        stats = {p.relative_to(local).as_posix(): p.stat() for p in files}  # before any read
        uploaded = self._meta.get("uploaded")
        before: dict = uploaded if isinstance(uploaded, dict) else {}
        if self._meta.get("uploaded_to") != str(self.vip_input_dir):
            before = {}
        records: dict[str, content.Fingerprint] = {}

        def known(rel: str) -> bool | None:
            rec = content.Fingerprint.from_json(before.get(rel))
            if rec is None:
                return None  # no record (older backup, vip-client's): the transfer's rules
            kept = content.same_content(local / rel, rec)
            if kept is not None:
                records[rel] = kept
            return kept is not None

        try:
            report = self.client.upload_tree(local, str(self.vip_input_dir), known=known,
                                             hasher=content.hasher,
                                             progress=None if self.verbose else False)
            changed = []
            for rel, st in stats.items():
                digest = report.digests.get(rel)
                if digest is not None:  # sent: hashed while read, dated by the stat before
                    records[rel] = content.fingerprint(local / rel, digest, before=st)
                    old = content.Fingerprint.from_json(before.get(rel))
                    if old is None or old.sha256 != digest:
                        changed.append(rel)
                elif rel not in records:  # skipped with no record: the remote copy kept
                    records[rel] = content.fingerprint(local / rel)
            self._meta["uploaded"] = {rel: fp.to_json() for rel, fp in sorted(records.items())}
            self._meta["uploaded_to"] = str(self.vip_input_dir)
            if changed:  # the executions so far ran on other bytes
                old_ids = set(self._meta.get("superseded") or []) | set(self._workflows)
                if old_ids:
                    self._meta["superseded"] = sorted(old_ids)
            same = report.files_transferred - len(changed)
            self._info(f"Upload done: {report.files_transferred} file(s) sent"
                       f"{f' ({same} of them missing on VIP, same content)' if same else ''}, "
                       f"{report.files_skipped} unchanged file(s) skipped.")
        finally:
            self._save(announce=True)
        return self

    @vip_errors
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
        own_default = PurePosixPath(self._SERVER_DEFAULT_PATH) / self._name / "INPUTS"
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
        add_input_user(session._backup_path, me)
        self._info(f"Session '{self.session_name}' uses the inputs of '{session.session_name}': "
                   f"{self.vip_input_dir}")
        self._save(announce=True)
        return self

    @vip_errors
    def launch_pipeline(self, pipeline_id: str | None = None, input_settings: dict | None = None,
                        nb_runs: int = 1) -> "VipSession":
        """Validate the settings, then launch ``nb_runs`` execution(s) of the pipeline. An
        execution this session already has on VIP with these settings (running or finished, not
        removed by :meth:`finish`) is adopted instead of launched again."""
        self._info("\n=== LAUNCH PIPELINE ===\n")
        if pipeline_id is not None:
            self.pipeline_id = pipeline_id
        if input_settings is not None:
            self.input_settings = input_settings
        self._launch(nb_runs)
        self._info("Launch done. Monitor with monitor_workflows().")
        self._save(announce=True)
        return self

    @vip_errors
    def download_outputs(self, unzip: bool = True, get_status: Iterable[str] = ("Finished",),
                         init_timeout: float | None = None) -> "VipSession":
        """Download the outputs of the executions whose status is in ``get_status`` into
        ``output_dir`` (:func:`core.download_results`: the path under ``vip_output_dir``, names
        valid on every system); tarballs are extracted into a directory of their name when
        ``unzip``. Complete files are skipped; missing, failed or partial ones fetched again."""
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
            self._list_outputs(get_status)
            self._save()
        selected = [w for w, wf in self._workflows.items() if wf.get("status") in get_status]
        if not selected:
            self._info(f"No execution with status {', '.join(get_status)}.")
            return self
        for i, wid in enumerate(selected, 1):
            wf = self._workflows[wid]
            self._info(f"[{i}/{len(selected)}] Outputs from: {wid} | Started on: {wf.get('start')} "
                       f"| Status: {wf.get('status')}")
        outputs = {wid: wf.get("outputs") or [] for wid, wf in self._workflows.items()}
        report = core.download_results(self.client, outputs, self._output_path, unzip=unzip,
                                       vip_root=self.vip_output_dir, select=set(selected),
                                       progress=None if self.verbose else False)
        for line in report.warnings:
            self._warn(f"(!) {line}")
        for path, (size, limit) in sorted(report.too_large.items()):
            self._warn(f"(!) {path}: {size:,} bytes, over VIP's direct-transfer limit of "
                       f"{limit:,} bytes (maxSizeDirectTransfer): not downloaded (fetch it from "
                       "the VIP portal).")
        failed = sorted(p for p in report.failed if p not in report.too_large)
        if failed:
            self._warn(f"(!) {len(failed)} file(s) could not be downloaded (they will be "
                       f"fetched again on the next call): {', '.join(failed)}")
        if report.downloaded:
            self._info(f"Downloaded {len(report.downloaded)} file(s) ({_fmt_size(report.bytes)}).")
        elif not report.failed:
            self._info("All outputs are already here.")
        for archive in report.extracted:
            self._info(f"\tExtracted: {Path(archive).name}")
        self._save(announce=True)
        return self

    # the spelling used in VIP's own README example
    download_ouputs = download_outputs

    def _list_outputs(self, get_status: list[str]) -> None:
        """Replace the outputs of executions that are over by their ``/results`` listing
        (vip-client's ``{"path", "isDirectory", "size", "exists"}`` entries), once."""
        for wid in self._active_ids():
            wf = self._workflows[wid]
            if rules.is_running(wf["status"]) or (wf["status"] not in get_status and not wf.get("outputs")):
                continue
            outs = wf.get("outputs") or []
            if outs and all("size" in o and "exists" in o for o in outs):
                continue
            try:
                results = self.client.results(wid)
            except Exception as exc:  # a workflow without results must not stop the others
                self._warn(f"(!) Could not get the outputs of {wid}: {exc}")
                continue
            wf["outputs"] = [{"path": r.path, "isDirectory": bool(r.is_directory), "size": r.size,
                              "exists": r.exists} for r in results]

    @vip_errors
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
        for p in (self._meta.get("input_users") or []):
            candidates.add(Path(p) / self._SAVE_FILE)
        for p in meta_of(read_backup(self._backup_path)).get("input_users") or []:
            candidates.add(Path(p) / self._SAVE_FILE)
        if self._meta.get("inputs_from"):
            candidates.add(Path(self._meta["inputs_from"]) / self._SAVE_FILE)
        for root in {self._output_path.parent, Path(self._LOCAL_DEFAULT_PATH).absolute()}:
            if root.is_dir():
                candidates.update(root.glob(f"*/{self._SAVE_FILE}"))
        home = PurePosixPath(self._SERVER_DEFAULT_PATH)
        owner = self.vip_input_dir.parent.name if self.vip_input_dir.parent.parent == home else None
        return sessions_sharing(self.vip_input_dir, self._backup_path, candidates, owner,
                                self.session_name)

    def _remove_if_empty(self, path: PurePosixPath, deadline: float) -> None:
        try:
            if self._exists(path) and not self.client.list(str(path)):
                self._remove(path, deadline)
        except NotFound:
            pass

    @vip_errors
    def finish(self, timeout: float = 300, keep_input: bool = False, keep_output: bool = False,
               force_remove: bool = False) -> "VipSession":
        """Remove the session's data from VIP, once no execution can produce data any more.

        Inputs that another unfinished session uses (via :meth:`get_inputs`) are kept unless
        ``force_remove=True``. Local files are never touched.
        """
        self._info("\n=== FINISH ===\n")
        if self._running_refuses_finish():
            return self
        deadline = time.monotonic() + float(timeout)
        home = PurePosixPath(self._SERVER_DEFAULT_PATH)
        root = home / self._name
        vin, vout = self.vip_input_dir, self.vip_output_dir

        def under(p, parent) -> bool:
            return p is not None and (p == parent or parent in p.parents)

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
        removed = [t for t in targets if self._remove(t, deadline)]
        if not keep_input and not users and vin is not None and not under(vin, root):
            # borrowed inputs removed: drop the owner's session folder if now empty
            if under(vin.parent, home) and vin.parent != home:
                self._remove_if_empty(vin.parent, deadline)
        if not keep_output and root not in targets:
            self._remove_if_empty(root, deadline)
        self._info("----------------\nUpdating workflows status")
        self._mark_removed(removed)
        # a session that keeps its inputs still claims them (other sessions will not delete them)
        self._meta["finished"] = not keep_input
        self._save_after_finish(removed)
        self._report()
        return self


"""`VipLauncher`: vip-client 0.1.10's class for data already on VIP (inputs in a VIP or group
folder, results left on VIP), as a drop-in replacement and a face over :mod:`vip_smk.core`.

``VipLauncher.init(api_key=..., backup_location="vip" | None)``, ``VipLauncher(output_dir=<VIP
folder>, pipeline_id=..., input_settings=..., session_name=...)``, ``launch_pipeline``,
``monitor_workflows``, ``run_session`` (launch -> monitor), ``finish``, ``show_pipeline``,
``display``. With ``backup_location="vip"`` the session is kept in
``<output_dir>/session_data.json`` on VIP, in vip-client's format (either client resumes the
other's sessions), written through the client (no temporary file in the current folder).

Fixed vip-client defects: ``finish()`` removes the outputs unless ``keep_output=True`` (vip-client
inverted it); queued executions count as running; a resumed session adopts the execution it
launched instead of launching again; settings are validated before anything is launched;
lists VIP cannot pair (``vip:dot`` inputs of unequal lengths, a group VIP's REST API does not
show) are named with their lengths when VIP refuses the launch, nothing launched.
"""

from __future__ import annotations

import os
import time
from pathlib import PurePosixPath
from typing import Any

from vip_smk.sessions.base import SessionBase, vip_errors

__all__ = ["VipLauncher"]


class VipLauncher(SessionBase):
    """A VIP session on data already on VIP: 1 pipeline, 1 parameter set, results on VIP.

    ``VipLauncher(output_dir=None, pipeline_id=None, input_settings=None, session_name=None,
    verbose=None, *, client=None)``; ``output_dir`` is the VIP folder of the results (and, with
    ``backup_location="vip"``, of ``session_data.json``, restored from there when present).
    """

    _BACKUP_LOCATIONS = ("vip", None)
    _BACKUP_LOCATION = None
    _BACKUP_KEYS = ("session_name", "pipeline_id", "vip_output_dir", "input_settings", "workflows")
    _LOCKED = ("session_name", "pipeline_id", "input_settings", "vip_output_dir")

    def __init__(self, output_dir: str | os.PathLike | None = None, pipeline_id: str | None = None,
                 input_settings: dict | None = None, session_name: str | None = None,
                 verbose: bool | None = None, *, client=None, _announce: bool = True) -> None:
        self._setup(verbose, client)
        self.session_name = session_name if session_name is not None else self._default_name()
        announce = _announce and any(x is not None for x in (session_name, output_dir, pipeline_id,
                                                              input_settings))
        if announce:
            self._info(f"\n=== SESSION '{self.session_name}' ===\n")
        restored = False
        if output_dir is not None:
            restored = self._set_output_dir(output_dir, name_given=session_name)
            if restored and announce:
                self._info(f"<< Session restored from its output directory: {self._vip_backup_path}")
        self._set_given(restored, pipeline_id=pipeline_id, input_settings=input_settings)

    # ---- output_dir: the VIP results folder; setting it restores a backup kept there -------
    def _set_output_dir(self, value, name_given: str | None) -> bool:
        self.vip_output_dir = value
        data = self._saved_on_vip()
        if data is None:
            return False
        data = self._read_backup(f"{self._vip_backup_path} (on VIP)", name_given, data)
        with self._unlock():
            self._restore_common(data, name_given or data["session_name"])
        return True

    @property
    def output_dir(self) -> PurePosixPath | None:
        """The VIP folder of the results (``vip_output_dir``). Setting it restores the session
        saved there (``backup_location="vip"``)."""
        return self.vip_output_dir

    @output_dir.setter
    def output_dir(self, value) -> None:
        if value is None:
            self.vip_output_dir = None
            return
        self._set_output_dir(value, name_given=self.session_name)

    @output_dir.deleter
    def output_dir(self) -> None:
        self.vip_output_dir = None

    def _same(self, name: str, value: Any) -> bool:
        if name in ("output_dir", "vip_output_dir"):
            return PurePosixPath(str(value)) == self.vip_output_dir
        return super()._same(name, value)

    # ---- steps -------------------------------------------------------------------------------
    @vip_errors
    def launch_pipeline(self, pipeline_id: str | None = None, input_settings: dict | None = None,
                        output_dir: str | os.PathLike | None = None, nb_runs: int = 1) -> "VipLauncher":
        """Validate the settings (File inputs must be on VIP: one listing per folder), then
        launch ``nb_runs`` execution(s), adopting those this session already has on VIP."""
        self._info("\n=== LAUNCH PIPELINE ===\n")
        if pipeline_id is not None:
            self.pipeline_id = pipeline_id
        if output_dir is not None:
            self.vip_output_dir = output_dir
        if input_settings is not None:
            self.input_settings = input_settings
        if self.vip_output_dir is None:
            raise TypeError(f"Please provide an output directory (on VIP) for session: "
                            f"{self.session_name}")
        self._launch(nb_runs)
        self._info("Launch done. Monitor with monitor_workflows().")
        self._save(announce=True)
        return self

    @vip_errors
    def run_session(self, nb_runs: int = 1, refresh_time: float = 30,
                    timeout: float | None = None) -> "VipLauncher":
        """launch_pipeline -> monitor_workflows (the results stay on VIP)."""
        return self.launch_pipeline(nb_runs=nb_runs).monitor_workflows(refresh_time=refresh_time,
                                                                       timeout=timeout)

    @vip_errors
    def finish(self, timeout: float = 300, keep_input: bool = False,
               keep_output: bool = False) -> "VipLauncher":
        """Remove the session's outputs (``output_dir``) from VIP unless ``keep_output``, once no
        execution can produce data any more. The inputs are your data on VIP: never removed
        (``keep_input`` is accepted for vip-client compatibility)."""
        self._info("\n=== FINISH ===\n")
        if self._running_refuses_finish():
            return self
        removed: list[PurePosixPath] = []
        if not keep_output and self.vip_output_dir is not None:
            self._info("Removing session data\n----------------")
            if self._remove(self.vip_output_dir, time.monotonic() + float(timeout)):
                removed.append(self.vip_output_dir)
        self._info("----------------\nUpdating workflows status")
        self._mark_removed(removed)
        self._meta["finished"] = True
        self._save_after_finish(removed)
        self._report()
        return self

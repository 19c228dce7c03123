"""The study's connection to VIP: the embedded local server (`url: local`) or a VIP portal.

`StudyVip` owns the client of a job; `recover()` is what a step calls when VIP stops
answering: the embedded server is restarted (it belongs to the study), a remote VIP is given
up on with a message naming its URL (the client has already spent its retry budget).
Errors a user can fix (key, URL) become one-line `StudyError`s naming what to change.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from vip_smk.study.descriptors import descriptor_cache
from vip_smk.study.model import VipSettings
from vip_smk.study.schema import StudyConfigError

log = logging.getLogger(__name__)


class StudyError(RuntimeError):
    """A study step that cannot go on (remote failure, timeout...); one line, no traceback."""


def ensure_local_server(local_dir: Path, workers: int = 2):
    """The local server on `local_dir`, attached or started (`vip_smk.api.urls.ensure_local_server`,
    the one implementation the CLI and VipClient('local') share)."""
    from vip_smk.api.errors import InvalidInput
    from vip_smk.api.urls import ensure_local_server as ensure

    try:
        return ensure(Path(local_dir), workers)
    except InvalidInput as exc:  # the server extra is not installed
        raise StudyError(str(exc)) from None


def _new_client(url: str, *, key_env: str | None = None, key_file: Path | None = None, **kw):
    from vip_smk.core.client import VipClient

    if key_file:
        return VipClient(url, api_key_file=key_file, **kw)
    return VipClient(url, api_key_env=key_env, **kw)


class StudyVip:
    """A job's client of the study's VIP (context manager). `.client` may change after
    `recover()` (a restarted local server listens on a new port)."""

    def __init__(self, vip: VipSettings, workdir: Path, client=None, **kw):
        self.vip = vip
        self.workdir = Path(workdir)
        # the embedded server is ours: when it does not answer for 15 s, see whether it died
        budget = min(vip.retry_seconds, 15.0) if vip.is_local else vip.retry_seconds
        # vip.retry_seconds is a time: the count of retries does not cut it short
        self._kw = {"workers": vip.workers, "retries": 1_000_000, "retry_budget": budget, **kw}
        self._own = client is None
        self._server = None
        self.client = client if client is not None else self._connect()

    @property
    def url(self) -> str:
        return self.client.url if self.vip.is_local else self.vip.url

    def _local_dir(self) -> Path:
        return (self.workdir / self.vip.local_dir).resolve()

    def _connect(self):
        if self.vip.is_local:
            self._server = ensure_local_server(self._local_dir(), self.vip.local_workers)
            return _new_client(self._server.url, key_file=self._local_dir() / "apikey", **self._kw)
        env = self.vip.api_key_env
        if not os.environ.get(env, "").strip():
            raise StudyConfigError(
                f"vip.api_key_env: environment variable {env} is not set; export your VIP API key "
                f"in it (the key is never written to any file)")
        return _new_client(self.vip.url, key_env=env, **self._kw)

    def server_alive(self) -> bool:
        """For `url: local`: is the server this client talks to still running?"""
        if self._server is None:
            return True
        from vip_smk.util import pid_alive

        pid = self._server.pid
        return pid is None or pid_alive(int(pid))

    def recover(self, exc: Exception, what: str) -> None:
        """VIP did not answer (`exc`, after the client's retries). A dead embedded server is
        started again and a new client made; otherwise StudyError naming the URL."""
        if self.vip.is_local and self._own and not self.server_alive():
            self.ensure()
            return
        if self.vip.is_local:
            raise StudyError(f"{what}: the local VIP server at {self.client.url} fails ({exc}); see "
                             f"{self._local_dir() / 'server.log'}, then run again: nothing is lost") from None
        raise StudyError(f"{what}: {exc}; vip.url is {self.vip.url}: run again when VIP answers "
                         f"(nothing is lost)") from None

    def ensure(self) -> None:
        """For `url: local`: if the server died (kill -9, reboot), start it and reconnect."""
        if not self.vip.is_local or not self._own or self.server_alive():
            return
        old = self.client  # ensure_local_server says why it starts a server
        self.client = self._connect()
        with contextlib.suppress(Exception):
            old.close()

    def close(self) -> None:
        if self._own:
            self.client.close()

    def __enter__(self) -> StudyVip:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def explain(exc: Exception, vip: VipSettings, workdir: Path, what: str) -> StudyError:
    """A client error -> one line saying what to fix (the client's message names the URL and
    where the key came from; this adds the config key to change)."""
    from vip_smk.api.errors import AuthError, TransportError

    text = " ".join(str(exc).split())
    if isinstance(exc, AuthError):
        where = ("the local server's key file" if vip.is_local
                 else f"vip.api_key_env names the variable holding your key ({vip.api_key_env})")
        return StudyError(f"{what}: {text} [{where}]")
    if isinstance(exc, TransportError):
        return StudyError(f"{what}: {text} [vip.url: {vip.url}]")
    return StudyError(f"{what}: {text}")


def fetch_descriptors(vip: VipSettings, ids: list[str], workdir: Path) -> dict[str, Any]:
    """Pipeline id -> VIP JSON (None when VIP does not know it), one request per id; a
    real run records them for dry runs (`descriptor_cache`)."""
    from vip_smk.core.client import NotFound, PermissionDenied, VipError

    out: dict[str, Any] = {}
    try:
        with StudyVip(vip, workdir, retries=3) as conn:
            for pid in ids:
                try:
                    out[pid] = pipeline_record(conn.client, pid)
                except (NotFound, PermissionDenied):
                    out[pid] = None
    except VipError as exc:
        raise StudyConfigError(str(explain(exc, vip, workdir, "reading the pipelines"))) from None
    return out


def pipeline_record(client, pid: str) -> dict[str, Any]:
    """What the study keeps of a pipeline: VIP's CARMIN JSON plus, under "boutiques", its
    Boutiques descriptor (None where VIP does not serve it: the CARMIN check alone)."""
    from vip_smk import core

    return {**client.pipeline(pid).to_json(), "boutiques": core.descriptor_or_none(client, pid)}


def save_descriptors(vip: VipSettings, workdir: Path, descriptors: dict[str, Any]) -> None:
    """Record what a real run learned from VIP, for the next dry run."""
    from vip_smk.util import write_json_atomic

    path = descriptor_cache(Path(workdir), vip.url)
    known = {k: v for k, v in descriptors.items() if v is not None}
    with contextlib.suppress(OSError):
        old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        if {**old, **known} != old:
            write_json_atomic(path, {**old, **known})

"""Which VIP a URL setting means: `resolve_url`, the one rule every face calls (VipClient, the
CLI, VipSession/VipLauncher, the plugins).

- A portal URL `http(s)://host[/path]` (a trailing `/rest` or `/` dropped).
- `local`: the local VIP server (`vip-smk serve`) whose data is in `./.vip-local/` (the demo
  study's `vip.local_dir`): attached to if running, else started detached (it outlives the
  caller, so the next run finds the same data). Its API key is in `.vip-local/apikey`, the key
  default for `local` (`ResolvedUrl.key_file`).
- Unset: `$VIP_URL`, else VIP's portal.

Errors name the setting the bad value came from (`setting=`, e.g. `--url`, `vip_portal_url`,
`--storage-vip-url`; `$VIP_URL` when it came from the environment).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vip_smk.api.errors import InvalidInput

log = logging.getLogger(__name__)

DEFAULT_URL = "https://vip.creatis.insa-lyon.fr"
URL_ENV = "VIP_URL"
LOCAL = "local"
LOCAL_DIR = ".vip-local"  # the study's default vip.local_dir


@dataclass(frozen=True)
class ResolvedUrl:
    """`url`: the portal URL (no `/rest`); `key_file`: for `local`, the local server's key
    file (the key default when none is given), else None; `local_dir`: for `local`, its data."""

    url: str
    key_file: Path | None = None
    local_dir: Path | None = None

    @property
    def is_local(self) -> bool:
        return self.local_dir is not None


def resolve_url(url: str | None = None, *, setting: str = "url",
                local_dir: str | os.PathLike = LOCAL_DIR, start: bool = True) -> ResolvedUrl:
    """What `url` (None: `$VIP_URL`, else VIP's portal) means; `local` attaches to (or, with
    `start`, starts) the local VIP server of `local_dir` (relative: to the current directory).
    InvalidInput naming `setting` (or `$VIP_URL`) for a value that is neither."""
    if url is None or not str(url).strip():
        env = os.environ.get(URL_ENV, "").strip()
        url, setting = (env, f"${URL_ENV}") if env else (DEFAULT_URL, setting)
    text = str(url).strip()
    if text.lower() == LOCAL:
        srv = ensure_local_server(Path(local_dir).resolve(), start=start)
        return ResolvedUrl(srv.url.rstrip("/"), Path(srv.data_dir) / "apikey", Path(local_dir).resolve())
    text = text.rstrip("/").removesuffix("/rest")
    if not re.match(r"https?://[^/\s]+", text):
        raise InvalidInput(f"{setting} {text!r}: a VIP URL starts with http:// or https:// "
                           f"(or is '{LOCAL}': the local VIP server of ./{LOCAL_DIR})", call="url")
    return ResolvedUrl(text)


def ensure_local_server(local_dir: Path, workers: int = 2, *, start: bool = True):
    """The local server on `local_dir`: attach to the running one, else (`start`) start it
    detached (it outlives this process so that the next run resumes against the same data)."""
    try:
        from vip_smk.server import LocalServer
    except ImportError as exc:  # pragma: no cover - base install
        raise InvalidInput(f"url '{LOCAL}' needs the local VIP server: pip install 'vip-smk[server]' ({exc})",
                           call="url") from None
    from vip_smk.util import read_json

    local_dir = Path(local_dir)
    srv = LocalServer.attach(local_dir) if local_dir.is_dir() else None
    if srv is not None:
        return srv
    if not start:
        raise InvalidInput(f"url '{LOCAL}': no local VIP server is running on {local_dir} "
                           "(start one: vip-smk serve --data-dir DIR)", call="url")
    local_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(local_dir / ".start.lock"):
        srv = LocalServer.attach(local_dir)
        if srv is None:
            stale = read_json(local_dir / "server.json")  # left behind by a server that died
            if isinstance(stale, dict):
                log.warning("the local VIP server (pid %s) is gone: starting it again (data in %s)",
                            stale.get("pid"), local_dir)
            else:
                log.info("starting the local VIP server (data in %s)", local_dir)
            srv = LocalServer(local_dir, port=0, workers=workers, detach=True,
                              log_file=local_dir / "server.log")
            srv.start(timeout=60)
    return srv


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # a cross-platform OS lock (flock / msvcrt): a dead holder's is released; filelock comes
    # with the server extra, which starting a local server needs anyway
    from filelock import FileLock

    with FileLock(path, thread_local=False):
        yield


__all__ = ["DEFAULT_URL", "LOCAL", "LOCAL_DIR", "ResolvedUrl", "ensure_local_server", "resolve_url"]

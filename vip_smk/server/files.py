"""File helpers of the local VIP server: downloads, md5, removal (synchronous and VIP's
asynchronous DELETE), upload temp files."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, Response

log = logging.getLogger(__name__)

CHUNK = 1 << 20
SMALL_FILE = 256 * 1024  # bytes: below this a download is served from memory, in one go


def mkstemp(d: Path):
    return tempfile.mkstemp(prefix=".vip-upload-", dir=d)


def file_response(request: Request, local: Path, st: os.stat_result | None = None) -> Response:
    """A file download: streamed (and Range-capable) by Starlette's FileResponse; a small file
    without a Range header is read at once instead and answered with the very same headers,
    built directly: this spares the thread-pool hops and header machinery that dominate the
    cost of serving many small files."""
    st = st or local.stat()
    if st.st_size > SMALL_FILE or "range" in request.headers:
        return _streamed(local, st)
    with open(local, "rb") as fh:
        data = fh.read(SMALL_FILE + 1)
    if len(data) != st.st_size:  # changed under our feet: let the streaming path handle it
        return _streamed(local, None)
    name = local.name
    quoted = quote(name)
    if quoted != name:
        disposition = f"attachment; filename*=utf-8''{quoted}"
    else:
        disposition = f'attachment; filename="{name}"'
    etag = hashlib.md5(f"{st.st_mtime}-{st.st_size}".encode(), usedforsecurity=False).hexdigest()
    return _Bytes(data, [
        (b"content-type", b"application/octet-stream"),
        (b"accept-ranges", b"bytes"),
        (b"content-disposition", disposition.encode("latin-1")),
        (b"content-length", str(len(data)).encode()),
        (b"last-modified", formatdate(st.st_mtime, usegmt=True).encode()),
        (b"etag", f'"{etag}"'.encode()),
    ])


def _streamed(local: Path, st: os.stat_result | None) -> FileResponse:
    return FileResponse(local, stat_result=st, media_type="application/octet-stream",
                        filename=local.name, content_disposition_type="attachment")


class _Bytes(Response):
    """A 200 whose body and raw headers are given as they go on the wire (those of
    FileResponse for the same file)."""

    def __init__(self, body: bytes, raw_headers: list[tuple[bytes, bytes]]):
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = raw_headers


def md5(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - content checksum, as VIP's md5 action
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def remove(local: Path, attempts: int = 200) -> None:
    """Remove a file or a whole tree, even while something (a job collecting its outputs, an
    upload) creates entries in it: the removal starts over until the path is gone."""
    for _ in range(attempts):
        try:
            if local.is_symlink() or not local.is_dir():
                local.unlink()
            else:
                shutil.rmtree(local)
            return
        except FileNotFoundError:
            if not (local.exists() or local.is_symlink()):
                return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        time.sleep(0.005)
    raise OSError(errno.ENOTEMPTY, f"still being written into after {attempts} removals", str(local))


class Deleter:
    """VIP's asynchronous DELETE: the path goes ``delay`` seconds after the request was answered
    (204), in request order, by one background thread. ``delay == 0``: removed before the answer."""

    def __init__(self, delay: float):
        self.delay = max(0.0, float(delay))
        self.queue: queue.Queue = queue.Queue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def delete(self, local: Path) -> None:
        if not self.delay:
            remove(local)
            return
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="vip-delete", daemon=True)
                self.thread.start()
        self.queue.put((time.monotonic() + self.delay, local))

    def _run(self) -> None:
        while True:
            due, local = self.queue.get()
            if local is None:
                return
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                remove(local)
            except OSError as e:
                log.warning("asynchronous delete of %s failed: %s", local, e)

    def flush(self, timeout: float = 10.0) -> None:
        """Stop: run the deletions still pending now (a stopped server keeps its promises)."""
        with self.lock:
            thread = self.thread
            self.thread = None
        if thread is None:
            return
        self.queue.put((0.0, None))
        thread.join(timeout)

"""Streaming one file's body between a local disk and VIP: `upload`, `download`, `read_bytes`,
`write_file` (the bodies of the `ApiClient` methods of the same names, which delegate here).

- upload: one PUT streamed from the file (memory independent of its size), with progress; a
  retry re-sends from the start of the file;
- download: streamed in `DOWNLOAD_CHUNK` pieces to `NAME.part`, resumed with `Range` after a
  cut or a crash, size-checked, fsynced, renamed; the kernel is asked to write big downloads
  back as they come (`WRITEBACK`) so the final fsync does not stall; small files of known
  size are read in one go (`read_bytes` + `write_file`: the tree transfers' fast path);
- files over VIP's `maxSizeDirectTransfer` raise TooLarge before any request for content.

Each is a flow (`vip_smk.api.wire`: it yields its exchanges, reads, sleeps and fsyncs), run
by `ApiClient` blocking and by `AsyncApiClient` awaited: one copy of the rules for both. The
HTTP side (retries, budget, error decoding) is the client's `transport`. This module never
imports `vip_smk.api.client` (the client imports it): the VIP path comes checked and quoted
from the client's methods.
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from vip_smk.api import calls
from vip_smk.api.errors import InvalidInput, ServerError, TransportError
from vip_smk.api.wire import Blocking, Close, Read, Send, Sleep
from vip_smk.rules import clean_name as vip_clean_name

if TYPE_CHECKING:  # annotations only: the client imports this module, never the reverse
    from vip_smk.api.calls import ClientCore as ApiClient
    from vip_smk.api.calls import Flow
    from vip_smk.api.wire import AnyReply as HttpReply

CHUNK = 1 << 20  # 1 MiB: file read size
DOWNLOAD_CHUNK = 1 << 18  # 256 KiB
WRITEBACK = 32 << 20  # start writing a download to disk every 32 MiB (cheap final fsync)


def _start_writeback(fh, start: int, end: int) -> int:
    """Ask the kernel to start writing [start, end) to disk now (asynchronously) so that the
    final fsync of a big download does not stall on gigabytes of dirty pages; also keeps
    the page cache from filling with it. Returns the new flushed offset."""
    fh.flush()
    try:
        os.posix_fadvise(fh.fileno(), start, end - start, os.POSIX_FADV_DONTNEED)
    except (AttributeError, OSError):
        pass
    return end


class _ReadCounter:
    """A file-like body that reports the bytes read by the HTTP layer (upload progress).
    `seek(0)` starts it again (a redirect sends the body anew): `restart()` takes the bytes
    reported back and gives a fresh hash."""

    def __init__(self, fh, size: int, callback: Callable[[int], None] | None, digest: Any = None,
                 restart: Callable[[], Any] | None = None):
        self._fh = fh
        self._size = size
        self._cb = callback
        self._digest = digest  # an incremental hash fed the bytes read (one read for both)
        self._restart = restart
        self.sent = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self):  # (requests sends, and rewinds for a redirect, what it can iterate)
        return iter(lambda: self.read(CHUNK), b"")

    def tell(self) -> int:
        return self.sent

    def seek(self, offset: int, whence: int = 0) -> int:
        if (offset, whence) != (0, 0):
            raise io.UnsupportedOperation("an upload body starts again from 0 only")
        self._fh.seek(0)
        self.sent = 0
        if self._restart is not None:
            self._digest = self._restart()
        return 0

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n if n and n > 0 else CHUNK)
        if data:
            self.sent += len(data)
            if self._digest is not None:
                self._digest.update(data)
            if self._cb:
                self._cb(len(data))
        return data


def upload(
    client: ApiClient,
    local: str | os.PathLike,
    p: str,
    endpoint: str,
    *,
    progress: Callable[[int], None] | None = None,
    hasher: Callable[[], Any] | None = None,
) -> Flow[str | None]:
    """`ApiClient.upload`: stream a local file to the VIP path `p` (checked; `endpoint`: its
    quoted `path/...`) with one PUT (application/octet-stream). A retry re-sends from the
    start of the file. `progress(n)` is called with the bytes sent (negative on a restart).

    `hasher`: a factory of incremental hashes (e.g. `vip_smk.core.content.hasher`) fed the
    bytes as they are read for the upload (no second read of the file); the hex digest of the
    bytes sent is returned (a retry starts a fresh hash). None without `hasher`."""
    local = Path(local)
    try:
        st = local.stat()
    except OSError as exc:
        raise client._error(InvalidInput, f"cannot read {local}: {exc.strerror}", call="upload", target=p) from None
    if not stat.S_ISREG(st.st_mode):
        raise client._error(InvalidInput, f"{local} is not a file", call="upload", target=p)
    size = st.st_size
    if size == 0:
        raise client._error(
            InvalidInput, f"{local} is empty (VIP turns an empty upload into a directory)",
            call="upload", target=p,
        )
    name = PurePosixPath(p).name
    if vip_clean_name(name) != name:
        raise client._error(
            InvalidInput, f"VIP would rename {name!r} to {vip_clean_name(name)!r}",
            call="upload", target=p,
        )
    state: dict[str, Any] = {"sent": 0, "digest": None}

    def restart():
        if state["sent"] and progress:
            progress(-state["sent"])
        state["sent"] = 0
        state["digest"] = hasher() if hasher is not None else None
        return state["digest"]

    def body():
        restart()

        def cb(n):
            state["sent"] += n
            if progress:
                progress(n)

        try:
            fh = open(local, "rb")
        except OSError as exc:
            raise client._error(InvalidInput, f"cannot read {local}: {exc.strerror}", call="upload", target=p) from None
        reader = _ReadCounter(fh, size, cb, state["digest"], restart)
        reader.close = fh.close  # type: ignore[attr-defined]
        return reader

    yield calls.Http("PUT", endpoint, {"call": "upload", "target": p, "body_factory": body,
                                       "headers": {"Content-Type": "application/octet-stream"}}, "none")
    client.transport.count(sent=size)
    return state["digest"].hexdigest() if state["digest"] is not None else None


def download(
    client: ApiClient,
    p: str,
    endpoint: str,
    local: str | os.PathLike,
    *,
    size: int | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Flow[Path]:
    """`ApiClient.download`: stream the VIP path `p` (checked; `endpoint`: its quoted
    `path/...`) to `local` through `local.part` (Range-resumed if present), check the size,
    fsync, rename. Returns the local path. `size` = expected size if known (saves a request).
    A file over VIP's direct-transfer limit raises TooLarge before any request for its
    content."""
    yield from calls.check_download_size(client, p, size)
    local = Path(local)
    part = local.with_name(local.name + ".part")
    tr = client.transport
    budget = tr.budget()
    while True:
        got = 0
        try:
            try:
                offset = part.stat().st_size if resume else 0
            except FileNotFoundError:
                offset = 0
            if size is not None and offset > size:
                offset = 0
            if size is not None and offset == size and size > 0:
                finish_part(part, local, size, p)
                return local
            # identity: sizes and Range offsets are those of the file itself
            headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            # a small file of known size is read in one go (less work per file), others stream
            whole = size is not None and size <= DOWNLOAD_CHUNK and not offset
            tr.count(requests_=1)
            resp = yield Send("GET", endpoint, params={"action": "content"}, headers=headers, stream=not whole)
            try:
                if resp.status_code == 416 and offset:
                    part.unlink(missing_ok=True)  # our .part is stale: start again
                    continue
                if resp.status_code not in (200, 206):
                    yield Read(resp, 0)  # the (small) error body
                    err = tr.decode_error(resp, "download", p)
                    raise err or client._error(ServerError, f"HTTP {resp.status_code}", call="download",
                                             target=p, status=resp.status_code)
                ctype = resp.headers.get("Content-Type", "")
                if resp.status_code == 200 and ctype.startswith("application/json"):
                    # a VIP error delivered with 200, or a JSON file: decide by the body shape
                    data = yield Read(resp, 0)
                    err = tr.decode_error(resp, "download", p)
                    if err is not None:
                        raise err
                    pieces: list[bytes] | None = [data]
                elif whole:
                    pieces = [resp.content]
                else:
                    pieces = None  # streamed, 256 KiB at a time: a cut loses at most one (Range-resumed)
                total = total_size(resp, offset)
                if resp.status_code == 200:
                    offset = 0
                expected = size if size is not None else total
                mode = "r+b" if offset else "wb"
                try:
                    fh = open(part, mode)
                except FileNotFoundError:  # (one syscall less per file when it exists)
                    local.parent.mkdir(parents=True, exist_ok=True)
                    fh = open(part, mode)
                with fh:
                    if offset:
                        fh.seek(offset)
                        fh.truncate()
                    flushed = offset
                    while True:
                        if pieces is None:
                            chunk = yield Read(resp, DOWNLOAD_CHUNK)
                        else:
                            chunk = pieces.pop() if pieces else b""
                        if not chunk:
                            break
                        fh.write(chunk)
                        got += len(chunk)
                        if progress:
                            progress(len(chunk))
                        if offset + got - flushed >= WRITEBACK:
                            flushed = _start_writeback(fh, flushed, offset + got)
                    fh.flush()
                    yield Blocking(os.fsync, (fh.fileno(),))
                    have = fh.tell()
                tr.count(received=got)
            finally:
                yield Close(resp)
            if expected is None:
                expected = (yield from calls.properties(client, p)).size
            if expected is not None and have != expected:
                if have > expected:
                    part.unlink(missing_ok=True)
                raise client._error(
                    TransportError, f"got {have} bytes, expected {expected}", call="download", target=p
                )
            finish_part(part, local, have, p)
            return local
        except Exception as exc:
            yield Sleep(tr.retry_delay(tr.classify(exc, "download", p), budget))


def read_bytes(client: ApiClient, p: str, endpoint: str, *, size: int | None = None) -> Flow[bytes]:
    """`ApiClient.read_bytes`: the content of the (small) file `p` (checked; `endpoint`: its
    quoted `path/...`), in memory: one GET, retried, size-checked (`size`: the expected size
    if known). TooLarge over VIP's direct-transfer limit."""
    yield from calls.check_download_size(client, p, size)
    tr = client.transport
    budget = tr.budget()
    while True:
        try:
            tr.count(requests_=1)
            resp = yield Send("GET", endpoint, params={"action": "content"},
                              headers={"Accept": "*/*", "Accept-Encoding": "identity"})
            data = resp.content
            err = tr.decode_error(resp, "download", p)
            if err is not None:
                raise err
            tr.count(received=len(data))
            expected = size if size is not None else total_size(resp, 0)
            if expected is not None and len(data) != expected:
                raise client._error(TransportError, f"got {len(data)} bytes, expected {expected}",
                                    call="download", target=p)
            return data
        except Exception as exc:
            yield Sleep(tr.retry_delay(tr.classify(exc, "download", p), budget))


def write_file(local: str | os.PathLike, data: bytes, vip_path: str = "") -> Path:
    """Write downloaded bytes as `download` does: through `local.part`, fsynced, renamed
    (parents created)."""
    local = Path(local)
    part = f"{local}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(part, flags, 0o666)
    except FileNotFoundError:
        local.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(part, flags, 0o666)
    try:  # (os calls: half the system calls of a buffered file, for many small files)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    finish_part(Path(part), local, len(data), vip_path or str(local))
    return local


def total_size(resp: HttpReply, offset: int) -> int | None:
    """The file's full size from a reply (Content-Range of a 206, else Content-Length of an
    unencoded body), None if the reply does not tell."""
    if resp.status_code == 206:
        m = re.search(r"/(\d+)\s*$", resp.headers.get("Content-Range", ""))
        if m:
            return int(m.group(1))
    length = resp.headers.get("Content-Length")
    if length and length.isdigit() and "Content-Encoding" not in resp.headers:
        return int(length) + (offset if resp.status_code == 206 else 0)
    return None


def finish_part(part: Path, local: Path, size: int, p: str) -> None:
    """Rename a complete, fsynced `.part` to `local` (InvalidInput if `local` is a directory)."""
    # The data was fsynced before: if the rename is lost in a power cut, the complete
    # `.part` is found and finalised on the next run (no directory fsync per file).
    try:
        os.replace(part, local)
    except IsADirectoryError:
        raise InvalidInput(f"download {p}: {local} is a directory", call="download", target=p) from None

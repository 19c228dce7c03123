"""The local VIP's `path/...` routes (GET, PUT, DELETE: VIP's data API, vip-api.md §3), as a
part of the `Api` class of `vip_smk.server.app` (which owns auth, the store and the config)."""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from vip_smk.server.files import CHUNK, Deleter, file_response, md5, mkstemp
from vip_smk.server.store import ApiError, Store, User, clean_name, forbidden, not_found

if TYPE_CHECKING:
    from vip_smk.server.app import Config

log = logging.getLogger("vip_smk.server.app")


class PathRoutes:
    """`GET/PUT/DELETE /rest/path/{path}`: listing, reading, md5, upload (raw or CARMIN JSON,
    base64, zip), mkdir, delete."""

    store: Store
    config: Config
    tmp_dir: Path
    deleter: Deleter

    if TYPE_CHECKING:
        def dated(self, props: dict) -> dict: ...
        def auth(self, request: Request) -> User: ...
        def props(self, user: User, res, **kw) -> dict: ...
        async def storage_delay(self) -> None: ...

    def _vip_path(self, request: Request) -> str:
        return "/" + request.path_params.get("path", "")

    def _writable_target(self, request: Request):
        """(user, VIP path, Resolved) of a PUT/DELETE target; /vip, /vip/Home and /vip/Trash
        themselves are never written or deleted."""
        user = self.auth(request)
        vip = self._vip_path(request)
        res = self.store.resolve(user.name, vip)
        if res.local is None or res.local.parent == res.user_root:
            raise forbidden(vip)
        return user, vip, res

    async def path_get(self, request: Request):
        user = self.auth(request)
        vip = self._vip_path(request)
        action = request.query_params.get("action")
        if action is None:
            raise ApiError(8000, "Missing 'action' query parameter (exists, list, properties, content, md5)")
        if action == "exists":
            try:
                res = self.store.resolve(user.name, vip)
            except ApiError as e:
                if e.code == 8013:
                    raise
                return JSONResponse({"exists": False})
            try:
                ok = res.local is None or res.local.exists()
            except OSError:  # e.g. a name too long to exist
                ok = False
            return JSONResponse({"exists": bool(ok)})
        res = self.store.resolve(user.name, vip)
        if res.local is not None and not res.local.exists():
            raise not_found(vip)
        if action == "properties":
            return JSONResponse(self.props(user, res))
        if action == "list":
            if res.local is not None and not res.local.is_dir():
                raise ApiError(8000, f"The path '{vip}' is not a directory")
            listing = await run_in_threadpool(self.store.listing, user.name, res)
            return JSONResponse([self.dated(p) for p in listing])
        if action == "md5" and not self.config.md5:
            raise ApiError(8001, "Not implemented: action=md5 is not available on VIP")
        if action in ("content", "md5"):
            if res.local is None or res.local.is_dir():
                raise ApiError(8000, f"The path '{vip}' is a directory: only files can be downloaded")
            if action == "md5":
                return JSONResponse({"md5": await run_in_threadpool(md5, res.local)})
            st = res.local.stat()
            limit = self.config.max_download_size
            if limit is not None and st.st_size > limit:
                raise ApiError(8000, f"The file '{vip}' ({st.st_size} bytes) is too big to be "
                               f"downloaded through the API: the limit (maxSizeDirectTransfer) "
                               f"is {limit} bytes")
            await self.storage_delay()
            return file_response(request, res.local, st)
        raise ApiError(8000, f"Unknown action '{action}' (exists, list, properties, content, md5)")

    async def path_put(self, request: Request):
        user, vip, res = self._writable_target(request)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        length = request.headers.get("content-length")
        chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
        if ctype == "application/carmin+json":
            return await self._put_carmin(request, user, vip, res)
        if (length is None and not chunked) or length == "0":
            return self._mkdir(user, vip, res)
        return await self._put_raw(request, user, vip, res)

    def _mkdir(self, user: User, vip: str, res):
        local = res.local
        if local.is_dir():
            return JSONResponse(self.props(user, res), status_code=201)
        if local.exists():
            raise ApiError(8000, f"Cannot create directory '{vip}': a file has that name")
        if not local.parent.is_dir():
            raise ApiError(8000, f"Cannot create directory '{vip}': the parent directory does not exist")
        local.mkdir()
        return JSONResponse(self.props(user, res), status_code=201)

    def _upload_target(self, user: User, vip: str, res):
        """Clean the file name as VIP does and check the target; returns (vip, Resolved)."""
        name = clean_name(res.local.name)
        if not name or name in (".", ".."):
            raise ApiError(8000, f"Invalid file name in '{vip}'")
        if name != res.local.name:
            res = self.store.resolve(user.name, res.vip.rsplit("/", 1)[0] + "/" + name)
        if res.local.is_dir():
            raise ApiError(8000, f"Cannot upload to '{res.vip}': it is a directory")
        parent = res.local.parent
        p = parent
        while p != res.user_root and not p.exists():
            p = p.parent
        if p.exists() and not p.is_dir():
            raise ApiError(8000, f"Cannot upload to '{res.vip}': '{self.store.to_vip(user.name, p)}' is a file")
        parent.mkdir(parents=True, exist_ok=True)
        self.store.check_inside(parent, res.user_root, res.vip)
        return res

    async def _put_raw(self, request: Request, user: User, vip: str, res):
        if request.headers.get("content-length"):
            # a known, non-empty upload: check the target before receiving any byte (with
            # "Expect: 100-continue" the client does not even send the body)
            res = self._upload_target(user, vip, res)
        fd, tmp_name = mkstemp(self.tmp_dir)
        tmp = Path(tmp_name)
        total = 0
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:
                buf = bytearray()
                async for chunk in request.stream():
                    if not chunk:
                        continue
                    buf += chunk
                    total += len(chunk)
                    if len(buf) >= CHUNK:
                        f.write(buf)
                        buf.clear()
                if buf:
                    f.write(buf)
            if total == 0:
                tmp.unlink(missing_ok=True)
                return self._mkdir(user, vip, res)
            res = self._upload_target(user, vip, res)
            os.replace(tmp, res.local)
            await self.storage_delay()
        except ClientDisconnect:
            tmp.unlink(missing_ok=True)
            log.info("upload of %s interrupted by the client after %d bytes", vip, total)
            return Response(status_code=400)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return JSONResponse(self.props(user, res), status_code=201)

    async def _put_carmin(self, request: Request, user: User, vip: str, res):
        try:
            body = json.loads(await request.body())
            kind = body.get("type", "File")
            data = base64.b64decode(body["base64Content"], validate=True)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise ApiError(8000, "Invalid application/carmin+json upload: expected "
                           '{"type": "File"|"Archive", "base64Content": "<base64>"}')
        if kind == "Archive":
            if not self.config.archive_uploads:
                raise ApiError(8000, "An error has been encountered on the VIP API: archive "
                               "upload not supported yet (upload the files one by one)")
            await self.storage_delay()
            return await run_in_threadpool(self._unzip, user, vip, res, data)
        if kind != "File":
            raise ApiError(8000, f"Unknown upload type '{kind}' (File or Archive)")
        res = self._upload_target(user, vip, res)
        fd, tmp_name = mkstemp(self.tmp_dir)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp_name, res.local)
        await self.storage_delay()
        return JSONResponse(self.props(user, res), status_code=201)

    def _unzip(self, user: User, vip: str, res, data: bytes):
        """Archive upload: the zip is extracted into the directory ``vip`` (created)."""
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile:
            raise ApiError(8000, "Invalid Archive upload: not a zip file")
        if res.local.exists() and not res.local.is_dir():
            raise ApiError(8000, f"Cannot extract into '{vip}': it is a file")
        res.local.mkdir(parents=True, exist_ok=True)
        with zf:
            for info in zf.infolist():
                target = self.store.resolve(user.name, res.vip + "/" + info.filename)
                if target.local is None:  # an entry naming the root itself ("../..")
                    raise ApiError(8000, f"Invalid Archive upload: entry {info.filename!r} leaves '{vip}'")
                if info.is_dir():
                    target.local.mkdir(parents=True, exist_ok=True)
                    continue
                target.local.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target.local, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
        return JSONResponse(self.props(user, res), status_code=201)

    async def path_delete(self, request: Request):
        user, vip, res = self._writable_target(request)
        if not (res.local.exists() or res.local.is_symlink()):
            raise not_found(vip)
        # as on VIP: answered at once, the removal follows (the path may exist a little longer)
        await run_in_threadpool(self.deleter.delete, res.local)
        return Response(status_code=204)

"""Routes of the local VIP server (Starlette ASGI app, API under ``/rest``)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from vip_smk.server.engine import Engine
from vip_smk.server.errors import GENERIC, error_list, json_body, not_valid, unreadable
from vip_smk.server.files import Deleter, remove
from vip_smk.server.inputs import NAME_RE, expand_jobs, validate_inputs
from vip_smk.server.paths import PathRoutes
from vip_smk.server.pipelines import Pipeline
from vip_smk.server.store import ACTIVE, ROOT, ApiError, Store, User, forbidden

log = logging.getLogger(__name__)

AUTH_HEADER = "apikey"

#: /rest routes VIP serves without an API key (RestApiSecurityConfig: permitAll); every other
#: /rest/** request is authenticated before routing, so an unknown route answers 401 to a
#: missing or bad key and 404 only to a good one
PUBLIC_ROUTES = frozenset({"/rest/platform", "/rest/authenticate", "/rest/session",
                           "/rest/publications", "/rest/reset-password", "/rest/register"})


@dataclass
class Config:
    """What the server does where VIP is strict; the defaults are VIP's behaviour, each kinder
    mode is an option (see ``vip-smk serve --help``)."""

    max_running: int | None = None
    list_limit: int = 500               # GET executions: the newest N (defaultLimitListExecutions)
    max_download_size: int | None = None  # bytes; larger downloads refused (maxSizeDirectTransfer)
    md5: bool = False                   # action=md5 answered (VIP: 8001 not implemented)
    archive_uploads: bool = False       # "Archive" uploads extracted (VIP: refused)
    results_location: bool = False      # executions' resultsLocation filled (VIP 4.6: null)
    null_dates: float = 0.0             # share of files whose lastModificationDate is null
    seed: int | None = None             # makes the null_dates choice reproducible
    storage_delay_ms: float = 0.0       # per-file grid transfer time on uploads and downloads
    delete_delay_ms: float = 100.0      # DELETE completes this long after its 204 (0 = before)
    boutiques_format: bool = True       # False: an older portal, ?format=boutiques ignored


def error_response(code: int, message: str, status: int = 400) -> JSONResponse:
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = f"header; header-name={AUTH_HEADER}"
    return JSONResponse({"errorCode": code, "errorMessage": message}, status_code=status,
                        headers=headers)


def platform_json(config: Config) -> dict:
    return {
        "platformName": "VIP",
        "platformDescription": "Local VIP server emulator (vip-smk serve): runs Boutiques apps on this machine",
        # lower-case SupportedTransferProtocol values, Module labels (VIP-portal 4.6 enums)
        "supportedTransferProtocols": ["https", "http"],
        "supportedModules": ["Processing", "Data"],
        "defaultLimitListExecutions": config.list_limit,
        "unsupportedMethods": ["playExecution"],
        "supportedAPIVersion": "0.3",
        "email": "vip-smk@localhost",
        "APIErrorCodesAndMessages": error_list(),
        "maxSizeDirectTransfer": config.max_download_size,
        "oidcLoginProviders": [],
    }


class Api(PathRoutes):
    def __init__(self, store: Store, engine: Engine, pipelines: dict[str, Pipeline], config: Config):
        self.store = store
        self.engine = engine
        self.pipelines = pipelines
        self.config = config
        self.tmp_dir = store.data_dir / "tmp"
        self.tmp_dir.mkdir(exist_ok=True)
        for leftover in self.tmp_dir.iterdir():  # partial uploads of a previous run
            leftover.unlink(missing_ok=True)
        self.launch_lock = threading.Lock()
        self.deleter = Deleter(config.delete_delay_ms / 1000.0)

    # ------------------------------------------------------------ helpers
    def auth(self, request: Request) -> User:
        key = request.headers.get(AUTH_HEADER)
        if key is None or key == "":
            raise ApiError(8003, "Insufficient authentication: send your API key in the "
                           f"'{AUTH_HEADER}' header", 401)
        user = self.store.user_by_key(key)
        if user is None:
            raise ApiError(8002, "Bad credentials", 401)
        return user

    def dated(self, props: dict) -> dict:
        """``--null-dates P``: a share P of files (chosen by path and seed) has a null
        lastModificationDate, as VIP sometimes answers."""
        share = self.config.null_dates
        if share and props.get("exists") and not props.get("isDirectory"):
            h = hashlib.sha256(f"{self.config.seed}:{props['path']}".encode()).digest()
            if int.from_bytes(h[:8], "big") / 2.0 ** 64 < share:
                props["lastModificationDate"] = None
        return props

    def props(self, user: User, res, **kw) -> dict:
        return self.dated(self.store.properties(user.name, res, **kw))

    async def storage_delay(self) -> None:
        """``--storage-delay MS``: VIP moves every uploaded or downloaded file to / from grid
        storage while the request waits."""
        if self.config.storage_delay_ms:
            await asyncio.sleep(self.config.storage_delay_ms / 1000.0)

    # ------------------------------------------------------------ platform, auth
    async def platform(self, request: Request):
        if request.headers.get(AUTH_HEADER):
            self.auth(request)  # a bad key is refused (8002), as VIP's filter does
        return JSONResponse(platform_json(self.config))

    async def authenticate(self, request: Request):
        # VIP-portal 4.6 (AuthenticationControllerIT): a body Spring cannot read is 8000, a
        # missing field 8009 (bean validation), wrong credentials 8002 BAD_CREDENTIALS (401)
        body = await json_body(request)
        for field in ("username", "password"):
            if body.get(field) is None:
                raise not_valid(field)
        user = self.store.user_by_name(str(body["username"]))
        if user is None or user.password is None or user.password != body["password"]:
            raise ApiError(8002, "Bad credentials", 401)
        return JSONResponse({"httpHeader": AUTH_HEADER, "httpHeaderValue": user.apikey})

    # ------------------------------------------------------------ pipelines
    async def list_pipelines(self, request: Request):
        self.auth(request)
        pid = request.query_params.get("pipelineId")
        if pid is not None:  # VIP: GET pipelines?pipelineId=ID is GET pipelines/ID
            return JSONResponse(self.pipeline(pid).to_json())
        return JSONResponse([p.to_json(with_parameters=False) for p in self.pipelines.values()])

    async def get_pipeline(self, request: Request):
        self.auth(request)
        pid = request.path_params["pid"].strip("/")
        if not pid:  # GET pipelines/ (the trailing slash VIP keeps for Shanoir) lists them
            return await self.list_pipelines(request)
        pipeline = self.pipeline(pid)
        if request.query_params.get("format") == "boutiques" and self.config.boutiques_format:
            # VIP-portal 4.6 (PipelineController.getBoutiquesDescriptor): the whole descriptor,
            # for "name/version" as one (%2F) or two path segments
            return JSONResponse(pipeline.descriptor)
        return JSONResponse(pipeline.to_json())

    def pipeline(self, pid) -> Pipeline:
        if not isinstance(pid, str) or "/" not in pid:
            raise ApiError(8005, f"The {pid} pipeline identifier is not valid (expected name/version)")
        p = self.pipelines.get(pid)
        if p is None:
            raise ApiError(8007, f"The {pid} pipeline does not exists or cannot be used")
        return p

    # ------------------------------------------------------------ executions
    def execution_json(self, ex: dict) -> dict:
        jobs = {
            str(j["idx"]): {"status": j["status"], "exitCode": j["exit_code"],
                            "exitMessage": j["exit_message"]}
            for j in self.store.jobs(ex["id"])
        }
        return {
            "identifier": ex["id"],
            "name": ex["name"],
            "pipelineIdentifier": ex["pipeline"],
            "timeout": 0,
            "status": ex["status"],
            "inputValues": ex["input_values"],
            "returnedFiles": ex["returned_files"] if ex["status"] not in ACTIVE else None,
            "studyIdentifier": None,
            "errorCode": ex["error_code"],
            "startDate": ex["start_ms"],
            "endDate": ex["end_ms"],
            # VIP 4.6: "results location (not available in VIP yet)": null unless asked
            "resultsLocation": ex["results_location"] if self.config.results_location else None,
            "jobs": jobs,
        }

    def _reserve_folder(self, user: User, rl, start: float) -> Path:
        """Create ``dd-mm-yyyy_HH:MM:SS`` under the results location: a name no execution ever
        had there (the store remembers them all, deleted or not) and no existing folder has; if
        the second is taken, the next free second (the name keeps VIP's format)."""
        t = int(start)
        while True:
            name = time.strftime("%d-%m-%Y_%H:%M:%S", time.localtime(t))
            folder = rl.local / name
            if self.store.reserve_folder(user.name, f"{rl.vip}/{name}"):
                try:
                    folder.mkdir()
                    return folder
                except FileExistsError:
                    pass
            t += 1

    def own_execution(self, user: User, eid: str) -> dict:
        ex = self.store.execution(eid)
        if ex is None or ex["user"] != user.name:
            # VIP-portal 4.6 checks access first (checkIfUserCanAccessExecution): an unknown
            # id, or another user's, is a plain 8000 there (ExecutionControllerIT), not 8015
            # and its message is the generic one alone: nothing says "does not exist"
            raise ApiError(8000, GENERIC)
        return ex

    async def list_executions(self, request: Request):
        user = self.auth(request)
        newest = self.store.executions(user.name, limit=self.config.list_limit)
        return JSONResponse([self.execution_json(e) for e in newest])

    async def count_executions(self, request: Request):
        user = self.auth(request)
        return PlainTextResponse(str(len(self.store.executions(user.name))))

    async def get_execution(self, request: Request):
        user = self.auth(request)
        return JSONResponse(self.execution_json(self.own_execution(user, request.path_params["eid"])))

    async def results(self, request: Request):
        user = self.auth(request)
        ex = self.own_execution(user, request.path_params["eid"])
        out = []
        for paths in (ex["returned_files"] or {}).values():
            for p in paths:
                try:
                    res = self.store.resolve(user.name, p)
                except ApiError:
                    continue
                out.append(self.props(user, res, execution_id=ex["id"]))
        return JSONResponse(out)

    async def stdout(self, request: Request):
        user = self.auth(request)
        ex = self.own_execution(user, request.path_params["eid"])
        return PlainTextResponse(await run_in_threadpool(self.engine.log_text, ex["id"], "stdout"))

    async def stderr(self, request: Request):
        user = self.auth(request)
        ex = self.own_execution(user, request.path_params["eid"])
        return PlainTextResponse(await run_in_threadpool(self.engine.log_text, ex["id"], "stderr"))

    async def kill(self, request: Request):
        user = self.auth(request)
        ex = self.own_execution(user, request.path_params["eid"])
        if ex["status"] == "Killed":
            return Response(status_code=204)
        if ex["status"] not in ACTIVE:
            raise ApiError(8000, f"Execution {ex['id']} is not running (status {ex['status']})")
        await run_in_threadpool(self.engine.kill, ex["id"])
        return Response(status_code=204)

    async def play(self, request: Request):
        self.auth(request)  # VIP throws before looking the execution up
        raise ApiError(8001, "The playExecution method is not implemented in the VIP API")

    async def update_execution(self, request: Request):
        """PUT /executions/{id}: VIP reads a whole Execution (name, pipelineIdentifier and
        inputValues not null, else 8009), checks access, then changes only the name; the reply
        is the updated execution (ExecutionControllerIT.shouldUpdateExecution1)."""
        user = self.auth(request)
        body = await json_body(request)
        for field in ("name", "pipelineIdentifier", "inputValues"):
            if body.get(field) is None:
                raise not_valid(field)
        ex = self.own_execution(user, request.path_params["eid"])
        timeout = body.get("timeout") or 0
        if not isinstance(timeout, (int, float)) or timeout > 0:
            raise ApiError(8000, f"{GENERIC}: update of execution timeout is not supported")
        name = body["name"]
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ApiError(8019, f"The execution name is not valid : Cause {name!r}: use letters, "
                           "digits, '-', '_' and spaces")
        self.store.update_execution(ex["id"], name=name)
        return JSONResponse(self.execution_json(self.own_execution(user, ex["id"])))

    async def delete_put(self, request: Request):
        user = self.auth(request)
        ex = self.own_execution(user, request.path_params["eid"])
        delete_files = False
        raw = await request.body()
        if raw.strip():
            try:
                delete_files = bool(json.loads(raw).get("deleteFiles", False))
            except (ValueError, AttributeError):
                raise ApiError(8000, 'Invalid body: expected JSON {"deleteFiles": true|false}')
        await run_in_threadpool(self._delete_execution, user, ex, delete_files)
        return Response(status_code=204)

    async def delete_execution(self, request: Request):
        user = self.auth(request)
        ex = self.own_execution(user, request.path_params["eid"])
        delete_files = request.query_params.get("deleteFiles", "false").lower() == "true"
        await run_in_threadpool(self._delete_execution, user, ex, delete_files)
        return Response(status_code=204)

    def _delete_execution(self, user: User, ex: dict, delete_files: bool) -> None:
        if ex["status"] in ACTIVE:
            self.engine.kill(ex["id"])
        if delete_files:
            try:
                res = self.store.resolve(user.name, ex["results_dir"])
                if res.local is not None and res.local.exists():
                    remove(res.local)
            except ApiError:
                pass
        self.store.delete_execution(ex["id"])
        self.engine.forget(ex["id"])

    async def launch(self, request: Request):
        user = self.auth(request)
        body = await json_body(request)
        return await run_in_threadpool(self._launch, user, body)

    def _launch(self, user: User, body: dict):
        # VIP validates the Execution bean first: a missing (null) required field is 8009
        for field in ("name", "pipelineIdentifier", "inputValues"):
            if body.get(field) is None:
                raise not_valid(field)
        pid = body.get("pipelineIdentifier")
        pipeline = self.pipeline(pid)
        name = body.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ApiError(8019, f"Invalid execution name {name!r}: use letters, digits, '-', '_' and spaces")
        values = body.get("inputValues") or {}
        if not isinstance(values, dict):
            raise unreadable("inputValues must be a JSON object {parameter: value}")
        invocation_lists = validate_inputs(self.store, user.name, pipeline, values)
        combos = expand_jobs(pipeline, invocation_lists)
        results_location = body.get("resultsLocation") or f"{ROOT}/Home"
        if not isinstance(results_location, str):
            raise ApiError(8020, "resultsLocation must be a VIP path")
        rl = self.store.resolve(user.name, results_location)
        if rl.local is None:
            raise forbidden(results_location)
        if rl.local.exists() and not rl.local.is_dir():
            raise ApiError(8020, f"resultsLocation '{results_location}' is a file")
        # the whole check-capacity + insert is atomic
        with self.launch_lock:
            if self.config.max_running is not None and \
                    self.store.count_active(user.name) >= self.config.max_running:
                raise ApiError(2001, f"Max number of running executions reached "
                               f"({self.config.max_running}) for user {user.name}: wait until "
                               "one is over")
            rl.local.mkdir(parents=True, exist_ok=True)
            start = time.time()
            folder = self._reserve_folder(user, rl, start)
            eid = self.store.new_execution_id()
            ex = {
                "id": eid, "user": user.name, "name": name, "pipeline": pipeline.identifier,
                "status": "Ready", "input_values": values, "results_location": rl.vip,
                "results_dir": f"{rl.vip}/{folder.name}", "start_ms": int(start * 1000),
            }
            self.store.insert_execution(ex, [{"idx": i + 1, "invocation": inv} for i, inv in enumerate(combos)])
        log.info("execution %s of %s by %s: %d job(s)", eid, pipeline.identifier, user.name, len(combos))
        self.engine.submit(eid)
        created = self.store.execution(eid)
        assert created is not None  # inserted above, under the launch lock
        return JSONResponse(self.execution_json(created))


def build_app(store: Store, engine: Engine, pipelines: dict[str, Pipeline], config: Config) -> Starlette:
    api = Api(store, engine, pipelines, config)
    routes = [
        Route("/rest/platform", api.platform, methods=["GET", "PUT"]),
        Route("/rest/authenticate", api.authenticate, methods=["POST"]),
        Route("/rest/pipelines", api.list_pipelines, methods=["GET"]),
        Route("/rest/pipelines/{pid:path}", api.get_pipeline, methods=["GET"]),
        Route("/rest/path/{path:path}", api.path_get, methods=["GET"]),
        Route("/rest/path/{path:path}", api.path_put, methods=["PUT"]),
        Route("/rest/path/{path:path}", api.path_delete, methods=["DELETE"]),
        Route("/rest/executions", api.list_executions, methods=["GET"]),
        Route("/rest/executions", api.launch, methods=["POST"]),
        Route("/rest/executions/count", api.count_executions, methods=["GET"]),
        Route("/rest/executions/{eid}", api.get_execution, methods=["GET"]),
        Route("/rest/executions/{eid}", api.delete_execution, methods=["DELETE"]),
        Route("/rest/executions/{eid}", api.update_execution, methods=["PUT"]),
        Route("/rest/executions/{eid}/play", api.play, methods=["PUT"]),
        Route("/rest/executions/{eid}/results", api.results, methods=["GET"]),
        Route("/rest/executions/{eid}/stdout", api.stdout, methods=["GET"]),
        Route("/rest/executions/{eid}/stderr", api.stderr, methods=["GET"]),
        Route("/rest/executions/{eid}/kill", api.kill, methods=["PUT"]),
        Route("/rest/executions/{eid}/delete", api.delete_put, methods=["PUT"]),
    ]

    async def on_api_error(request, exc: ApiError):
        return error_response(exc.code, exc.message, exc.status)

    async def on_http_error(request, exc: HTTPException):
        path = request.url.path
        if (path == "/rest" or path.startswith("/rest/")) and path.rstrip("/") not in PUBLIC_ROUTES:
            try:  # VIP's security filter runs before routing (SpringAuthenticationIT)
                api.auth(request)
            except ApiError as e:
                return error_response(e.code, e.message, e.status)
        if exc.status_code == 404:
            return error_response(8000, f"No such endpoint: {request.method} {request.url.path}", 404)
        if exc.status_code == 405:
            return error_response(8001, f"Method {request.method} not supported on {request.url.path}", 405)
        return error_response(8000, str(exc.detail), exc.status_code)

    async def on_os_error(request, exc: OSError):
        # e.g. a name too long for the file system, a full disk: the request's fault or the
        # disk's, not a server crash (no local path in the message)
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        status = 507 if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 400
        return error_response(8000, f"File system error: {exc.strerror or type(exc).__name__}", status)

    async def on_error(request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(8000, f"Internal server error: {type(exc).__name__}", 500)

    handlers: dict[Any, Any] = {ApiError: on_api_error, HTTPException: on_http_error,
                                OSError: on_os_error, Exception: on_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.api = api
    return app

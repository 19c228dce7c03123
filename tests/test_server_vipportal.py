"""The local VIP answers as VIP-portal 4.6's own REST integration tests expect.

Read from VIP-portal tag v4.6 (commit c850d5a, "Release 4.6"):
``vip-api/src/test/java/fr/insalyon/creatis/vip/api/rest/itest/`` and ``ApiException.ApiError``.
One section per Java test class; each test's docstring names the Java test method it follows.
The Java tests run against mocked DAOs / engines; ours run against the real local server over
HTTP, so they assert what the Java tests assert about the HTTP answer (status, content type,
error code, the set of non-null fields, which their ``JsonCustomObjectMatcher`` counts) and not
the values their mocks made up (their execution ids, dates, sizes).

Skipped, with the reason (no test of ours stands for them):

- ``SpringAuthenticationWithMockedUserDaoIT.authenticationWithCoreKo``: mocks a UserDAO
  failure (RuntimeException) to get 401/8004; nothing of the HTTP API can trigger it.
- ``ExecutionControllerIT.shouldGetErrorOnExpectedException``, ``shouldReturnErrorOnUnexpectedException``,
  ``shouldReturn500``: mock WorkflowDAO failures (400/8000, 500/8000); no request causes them.
- ``DataControllerIT.shouldHaveDownloadTimeout``, ``shouldDownloadAfterFirstTimeout``: mock a
  transfer-pool operation that stays Running (grid download timeout); the local server has
  no grid transfer to time out.
- ``SpringAuthenticationIT.authenticationWithValidBearerToken``: an OIDC (Keycloak) JWT; the
  local server has no OIDC provider, only API keys.
- ``RegisterUserControllerIT`` (both tests): ``POST /rest/register``, a route we do not serve.
- ``PipelineControllerIT.shouldReturnPipelines``: its per-group visibility (users of group1 see
  app1's visible versions...); the local server has no groups, every user may use every app.
  The shape of the listing (and the trailing-slash route) is tested below.
- ``ExecutionControllerIT.testInitBoutiquesExecution``: what it captures from the mocked engine
  (the workflow file, the ``lfn:`` input JSON, the Workflow row) is not HTTP; the reply's field
  set is tested below. ``shouldKillExecution2`` only verifies the engine mock was called: we
  test the effect (the execution ends Killed).
"""

from __future__ import annotations

import base64
import json
import secrets
import time

import pytest
import requests
from vipapi import ACTIVE, Api, T

from vip_smk.server import LocalServer

#: The Boutiques app of PipelineControllerIT (ours, same shape as their test-boutiques.json:
#: a File, a String with a default, an optional String without one, an optional Flag)
ITEST_APP = {
    "name": "ITestApp",
    "tool-version": "v42",
    "description": "Integration test app",
    "schema-version": "0.5",
    "command-line": "echo [FILE] [TEXT] [OPTTEXT] [FLAG] > itest.txt",
    "inputs": [
        {"id": "testFileInput", "name": "File", "type": "File", "value-key": "[FILE]",
         "description": "A file input"},
        {"id": "testTextInput", "name": "Text", "type": "String", "value-key": "[TEXT]",
         "default-value": "test text value", "description": "A text input"},
        {"id": "testOptionalTextInput", "name": "Optional text", "type": "String",
         "value-key": "[OPTTEXT]", "optional": True, "description": "An optional text input"},
        {"id": "testFlagInput", "name": "Flag", "type": "Flag", "value-key": "[FLAG]",
         "optional": True, "default-value": "false", "command-line-flag": "--test-flag",
         "description": "A flag input"},
    ],
    "output-files": [{"id": "out", "name": "Output", "path-template": "itest.txt"}],
}
#: writes known text to stdout and stderr (ExecutionControllerIT's stdout/stderr files)
ECHO_APP = {
    "name": "EchoLogs",
    "tool-version": "1.0",
    "description": "Writes its text to stdout, stderr and echo.txt",
    "schema-version": "0.5",
    "command-line": "echo stdout-[TEXT] && echo stderr-[TEXT] >&2 && echo [TEXT] > echo.txt",
    "inputs": [{"id": "text", "name": "Text", "type": "String", "value-key": "[TEXT]",
                "description": "What to write"}],
    "output-files": [{"id": "out", "name": "Output", "path-template": "echo.txt"}],
}

ERROR_FIELDS = ["errorCode", "errorMessage"]
PATH_FIELDS = {"path", "lastModificationDate", "isDirectory", "exists", "size", "mimeType"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A server of this module: VIP's defaults (capacity lifted), the two apps above, users
    alice, bob and carol (carol: the listing/count tests alone)."""
    apps = tmp_path_factory.mktemp("itest-apps")
    (apps / "itest.json").write_text(json.dumps(ITEST_APP))
    (apps / "echo.json").write_text(json.dumps(ECHO_APP))
    users = [f"{n}:{secrets.token_urlsafe(18)}:{n}-pw" for n in ("alice", "bob", "carol")]
    s = LocalServer(tmp_path_factory.mktemp("itest-server"), port=0, users=users, workers=2,
                    max_running=0, apps_dirs=[apps])
    s.start(timeout=60)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def api(srv):
    return Api(srv.url, srv.users["alice"])


def media(r) -> tuple[str, dict]:
    """(type/subtype, parameters) of a reply's Content-Type, as Spring's MediaType compares them."""
    raw = r.headers.get("content-type", "")
    kind, *params = [x.strip() for x in raw.split(";")]
    return kind.lower(), {k.strip().lower(): v.strip().lower()
                          for k, v in (p.split("=", 1) for p in params if "=" in p)}


def is_json(r) -> None:
    """``content().contentType(MediaType.APPLICATION_JSON_VALUE)``: exactly application/json."""
    assert media(r) == ("application/json", {}), r.headers.get("content-type")


def is_text(r) -> None:
    """``content().contentType("text/plain;charset=UTF-8")``."""
    assert media(r) == ("text/plain", {"charset": "utf-8"}), r.headers.get("content-type")


def error(r, status: int, code: int) -> dict:
    assert r.status_code == status, r.text
    is_json(r)
    body = r.json()
    assert list(body) == ERROR_FIELDS and body["errorCode"] == code, body
    return body


def non_null(d: dict) -> set[str]:
    """The fields JsonCustomObjectMatcher counts: those whose value is not null."""
    return {k for k, v in d.items() if v is not None}


def uniq(prefix: str) -> str:
    return f"/vip/Home/{prefix}-{secrets.token_hex(4)}"


def mkdir(api: Api, path: str) -> None:
    assert api.put(f"/path{path}").status_code == 201


def upload(api: Api, path: str, data: bytes) -> None:
    r = api.put(f"/path{path}", data=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text


# ============================================================ PlatformControllerIT
def test_platform_should_not_be_secured(srv):
    """PlatformControllerIT.platformShouldNotBeSecured"""
    assert requests.get(srv.url + "/rest/platform", timeout=T).status_code == 200


def test_platform_properties(make_server):
    """PlatformControllerIT.testPlatformProperties (on VIP's defaults: make_server(vip_defaults=True))"""
    s = make_server(vip_defaults=True)
    r = requests.get(s.url + "/rest/platform", timeout=T)
    assert r.status_code == 200
    is_json(r)
    p = r.json()
    assert isinstance(p["platformName"], str) and p["platformName"]
    assert isinstance(p["platformDescription"], str) and isinstance(p["email"], str)
    # SupportedTransferProtocol values (lower-case enum names) and Module labels
    assert p["supportedTransferProtocols"] and set(p["supportedTransferProtocols"]) <= {
        "http", "https", "ftp", "sftp", "ftps", "scp", "webdav"}
    assert p["supportedModules"] and set(p["supportedModules"]) <= {
        "Processing", "Data", "AdvancedData", "Management", "Commercial"}
    assert type(p["defaultLimitListExecutions"]) is int
    assert all(isinstance(m, str) for m in p["unsupportedMethods"])
    assert isinstance(p["supportedAPIVersion"], str)
    assert p["maxSizeDirectTransfer"] == 15_000_000
    errors = p["APIErrorCodesAndMessages"]
    # every ApiError (8000-8020) and ApplicationError (2000-2002)
    assert len(errors) == 21 + 3
    assert {e["errorCode"] for e in errors} == set(range(8000, 8021)) | {2000, 2001, 2002}
    assert all(list(e) == ERROR_FIELDS for e in errors)
    for expected in (
        {"errorCode": 8000, "errorMessage": "An error has been encountered on the VIP API"},
        {"errorCode": 8008, "errorMessage": "Not allowed to access pipeline {}"},
        {"errorCode": 2001, "errorMessage": "Max number of running executions reached.<br />"
                                            "You already have {} running executions."},
        {"errorCode": 8002, "errorMessage": "Bad credentials"},
        {"errorCode": 8003,
         "errorMessage": "The error message for 'insufficient auth' cannot be known in advance"},
    ):
        assert expected in errors


# ============================================================ AuthenticationControllerIT
def test_bad_password_authentication(srv):
    """AuthenticationControllerIT.badPasswordAuthentication"""
    r = requests.post(srv.url + "/rest/authenticate", timeout=T,
                      json={"username": "bob", "password": "coucou"})
    error(r, 401, 8002)


def test_ok_authentication(srv):
    """AuthenticationControllerIT.okAuthentication"""
    r = requests.post(srv.url + "/rest/authenticate", timeout=T,
                      json={"username": "bob", "password": "bob-pw"})
    assert r.status_code == 200
    assert r.json() == {"httpHeader": "apikey", "httpHeaderValue": srv.users["bob"]}


def test_missing_info_authentication(srv):
    """AuthenticationControllerIT.missingInfoAuthentication"""
    r = requests.post(srv.url + "/rest/authenticate", timeout=T, data="{}",
                      headers={"Content-Type": "application/json"})
    error(r, 400, 8009)


# ============================================================ SpringAuthenticationIT
def test_authentication_ok(srv):
    """SpringAuthenticationIT.authenticationOK: a good key on an unknown route is a 404"""
    r = requests.get(srv.url + "/rest/wrongUrl", headers={"apikey": srv.users["alice"]}, timeout=T)
    assert r.status_code == 404
    is_json(r)


def test_authentication_with_basic_should_be_ko(srv):
    """SpringAuthenticationIT.authenticationWithBasicShouldBeKo"""
    r = requests.get(srv.url + "/rest/wrongUrl", auth=("alice", "alice-pw"), timeout=T)
    error(r, 401, 8003)


def test_authentication_with_wrong_apikey(srv):
    """SpringAuthenticationIT.authenticationWithWrongApikey"""
    r = requests.get(srv.url + "/rest/wrongUrl", headers={"apikey": "WRONG"}, timeout=T)
    error(r, 401, 8002)


def test_authentication_without_credentials(srv):
    """SpringAuthenticationIT.authenticationWithoutCredentials"""
    error(requests.get(srv.url + "/rest/wrongUrl", timeout=T), 401, 8003)


def test_authentication_with_invalid_bearer_token(srv):
    """SpringAuthenticationIT.authenticationWithInvalidBearerToken"""
    r = requests.get(srv.url + "/rest/wrongUrl", timeout=T,
                     headers={"Authorization": "Bearer invalidToken"})
    error(r, 401, 8003)


# ============================================================ PipelineControllerIT
def test_pipeline_method_should_be_secured(srv):
    """PipelineControllerIT.pipelineMethodShouldBeSecured"""
    assert requests.get(srv.url + "/rest/pipelines", timeout=T).status_code == 401


def test_should_return_error_on_api_exception(api):
    """PipelineControllerIT.shouldReturnErrorOnAPIException"""
    error(api.get("/pipelines/WRONG_APP"), 400, 8005)


def test_should_return_error_on_api_exception_invalid_id(api):
    """PipelineControllerIT.shouldReturnErrorOnAPIExceptionInvalidId"""
    error(api.get("/pipelines", params={"pipelineId": "incorrect pipeline id"}), 400, 8005)
    # and a valid one through that parameter is the pipeline itself
    r = api.get("/pipelines", params={"pipelineId": "ITestApp/v42"})
    assert r.status_code == 200 and r.json()["identifier"] == "ITestApp/v42"


def test_user_get_a_pipeline_with_boutiques(api):
    """PipelineControllerIT.userGetAPipelineWithBoutiques"""
    r = api.get("/pipelines/ITestApp/v42")
    assert r.status_code == 200
    is_json(r)
    p = r.json()
    assert p["name"] == "ITestApp"
    assert non_null(p) == {"identifier", "name", "version", "description", "canExecute", "parameters"}
    assert {k: p[k] for k in ("identifier", "name", "version", "description", "canExecute")} == {
        "identifier": "ITestApp/v42", "name": "ITestApp", "version": "v42",
        "description": "Integration test app", "canExecute": True}
    base = {"isReturnedValue": False}
    expected = [  # PipelineTestUtils' fileParam, textParam, optionalTextParam, flagParam
        {**base, "name": "testFileInput", "type": "File", "isOptional": False,
         "description": "A file input"},
        {**base, "name": "testTextInput", "type": "String", "isOptional": False,
         "defaultValue": "test text value", "description": "A text input"},
        {**base, "name": "testOptionalTextInput", "type": "String", "isOptional": True,
         "description": "An optional text input"},
        {**base, "name": "testFlagInput", "type": "Boolean", "isOptional": True,
         "defaultValue": "false", "description": "A flag input"},
    ]
    got = sorted(({k: v for k, v in x.items() if v is not None} for x in p["parameters"]),
                 key=lambda x: x["name"])
    assert got == sorted(expected, key=lambda x: x["name"])  # results-directory hidden


def test_user_get_boutiques_descriptor(api):
    """PipelineControllerIT.userGetBoutiquesDescriptor (two path segments, and one with %2F)"""
    for path in ("/pipelines/ITestApp/v42", "/pipelines/ITestApp%2Fv42"):
        r = api.get(path, params={"format": "boutiques"})
        assert r.status_code == 200, path
        is_json(r)
        d = r.json()
        assert d["name"] == "ITestApp" and d["tool-version"] == "v42"
        assert d["schema-version"] == "0.5"
        assert len(d["inputs"]) == 4


def test_should_return_pipelines(api):
    """PipelineControllerIT.shouldReturnPipelines (the listing's shape; no groups here)"""
    for path in ("/pipelines/", "/pipelines"):  # the trailing slash VIP keeps for Shanoir
        r = api.get(path)
        assert r.status_code == 200, path
        is_json(r)
        listed = r.json()
        assert "ITestApp/v42" in {p["identifier"] for p in listed}
        for p in listed:  # PipelineTestUtils.getPipeline: no description, no parameters
            assert non_null(p) == {"identifier", "name", "version", "canExecute", "parameters"}, p
            assert p["parameters"] == [] and p["canExecute"] is True
            assert p["identifier"] == f"{p['name']}/{p['version']}"


# ============================================================ ExecutionControllerIT
def finished_pair(srv, key: str) -> tuple[Api, list[str]]:
    """Two finished Sleep executions of user ``key`` (the Java tests' execId1, execId2)."""
    a = Api(srv.url, srv.users[key])
    ids = [a.launch("Sleep/1.0", {"duration": 0}, name=f"Exec test {i}")["identifier"]
           for i in (1, 2)]
    for eid in ids:
        assert a.wait(eid)["status"] == "Finished"
    return a, ids


@pytest.fixture(scope="module")
def carol(srv):
    return finished_pair(srv, "carol")


def test_should_list_executions(carol):
    """ExecutionControllerIT.shouldListExecutions"""
    a, ids = carol
    r = a.get("/executions")
    assert r.status_code == 200
    is_json(r)
    listed = r.json()
    assert len(listed) == 2
    assert {e["identifier"] for e in listed} == set(ids)
    assert all(e["status"] == "Finished" for e in listed)


def test_should_count_executions(carol):
    """ExecutionControllerIT.shouldCountExecutions"""
    a, _ = carol
    r = a.get("/executions/count")
    assert r.status_code == 200
    is_text(r)
    assert r.text == "2"


def test_should_get_execution_1_and_2(carol):
    """ExecutionControllerIT.shouldGetExecution1, shouldGetExecution2"""
    a, ids = carol
    for eid in ids:
        r = a.get(f"/executions/{eid}")
        assert r.status_code == 200
        is_json(r)
        assert r.json()["status"] == "Finished" and r.json()["identifier"] == eid


def test_should_get_error_on_unknown_execution(srv, api, carol):
    """ExecutionControllerIT.shouldGetErrorOnUnknownExecution: 8000, not 8015 (VIP checks
    access first); another user's execution answers the same"""
    for r in (api.get("/executions/WrongExecId"), api.get(f"/executions/{carol[1][0]}")):
        # and nothing but the generic message: a client may not read "does not exist" there
        assert error(r, 400, 8000)["errorMessage"] == "An error has been encountered on the VIP API"


def test_should_update_execution_1(api):
    """ExecutionControllerIT.shouldUpdateExecution1 (body: their execution1-name-updated.json's fields)"""
    eid = api.launch("Sleep/1.0", {"duration": 0}, name="Exec test 1")["identifier"]
    r = api.put(f"/executions/{eid}", json={
        "name": "Exec test 1 - modified", "pipelineIdentifier": "Sleep/1.0",
        "inputValues": {"duration": "0"}})
    assert r.status_code == 200, r.text
    is_json(r)
    assert r.json()["name"] == "Exec test 1 - modified"
    assert api.get(f"/executions/{eid}").json()["name"] == "Exec test 1 - modified"
    # an Execution missing a @NotNull field is refused as the POST is (bean validation)
    error(api.put(f"/executions/{eid}", json={"name": "other"}), 400, 8009)


def test_not_init_execution_missing_field(api):
    """ExecutionControllerIT.testNotInitExecutionMissingField"""
    r = api.post("/executions", data="{}", headers={"Content-Type": "application/json"})
    error(r, 400, 8009)


@pytest.mark.parametrize("delete_files", [True, False])
def test_should_delete_execution_2(api, delete_files):
    """ExecutionControllerIT.shouldDeleteWithFilesExecution2, shouldDeleteWithoutExecution2"""
    ex = api.wait(api.launch("Sleep/1.0", {"duration": 0})["identifier"])
    out = ex["returnedFiles"]["log"][0]
    r = api.put(f"/executions/{ex['identifier']}/delete", json={"deleteFiles": delete_files})
    assert r.status_code == 204 and r.text == ""
    error(api.get(f"/executions/{ex['identifier']}"), 400, 8000)
    if delete_files:
        api.gone(out)
    else:
        assert api.get(f"/path{out}", params={"action": "exists"}).json()["exists"] is True


def test_should_return_400(api):
    """ExecutionControllerIT.shouldReturn400: PUT executions/{id} without a body"""
    error(api.put("/executions/whynotthisid"), 400, 8000)
    eid = api.launch("Sleep/1.0", {"duration": 0})["identifier"]
    error(api.put(f"/executions/{eid}"), 400, 8000)  # a known id too: the body is unreadable


def test_should_get_execution_2_stdout_and_stderr(api):
    """ExecutionControllerIT.shouldGetExecution2Stdout, shouldGetExecution2Stderr"""
    eid = api.launch("EchoLogs/1.0", {"text": "blablabla"})["identifier"]
    assert api.wait(eid)["status"] == "Finished"
    for which in ("stdout", "stderr"):
        r = api.get(f"/executions/{eid}/{which}")
        assert r.status_code == 200
        is_text(r)
        assert r.text == f"{which}-blablabla\n"


def test_play_execution_is_not_implemented(api):
    """ExecutionControllerIT.testPlayExecutionIsNotImplemented"""
    eid = api.launch("Sleep/1.0", {"duration": 0})["identifier"]
    error(api.put(f"/executions/{eid}/play"), 400, 8001)


def test_should_get_execution_2_results(api):
    """ExecutionControllerIT.shouldGetExecution2Results"""
    eid = api.launch("EchoLogs/1.0", {"text": "result"})["identifier"]
    ex = api.wait(eid)
    r = api.get(f"/executions/{eid}/results")
    assert r.status_code == 200
    is_json(r)
    [res] = r.json()
    assert res["path"].startswith("/vip/Home/") and res["path"] == ex["returnedFiles"]["out"][0]
    assert res["size"] == len(b"result\n")


def test_should_kill_execution_2(api):
    """ExecutionControllerIT.shouldKillExecution2 (the effect of the engine's kill)"""
    eid = api.launch("Sleep/1.0", {"duration": 30})["identifier"]
    api.wait(eid, until=lambda e: e["status"] == "Running")
    assert api.put(f"/executions/{eid}/kill").status_code == 204
    assert api.wait(eid)["status"] == "Killed"


def test_init_boutiques_execution(api):
    """ExecutionControllerIT.testInitBoutiquesExecution: the reply to POST executions"""
    r = api.post("/executions", json={"name": "Exec test 1", "pipelineIdentifier": "Sleep/1.0",
                                      "inputValues": {"duration": "20"}})
    assert r.status_code == 200, r.text
    is_json(r)
    ex = r.json()
    try:
        # their expected Execution: no resultsLocation, returnedFiles, endDate, errorCode,
        # studyIdentifier while it runs (resultsLocation: never, "not available in VIP yet")
        assert non_null(ex) == {"identifier", "name", "pipelineIdentifier", "timeout", "status",
                                "inputValues", "startDate", "jobs"}, ex
        assert ex["name"] == "Exec test 1" and ex["pipelineIdentifier"] == "Sleep/1.0"
        assert ex["timeout"] == 0
        # Running there (a mocked engine); Ready here while the job is queued (VIP's Queued)
        assert ex["status"] in ACTIVE
        assert isinstance(ex["startDate"], int) and abs(ex["startDate"] / 1000 - time.time()) < 60
        assert isinstance(ex["inputValues"], dict) and isinstance(ex["jobs"], dict)
        for job in ex["jobs"].values():
            assert set(job) == {"status", "exitCode", "exitMessage"}
    finally:
        api.put(f"/executions/{ex['identifier']}/kill")


# ============================================================ DataControllerIT
@pytest.fixture(scope="module")
def tree(api):
    """PathTestUtils' shape: a home folder with a .xml and a .json file and testDir1 holding
    three files (no extension, .pdf, .zip)."""
    root = uniq("itest")
    mkdir(api, root)
    upload(api, f"{root}/testFile1.xml", b"<a/>" * 10)
    upload(api, f"{root}/testFile2.json", b"{}")
    mkdir(api, f"{root}/testDir1")
    for name in ("testFile3", "testFile4.pdf", "testFile5.zip"):
        upload(api, f"{root}/testDir1/{name}", name.encode())
    return root


def test_should_return_file_path(api, tree):
    """DataControllerIT.shouldReturnFilePath"""
    r = api.get(f"/path{tree}/testFile1.xml", params={"action": "properties"})
    assert r.status_code == 200
    is_json(r)
    p = r.json()
    assert non_null(p) == PATH_FIELDS
    assert p == {**p, "path": f"{tree}/testFile1.xml", "isDirectory": False, "exists": True,
                 "size": 40, "mimeType": "text/xml"}
    assert isinstance(p["lastModificationDate"], int)
    assert abs(p["lastModificationDate"] - time.time()) < 3600  # seconds, not milliseconds


def test_should_return_directory_path(api, tree):
    """DataControllerIT.shouldReturnDirectoryPath: a directory's size is its number of entries"""
    r = api.get(f"/path{tree}/testDir1", params={"action": "properties"})
    assert r.status_code == 200
    is_json(r)
    p = r.json()
    assert non_null(p) == PATH_FIELDS
    assert p == {**p, "path": f"{tree}/testDir1", "isDirectory": True, "exists": True, "size": 3,
                 "mimeType": "text/directory"}


def test_should_return_non_existing_path(api):
    """DataControllerIT.shouldReturnNonExistingPath"""
    r = api.get("/path/vip/Home/WRONG/PATH", params={"action": "exists"})
    assert r.status_code == 200
    is_json(r)
    assert r.json()["exists"] is False


def test_should_list_user2_dir(api, tree):
    """DataControllerIT.shouldListuser2Dir"""
    r = api.get(f"/path{tree}", params={"action": "list"})
    assert r.status_code == 200
    is_json(r)
    got = {e["path"]: e for e in r.json()}
    assert set(got) == {f"{tree}/testDir1", f"{tree}/testFile2.json", f"{tree}/testFile1.xml"}
    f2, d1 = got[f"{tree}/testFile2.json"], got[f"{tree}/testDir1"]
    assert non_null(f2) == PATH_FIELDS
    assert (f2["isDirectory"], f2["exists"], f2["size"], f2["mimeType"]) == (False, True, 2, "application/json")
    # (their mocked listing has no date on directories; a real one has)
    assert non_null(d1) - {"lastModificationDate"} == PATH_FIELDS - {"lastModificationDate"}
    assert (d1["isDirectory"], d1["exists"], d1["size"], d1["mimeType"]) == (True, True, 3, "text/directory")


def test_should_list_directory_1(api, tree):
    """DataControllerIT.shouldListDirectory1: mime types of no extension, .pdf, .zip"""
    r = api.get(f"/path{tree}/testDir1", params={"action": "list"})
    assert r.status_code == 200
    is_json(r)
    got = {e["path"].rsplit("/", 1)[1]: e for e in r.json()}
    assert {k: v["mimeType"] for k, v in got.items()} == {
        "testFile3": "application/octet-stream", "testFile4.pdf": "application/pdf",
        "testFile5.zip": "application/zip"}
    for name, e in got.items():
        assert non_null(e) == PATH_FIELDS
        assert (e["isDirectory"], e["exists"], e["size"]) == (False, True, len(name))


def test_should_download(api, tree):
    """DataControllerIT.shouldDownload"""
    r = api.get(f"/path{tree}/testFile1.xml", params={"action": "content"})
    assert r.status_code == 200 and r.content == b"<a/>" * 10


def test_should_upload_file(api):
    """DataControllerIT.shouldUploadFile: raw bytes, sent as text/plain"""
    tree = uniq("itest-up")
    mkdir(api, tree)
    mkdir(api, f"{tree}/testDir1")
    data = b"Je suis un texte tout bidon.\nAvec 2 lignes."
    r = api.put(f"/path{tree}/testDir1/uploaded.txt", data=data,
                headers={"Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    assert api.get(f"/path{tree}/testDir1/uploaded.txt", params={"action": "content"}).content == data


def test_should_upload_base64_data(api):
    """DataControllerIT.shouldUploadBase64Data"""
    tree = uniq("itest-up64")
    mkdir(api, tree)
    mkdir(api, f"{tree}/testDir1")
    data = b"Deux lignes\nen base64.\n"
    body = {"type": "File", "base64Content": base64.b64encode(data).decode()}
    r = api.put(f"/path{tree}/testDir1/uploaded64.txt", data=json.dumps(body),
                headers={"Content-Type": "application/carmin+json"})
    assert r.status_code == 201, r.text
    assert api.get(f"/path{tree}/testDir1/uploaded64.txt", params={"action": "content"}).content == data


def test_results_location_option(make_server):
    """Not VIP's (resultsLocation is always null there): ``--results-location`` fills it"""
    s = make_server(results_location=True)
    a = Api(s.url, s.users["alice"])
    ex = a.launch("Sleep/1.0", {"duration": 0}, resultsLocation="/vip/Home/out")
    assert ex["resultsLocation"] == "/vip/Home/out"
    assert a.wait(ex["identifier"])["resultsLocation"] == "/vip/Home/out"

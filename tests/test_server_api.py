"""Local VIP server: platform, auth, pipelines and /rest/path, over real HTTP with requests."""

from __future__ import annotations

import base64
import io
import secrets
import time
import zipfile

import pytest
import requests
from vipapi import ACTIVE, Api, T


@pytest.fixture
def api(vip_server):
    return Api(vip_server.url, vip_server.users["alice"])



def uniq(prefix="t"):
    return f"/vip/Home/{prefix}-{secrets.token_hex(4)}"


def assert_error(r, code, status=400):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert list(body) == ["errorCode", "errorMessage"], body
    assert body["errorCode"] == code, body
    assert isinstance(body["errorMessage"], str) and body["errorMessage"]
    return body


# ------------------------------------------------------------------ platform, auth
def test_platform_get_and_put(vip_server, api):
    r = requests.get(vip_server.url + "/rest/platform", timeout=T)
    assert r.status_code == 200
    info = r.json()
    for key in ("platformName", "platformDescription", "supportedTransferProtocols", "supportedModules",
                "defaultLimitListExecutions", "unsupportedMethods", "supportedAPIVersion", "email",
                "APIErrorCodesAndMessages", "maxSizeDirectTransfer", "oidcLoginProviders"):
        assert key in info
    assert info["platformName"] == "VIP"
    r = api.put("/platform")  # vip-client's key check
    assert r.status_code == 200 and r.json()["platformName"] == "VIP"


def test_bad_and_missing_key(vip_server):
    r = requests.put(vip_server.url + "/rest/platform", headers={"apikey": "nope"}, timeout=T)
    assert_error(r, 8002, 401)
    assert r.headers["WWW-Authenticate"] == "header; header-name=apikey"
    r = requests.get(vip_server.url + "/rest/pipelines", headers={"apikey": "nope"}, timeout=T)
    assert_error(r, 8002, 401)
    r = requests.get(vip_server.url + "/rest/pipelines", timeout=T)
    assert_error(r, 8003, 401)
    r = requests.get(vip_server.url + "/rest/path/vip/Home?action=list", timeout=T)
    assert_error(r, 8003, 401)
    r = requests.get(vip_server.url + "/rest/executions", headers={"apikey": ""}, timeout=T)
    assert_error(r, 8003, 401)


def test_authenticate(vip_server):
    url = vip_server.url + "/rest/authenticate"
    r = requests.post(url, json={"username": "alice", "password": "alice-pw"}, timeout=T)
    assert r.status_code == 200
    assert r.json() == {"httpHeader": "apikey", "httpHeaderValue": vip_server.users["alice"]}
    # VIP-portal 4.6 (AuthenticationControllerIT): 8002 for wrong credentials, 8000 for a body
    # Spring cannot read (tests/test_server_vipportal.py has the rest)
    assert_error(requests.post(url, json={"username": "alice", "password": "bad"}, timeout=T), 8002, 401)
    assert_error(requests.post(url, json={"username": "nobody", "password": "x"}, timeout=T), 8002, 401)
    assert_error(requests.post(url, data="not json", timeout=T), 8000, 400)


def test_unknown_route_and_method_are_json(vip_server, api):
    assert_error(api.get("/nothing/here"), 8000, 404)
    assert_error(api.post("/platform"), 8001, 405)
    assert_error(api.s.patch(api.base + "/path/vip/Home", timeout=T), 8001, 405)


# ------------------------------------------------------------------ pipelines
def test_pipelines_list(api):
    r = api.get("/pipelines")
    assert r.status_code == 200
    ids = {p["identifier"] for p in r.json()}
    assert {"TextStats/1.0", "Smooth/1.0", "Sleep/1.0", "Fail/1.0"} <= ids
    for p in r.json():
        assert p["canExecute"] is True and p["parameters"] == []
        assert p["identifier"] == f"{p['name']}/{p['version']}"


def test_pipeline_parameters(api):
    p = api.get("/pipelines/TextStats/1.0").json()
    params = {x["name"]: x for x in p["parameters"]}
    assert set(params) == {"input_file", "delimiter", "precision"}
    for x in params.values():
        assert set(x) >= {"name", "type", "isOptional", "defaultValue", "description", "isReturnedValue"}
        assert isinstance(x["description"], str)
    assert params["input_file"]["type"] == "File" and params["input_file"]["isOptional"] is False
    assert params["input_file"]["defaultValue"] is None
    assert params["delimiter"] == {**params["delimiter"], "type": "String", "isOptional": True, "defaultValue": ","}
    assert params["precision"]["type"] == "Int64" and params["precision"]["defaultValue"] == 3
    sm = {x["name"]: x for x in api.get("/pipelines/Smooth/1.0").json()["parameters"]}
    assert sm["normalize"]["type"] == "Boolean" and sm["window"]["type"] == "Int64"
    sl = {x["name"]: x for x in api.get("/pipelines/Sleep/1.0").json()["parameters"]}
    assert sl["duration"]["type"] == "Double" and sl["duration"]["isOptional"] is False


def test_boutiques_descriptor_one_and_two_segment_ids(api):
    """VIP-portal 4.6 PipelineController.getBoutiquesDescriptor: ?format=boutiques is the
    pipeline's whole Boutiques descriptor, its id as name/version or name%2Fversion."""
    import json
    from pathlib import Path

    import vip_smk.server

    apps = Path(vip_smk.server.__file__).parent / "apps"
    for path in sorted(apps.glob("*.json")):
        desc = json.loads(path.read_text(encoding="utf-8"))
        pid = f"{desc['name']}/{desc['tool-version']}"
        for url in (f"/pipelines/{pid}", f"/pipelines/{pid.replace('/', '%2F')}"):
            r = api.get(url, params={"format": "boutiques"})
            assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
            assert r.json() == desc, url
    smooth = api.get("/pipelines/Smooth/1.0?format=boutiques").json()
    assert smooth["schema-version"] == "0.5" and smooth["output-files"][0]["path-template"]
    # without the format: the CARMIN pipeline, as before
    assert set(api.get("/pipelines/Smooth%2F1.0").json()) >= {"identifier", "parameters", "canExecute"}
    assert_error(api.get("/pipelines/Nope/9.9?format=boutiques"), 8007)
    assert_error(api.get("/pipelines/Smooth?format=boutiques"), 8005)


def test_pipeline_errors(api):
    assert_error(api.get("/pipelines/Nope/9.9"), 8007)
    assert_error(api.get("/pipelines/TextStats"), 8005)


def test_apps_dir_adds_descriptor(make_server, tmp_path):
    desc = tmp_path / "apps" / "echo.json"
    desc.parent.mkdir()
    desc.write_text(
        '{"name": "Echo Tool", "tool-version": "0.1", "schema-version": "0.5", "description": "echo",'
        ' "command-line": "echo [WORD] > out.txt", "inputs": [{"id": "word", "name": "w",'
        ' "type": "String", "value-key": "[WORD]"}], "output-files": [{"id": "out", "name": "o",'
        ' "path-template": "out.txt"}]}'
    )
    srv = make_server(apps_dirs=[desc.parent])
    a = Api(srv.url, srv.api_key)
    assert "Echo Tool/0.1" in {p["identifier"] for p in a.get("/pipelines").json()}
    p = a.get("/pipelines/Echo Tool/0.1").json()
    assert p["parameters"][0]["name"] == "word"
    r = a.post("/executions", json={"name": "echo", "pipelineIdentifier": "Echo Tool/0.1",
                                    "inputValues": {"word": "hello there"}})
    assert r.status_code == 200, r.text
    eid = r.json()["identifier"]
    for _ in range(200):
        ex = a.get(f"/executions/{eid}").json()
        if ex["status"] not in ACTIVE:
            break
        time.sleep(0.05)
    assert ex["status"] == "Finished", ex
    (out,) = ex["returnedFiles"]["out"]
    assert a.get(f"/path{out}?action=content").text == "hello there\n"


# ------------------------------------------------------------------ /rest/path
def test_root_and_spaces(api):
    assert api.get("/path/vip?action=exists").json() == {"exists": True}
    names = {p["path"] for p in api.get("/path/vip?action=list").json()}
    assert names == {"/vip/Home", "/vip/Trash"}
    assert api.get("/path/vip/Trash?action=exists").json() == {"exists": True}
    props = api.get("/path/vip/Home?action=properties").json()
    assert props["isDirectory"] is True and props["exists"] is True
    assert props["mimeType"] == "text/directory"
    assert api.get("/path/vip/Elsewhere (group)/x?action=exists").json() == {"exists": False}


def test_mkdir_upload_list_properties_content_delete(api):
    d = uniq("data")
    assert api.get(f"{'/path'}{d}?action=exists").json() == {"exists": False}
    r = api.put(f"/path{d}/")  # trailing slash, empty body: mkdir (vip-client's create_dir)
    assert r.status_code == 201, r.text
    assert api.get(f"/path{d}?action=exists").json() == {"exists": True}
    assert api.put(f"/path{d}").status_code == 201  # mkdir again: fine
    payload = b"a,b\n1,2\n3,4\n" * 100
    r = api.put(f"/path{d}/in.csv", data=payload, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    # a generator body (chunked transfer) is streamed too
    r = api.put(f"/path{d}/gen.bin", data=(payload[i:i + 7] for i in range(0, len(payload), 7)))
    assert r.status_code == 201
    listing = api.get(f"/path{d}?action=list").json()
    by = {p["path"]: p for p in listing}
    assert set(by) == {f"{d}/in.csv", f"{d}/gen.bin"}
    f = by[f"{d}/in.csv"]
    assert f["size"] == len(payload) and f["isDirectory"] is False and f["exists"] is True
    assert isinstance(f["lastModificationDate"], int) and f["lastModificationDate"] < 10**11  # seconds
    dprops = api.get(f"/path{d}?action=properties").json()
    assert dprops["size"] == 2 and dprops["isDirectory"] is True
    r = api.get(f"/path{d}/in.csv?action=content")
    assert r.status_code == 200 and r.content == payload
    assert r.headers["content-type"] == "application/octet-stream"
    assert api.get(f"/path{d}/gen.bin?action=content").content == payload
    assert_error(api.get(f"/path{d}/in.csv?action=md5"), 8001)  # not implemented, as on VIP
    assert api.delete(f"/path{d}/in.csv").status_code == 204
    api.gone(f"{d}/in.csv")  # VIP deletes asynchronously
    assert api.delete(f"/path{d}").status_code == 204
    api.gone(d)


def test_range_download(api):
    d = uniq("range")
    data = bytes(range(256)) * 40
    assert api.put(f"/path{d}.bin", data=data).status_code == 201
    r = api.get(f"/path{d}.bin?action=content", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.content == data[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(data)}"
    r = api.get(f"/path{d}.bin?action=content", headers={"Range": f"bytes={len(data) - 10}-"})
    assert r.status_code == 206 and r.content == data[-10:]


def test_special_characters_in_paths(api):
    top = uniq("odd")
    d = top + "/24-11-2026_23:37:07/My Group (v2)"
    assert api.put(f"/path{top}").status_code == 201
    assert api.put(f"/path{d.rsplit('/', 1)[0]}").status_code == 201
    assert api.put(f"/path{d}").status_code == 201
    assert api.get(f"/path{d}?action=exists").json() == {"exists": True}
    assert api.put(f"/path{d}/x(1):y.txt", data=b"hello").status_code == 201
    assert api.get(f"/path{d}/x(1):y.txt?action=content").content == b"hello"
    listed = [p["path"] for p in api.get(f"/path{d}?action=list").json()]
    assert listed == [f"{d}/x(1):y.txt"]


def test_file_name_cleaning(api):
    d = uniq("clean")
    assert api.put(f"/path{d}").status_code == 201
    r = api.put(f"/path{d}/my résumé file.txt", data=b"x")
    assert r.status_code == 201
    assert r.json()["path"] == f"{d}/my_rsum_file.txt"
    assert [p["path"] for p in api.get(f"/path{d}?action=list").json()] == [f"{d}/my_rsum_file.txt"]
    assert api.get(f"/path{d}/my résumé file.txt?action=exists").json() == {"exists": False}


def test_carmin_json_upload(api):
    d = uniq("b64")
    assert api.put(f"/path{d}").status_code == 201
    body = {"type": "File", "base64Content": base64.b64encode(b"base64 data").decode()}
    r = api.put(f"/path{d}/f.txt", json=body, headers={"Content-Type": "application/carmin+json"})
    assert r.status_code == 201, r.text
    assert api.get(f"/path{d}/f.txt?action=content").content == b"base64 data"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a/b.txt", "B")
    body = {"type": "Archive", "base64Content": base64.b64encode(buf.getvalue()).decode()}
    r = api.put(f"/path{d}/arch", json=body, headers={"Content-Type": "application/carmin+json"})
    assert "archive upload not supported" in assert_error(r, 8000)["errorMessage"]  # as VIP
    assert api.get(f"/path{d}/arch?action=exists").json() == {"exists": False}
    r = api.put(f"/path{d}/bad.txt", data=b'{"type": "File", "base64Content": "***"}',
                headers={"Content-Type": "application/carmin+json"})
    assert_error(r, 8000)


def test_path_errors(api):
    d = uniq("err")
    assert_error(api.get(f"/path{d}?action=list"), 8000)
    assert_error(api.get(f"/path{d}?action=properties"), 8000)
    assert_error(api.get(f"/path{d}?action=content"), 8000)
    assert_error(api.get(f"/path{d}?action=md5"), 8000)
    assert_error(api.delete(f"/path{d}"), 8000)
    assert_error(api.get(f"/path{d}"), 8000)  # no action
    assert_error(api.get("/path/vip/Home?action=explode"), 8000)
    assert_error(api.put(f"/path{d}/sub/dir"), 8000)  # mkdir: parent must exist
    assert_error(api.get("/path/vip/Home?action=content"), 8000)  # a directory
    assert api.put(f"/path{d}.txt", data=b"x").status_code == 201
    assert_error(api.get(f"/path{d}.txt?action=list"), 8000)  # not a directory
    assert_error(api.put(f"/path{d}.txt"), 8000)  # mkdir over a file
    assert_error(api.put(f"/path{d}.txt/inner", data=b"y"), 8000)  # a file as parent
    assert api.put(f"/path{d}").status_code == 201
    assert_error(api.put(f"/path{d}", data=b"z"), 8000)  # upload over a directory
    assert_error(api.get("/path/etc?action=list"), 8000)  # not under /vip
    assert_error(api.delete("/path/vip/Home"), 8013)  # the space itself
    assert_error(api.delete("/path/vip"), 8013)
    assert_error(api.put("/path/vip/Home", data=b"x"), 8013)


def test_users_are_isolated(vip_server, api):
    bob = Api(vip_server.url, vip_server.users["bob"])
    d = uniq("private")
    assert api.put(f"/path{d}.txt", data=b"alice only").status_code == 201
    assert bob.get(f"/path{d}.txt?action=exists").json() == {"exists": False}
    assert_error(bob.get(f"/path{d}.txt?action=content"), 8000)
    assert bob.put(f"/path{d}.txt", data=b"bob's").status_code == 201
    assert api.get(f"/path{d}.txt?action=content").content == b"alice only"


def test_bad_upload_refused_before_the_body(vip_server, api):
    """With Content-Length and "Expect: 100-continue", a bad target is refused without the body."""
    import http.client
    from urllib.parse import quote, urlsplit

    d = uniq("early")
    assert api.put(f"/path{d}.txt", data=b"x").status_code == 201
    u = urlsplit(vip_server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.putrequest("PUT", quote(f"/rest/path{d}.txt/inner.bin"))
        conn.putheader("apikey", vip_server.api_key)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(10**9))
        conn.putheader("Expect", "100-continue")
        conn.endheaders()  # no body sent at all
        r = conn.getresponse()
        assert r.status == 400
        assert r.getheader("content-type").startswith("application/json")
        assert b'"errorCode":8000' in r.read()
    finally:
        conn.close()


def test_file_system_errors_are_vip_errors(api):
    r = api.put(f"/path/vip/Home/{'n' * 300}.txt", data=b"x")  # name too long for the file system
    assert_error(r, 8000)
    assert "too long" in r.json()["errorMessage"].lower()
    assert "/users/" not in r.json()["errorMessage"]  # no server-side path
    assert api.get(f"/path/vip/Home/{'n' * 300}?action=exists").json() == {"exists": False}

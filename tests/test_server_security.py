"""Local VIP server: no request of one user reaches anything outside its own space.

Raw request targets are sent with http.client (requests/urllib3 would normalise ``..``)."""

from __future__ import annotations

import http.client
import json
import os
import secrets
from urllib.parse import urlsplit

import pytest
import requests

T = 30
SECRET = b"bob's secret"


@pytest.fixture(scope="module")
def setup(vip_server):
    """bob owns /vip/Home/sec-XXXX/secret.txt; a file outside every space sits in the data dir."""
    tag = secrets.token_hex(4)
    bob = {"apikey": vip_server.users["bob"]}
    base = vip_server.url + "/rest/path"
    assert requests.put(f"{base}/vip/Home/sec-{tag}", headers=bob, timeout=T).status_code == 201
    r = requests.put(f"{base}/vip/Home/sec-{tag}/secret.txt", headers=bob, data=SECRET, timeout=T)
    assert r.status_code == 201
    outside = vip_server.data_dir / f"outside-{tag}.txt"
    outside.write_bytes(b"outside data")
    return {"tag": tag, "outside": outside, "rel": f"bob/Home/sec-{tag}/secret.txt"}


def raw(srv, method, target, key, body=None):
    """Send ``target`` byte for byte (no client-side normalisation)."""
    u = urlsplit(srv.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=T)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        conn.putheader("apikey", key)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, r.getheader("content-type") or "", r.read()
    finally:
        conn.close()


def refused(status, ctype, body):
    assert status in (400, 401, 403, 404), (status, body)
    assert ctype.startswith("application/json"), (status, body)
    err = json.loads(body)
    assert list(err) == ["errorCode", "errorMessage"]
    assert SECRET not in body and b"outside data" not in body and b"root:" not in body
    return err["errorCode"]


def escapes(rel):
    """Request paths that try to reach ``users/<rel>`` (bob's file) from alice's space."""
    enc = rel.replace("/", "%2F")
    return [
        f"/rest/path/vip/Home/../../{rel}",
        f"/rest/path/vip/Home/%2e%2e/%2e%2e/{rel}",
        f"/rest/path/vip/Home/%2E%2E/%2E%2E/{rel}",
        f"/rest/path/vip%2FHome%2F..%2F..%2F{enc}",
        f"/rest/path/vip/Home%2F%2e%2e%2F%2e%2e%2F{enc}",
        f"/rest/path//vip//Home//..//..//{rel}",
        f"/rest/path/vip/Home/./../../{rel}",
        f"/rest/path/vip/Trash/../../{rel}",
        f"/rest/path/vip/../{rel}",
        f"/rest/path/../../users/{rel}",
    ]


@pytest.mark.parametrize("action", ["content", "properties", "exists", "list", "md5"])
def test_read_escapes_refused(vip_server, setup, action):
    key = vip_server.users["alice"]
    for target in escapes(setup["rel"]):
        status, ctype, body = raw(vip_server, "GET", f"{target}?action={action}", key)
        code = refused(status, ctype, body)
        assert code in (8013, 8000), (target, code)


def test_write_and_delete_escapes_refused(vip_server, setup):
    key = vip_server.users["alice"]
    victim = vip_server.data_dir / "users" / setup["rel"]
    for target in escapes(setup["rel"]):
        refused(*raw(vip_server, "PUT", target, key, body=b"overwritten"))
        refused(*raw(vip_server, "DELETE", target, key))
        dir_target = target.rsplit("secret.txt", 1)[0] + "newdir"
        refused(*raw(vip_server, "PUT", dir_target, key, body=b""))
    assert victim.read_bytes() == SECRET
    assert not (victim.parent / "newdir").exists()


def test_absolute_path_tricks(vip_server, setup):
    key = vip_server.users["alice"]
    outside = setup["outside"].name
    for target in [
        "/rest/path/etc/passwd?action=content",
        "/rest/path//etc/passwd?action=content",
        "/rest/path/vip/Home//etc/passwd?action=content",
        "/rest/path/vip/Home/%2Fetc%2Fpasswd?action=content",
        "/rest/path/vip/Home/%2F%2Fetc/passwd?action=content",
        f"/rest/path/vip/Home/../../../{outside}?action=content",
        f"/rest/path/{setup['outside']}?action=content",
        "/rest/path/vip/Home/%00/x?action=content",
    ]:
        refused(*raw(vip_server, "GET", target, key))
    # an absolute path below /vip/Home stays inside the space: a plain, absent name
    status, _, body = raw(vip_server, "GET", "/rest/path/vip/Home//etc/passwd?action=exists", key)
    assert status == 200 and json.loads(body) == {"exists": False}


def test_planted_symlinks_are_not_followed(vip_server, setup):
    alice = {"apikey": vip_server.users["alice"]}
    base = vip_server.url + "/rest/path/vip/Home"
    home = vip_server.data_dir / "users" / "alice" / "Home"
    tag = secrets.token_hex(4)
    to_bob = home / f"link-bob-{tag}"
    to_outside = home / f"link-out-{tag}.txt"
    to_etc = home / f"link-etc-{tag}"
    os.symlink(vip_server.data_dir / "users" / "bob" / "Home", to_bob)
    os.symlink(setup["outside"], to_outside)
    os.symlink("/etc", to_etc)
    try:
        sec = f"sec-{setup['tag']}/secret.txt"
        for path, action in [
            (f"link-bob-{tag}/{sec}", "content"), (f"link-bob-{tag}/{sec}", "properties"),
            (f"link-bob-{tag}", "list"), (f"link-out-{tag}.txt", "content"),
            (f"link-out-{tag}.txt", "md5"), (f"link-etc-{tag}/passwd", "content"),
            (f"link-etc-{tag}", "list"),
        ]:
            r = requests.get(f"{base}/{path}?action={action}", headers=alice, timeout=T)
            refused(r.status_code, r.headers.get("content-type", ""), r.content)
        r = requests.put(f"{base}/link-bob-{tag}/{sec}", headers=alice, data=b"pwned", timeout=T)
        refused(r.status_code, r.headers.get("content-type", ""), r.content)
        r = requests.put(f"{base}/link-out-{tag}.txt", headers=alice, data=b"pwned", timeout=T)
        refused(r.status_code, r.headers.get("content-type", ""), r.content)
        r = requests.put(f"{base}/link-bob-{tag}/newdir", headers=alice, timeout=T)
        refused(r.status_code, r.headers.get("content-type", ""), r.content)
        r = requests.delete(f"{base}/link-bob-{tag}/{sec}", headers=alice, timeout=T)
        refused(r.status_code, r.headers.get("content-type", ""), r.content)
        # listings do not show links leading outside the space
        names = [p["path"] for p in requests.get(f"{base}?action=list", headers=alice, timeout=T).json()]
        assert not [n for n in names if tag in n]
        assert (vip_server.data_dir / "users" / setup["rel"]).read_bytes() == SECRET
        assert setup["outside"].read_bytes() == b"outside data"
    finally:
        for link in (to_bob, to_outside, to_etc):
            link.unlink()


def test_execution_inputs_cannot_escape(vip_server, setup):
    alice = {"apikey": vip_server.users["alice"]}
    url = vip_server.url + "/rest/executions"
    for bad in [f"/vip/Home/../../{setup['rel']}", f"/vip/Home/../../../{setup['outside'].name}",
                "/etc/passwd"]:
        r = requests.post(url, headers=alice, timeout=T, json={
            "name": "escape", "pipelineIdentifier": "TextStats/1.0", "inputValues": {"input_file": bad}})
        code = refused(r.status_code, r.headers["content-type"], r.content)
        assert code in (8000, 8009, 8013)
    bob_home = vip_server.data_dir / "users" / "bob" / "Home"
    before = sorted(p.name for p in bob_home.iterdir())
    r = requests.post(url, headers=alice, timeout=T, json={
        "name": "escape", "pipelineIdentifier": "Sleep/1.0", "inputValues": {"duration": 0},
        "resultsLocation": "/vip/Home/../../bob/Home"})
    assert refused(r.status_code, r.headers["content-type"], r.content) == 8013
    assert sorted(p.name for p in bob_home.iterdir()) == before  # no results folder made there


def test_archive_upload_cannot_escape(make_server):
    import base64
    import io
    import zipfile

    srv = make_server(archive_uploads=True)  # VIP refuses archives; the kinder mode extracts them
    tag = secrets.token_hex(4)
    bob = {"apikey": srv.users["bob"]}
    assert requests.put(f"{srv.url}/rest/path/vip/Home/sec-{tag}", headers=bob, timeout=T).status_code == 201
    r = requests.put(f"{srv.url}/rest/path/vip/Home/sec-{tag}/secret.txt", headers=bob, data=SECRET, timeout=T)
    assert r.status_code == 201
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"../../../bob/Home/sec-{tag}/secret.txt", "overwritten")
    body = {"type": "Archive", "base64Content": base64.b64encode(buf.getvalue()).decode()}
    r = requests.put(f"{srv.url}/rest/path/vip/Home/zip-{tag}", json=body, timeout=T,
                     headers={"apikey": srv.users["alice"], "Content-Type": "application/carmin+json"})
    assert refused(r.status_code, r.headers["content-type"], r.content) == 8013
    assert (srv.data_dir / "users" / f"bob/Home/sec-{tag}/secret.txt").read_bytes() == SECRET

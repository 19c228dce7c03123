"""VipClient against a real local VIP server (HTTP on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import http.server
import logging
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
from clients import use_client_kind
from relays import LOSE, Redirector, Relay

from vip_smk.core.client import (
    AuthError,
    CapacityError,
    Execution,
    InvalidInput,
    NotFound,
    PathInfo,
    PermissionDenied,
    Pipeline,
    ServerError,
    TooLarge,
    TransportError,
    VipClient,
    VipError,
    quote_path,
    vip_client_key_kwargs,
)

# One suite, both clients: every test below runs with VipClient and with AsyncVipClient (the
# module's `VipClient` is each in turn, tests/clients.py).
client_kind = use_client_kind(globals())


@pytest.fixture
def client(client_kind, vip_server):
    c = VipClient(vip_server.url, api_key=vip_server.api_key, retry_budget=5, progress=False)
    yield c
    c.close()


@pytest.fixture
def home(client):
    d = f"/vip/Home/test-client-{uuid.uuid4().hex[:8]}"
    client.mkdir(d)
    yield d
    client.delete(d, missing_ok=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ key and URL


def test_api_key_explicit_sources(tmp_path, monkeypatch):
    url = "http://127.0.0.1:9"
    keyfile = tmp_path / "key.txt"
    keyfile.write_text("  from-file-key\n")
    monkeypatch.setenv("MY_VIP_KEY", "from-env-key")
    monkeypatch.setenv("VIP_API_KEY", "default-env-key")
    cases = [
        ({"api_key": "literal-key-123"}, "literal-key-123", "the api_key argument"),
        ({"api_key": str(keyfile)}, str(keyfile), "the api_key argument"),  # never read as a file
        ({"api_key": "MY_VIP_KEY"}, "MY_VIP_KEY", "the api_key argument"),  # nor as a variable
        ({"api_key_env": "MY_VIP_KEY"}, "from-env-key", "the environment variable MY_VIP_KEY"),
        ({"api_key_file": keyfile}, "from-file-key", f"the file {keyfile}"),
        ({"api_key_file": str(keyfile)}, "from-file-key", f"the file {keyfile}"),
        ({}, "default-env-key", "the environment variable VIP_API_KEY"),
    ]
    for kw, key, source in cases:
        c = VipClient(url, **kw)
        assert c.transport.headers["apikey"] == key and c.key_source == source, kw
        assert key not in repr(c) and source in repr(c)


def test_api_key_errors_name_the_source_never_the_key(tmp_path, monkeypatch):
    url = "http://127.0.0.1:9"
    monkeypatch.delenv("VIP_API_KEY", raising=False)
    monkeypatch.delenv("MY_VIP_KEY", raising=False)
    with pytest.raises(AuthError, match="environment variable VIP_API_KEY is not set"):
        VipClient(url)
    with pytest.raises(AuthError, match="environment variable MY_VIP_KEY is not set"):
        VipClient(url, api_key_env="MY_VIP_KEY")
    monkeypatch.setenv("MY_VIP_KEY", "  ")
    with pytest.raises(AuthError, match="environment variable MY_VIP_KEY .* is empty"):
        VipClient(url, api_key_env="MY_VIP_KEY")
    with pytest.raises(AuthError, match=f"API key file {tmp_path / 'nope'} not found"):
        VipClient(url, api_key_file=tmp_path / "nope")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(AuthError, match="the API key file .*empty is empty"):
        VipClient(url, api_key_file=tmp_path / "empty")
    with pytest.raises(AuthError, match="only one of"):
        VipClient(url, api_key="secret-k", api_key_env="MY_VIP_KEY")
    with pytest.raises(AuthError, match="api_key_file="):
        VipClient(url, api_key=tmp_path / "key.txt")  # a path is not a key


def test_vip_client_one_string_key_order(tmp_path, monkeypatch):
    """vip-client 0.1.10's init(api_key=...): an existing file, else a set variable, else the key."""
    keyfile = tmp_path / "KEYNAME"
    keyfile.write_text("k")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEYNAME", "from-env")
    assert vip_client_key_kwargs("KEYNAME") == {"api_key_file": "KEYNAME"}  # file first
    assert vip_client_key_kwargs(keyfile) == {"api_key_file": keyfile}
    keyfile.unlink()
    assert vip_client_key_kwargs("KEYNAME") == {"api_key_env": "KEYNAME"}
    monkeypatch.delenv("KEYNAME")
    assert vip_client_key_kwargs("KEYNAME") == {"api_key": "KEYNAME"}
    assert vip_client_key_kwargs("abc-123.x") == {"api_key": "abc-123.x"}
    monkeypatch.delenv("VIP_API_KEY", raising=False)
    # the default name unset: the error names the variable rather than sending it as a key
    assert vip_client_key_kwargs("VIP_API_KEY") == {"api_key_env": "VIP_API_KEY"}


def test_url_defaults_and_repr(monkeypatch):
    monkeypatch.setenv("VIP_URL", "http://127.0.0.1:9/rest/")
    c = VipClient(api_key="super-secret-key-xyz")
    assert c.url == "http://127.0.0.1:9" and c.base == "http://127.0.0.1:9/rest/"
    assert "super-secret-key-xyz" not in repr(c)
    monkeypatch.delenv("VIP_URL")
    assert VipClient(api_key="test-key-123").url == "https://vip.creatis.insa-lyon.fr"
    # `:`, spaces and parentheses round-trip through percent-encoding
    assert quote_path("/vip/ReproVIP (group)/a b/12-01-2026_10:00:00") == (
        "/vip/ReproVIP%20%28group%29/a%20b/12-01-2026_10%3A00%3A00"
    )


def test_models_keep_unknown_keys():
    data = {"identifier": "workflow-abc", "status": "Ready", "studyIdentifier": None, "timeout": 0,
            "returnedFiles": {"a": ["/vip/Home/x"], "b": ["/vip/Home/y", "/vip/Home/z"]}}
    ex = Execution.from_json(data)
    assert ex.is_running and not ex.is_over  # Ready counts as running
    assert ex.output_paths == ["/vip/Home/x", "/vip/Home/y", "/vip/Home/z"]
    assert ex.to_json()["timeout"] == 0 and ex.extra == {"studyIdentifier": None, "timeout": 0}
    assert Execution.from_json({"identifier": "w", "status": "Killed"}).is_over
    p = Pipeline.from_json({"identifier": "A/1", "parameters": [{"name": "x", "futureKey": 1}]})
    assert p.parameters[0].extra == {"futureKey": 1}
    assert p.to_json()["parameters"][0]["futureKey"] == 1


# ------------------------------------------------------------------------------ calls


def test_platform_and_pipelines(client):
    assert client.platform()["platformName"] == "VIP"
    client.check_key()
    ids = {p.identifier for p in client.pipelines()}
    assert {"TextStats/1.0", "Smooth/1.0", "Sleep/1.0", "Fail/1.0"} <= ids
    p = client.pipeline("TextStats/1.0")
    assert p.identifier == "TextStats/1.0" and p.can_execute
    assert p.parameter("input_file").is_required and p.parameter("input_file").type == "File"
    assert not p.parameter("delimiter").is_required


def test_paths_round_trip_with_awkward_names(client, home, tmp_path):
    d = f"{home}/Group (x)/12-01-2026_10:00:00"
    client.mkdir(d)  # parents created
    client.mkdir(d)  # idempotent
    assert client.exists(d) and not client.exists(f"{home}/nope")
    data = bytes(range(256)) * 5000
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    client.upload(src, f"{d}/blob.bin")
    [entry] = client.list(d)
    assert isinstance(entry, PathInfo)
    assert entry.path == f"{d}/blob.bin" and entry.size == len(data) and not entry.is_directory
    props = client.properties(f"{d}/blob.bin")
    assert props.size == len(data) and props.exists
    # VIP-portal does not compute md5 (8001): None, remembered (no second request)
    assert client.md5(f"{d}/blob.bin") is None and client.md5_offered is False
    before = client.requests_made
    assert client.md5(f"{d}/blob.bin") is None and client.requests_made == before
    out = client.download(f"{d}/blob.bin", tmp_path / "out" / "blob.bin")
    assert out.read_bytes() == data
    assert not (tmp_path / "out" / "blob.bin.part").exists()
    client.delete(f"{home}/Group (x)")
    assert not client.exists(d)
    with pytest.raises(NotFound):
        client.delete(f"{home}/Group (x)")
    client.delete(f"{home}/Group (x)", missing_ok=True)


def test_upload_refuses_empty_and_renamed_names(client, home, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.touch()
    with pytest.raises(InvalidInput, match="empty"):
        client.upload(empty, f"{home}/empty.txt")
    spaced = tmp_path / "a b é.txt"
    spaced.write_text("x")
    with pytest.raises(InvalidInput, match="a_b_.txt"):
        client.upload(spaced, f"{home}/a b é.txt")
    assert client.list(home) == []


def test_launch_wait_results_logs_and_outputs(client, home, tmp_path):
    csv = tmp_path / "table.csv"
    csv.write_text("a,b\n1,2\n3,5\n")
    client.upload(csv, f"{home}/table.csv")
    ex = client.launch("TextStats/1.0", {"input_file": f"{home}/table.csv"}, f"{home}/out", name="stats run")
    assert ex.identifier.startswith("workflow-") and ex.pipeline_identifier == "TextStats/1.0"
    done = client.wait(ex.identifier, poll=0.2, timeout=60)
    assert done.status == "Finished"
    assert any(e.identifier == ex.identifier for e in client.executions())
    assert client.count_executions() >= 1
    [res] = client.results(ex.identifier)
    assert res.path.endswith("/table.csv.stats.txt") and res.path.startswith(f"{home}/out/")
    assert done.output_paths == [res.path]
    assert "TextStats" in client.stdout(ex.identifier)
    assert isinstance(client.stderr(ex.identifier), str)
    text = client.download(res.path, tmp_path / "stats.txt").read_text()
    assert "rows" in text or "mean" in text
    client.delete_execution(ex.identifier, delete_files=True)
    with pytest.raises(NotFound) as err:  # VIP-portal 4.6: 8000 for an unknown execution id
        client.execution(ex.identifier)
    assert err.value.code == 8000 and ex.identifier in str(err.value)
    assert not client.exists(res.path)


def test_kill(client, home):
    ex = client.launch("Sleep/1.0", {"duration": 30}, f"{home}/out", name="to kill")
    client.kill(ex.identifier)
    assert client.wait(ex.identifier, poll=0.2, timeout=30).status == "Killed"


def test_wait_calls_back_each_round_then_times_out_cleanly(client, home):
    """wait(callback=): the execution's state at every polling round, running first and the
    final state last; wait(timeout=) raises TimeoutError with the execution still running."""
    ex = client.launch("Sleep/1.0", {"duration": 1.5}, f"{home}/out", name="called back")
    seen = []
    done = client.wait(ex.identifier, poll=0.2, timeout=60, callback=seen.append)
    assert done.status == "Finished"
    assert len(seen) >= 3 and {e.identifier for e in seen} == {ex.identifier}
    assert seen[0].is_running and seen[-1].status == "Finished"
    assert all(e.is_running for e in seen[:-1])
    slow = client.launch("Sleep/1.0", {"duration": 30}, f"{home}/out", name="too slow")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=slow.identifier):
        client.wait(slow.identifier, poll=0.2, timeout=0.8)
    assert time.monotonic() - t0 < 5
    assert client.execution(slow.identifier).is_running
    client.kill(slow.identifier)
    assert client.wait(slow.identifier, poll=0.2, timeout=30).status == "Killed"


# ------------------------------------------------------------------------------ errors


def test_error_classes_from_server_answers(client, home, tmp_path):
    with pytest.raises(NotFound) as e:
        client.list(f"{home}/missing dir")
    assert e.value.code == 8000 and e.value.status == 400 and "list" in str(e.value)
    assert f"{home}/missing dir" in str(e.value)
    with pytest.raises(NotFound) as e:
        client.pipeline("NoSuchApp/9.9")
    assert e.value.code == 8007 and "NoSuchApp/9.9" in str(e.value)
    with pytest.raises(InvalidInput) as e:
        client.launch("NoSlash", {}, f"{home}/out", name="x")
    assert e.value.code == 8005
    with pytest.raises(InvalidInput) as e:
        client.launch("TextStats/1.0", {}, f"{home}/out", name="x")
    assert e.value.code == 8018 and "input_file" in str(e.value)
    with pytest.raises(InvalidInput) as e:
        client.launch("TextStats/1.0", {"input_file": f"{home}/x#y"}, f"{home}/out", name="x")
    assert e.value.code == 8009
    with pytest.raises(InvalidInput) as e:
        client.launch("Sleep/1.0", {"duration": 1}, f"{home}/out", name="bad/name!")
    assert e.value.code == 8019
    f = tmp_path / "f.txt"
    f.write_text("x")
    with pytest.raises(PermissionDenied) as e:
        client.upload(f, "/vip/Home")
    assert e.value.code == 8013 and e.value.status == 400
    with pytest.raises(InvalidInput):
        client.list("/vip/Home/../../etc")  # refused before sending


def test_bad_key_is_auth_error_without_the_key(vip_server, caplog, monkeypatch, tmp_path):
    key = "wrong-" + uuid.uuid4().hex
    c = VipClient(vip_server.url, api_key=key, retry_budget=1)
    with caplog.at_level(logging.DEBUG):
        for call in (c.check_key, c.pipelines, lambda: c.list("/vip/Home")):
            with pytest.raises(AuthError) as e:
                call()
            assert e.value.code == 8002 and e.value.status == 401
            assert key not in str(e.value) and key not in repr(e.value) and key not in repr(e.value.args)
            assert "the api_key argument" in str(e.value)
    assert key not in caplog.text and key not in repr(c)
    # the message says where the refused key came from, in one line, no traceback chained
    monkeypatch.setenv("MY_VIP_KEY", key)
    with pytest.raises(AuthError) as e:
        VipClient(vip_server.url, api_key_env="MY_VIP_KEY", retry_budget=1).pipeline("TextStats/1.0")
    text = str(e.value)
    assert "environment variable MY_VIP_KEY" in text and vip_server.url in text and "TextStats/1.0" in text
    assert "\n" not in text and key not in text and e.value.__cause__ is None and e.value.__suppress_context__
    (tmp_path / "key").write_text(key)
    with pytest.raises(AuthError, match=f"from the file {tmp_path / 'key'} was refused"):
        VipClient(vip_server.url, api_key_file=tmp_path / "key", retry_budget=1).check_key()


def test_capacity_error(make_server, tmp_path):
    srv = make_server(max_running=1)
    c = VipClient(srv.url, api_key=srv.api_key, retry_budget=2)
    c.launch("Sleep/1.0", {"duration": 30}, "/vip/Home/out", name="first")
    with pytest.raises(CapacityError) as e:
        c.launch("Sleep/1.0", {"duration": 30}, "/vip/Home/out", name="second")
    assert e.value.code == 2001 and "Sleep/1.0" in str(e.value)
    assert [x.name for x in c.executions()] == ["first"]  # not retried, not duplicated


class _Html502(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        self.server.hits += 1
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
        if "pipelines" in self.path:
            status = 200  # a login page answered with 200 instead of JSON
        else:
            status = 502 if "platform" in self.path or "path" in self.path else 404
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


def test_html_error_pages_are_errors(tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Html502)
    httpd.hits = 0
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        c = VipClient(url, api_key="test-key-123", retries=3, retry_budget=2, backoff=0.05)
        with pytest.raises(ServerError) as e:
            c.platform()
        assert e.value.status == 502 and "platform" in str(e.value) and "HTML" in str(e.value)
        assert "502 Bad Gateway" in str(e.value)
        assert httpd.hits == 4  # 1 + 3 retries on 502
        f = tmp_path / "f.txt"
        f.write_text("data")
        with pytest.raises(ServerError) as e:  # an HTML 502 on upload is not a success
            c.upload(f, "/vip/Home/f.txt")
        assert e.value.status == 502 and "/vip/Home/f.txt" in str(e.value)
        with pytest.raises(ServerError) as e:  # HTML with 200 where JSON is expected
            c.pipelines()
        assert e.value.status == 200 and "pipelines" in str(e.value) and "JSON" in str(e.value)
        hits = httpd.hits
        with pytest.raises(ServerError) as e:  # HTML 404 on POST: not retried, not success
            c.launch("A/1", {}, "/vip/Home/out", name="x")
        assert e.value.status == 404 and httpd.hits == hits + 1
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_transport_errors(make_server):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    c = VipClient(url, api_key="some-key-xyz", retry_budget=0.5, backoff=0.05)
    t0 = time.monotonic()
    with pytest.raises(TransportError) as e:
        c.pipeline("TextStats/1.0")
    text = str(e.value)
    # names the call, the URL and what to check; one line, no chained traceback
    assert text.startswith("pipeline TextStats/1.0: cannot reach VIP at " + url), text
    assert "check the URL" in text and "\n" not in text and time.monotonic() - t0 < 5
    assert e.value.__cause__ is None and e.value.__suppress_context__
    slow = make_server(latency_ms=1500)
    c = VipClient(slow.url, api_key=slow.api_key, timeout=(2, 0.3), retries=1, retry_budget=1)
    with pytest.raises(TransportError, match="no answer"):
        c.exists("/vip/Home")


def test_retries_and_no_duplicate_launch_under_faults(make_server, tmp_path):
    srv = make_server(fault_rate=0.4, seed=11, max_running=0)  # 8 launches at once: no cap
    c = VipClient(srv.url, api_key=srv.api_key, retry_budget=30, backoff=0.02, max_backoff=0.2,
                  retries=30, progress=False)
    for _ in range(15):
        assert c.exists("/vip/Home")
    c.mkdir("/vip/Home/faults/a/b")
    names = [f"run {i}" for i in range(8)]
    launched = [c.launch("Sleep/1.0", {"duration": 0.05}, "/vip/Home/faults/out", name=n) for n in names]
    assert len({x.identifier for x in launched}) == len(names)
    all_ex = c.executions()
    for n in names:
        assert sum(1 for x in all_ex if x.name == n) == 1, f"{n} launched more than once"
    c.delete("/vip/Home/faults")
    assert not c.exists("/vip/Home/faults")


def test_a_lost_launch_reply_is_found_not_sent_again(vip_server):
    """VIP creates the execution but its reply to POST executions never arrives (the connection
    closes): the client finds the execution by its name and returns it; one POST, one execution."""
    lost: list[str] = []

    def lose_the_launch_reply(path, resp, body):
        if resp.request.method == "POST" and path.rstrip("/").endswith("/executions") and not lost:
            lost.append(path)
            return LOSE
        return body

    with Relay(vip_server.url, rewrite=lose_the_launch_reply) as relay:
        c = VipClient(relay.url, api_key=vip_server.api_key, retry_budget=10, backoff=0.02, progress=False)
        out = f"/vip/Home/lost-reply-{uuid.uuid4().hex[:6]}"
        c.mkdir(out)
        name = f"lost reply {uuid.uuid4().hex[:6]}"
        ex = c.launch("Sleep/1.0", {"duration": 0.05}, out, name=name)
        assert lost, "the relay lost no reply: the test tested nothing"
        assert [m for m, p in relay.calls if m == "POST"] == ["POST"]
        assert [e.identifier for e in c.executions() if e.name == name] == [ex.identifier]
        c.close()


def test_errors_are_vip_errors_with_call_and_target(client):
    with pytest.raises(VipError) as e:
        client.properties("/vip/Home/does/not/exist")
    assert e.value.call == "properties" and e.value.target == "/vip/Home/does/not/exist"
    assert isinstance(e.value, NotFound)


def test_large_upload_is_streamed(make_server, tmp_path):
    """A 32 MB upload then download: byte-identical (memory is measured in bench/); the upload
    hashes the bytes while reading them (`hasher`: the digest of the file, no second read).
    32 MB is over VIP-portal's shipped download limit: this server lifts it."""
    from vip_smk.core import content

    srv = make_server(max_download_size=0)
    client = VipClient(srv.url, api_key=srv.api_key, retry_budget=5, progress=False)
    home = "/vip/Home/big"
    client.mkdir(home)
    big = tmp_path / "big.bin"
    chunk = hashlib.sha256(b"x").digest() * 32768  # 1 MiB
    with open(big, "wb") as fh:
        for i in range(32):
            fh.write(chunk[i:] + chunk[:i])
    seen = []
    digest = client.upload(big, f"{home}/big.bin", progress=seen.append, hasher=content.hasher)
    assert digest == _sha(big) == content.digest_file(big)
    assert sum(seen) == big.stat().st_size
    assert max(seen) <= 1 << 20
    assert client.upload(big, f"{home}/again.bin") is None  # no hasher: no digest
    out = client.download(f"{home}/big.bin", tmp_path / "big.out")
    assert _sha(out) == _sha(big)
    client.close()


def _sha(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for b in iter(lambda: fh.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


class _CutOnce(http.server.BaseHTTPRequestHandler):
    """Serves server.data; the first GET is cut after half the body, later GETs honour Range."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        data = self.server.data
        self.server.ranges.append(self.headers.get("Range"))
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if len(self.server.ranges) == 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


def test_download_cut_mid_body_resumes_with_range(tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CutOnce)
    httpd.data = bytes(range(256)) * 4096  # 1 MiB
    httpd.ranges = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        c = VipClient(f"http://127.0.0.1:{httpd.server_address[1]}", api_key="test-key-123", retry_budget=5,
                      backoff=0.05)
        out = c.download("/vip/Home/f.bin", tmp_path / "f.bin")
        assert out.read_bytes() == httpd.data
        assert httpd.ranges == [None, f"bytes={len(httpd.data) // 2}-"]  # resumed, not restarted
        assert not (tmp_path / "f.bin.part").exists()
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("status, running", [
    ("Initializing", True), ("Ready", True), ("Running", True),
    ("SomeFutureStatus", True),  # unknown to us: wait rather than treat its data as final
    ("Finished", False), ("ExecutionFailed", False), ("InitializationFailed", False),
    ("Killed", False), ("Unknown", False), ("Removed", False),
])
def test_every_non_terminal_status_counts_as_running(status, running):
    from vip_smk.core.client import Execution

    ex = Execution.from_json({"identifier": "workflow-abcdef", "status": status})
    assert ex.is_running is running and ex.is_over is (not running)


def test_md5_where_offered_and_download_size_limit(make_server, tmp_path):
    srv = make_server(md5=True, max_download_size=1000)
    c = VipClient(srv.url, api_key=srv.api_key, retry_budget=2, progress=False)
    assert c.max_download_size() == 1000
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    small.write_bytes(b"s" * 1000)
    big.write_bytes(b"b" * 1001)
    c.mkdir("/vip/Home/lim")
    c.upload(small, "/vip/Home/lim/small.bin")
    c.upload(big, "/vip/Home/lim/big.bin")
    assert c.md5("/vip/Home/lim/small.bin") == hashlib.md5(b"s" * 1000).hexdigest() and c.md5_offered
    assert c.download("/vip/Home/lim/small.bin", tmp_path / "out" / "small.bin", size=1000).stat().st_size == 1000
    before = c.requests_made
    with pytest.raises(TooLarge) as e:  # refused before any request (platform already read)
        c.download("/vip/Home/lim/big.bin", tmp_path / "out" / "big.bin", size=1001)
    assert c.requests_made == before and not (tmp_path / "out" / "big.bin.part").exists()
    text = str(e.value)
    assert "/vip/Home/lim/big.bin" in text and "1,001 bytes" in text and "1,000 bytes" in text
    assert (e.value.size, e.value.limit) == (1001, 1000)
    # size unknown to the caller: the server's own refusal is an error too (never an empty file)
    with pytest.raises(VipError):
        c.download("/vip/Home/lim/big.bin", tmp_path / "out" / "big2.bin")
    assert not (tmp_path / "out" / "big2.bin").exists()


def _files_round_trip(c, d: str, tmp_path, text: str) -> None:
    """Through whatever front `c` talks to: a folder made, a file up, down and read, the folder
    listed, an unknown path NotFound, the folder deleted."""
    c.mkdir(d)
    (tmp_path / "f.txt").write_text(text)
    c.upload(tmp_path / "f.txt", f"{d}/f.txt")
    assert c.download(f"{d}/f.txt", tmp_path / "back.txt").read_text() == text
    assert c.read_bytes(f"{d}/f.txt") == text.encode()
    assert [i.path for i in c.list(d)] == [f"{d}/f.txt"]
    with pytest.raises(NotFound):
        c.list(f"{d}/nope")
    c.delete(d)


def test_calls_go_through_a_proxy_from_the_environment(vip_server, monkeypatch, tmp_path):
    proxy = Relay()  # a plain forward proxy that records what it relays
    try:
        for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        c = VipClient(vip_server.url, api_key=vip_server.api_key, retry_budget=2, progress=False)
        _files_round_trip(c, f"/vip/Home/proxied-{uuid.uuid4().hex[:6]}", tmp_path,
                          "through the proxy")
        methods = {m for m, _ in proxy.calls}
        assert {"GET", "PUT", "DELETE"} <= methods
        assert all(u.startswith(vip_server.url + "/rest/") for _, u in proxy.calls)
    finally:
        proxy.close()


def test_calls_follow_a_redirect(vip_server, tmp_path):
    """A front answering 307 (moved, a load balancer): every call is followed to VIP, an
    upload's body sent again whole (the fast paths hand redirects to requests / httpx)."""
    with Redirector(vip_server.url) as front:
        c = VipClient(front.url, api_key=vip_server.api_key, retry_budget=2, progress=False)
        d = f"/vip/Home/moved-{uuid.uuid4().hex[:6]}"
        _files_round_trip(c, d, tmp_path, "followed")
        assert {"GET", "PUT", "DELETE"} <= {m for m, _ in front.calls}
    assert not VipClient(vip_server.url, api_key=vip_server.api_key, progress=False).exists(d)


def test_a_closed_client_reconnects(vip_server):
    c = VipClient(vip_server.url, api_key=vip_server.api_key, retry_budget=2)
    assert c.exists("/vip/Home")
    c.close()  # (as requests does after Session.close: the next call opens a new pool)
    assert c.exists("/vip/Home")
    c.close()


@pytest.mark.parametrize("name", ["plain.dat", "a+b=c(1).dat"])
def test_small_download_headers_are_those_of_a_streamed_one(vip_server, client, home, tmp_path, name):
    """The server answers a small file from memory with FileResponse's very headers (a Range
    request goes through the streaming FileResponse): no difference a client could see."""
    import requests

    src = tmp_path / name
    src.write_bytes(b"0123456789" * 50)
    client.upload(src, f"{home}/{name}")
    url = f"{vip_server.url}/rest/path{home}/{name}"
    hdr = {"apikey": vip_server.api_key, "Accept-Encoding": "identity"}
    whole = requests.get(url, params={"action": "content"}, headers=hdr, timeout=10)
    ranged = requests.get(url, params={"action": "content"}, headers={**hdr, "Range": "bytes=0-"}, timeout=10)
    assert (whole.status_code, ranged.status_code) == (200, 206)
    assert whole.content == ranged.content == src.read_bytes()
    for h in ("content-type", "accept-ranges", "content-disposition", "last-modified", "etag"):
        assert whole.headers[h] == ranged.headers[h], h
    assert whole.headers["content-length"] == str(src.stat().st_size)
    assert whole.headers["content-disposition"].startswith("attachment; filename")


# ------------------------------------------------------------------ issue 22: items 8 and 13


def test_url_local_means_the_local_server_of_vip_local_everywhere(tmp_path, monkeypatch):
    """VipClient('local'), VIP_URL=local and VipSession.init() with VIP_URL=local: the local
    VIP of ./.vip-local (started if needed, then attached to), keyed by its key file."""
    from vip_smk.server import LocalServer
    from vip_smk.sessions.session import VipSession

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VIP_API_KEY", raising=False)
    monkeypatch.delenv("VIP_URL", raising=False)
    for attr in ("_default_client", "_VERBOSE", "_BACKUP_LOCATION", "_AVAILABLE_PIPELINES"):
        monkeypatch.setattr(VipSession, attr, getattr(VipSession, attr))  # init() sets them: restored
    try:
        c = VipClient("local", progress=False)
        srv = LocalServer.attach(tmp_path / ".vip-local")
        assert srv is not None and c.url == srv.url.rstrip("/") and c.url.startswith("http://127.0.0.1:")
        assert c.key_source == f"the file {tmp_path / '.vip-local' / 'apikey'}"
        assert "TextStats/1.0" in {p.identifier for p in c.pipelines()}
        monkeypatch.setenv("VIP_URL", "local")
        assert VipClient(progress=False).url == c.url  # attached, not a second server
        assert LocalServer.attach(tmp_path / ".vip-local").pid == srv.pid
        VipSession.init(verbose=False)  # api_key's default: the local server's key file
        assert VipSession._default_client.url == c.url
        # a key given explicitly is used (and refused here: it is not the local server's)
        with pytest.raises(AuthError, match="the api_key argument"):
            VipClient("local", api_key="not-the-local-key").pipelines()
    finally:
        srv = LocalServer.attach(tmp_path / ".vip-local")
        if srv is not None:
            srv.stop()


def test_bad_url_errors_name_the_setting(monkeypatch):
    monkeypatch.setenv("VIP_API_KEY", "some-test-key-123")
    with pytest.raises(InvalidInput, match=r"^url 'ftp://x': .*http:// or https:// .*'local'"):
        VipClient("ftp://x")
    monkeypatch.setenv("VIP_URL", "vip.creatis.insa-lyon.fr")
    with pytest.raises(InvalidInput, match=r"^\$VIP_URL 'vip.creatis.insa-lyon.fr'"):
        VipClient()
    from vip_smk.sessions.session import VipSession

    with pytest.raises(Exception, match=r"vip_portal_url 'localhost:8080'"):
        VipSession.init(vip_portal_url="localhost:8080", verbose=False)


def test_short_keys_are_refused_and_masking_spares_words(tmp_path, monkeypatch):
    """A 1-letter 'key' masked in messages turned 'proxy' into 'pro***y': keys shorter than
    8 characters are refused (naming the source, never the key); longer ones are masked."""
    from vip_smk.api.transport import Transport

    url = "http://127.0.0.1:9"
    with pytest.raises(AuthError, match="from the api_key argument is 1 character") as err:
        VipClient(url, api_key="x")
    monkeypatch.setenv("MY_VIP_KEY", "Zq7w")
    with pytest.raises(AuthError, match="environment variable MY_VIP_KEY is 4 character") as err:
        VipClient(url, api_key_env="MY_VIP_KEY")
    assert "Zq7w" not in str(err.value)
    (tmp_path / "k").write_text("Zq7w\n")
    with pytest.raises(AuthError, match=f"the file {tmp_path / 'k'} is 4 character"):
        VipClient(url, api_key_file=tmp_path / "k")
    assert Transport(url, "x", "test").scrub("check the proxy settings") == "check the proxy settings"
    key = "Zq7w-long-enough-key"
    assert Transport(url, key, "test").scrub(f"refused {key}!") == "refused ***!"
    c = VipClient(url, api_key=key, retry_budget=0.3, backoff=0.05)
    with pytest.raises(TransportError) as err:
        c.pipelines()
    assert key not in str(err.value) and "proxy" in str(err.value)

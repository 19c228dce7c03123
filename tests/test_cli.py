"""The `vip-smk` command line (subprocesses) against the local VIP server."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest


def run(vip_server, *args, key=None, check=True, timeout=60):
    env = {**os.environ, "VIP_URL": vip_server.url, "VIP_API_KEY": key or vip_server.api_key}
    proc = subprocess.run([sys.executable, "-m", "vip_smk.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def vip_dir(vip_server):
    return f"/vip/Home/test-cli-{uuid.uuid4().hex[:8]}"


def test_cli_main_verbs(vip_server, vip_dir, tmp_path):
    assert "TextStats/1.0" in run(vip_server, "pipelines").stdout.split()
    show = run(vip_server, "show", "TextStats/1.0").stdout
    assert "input_file" in show and "required" in show and "[File]" in show
    src = tmp_path / "data"
    (src / "sub").mkdir(parents=True)
    (src / "t.csv").write_text("a,b\n1,2\n")
    (src / "sub" / "u.csv").write_text("a\n5\n")
    out = run(vip_server, "-q", "put", str(src), vip_dir).stdout
    assert "uploaded 2 file(s)" in out
    assert "skipped 2 unchanged" in run(vip_server, "put", str(src), vip_dir).stdout
    assert run(vip_server, "ls", vip_dir).stdout.split() == ["sub/", "t.csv"]
    assert "t.csv" in run(vip_server, "ls", "-l", vip_dir).stdout
    run(vip_server, "get", vip_dir, str(tmp_path / "back"))
    assert (tmp_path / "back" / "sub" / "u.csv").read_text() == "a\n5\n"
    run(vip_server, "get", f"{vip_dir}/t.csv", str(tmp_path))
    assert (tmp_path / "t.csv").read_text() == "a,b\n1,2\n"
    eid = run(vip_server, "launch", "TextStats/1.0", "--input", f"input_file={vip_dir}/t.csv",
              "--input", "precision=2", "--results", f"{vip_dir}/out", "--name", "cli run",
              "--wait").stdout.split()[0]
    assert eid.startswith("workflow-")
    status = run(vip_server, "status", eid).stdout
    assert "Finished" in status and "t.csv.stats.txt" in status
    assert eid in run(vip_server, "status").stdout
    sleeper = run(vip_server, "launch", "Sleep/1.0", "-i", "duration=30", "--results",
                  f"{vip_dir}/out").stdout.strip()
    assert run(vip_server, "kill", sleeper).stdout.strip() == f"killed {sleeper}"
    run(vip_server, "rm", vip_dir)
    gone = run(vip_server, "ls", vip_dir, check=False)
    assert gone.returncode == 1 and "NotFound" in gone.stderr


def test_cli_errors_are_one_line_without_traceback(vip_server, tmp_path):
    key = "bad-" + uuid.uuid4().hex
    proc = run(vip_server, "pipelines", key=key, check=False)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "AuthError" in proc.stderr
    assert "Traceback" not in proc.stderr and key not in proc.stderr + proc.stdout
    proc = run(vip_server, "show", "NoSuch/1.0", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("vip-smk: NotFound")
    proc = run(vip_server, "launch", "TextStats/1.0", "--input", "oops", "--results", "/vip/Home/x",
               check=False)
    assert proc.returncode == 1 and "NAME=VALUE" in proc.stderr and "Traceback" not in proc.stderr
    proc = run(vip_server, "put", str(tmp_path / "nothing"), "/vip/Home/x", check=False)
    assert proc.returncode == 1 and "no such file" in proc.stderr
    # global options after the verb work too
    keyfile = tmp_path / "key"
    keyfile.write_text(vip_server.api_key + "\n")
    proc = subprocess.run([sys.executable, "-m", "vip_smk.cli", "ls", "/vip/Home", "--url", vip_server.url,
                           "--api-key-file", str(keyfile)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # the key comes from the variable --api-key-env names; an unset one is named, no traceback
    env = {**os.environ, "MY_VIP_KEY": vip_server.api_key}
    proc = subprocess.run([sys.executable, "-m", "vip_smk.cli", "--url", vip_server.url, "--api-key-env",
                           "MY_VIP_KEY", "ls", "/vip/Home"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "vip_smk.cli", "--url", vip_server.url, "--api-key-env",
                           "NO_SUCH_VIP_KEY_VAR", "ls", "/vip/Home"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "NO_SUCH_VIP_KEY_VAR" in proc.stderr and "Traceback" not in proc.stderr
    # no option takes the key itself
    assert "--api-key " not in subprocess.run([sys.executable, "-m", "vip_smk.cli", "--help"],
                                              capture_output=True, text=True, timeout=60).stdout


def test_cli_put_preflight_lists_all_problems_on_one_line(vip_server, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "empty.csv").touch()
    (src / "with space.csv").write_text("x")
    proc = run(vip_server, "put", str(src), f"/vip/Home/test-cli-{uuid.uuid4().hex[:8]}", check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "PreflightError" in proc.stderr and "empty.csv: empty file" in proc.stderr
    assert "'with_space.csv'" in proc.stderr


def test_cli_url_local_attaches_to_the_directory_server(tmp_path):
    """`--url local` / VIP_URL=local: the local VIP of ./.vip-local (the demo study's), started
    when needed, its key read from .vip-local/apikey."""
    from vip_smk.server import LocalServer

    env = {k: v for k, v in os.environ.items() if k not in ("VIP_URL", "VIP_API_KEY")}
    try:
        first = subprocess.run([sys.executable, "-m", "vip_smk.cli", "--url", "local", "pipelines"], cwd=tmp_path,
                               capture_output=True, text=True, env=env, timeout=90)
        assert first.returncode == 0 and "TextStats/1.0" in first.stdout.split(), first.stderr
        srv = LocalServer.attach(tmp_path / ".vip-local")
        assert srv is not None
        second = subprocess.run([sys.executable, "-m", "vip_smk.cli", "ls", "/vip/Home"], cwd=tmp_path,
                                capture_output=True, text=True, env={**env, "VIP_URL": "local"}, timeout=60)
        assert second.returncode == 0, second.stderr
        assert LocalServer.attach(tmp_path / ".vip-local").pid == srv.pid  # attached, not restarted
    finally:
        srv = LocalServer.attach(tmp_path / ".vip-local")
        if srv is not None:
            srv.stop()


# ------------------------------------------------------------------ issue 22: items 10, 11, 13


def _cli(*args, env=None, cwd=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "vip_smk.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout, check=False)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_fails_fast_when_no_server_listens():
    """A refused connection on an interactive verb: one line at once, not ~10 s of retries."""
    import time

    env = {**os.environ, "VIP_API_KEY": "some-test-key-123"}
    t0 = time.monotonic()
    proc = _cli("--url", f"http://127.0.0.1:{_free_port()}", "pipelines", env=env)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1 and "cannot reach VIP" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "retry" not in proc.stderr
    assert elapsed < 5, elapsed  # python start-up included; the retries took ~10 s


def test_cli_key_errors_give_cli_advice(vip_server):
    env = {k: v for k, v in os.environ.items() if k != "VIP_API_KEY"}
    proc = _cli("--url", vip_server.url, "pipelines", env=env)
    assert proc.returncode == 1 and "VIP_API_KEY is not set" in proc.stderr
    assert "--api-key-env" in proc.stderr and "--api-key-file" in proc.stderr
    assert "api_key=" not in proc.stderr and proc.stderr.count("\n") == 1
    # an absurdly short key is refused naming its source, never itself
    proc = _cli("--url", vip_server.url, "pipelines", env={**env, "VIP_API_KEY": "Zq7"})
    assert proc.returncode == 1 and "environment variable VIP_API_KEY" in proc.stderr
    assert "3 character(s)" in proc.stderr and "Zq7" not in proc.stderr


def test_cli_get_dash_writes_to_stdout(vip_server, vip_dir, tmp_path):
    src = tmp_path / "r.txt"
    src.write_bytes(b"line 1\nline 2\n\x00\xff")
    run(vip_server, "-q", "put", str(src), vip_dir)
    proc = subprocess.run([sys.executable, "-m", "vip_smk.cli", "get", f"{vip_dir}/r.txt", "-"], cwd=tmp_path,
                          capture_output=True, env={**os.environ, "VIP_URL": vip_server.url,
                                                    "VIP_API_KEY": vip_server.api_key}, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == src.read_bytes() and not (tmp_path / "-").exists()
    proc = run(vip_server, "get", vip_dir, "-", check=False)
    assert proc.returncode == 1 and "stdout" in proc.stderr and "Traceback" not in proc.stderr
    run(vip_server, "rm", vip_dir)


def test_cli_every_positional_argument_has_help():
    from vip_smk.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    seen = 0
    for verb, p in sub.choices.items():
        for action in p._actions:
            if not action.option_strings and action.dest != "help":
                assert action.help, f"{verb} {action.metavar}: no help"
                seen += 1
    assert seen >= 10
    assert "stdout" in _cli("get", "--help").stdout


def test_cli_serve_help_lists_every_shipped_app():
    import json
    from pathlib import Path

    import vip_smk.server

    apps = Path(vip_smk.server.__file__).parent / "apps"
    ids = [f"{d['name']}/{d['tool-version']}" for d in (json.loads(f.read_text()) for f in apps.glob("*.json"))]
    assert "BraTSStats/1.0" in ids
    text = " ".join(_cli("serve", "--help", env={**os.environ, "COLUMNS": "400"}).stdout.split())
    for pid in ids:
        assert pid in text, pid


def test_cli_status_list_has_a_header(make_server, tmp_path):
    srv = make_server()
    env = {**os.environ, "VIP_URL": srv.url, "VIP_API_KEY": srv.api_key}
    assert _cli("status", env=env).stdout.strip() == "no executions"
    src = tmp_path / "t.csv"
    src.write_text("a\n1\n")
    assert _cli("-q", "put", str(src), "/vip/Home/st", env=env).returncode == 0
    eid = _cli("launch", "TextStats/1.0", "-i", "input_file=/vip/Home/st/t.csv", "--results",
               "/vip/Home/st/out", "--wait", env=env).stdout.split()[0]
    lines = _cli("status", env=env).stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "STARTED", "PIPELINE", "NAME"]
    assert lines[1].startswith(eid)


def test_cli_too_large_says_what_to_do(make_server, tmp_path):
    srv = make_server(max_download_size=1000)
    env = {**os.environ, "VIP_URL": srv.url, "VIP_API_KEY": srv.api_key}
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "big.bin").write_bytes(b"x" * 2000)
    assert _cli("-q", "put", str(tmp_path / "d"), "/vip/Home/big", env=env).returncode == 0
    for target in ("/vip/Home/big/big.bin", "/vip/Home/big"):
        proc = _cli("-q", "get", target, str(tmp_path / "back"), env=env)
        assert proc.returncode == 1 and "TooLarge" in proc.stderr, proc.stderr
        assert "1,000 bytes" in proc.stderr and "VIP portal" in proc.stderr, proc.stderr
        assert "run again" not in proc.stderr and proc.stderr.count("\n") == 1


def test_cli_put_one_file_shows_a_bar_on_a_terminal(vip_server, vip_dir, tmp_path):
    """On a terminal `put FILE` draws a byte bar as `get` does (redirected: none)."""
    import pty

    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3_000_000))
    env = {**os.environ, "VIP_URL": vip_server.url, "VIP_API_KEY": vip_server.api_key}
    master, slave = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a real terminal's size
    try:
        proc = subprocess.run([sys.executable, "-m", "vip_smk.cli", "put", str(src), vip_dir],
                              stdout=subprocess.PIPE, stderr=slave, env=env, timeout=60, check=False)
        os.close(slave)
        slave = -1
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert proc.returncode == 0, out
    text = out.decode(errors="replace")
    assert "big.bin" in text and "100%" in text and "2.86M" in text, text
    redirected = run(vip_server, "put", str(src), vip_dir)
    assert "100%" not in redirected.stderr
    run(vip_server, "rm", vip_dir)

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

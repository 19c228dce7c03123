"""Windows and Unix (issue 18 section 2), checked on Linux: nothing of ours needs ``fcntl``, the
file locks (filelock) keep one writer and free a dead holder's lock, ``pid_alive`` is a
portable check, local names Windows reserves are mapped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import vip_smk
from vip_smk import rules
from vip_smk.util import pid_alive

ROOT = Path(vip_smk.__file__).resolve().parent.parent
OUR_PACKAGES = ["vip_smk", "snakemake_storage_plugin_vip", "snakemake_executor_plugin_vip"]


def test_every_face_imports_without_fcntl():
    code = ("import sys; sys.modules['fcntl'] = None; import vip_smk, vip_smk.study, "
            "vip_smk.snakemake.storage, vip_smk.snakemake.executor, vip_smk.server, "
            "vip_smk.server.__main__, vip_smk.server.app")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]


def test_no_module_of_ours_imports_fcntl():
    pattern = re.compile(r"^\s*(import\s+fcntl\b|from\s+fcntl\s+import\b)", re.MULTILINE)
    offenders = [str(p.relative_to(ROOT)) for pkg in OUR_PACKAGES if (ROOT / pkg).is_dir()
                 for p in (ROOT / pkg).rglob("*.py") if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
    assert (ROOT / "vip_smk" / "server" / "__main__.py").is_file()  # the grep looked at our tree


@pytest.mark.parametrize("name", ["CON", "con", "PRN", "AUX", "NUL", "nul.txt", "COM1", "com9.log",
                                  "LPT1", "LPT9.tar.gz", "COM0", "LPT0", "CONIN$", "CONOUT$",
                                  "COM\u00b9", "LPT\u00b3.txt"])
def test_windows_reserved_names_are_mapped(name):
    assert rules.local_name(name) == "-" + name
    assert rules.local_name("-" + name) == "-" + name  # stable


@pytest.mark.parametrize("name", ["CONSOLE", "COM10", "NULL.txt", "a.CON", "lpt"])
def test_names_windows_accepts_are_kept(name):
    assert rules.local_name(name) == name


def test_pid_alive_is_a_portable_check():
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-1)
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(p.pid)
        p.kill()
        deadline = time.monotonic() + 10
        while pid_alive(p.pid):  # a zombie (not yet waited for) is not alive
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        p.kill()
        p.wait()
    assert not pid_alive(p.pid)


HOLDER = textwrap.dedent("""
    import sys, time
    from vip_smk.api.urls import _file_lock
    with _file_lock(__import__("pathlib").Path(sys.argv[1])):
        print("held", flush=True)
        time.sleep(600)
""")


def _start_holder(lock: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "held\n"
    return p


def _try_lock(lock: Path, timeout: float) -> subprocess.CompletedProcess:
    code = ("import sys, filelock; l = filelock.FileLock(sys.argv[1], timeout=float(sys.argv[2]));"
            " l.acquire(); print('got it')")
    return subprocess.run([sys.executable, "-c", code, str(lock), str(timeout)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_study_start_lock_one_holder_and_a_killed_holders_lock_is_released(tmp_path):
    lock = tmp_path / ".start.lock"
    holder = _start_holder(lock)
    try:
        assert _try_lock(lock, 0.3).returncode != 0  # one holder at a time
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert _try_lock(lock, 5).stdout == "got it\n"  # the dead holder's lock is gone with it
    finally:
        holder.kill()
        holder.wait()


def test_storage_date_book_lock_is_exclusive_across_processes(tmp_path):
    from vip_smk.snakemake.storage_dates import BOOK_NAME

    code = textwrap.dedent("""
        import sys, time
        from vip_smk.snakemake.storage_dates import DateBook
        book = DateBook(__import__("pathlib").Path(sys.argv[1]).parent)
        with book._locked():
            print("held", flush=True)
            time.sleep(600)
    """)
    book = tmp_path / "dates" / BOOK_NAME
    p = subprocess.Popen([sys.executable, "-c", code, str(book)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "held\n"
        lock = book.with_name(BOOK_NAME + ".lock")
        assert _try_lock(lock, 0.3).returncode != 0
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        assert _try_lock(lock, 5).stdout == "got it\n"
    finally:
        p.kill()
        p.wait()

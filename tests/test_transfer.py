"""Tree transfers (vip_smk.transfer.trees) against real local VIP servers over HTTP."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from clients import use_client_kind

from vip_smk.core.client import TooLarge, VipClient
from vip_smk.server import LocalServer
from vip_smk.transfer.trees import PreflightError, TransferError, TransferReport, extract_archive

# One suite, both clients: every test below runs with VipClient and with AsyncVipClient (the
# module's `VipClient` is each in turn, tests/clients.py).
client_kind = use_client_kind(globals())


@pytest.fixture
def client(client_kind, vip_server):
    c = VipClient(vip_server.url, api_key=vip_server.api_key, retry_budget=5, progress=False)
    yield c
    c.close()


@pytest.fixture
def vip_dir(client):
    d = f"/vip/Home/test-transfer-{uuid.uuid4().hex[:8]}"
    yield d
    client.delete(d, missing_ok=True)


def make_tree(root: Path, seed: int = 0, n: int = 30) -> dict[str, bytes]:
    """Files in nested folders with awkward (but VIP-safe) names and random sizes."""
    rng = random.Random(seed)
    dirs = ["", "sub-01", "sub-01/ses(1)", "sub-02", "sub-02/anat:x"]
    files = {}
    for i in range(n):
        rel = f"{rng.choice(dirs)}/file_{i}.dat".lstrip("/")
        size = rng.choice([1, 17, 1000, 65537, 200_000])
        files[rel] = rng.randbytes(size)
    files["sub-02/big.bin"] = rng.randbytes(3 * 1024 * 1024 + 11)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def as_local(files: dict[str, bytes]) -> dict[str, bytes]:
    """The names download_tree gives VIP's files locally (rules.local_name of each part:
    ``anat:x`` is stored as ``anat-x``, as every face does)."""
    from vip_smk.rules import local_name

    return {"/".join(map(local_name, rel.split("/"))): data for rel, data in files.items()}


def test_tree_round_trip_under_faults(make_server, tmp_path):
    srv = make_server(fault_rate=0.2, seed=1234)
    c = VipClient(srv.url, api_key=srv.api_key, retries=30, retry_budget=60, backoff=0.02,
                  max_backoff=0.3, workers=4, progress=False)
    files = make_tree(tmp_path / "src", seed=1)
    from vip_smk.core import content

    up = c.upload_tree(tmp_path / "src", "/vip/Home/study/INPUTS", hasher=content.hasher)
    assert isinstance(up, TransferReport)
    assert up.files_transferred == len(files) and up.files_skipped == 0
    # hashed while read for the upload, retries included (a restart starts a fresh hash)
    assert up.digests == {rel: content.digest_file(tmp_path / "src" / rel) for rel in files}
    assert up.bytes_transferred == sum(map(len, files.values()))
    down = c.download_tree("/vip/Home/study/INPUTS", tmp_path / "dst")
    assert down.files_transferred == len(files)
    assert read_tree(tmp_path / "dst") == as_local(files)  # byte-identical, no stray .part
    # unchanged: nothing re-sent, even through faults
    again = c.upload_tree(tmp_path / "src", "/vip/Home/study/INPUTS")
    assert again.files_transferred == 0 and again.bytes_transferred == 0
    assert again.files_skipped == len(files)


def test_resync_one_list_per_directory(client, vip_dir, tmp_path):
    files = make_tree(tmp_path / "src", seed=2, n=40)
    n_dirs = len({str(Path(r).parent) for r in files})
    first = client.upload_tree(tmp_path / "src", vip_dir)
    assert first.files_transferred == len(files)
    second = client.upload_tree(tmp_path / "src", vip_dir)
    assert (second.files_transferred, second.bytes_transferred) == (0, 0)
    assert second.requests <= n_dirs  # one action=list per directory, nothing else
    # a changed file (new size) is re-sent, and only it
    changed = tmp_path / "src" / "sub-01" / "new.txt"
    changed.write_text("new file")
    (tmp_path / "src" / "sub-02" / "big.bin").write_bytes(b"shorter now")
    third = client.upload_tree(tmp_path / "src", vip_dir)
    assert third.files_transferred == 2 and third.bytes_transferred == len("new file") + len("shorter now")
    # same size, modified after the upload (later mtime than VIP's date): re-sent, from the
    # same listing (no extra request); with mtime_check=False it would be skipped
    same = tmp_path / "src" / "sub-01" / "new.txt"
    same.write_text("NEW FILE")
    later = time.time() + 30
    os.utime(same, (later, later))
    assert client.upload_tree(tmp_path / "src", vip_dir, mtime_check=False).files_transferred == 0
    fourth = client.upload_tree(tmp_path / "src", vip_dir)
    assert fourth.transferred == [str(same)] and fourth.requests <= n_dirs + 1
    assert client.download(f"{vip_dir}/sub-01/new.txt", tmp_path / "check.txt").read_text() == "NEW FILE"
    # downloads: second run skips everything with one list per directory
    d1 = client.download_tree(vip_dir, tmp_path / "dst")
    assert read_tree(tmp_path / "dst") == as_local(read_tree(tmp_path / "src"))
    d2 = client.download_tree(vip_dir, tmp_path / "dst")
    assert d1.files_transferred == len(files) + 1
    assert d2.files_transferred == 0 and d2.requests <= n_dirs + 1  # + the root listing
    # a local copy older than the remote one (same size) is fetched again
    stale = tmp_path / "dst" / "sub-01" / "new.txt"
    stale.write_text("OLD FILE")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    d3 = client.download_tree(vip_dir, tmp_path / "dst")
    assert d3.transferred == [str(stale)] and stale.read_text() == "NEW FILE"


def test_preflight_lists_every_problem_and_sends_nothing(client, vip_dir, tmp_path):
    src = tmp_path / "src"
    (src / "ok dir").mkdir(parents=True)
    (src / "fine.txt").write_text("fine")
    (src / "empty.txt").touch()
    (src / "ok dir" / "a.txt").write_text("a")
    (src / "café.txt").write_text("x")
    (src / "hash#tag.txt").write_text("x")
    unreadable = src / "secret.txt"
    unreadable.write_text("x")
    unreadable.chmod(0)
    can_read_anyway = os.access(unreadable, os.R_OK)  # root
    with pytest.raises(PreflightError) as e:
        client.upload_tree(src, vip_dir)
    text = str(e.value)
    assert "empty.txt: empty file" in text
    assert "'ok_dir'" in text  # the name VIP would give the folder
    assert "'caf.txt'" in text
    assert "hash#tag.txt" in text
    if not can_read_anyway:
        assert "secret.txt: unreadable" in text
    assert len(e.value.problems) == 4 + (not can_read_anyway)
    assert not client.exists(vip_dir)  # nothing sent, not even a folder
    unreadable.chmod(0o600)


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from vip_smk.core.client import VipClient
    url, vip_dir, dest, limit = sys.argv[1:5]
    c = VipClient(url, workers=1, progress=False)  # key: $VIP_API_KEY
    seen = [0]
    real = c.download
    def download(vip, local, **kw):
        cb = kw.pop("progress")
        def progress(n):
            cb(n)
            seen[0] += n
            if seen[0] >= int(limit):
                os.kill(os.getpid(), signal.SIGKILL)
        return real(vip, local, progress=progress, **kw)
    c.download = download
    c.download_tree(vip_dir, dest, workers=1)
    """
)


def test_download_killed_mid_file_then_resumed(client, vip_server, vip_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(5)
    files = {"a.bin": rng.randbytes(3_000_000), "b.bin": rng.randbytes(12_000_000),
             "c.bin": rng.randbytes(2_000_000)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    client.upload_tree(src, vip_dir)
    dest = tmp_path / "dst"
    # the child is SIGKILLed by itself in the middle of b.bin (sorted order: a, b, c)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, client.url, vip_dir, str(dest), str(7_000_000)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "VIP_API_KEY": vip_server.api_key},
    )
    assert proc.returncode == -9, proc.stderr
    assert (dest / "a.bin").read_bytes() == files["a.bin"]
    assert not (dest / "b.bin").exists()  # nothing that looks complete
    part = dest / "b.bin.part"
    assert part.exists() and 0 < part.stat().st_size < len(files["b.bin"])
    kept = part.stat().st_size
    report = client.download_tree(vip_dir, dest)
    assert read_tree(dest) == files  # correct files, no stray .part
    assert report.files_skipped == 1 and report.files_transferred == 2
    # b.bin resumed with Range: only the missing bytes were fetched
    assert report.bytes_transferred == len(files["b.bin"]) - kept + len(files["c.bin"])


def _evil_tarball(path: Path, outside: Path) -> None:
    def add(tf, name, data=b"", **kw):
        info = tarfile.TarInfo(name)
        for k, v in kw.items():
            setattr(info, k, v)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data) if data else None)

    with tarfile.open(path, "w:gz") as tf:
        add(tf, "ok/result.txt", b"good")
        add(tf, "../escape-dotdot.txt", b"evil")
        add(tf, str(outside / "escape-absolute.txt"), b"evil")
        add(tf, "link-out", type=tarfile.SYMTYPE, linkname=str(outside))
        add(tf, "link-out/escape-through-link.txt", b"evil")
        add(tf, "rel-link-out", type=tarfile.SYMTYPE, linkname="../../..")
        add(tf, "hard-out", type=tarfile.LNKTYPE, linkname="/etc/passwd")


def test_malicious_tarball_writes_nothing_outside(client, vip_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tmp_path / "src" / "evil.tgz"
    archive.parent.mkdir()
    _evil_tarball(archive, outside)
    client.upload_tree(archive.parent, vip_dir)
    dest = tmp_path / "dl" / "deep"
    before = {p for p in tmp_path.rglob("*")}
    report = client.download_files([(f"{vip_dir}/evil.tgz", dest / "evil.tgz")], extract=True)
    created = {p for p in tmp_path.rglob("*")} - before
    target = dest / "evil.tgz"
    assert target.is_dir()  # a directory named like the archive, archive removed
    assert (target / "ok" / "result.txt").read_bytes() == b"good"
    for p in created:  # everything new is inside the extraction directory (or its parents)
        assert p == target or target in p.parents or p in target.parents, p
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "dl" / "escape-dotdot.txt").exists()
    for p in target.rglob("*"):
        if p.is_symlink():
            assert Path(os.path.realpath(p)).is_relative_to(target.resolve())
    assert report.extracted == [str(target)]
    assert any("escape-dotdot" in w for w in report.warnings)
    assert any("link-out" in w for w in report.warnings)
    # a second run: already extracted, nothing downloaded
    again = client.download_files([(f"{vip_dir}/evil.tgz", target)], extract=True)
    assert again.files_transferred == 0 and again.files_skipped == 1


def test_pipeline_tarball_outputs_extracted(client, vip_dir, tmp_path):
    csv = tmp_path / "in" / "signal.csv"
    csv.parent.mkdir()
    csv.write_text("t,v\n" + "".join(f"{i},{i * i % 7}\n" for i in range(20)))
    client.upload_tree(csv.parent, f"{vip_dir}/INPUTS")
    ex = client.launch("Smooth/1.0", {"input_file": f"{vip_dir}/INPUTS/signal.csv", "window": 3},
                       f"{vip_dir}/OUTPUTS", name="smooth")
    assert client.wait(ex.identifier, poll=0.2, timeout=60).status == "Finished"
    results = client.results(ex.identifier)
    pairs = [(r, tmp_path / "out" / r.name) for r in results]
    report = client.download_files(pairs, extract=True)
    [out] = [p for _, p in pairs]
    assert out.is_dir() and {p.name for p in out.iterdir()} == {"smoothed.csv", "summary.txt"}
    assert report.extracted == [str(out)] and report.files_transferred == 1


def test_extraction_interrupted_is_finished_next_time(tmp_path):
    archive = tmp_path / "x.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("a.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"a"))
    assert extract_archive(archive) == []
    assert (archive / "a.txt").read_text() == "a"


def test_progress_bars_and_silence(client, vip_dir, tmp_path, capsys):
    make_tree(tmp_path / "src", seed=3, n=5)
    client.upload_tree(tmp_path / "src", vip_dir, progress=True)
    err = capsys.readouterr().err
    assert "upload" in err and "files" in err and "6/6" in err
    client.download_tree(vip_dir, tmp_path / "dst", progress=False)
    assert capsys.readouterr().err == ""
    # small files (written by the writer threads) and the large one all reach the bars
    client.download_tree(vip_dir, tmp_path / "dst2", progress=True)
    err = capsys.readouterr().err
    assert "download" in err and "6/6" in err


def test_clash_between_local_folder_and_remote_file_is_refused(client, vip_dir, tmp_path):
    f = tmp_path / "one.txt"
    f.write_text("x")
    client.mkdir(vip_dir)
    client.upload(f, f"{vip_dir}/sub")  # a remote *file* named like a local folder
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "sub" / "a.txt").write_text("a")
    with pytest.raises(PreflightError, match="a file with this name exists on VIP"):
        client.upload_tree(tmp_path / "src", vip_dir)
    assert [i.name for i in client.list(vip_dir)] == ["sub"]


@pytest.fixture(scope="module")
def limits_server(tmp_path_factory):
    """A server with VIP's optional behaviours on: md5 offered, a 100 kB download limit and a
    null lastModificationDate for every file."""
    srv = LocalServer(max_running=0, data_dir=tmp_path_factory.mktemp("vip-limits"), port=0, users=["alice:limits-key-123456"],
                      md5=True, max_download_size=100_000, null_dates=1.0)
    srv.start(timeout=60)
    yield srv
    srv.stop()


def test_null_dates_are_unknown_and_size_limit_named(limits_server, tmp_path):
    c = VipClient(limits_server.url, api_key=limits_server.api_key, retry_budget=5, progress=False)
    nd = f"/vip/Home/nd-{uuid.uuid4().hex[:6]}"  # the server is shared by both clients' runs
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "small.txt").write_text("small")
    (src / "a" / "other.txt").write_text("other")
    (src / "big.bin").write_bytes(b"x" * 100_001)
    c.upload_tree(src, nd)
    assert all(i.last_modification_date is None for i in c.list(f"{nd}/a"))
    # null dates: unknown, so size decides (neither "modified after 1970" nor re-sent)
    later = time.time() + 3600
    os.utime(src / "a" / "small.txt", (later, later))
    again = c.upload_tree(src, nd)
    assert again.files_transferred == 0 and again.requests == 2
    # too large for VIP's direct transfer: named with its size and the limit, the rest fetched
    with pytest.raises(TransferError) as e:
        c.download_tree(nd, tmp_path / "dst")
    [(path, err)] = e.value.failures
    assert path == f"{nd}/big.bin" and isinstance(err, TooLarge)
    assert "100,001 bytes" in str(e.value) and "100,000 bytes" in str(e.value)
    assert "running again will not help" in str(e.value) and "run again to resume" not in str(e.value)
    assert e.value.report.files_transferred == 2
    assert not (tmp_path / "dst" / "big.bin").exists() and not (tmp_path / "dst" / "big.bin.part").exists()
    (tmp_path / "dst" / "a" / "small.txt").write_text("SMALL")  # same size, older: date unknown
    os.utime(tmp_path / "dst" / "a" / "small.txt", (0, 0))
    with pytest.raises(TransferError):
        c.download_tree(nd, tmp_path / "dst")
    assert (tmp_path / "dst" / "a" / "small.txt").read_text() == "SMALL"
    # md5 offered: a same-size change is found with checksum=True
    (src / "a" / "other.txt").write_text("OTHER")
    assert c.upload_tree(src, nd).files_transferred == 0
    assert c.upload_tree(src, nd, checksum=True).transferred == [str(src / "a" / "other.txt")]


def test_checksum_where_md5_is_not_offered_probes_once(client, vip_dir, tmp_path):
    files = make_tree(tmp_path / "src", seed=4, n=12)
    n_dirs = len({str(Path(r).parent) for r in files})
    client.upload_tree(tmp_path / "src", vip_dir)
    again = client.upload_tree(tmp_path / "src", vip_dir, checksum=True)
    assert again.files_transferred == 0 and again.requests <= n_dirs + 1  # listings + one md5 probe
    assert client.md5_offered is False
    assert client.upload_tree(tmp_path / "src", vip_dir, checksum=True).requests <= n_dirs


def test_download_tree_reads_the_limit_once_and_only_when_needed(vip_server, client, vip_dir, tmp_path):
    files = make_tree(tmp_path / "src", seed=7, n=24)
    folders = {str(Path(r).parent) for r in files} | {"."}
    client.upload_tree(tmp_path / "src", vip_dir)
    fresh = VipClient(vip_server.url, api_key=vip_server.api_key, retry_budget=5, progress=False)
    # GET platform (VIP's download limit) goes out while the folders are still being listed:
    # one listing per folder, one platform, one GET per file, nothing else
    down = fresh.download_tree(vip_dir, tmp_path / "dst")
    assert read_tree(tmp_path / "dst") == as_local(files)
    assert down.requests == len(folders) + 1 + len(files)
    assert fresh.max_download_size() is None  # this server: no limit (cached: no request)
    # an unchanged tree, new client: listings only (no platform: nothing to fetch)
    again = VipClient(vip_server.url, api_key=vip_server.api_key, retry_budget=5, progress=False)
    resync = again.download_tree(vip_dir, tmp_path / "dst")
    assert resync.files_transferred == 0 and resync.requests == len(folders)
    # one file changed remotely: platform again, then just that file
    (tmp_path / "src" / sorted(files)[0]).write_bytes(b"changed size")
    client.upload_tree(tmp_path / "src", vip_dir)
    one = again.download_tree(vip_dir, tmp_path / "dst")
    assert one.files_transferred == 1 and one.requests == len(folders) + 2


def test_download_tree_local_names_as_every_face(client, vip_dir, tmp_path):
    """Issue 22 #13: download_tree maps VIP names to local ones valid on every system
    (rules.local_name: VIP's dated folders hold ':'), as download_results / VipSession do;
    a second call finds the files (no re-download)."""
    src = tmp_path / "src" / "12-01-2026_10:11:12"
    src.mkdir(parents=True)
    (src / "r:1.txt").write_text("one\n")
    client.upload_tree(tmp_path / "src", vip_dir)
    assert client.exists(f"{vip_dir}/12-01-2026_10:11:12/r:1.txt")
    report = client.download_tree(vip_dir, tmp_path / "dst")
    assert read_tree(tmp_path / "dst") == {"12-01-2026_10-11-12/r-1.txt": b"one\n"}
    assert report.files_transferred == 1
    again = client.download_tree(vip_dir, tmp_path / "dst")
    assert again.files_transferred == 0 and again.files_skipped == 1


def test_upload_tree_known_decides_same_size_files(client, vip_dir, tmp_path):
    """`known(rel)`: True skips a same-size file whatever its date (same content), False
    sends it, None leaves the size/date rule; a missing remote copy is always sent."""
    src = tmp_path / "src"
    src.mkdir()
    for n in "abcd":
        (src / f"{n}.txt").write_text(f"{n}\n")
    client.upload_tree(src, vip_dir)
    time.sleep(1.1)
    for n in "abc":
        (src / f"{n}.txt").write_text(f"{n}\n")  # rewritten: newer than the remote copy
    client.delete(f"{vip_dir}/d.txt")
    verdict = {"a.txt": True, "b.txt": False, "c.txt": None, "d.txt": True}
    asked = []

    def known(rel):
        asked.append(rel)
        return verdict[rel]

    report = client.upload_tree(src, vip_dir, known=known)
    sent = sorted(os.path.basename(p) for p in report.transferred)
    assert "a.txt" not in sent and {"b.txt", "d.txt"} <= set(sent)  # d: missing on VIP
    assert sorted(asked) == ["a.txt", "b.txt", "c.txt"]  # only same-size remote copies

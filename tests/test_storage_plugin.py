"""The `vip://` Snakemake storage plugin, against real local VIP servers over HTTP.

- Snakemake's own suite (`TestStorageBase`, unmodified) for a file and for a directory, on a
  plain server and on one answering 20% of requests with faults;
- query validation, inventory batching, dates (whole seconds, null dates, clock skew);
- a real Snakefile with `--cores 4`: second run "Nothing to be done", a changed remote input
  reruns exactly its downstream jobs, the key appears nowhere in Snakemake's output or files.
"""

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from relays import Relay
from snakemake.io import IOCache
from snakemake_interface_storage_plugins.tests import TestStorageBase

from vip_smk.core.client import VipClient
from vip_smk.server import LocalServer
from vip_smk.snakemake.storage import StorageProvider, StorageProviderSettings
from vip_smk.snakemake.storage_dates import DateBook, vip_seconds

KEY_ENV = "VIP_SMK_TEST_STORAGE_KEY"  # a variable name of our own: the key travels only there
ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture(scope="module")
def faulty_server(tmp_path_factory):
    """A server answering 20% of /rest requests with a 503 or a reset connection."""
    srv = LocalServer(max_running=0, max_download_size=0, data_dir=tmp_path_factory.mktemp("vip-faulty"), port=0,
                      users=[f"alice:{secrets.token_urlsafe(18)}"], fault_rate=0.2, seed=1)
    srv.start(timeout=60)
    yield srv
    srv.stop()
    assert srv.log_file.read_text().count("injected fault") >= 5  # the suite did meet faults


def _settings(srv) -> StorageProviderSettings:
    return StorageProviderSettings(url=srv.url, api_key_env=KEY_ENV)


def _provider(srv, tmp_path) -> StorageProvider:
    import logging

    return StorageProvider(local_prefix=tmp_path / "local_prefix", logger=logging.getLogger("t"),
                           settings=_settings(srv))


# --------------------------------------------------------------------------------------------
# Snakemake's own suite, unmodified
# --------------------------------------------------------------------------------------------


class _Base(TestStorageBase):
    __test__ = False
    server_fixture = "vip_server"
    touch = True  # StorageObjectTouch: the suite touches the stored object too

    @pytest.fixture(autouse=True)
    def _server(self, request, monkeypatch):
        self.srv = request.getfixturevalue(self.server_fixture)
        monkeypatch.setenv(KEY_ENV, self.srv.api_key)

    def get_storage_provider_cls(self):
        return StorageProvider

    def get_storage_provider_settings(self):
        return _settings(self.srv)

    def get_query(self, tmp_path) -> str:
        return f"vip://vip/Home/suite/{type(self).__name__}/{tmp_path.name}/test.txt"

    def get_query_not_existing(self, tmp_path) -> str:
        return f"vip://vip/Home/suite/{type(self).__name__}/{tmp_path.name}/missing.txt"


class TestFiles(_Base):
    __test__ = True
    files_only = True


class TestDirectories(_Base):
    __test__ = True
    files_only = False  # runs the file case, then the directory case on the same query


class TestFilesUnderFaults(_Base):
    __test__ = True
    files_only = True
    server_fixture = "faulty_server"


class TestDirectoriesUnderFaults(_Base):
    __test__ = True
    files_only = False
    server_fixture = "faulty_server"


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", [
    "vip://vip/Home/study/data/subject01.csv",
    "vip://vip/Home/study/{subject}/x_{run,[0-9]+}.txt",
    "vip://vip/Home/study/{sample,[^/]+}.csv",
    "vip://vip/EGI tutorial (group)/data/a.csv",
    "vip://vip/Home/results/13-06-2023_20:08:05/out.tgz",
])
def test_valid_queries(query):
    assert StorageProvider.is_valid_query(query)


@pytest.mark.parametrize("query, named", [
    ("vip://vip/Home/my data/a.csv", "'my data'"),
    ("vip://vip/Home/study/résumé.csv", "'résumé.csv'"),
    ("vip://vip/Home/study/a#1.csv", "'a#1.csv'"),
    ("vip://vip/Home/{subject} scan.csv", "'{subject} scan.csv'"),
    ("vip://Home/study/a.csv", "/Home/study/a.csv"),
    ("vip://vip/Home", "/vip/Home"),
    ("vip://vip/Home/study/", "trailing"),
    ("vip://vip/Home/../etc/a.csv", "'..'"),
    ("vip://vip/Home//a.csv", "//"),
    ("vip:///vip/Home/a.csv", "write vip://vip/Home/a.csv"),
    ("s3://bucket/a.csv", "vip://"),
    ("/vip/Home/a.csv", "vip://"),
])
def test_invalid_queries_name_the_part(query, named):
    res = StorageProvider.is_valid_query(query)
    assert not res
    assert named in res.reason, res.reason


def test_example_queries_are_valid():
    for ex in StorageProvider.example_queries():
        assert StorageProvider.is_valid_query(ex.query), ex.query


# --------------------------------------------------------------------------------------------
# Inventory, dates, directories, empty outputs (the provider used directly)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def provider(vip_server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, vip_server.api_key)
    p = _provider(vip_server, tmp_path)
    yield p
    p.client.close()


def test_missing_key_variable_is_named(vip_server, tmp_path, monkeypatch):
    from snakemake_interface_common.exceptions import WorkflowError

    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(WorkflowError, match=KEY_ENV):
        _provider(vip_server, tmp_path)


def test_inventory_one_list_for_all_siblings(provider, client, tmp_path):
    folder = f"/vip/Home/inv/{tmp_path.name}"
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(25):
        (src / f"f{i:02d}.txt").write_text("x" * (i + 1))
    (src / "sub" / "deep.txt").write_text("deep")
    client.upload_tree(src, folder)

    objs = [provider.object(f"vip:/{folder}/f{i:02d}.txt") for i in range(25)]
    missing = provider.object(f"vip:/{folder}/nothere.txt")
    cache = IOCache(max_wait_time=10)
    before = provider.client.requests_made
    for o in objs + [missing]:
        asyncio.run(o.inventory(cache))
    assert provider.client.requests_made - before == 1  # one action=list of the folder
    for i, o in enumerate(objs):
        key = str(o.local_path())
        assert cache.exists_in_storage[key] is True
        assert cache.size[key] == i + 1
        assert abs(cache.mtime[key].storage() - time.time()) < 120
    assert str(missing.local_path().parent) in cache.exists_in_storage.has_inventory
    assert str(missing.local_path()) not in dict(cache.exists_in_storage)
    sub = str(provider.object(f"vip:/{folder}/sub").local_path())
    assert cache.exists_in_storage[sub] is True and sub not in cache.mtime  # asked on demand


def test_questions_answered_from_one_listing_per_folder(vip_server, client, tmp_path, monkeypatch):
    """During a run Snakemake keeps no cache: every exists/mtime/size of the files of a folder
    is answered from one listing; our writes update it; "missing" is asked again after
    MISSING_FRESH; forget() (--executor vip, an execution ended) makes the next answer fresh.
    Answers from the listing cost no rate-limit time."""
    from vip_smk.snakemake import storage_cache

    monkeypatch.setenv(KEY_ENV, vip_server.api_key)
    import logging

    p = StorageProvider(local_prefix=tmp_path / "lp", logger=logging.getLogger("t"),
                        settings=StorageProviderSettings(url=vip_server.url, api_key_env=KEY_ENV,
                                                         max_requests_per_second=2))
    folder = f"/vip/Home/cache/{tmp_path.name}"
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"f{i:02d}.txt").write_text("x" * (i + 1))
    client.upload_tree(src, folder)
    objs = [p.object(f"vip:/{folder}/f{i:02d}.txt") for i in range(30)]
    late = p.object(f"vip:/{folder}/late.txt")
    before = p.client.requests_made
    for _ in range(3):
        for i, o in enumerate(objs):
            assert o.exists() and o.size() == i + 1 and o.mtime() > 0
        assert not late.exists()
    assert p.client.requests_made - before == 1  # one action=list for 90 x 3 questions
    assert p.throttle.waited == 0  # answers from the listing: no rate-limit time

    (src / "late.txt").write_text("late")  # written behind the plugin's back
    client.upload(src / "late.txt", folder + "/late.txt")
    time.sleep(storage_cache.MISSING_FRESH)
    before = p.client.requests_made
    assert late.exists() and late.size() == 4 and all(o.exists() for o in objs)
    assert p.client.requests_made - before == 1  # "missing" asked again: one listing

    out = p.object(f"vip:/{folder}/out.txt")
    out.local_path().parent.mkdir(parents=True, exist_ok=True)
    out.local_path().write_text("result")
    before = p.client.requests_made
    out.store_object()
    assert out.exists() and out.size() == 6 and out.mtime() >= objs[0].mtime()
    assert p.client.requests_made - before == 1  # the upload only: no mkdir, no properties

    client.delete(folder + "/f00.txt")  # as an execution rewriting a results folder would
    assert objs[0].exists()  # (the listing is kept: only our writes and forget() change it)
    p.forget(folder + "/f00.txt")
    before = p.client.requests_made
    assert not objs[0].exists() and objs[1].exists()
    assert p.client.requests_made - before == 1
    p.client.close()


def test_throttle_spaces_requests_and_zero_is_no_limit():
    from vip_smk.snakemake.storage_cache import Throttle

    t = Throttle(10, burst=1)
    for _ in range(4):
        t()
    assert 0.2 < t.waited <= 0.31  # the first is free, then one every 0.1 s
    free = Throttle(0)
    for _ in range(1000):
        free()
    assert free.waited == 0


def test_directory_store_skips_timestamp_and_dates_newest_file(provider, client, tmp_path):
    obj = provider.object(f"vip://vip/Home/dirs/{tmp_path.name}/out")
    local = obj.local_path()
    (local / "a").mkdir(parents=True)
    (local / "a" / "one.txt").write_text("1")
    (local / "two.txt").write_text("22")
    (local / ".snakemake_timestamp").touch()  # as Snakemake leaves it (empty)
    t0 = time.time()
    obj.store_object()
    names = sorted(i.name for i in client.list(obj.path))
    assert names == ["a", "two.txt"]
    fresh = provider.object(obj.query)
    assert fresh.exists() and fresh.size() == 0 and fresh.local_footprint() == 3
    assert t0 <= fresh.mtime() <= time.time()
    shutil.rmtree(local)
    fresh.retrieve_object()
    assert (local / "a" / "one.txt").read_text() == "1" and (local / "two.txt").read_text() == "22"


def test_empty_output_fails_naming_it(provider, client, tmp_path):
    from snakemake_interface_common.exceptions import WorkflowError

    obj = provider.object(f"vip://vip/Home/empty/{tmp_path.name}/out.txt")
    obj.local_path().parent.mkdir(parents=True)
    obj.local_path().touch()
    with pytest.raises(WorkflowError, match="out.txt is empty"):
        obj.store_object()
    assert not client.exists(obj.path)
    d = provider.object(f"vip://vip/Home/empty/{tmp_path.name}/outdir")
    (d.local_path() / "sub").mkdir(parents=True)
    (d.local_path() / "sub" / "blank.csv").touch()
    with pytest.raises(WorkflowError, match="blank.csv"):
        d.store_object()


def test_our_uploads_date_precisely_and_null_dates_are_unknown_not_1970(make_server, tmp_path, monkeypatch):
    srv = make_server(null_dates=1.0)  # every date null
    monkeypatch.setenv(KEY_ENV, srv.api_key)
    p = _provider(srv, tmp_path)
    theirs = tmp_path / "theirs.txt"
    theirs.write_text("data")
    p.client.upload(theirs, "/vip/Home/nd/theirs.txt")
    assert p.client.properties("/vip/Home/nd/theirs.txt").last_modification_date is None

    t0 = time.time()
    first = p.object("vip://vip/Home/nd/theirs.txt").mtime()
    assert t0 - 1 <= first <= time.time()  # first seen now: unknown, not 1970
    out = p.object("vip://vip/Home/nd/out.txt")
    out.local_path().parent.mkdir(parents=True, exist_ok=True)
    out.local_path().write_text("result")
    out.store_object()
    done = p.object(out.query).mtime()
    assert first < done <= time.time()  # the output is newer than the input it came from
    # a later run (new provider, same workflow directory) sees the same times
    p2 = _provider(srv, tmp_path)
    assert p2.object("vip://vip/Home/nd/theirs.txt").mtime() == first
    assert p2.object(out.query).mtime() == done
    # the input changes (another size) before the next run: it is newer than the output
    theirs.write_text("new data")
    p.client.upload(theirs, "/vip/Home/nd/theirs.txt")
    p3 = _provider(srv, tmp_path)
    assert p3.object("vip://vip/Home/nd/theirs.txt").mtime() > done
    for prov in (p, p2, p3):
        prov.client.close()


def test_dates_book_and_units(tmp_path):
    assert vip_seconds(None) is None and vip_seconds(0) is None
    assert vip_seconds(1_700_000_000) == 1_700_000_000
    assert vip_seconds(1_700_000_000_000) == 1_700_000_000  # milliseconds
    book = DateBook(tmp_path)
    book.record_upload([("/vip/Home/a", 3, 1000.0)], when=1000.7)
    assert book.resolve([("/vip/Home/a", 3, 1000.0)], skew=0) == [1000.7]
    assert book.resolve([("/vip/Home/a", 3, None)], skew=0) == [1000.7]
    # rewritten by someone else (another date): VIP's date on our clock
    assert DateBook(tmp_path).resolve([("/vip/Home/a", 3, 2000.0)], skew=5) == [1995.0]
    book.forget("/vip/Home")
    assert DateBook(tmp_path).resolve([("/vip/Home/a", 3, 2000.0)], skew=0) == [2000.0]


# --------------------------------------------------------------------------------------------
# Real Snakemake runs
# --------------------------------------------------------------------------------------------

EXAMPLE = ROOT / "workflow" / "examples" / "storage" / "Snakefile"


def _snakemake(workdir: Path, srv, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    env.pop("VIP_API_KEY", None)
    env[KEY_ENV] = srv.api_key
    cmd = [SNAKEMAKE, "--cores", "4", "--storage-vip-url", srv.url,
           "--storage-vip-api-key-env", KEY_ENV, *args]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=240)


def _jobs(out: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table: rule -> number of jobs."""
    lines = out.split("Job stats:", 1)[1].splitlines() if "Job stats:" in out else []
    jobs = {}
    for line in lines[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def _assert_no_key(key: str, workdir: Path, *outputs: str) -> None:
    for text in outputs:
        assert key not in text
    for path in workdir.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_snakefile_second_run_nothing_and_one_changed_input(vip_server, client, tmp_path):
    prefix = f"/vip/Home/wf/{tmp_path.name}"
    data = tmp_path / "data"
    data.mkdir()
    (data / "s01.csv").write_text("a,b\n1,2\n")
    (data / "s02.csv").write_text("a,b\n3,4\n5,6\n")
    (data / "s03.csv").write_text("a,b\n" + "7,8\n" * 300_000)  # 1.2 MB: no checksum fallback
    client.upload_tree(data, prefix + "/data")
    work = tmp_path / "work"
    work.mkdir()
    args = ("-s", str(EXAMPLE), "--config", f"prefix=vip:/{prefix}")

    first = _snakemake(work, vip_server, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert _jobs(first.stderr) == {"all": 1, "bundle": 1, "stats": 3, "summary": 1}
    summary = tmp_path / "summary.txt"
    client.download(prefix + "/summary.txt", summary)
    assert summary.read_text().split("\n")[2].split()[:2] == ["s03", "300001"]
    bundle = sorted(i.name for i in client.list(prefix + "/bundle"))
    assert bundle == ["csv", "index.txt"]  # no .snakemake_timestamp
    assert client.properties(prefix + "/bundle/csv/s03.csv").size == (data / "s03.csv").stat().st_size

    second = _snakemake(work, vip_server, *args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Nothing to be done" in second.stderr, second.stderr[-3000:]

    time.sleep(1.05)  # VIP dates are whole seconds: a change within the same second is invisible
    (data / "s02.csv").write_text("a,b\n9,9\n")
    client.upload(data / "s02.csv", prefix + "/data/s02.csv")
    third = _snakemake(work, vip_server, *args)
    assert third.returncode == 0, third.stderr[-3000:]
    assert _jobs(third.stderr) == {"all": 1, "bundle": 1, "stats": 1, "summary": 1}
    assert "subject=s02" in third.stderr and "subject=s01" not in third.stderr
    assert "Nothing to be done" in _snakemake(work, vip_server, *args).stderr

    _assert_no_key(vip_server.api_key, work, first.stdout, first.stderr, second.stderr, third.stderr)


CHAIN = """
rule all:
    input: storage.vip(f"{config['prefix']}/down.txt")

rule up:  # a local input -> a VIP file
    input: "local.txt"
    output: storage.vip(f"{config['prefix']}/up.txt")
    shell: "cp {input} {output}"

rule down:  # that VIP file -> another
    input: storage.vip(f"{config['prefix']}/up.txt")
    output: storage.vip(f"{config['prefix']}/down.txt")
    shell: "wc -c < {input} > {output}"
"""


def test_same_bytes_rewritten_not_resent_and_no_downstream_rerun(vip_server, client, tmp_path):
    """Issue 17 §1 for vip://: an output written again with the bytes VIP already holds from us
    (a new local mtime) is not sent again: VIP's copy and date stay (the rule downstream, rerun
    by Snakemake on mtimes, writes the same bytes: not sent either), then "Nothing to be done".
    New bytes are sent, and downstream reruns."""
    prefix = f"/vip/Home/chain/{tmp_path.name}"
    (tmp_path / "Snakefile").write_text(CHAIN)
    (tmp_path / "local.txt").write_text("same bytes\n")
    args = ("--config", f"prefix=vip:/{prefix}")
    first = _snakemake(tmp_path, vip_server, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert _jobs(first.stderr) == {"all": 1, "down": 1, "up": 1}
    date = client.properties(prefix + "/up.txt").last_modification_date

    time.sleep(1.1)  # VIP's dates are whole seconds: a re-sent file would get a later one
    again = _snakemake(tmp_path, vip_server, "--forcerun", "up", "--until", "up", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _jobs(again.stderr) == {"up": 1}  # rewritten here with the same bytes...
    assert client.properties(prefix + "/up.txt").last_modification_date == date  # ...not re-sent
    down_date = client.properties(prefix + "/down.txt").last_modification_date
    after = _snakemake(tmp_path, vip_server, *args)  # `down` reruns on mtimes: same bytes again
    assert after.returncode == 0, after.stderr[-3000:]
    assert client.properties(prefix + "/up.txt").last_modification_date == date
    assert client.properties(prefix + "/down.txt").last_modification_date == down_date
    assert "Nothing to be done" in _snakemake(tmp_path, vip_server, *args).stderr

    (tmp_path / "local.txt").write_text("new bytes!\n")  # same size, other bytes
    changed = _snakemake(tmp_path, vip_server, *args)
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert _jobs(changed.stderr) == {"all": 1, "down": 1, "up": 1}
    assert client.properties(prefix + "/up.txt").last_modification_date > date
    down = tmp_path / "down.txt"
    client.download(prefix + "/up.txt", down)
    assert down.read_text() == "new bytes!\n"
    assert "Nothing to be done" in _snakemake(tmp_path, vip_server, *args).stderr


PLAIN = """
rule all:
    input: expand("stats/{s}.txt", s=["a", "b"])

rule stats:
    input: "data/{s}.csv"
    output: "stats/{s}.txt"
    shell: "wc -c < {input} > {output}"
"""


def test_default_storage_provider_with_null_dates(make_server, tmp_path):
    """Plain paths with --default-storage-provider vip, on a server giving no dates at all."""
    srv = make_server(null_dates=1.0)
    c = VipClient(srv.url, api_key=srv.api_key, progress=False)
    prefix = "/vip/Home/plain"
    for s in ("a", "b"):
        p = tmp_path / f"{s}.csv"
        p.write_text(s * 10)
        c.upload(p, f"{prefix}/data/{s}.csv") if c.exists(prefix + "/data") else (
            c.mkdir(prefix + "/data"), c.upload(p, f"{prefix}/data/{s}.csv"))
    work = tmp_path / "work"
    work.mkdir()
    (work / "Snakefile").write_text(textwrap.dedent(PLAIN))
    args = ("--default-storage-provider", "vip", "--default-storage-prefix", f"vip:/{prefix}")
    first = _snakemake(work, srv, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert _jobs(first.stderr) == {"all": 1, "stats": 2}
    assert c.properties(prefix + "/stats/a.txt").last_modification_date is None
    second = _snakemake(work, srv, *args)
    assert "Nothing to be done" in second.stderr, second.stderr[-3000:]
    _assert_no_key(srv.api_key, work, first.stderr, second.stderr)

    # Outputs written on VIP by someone else (e.g. executions of --executor vip), inputs and
    # outputs never seen here: unknown dates are all the same time, nothing to be done.
    other = tmp_path / "other"
    other.mkdir()
    (other / "Snakefile").write_text(textwrap.dedent(PLAIN))
    fresh = _snakemake(other, srv, "-n", *args)
    assert fresh.returncode == 0 and "Nothing to be done" in fresh.stdout + fresh.stderr, fresh.stderr[-3000:]
    c.close()


def test_key_given_instead_of_variable_name_is_not_echoed(vip_server, tmp_path, monkeypatch):
    import logging

    from snakemake_interface_common.exceptions import WorkflowError

    for pasted in (vip_server.api_key, "abcDEF123ghi456"):  # with or without '-'
        settings = StorageProviderSettings(url=vip_server.url, api_key_env=pasted)
        with pytest.raises(WorkflowError) as err:
            StorageProvider(local_prefix=tmp_path / "p", logger=logging.getLogger("t"), settings=settings)
        assert pasted not in str(err.value) and "api-key-env" in str(err.value)


def test_url_local_works_and_a_bad_url_names_the_url_setting(tmp_path, monkeypatch):
    """Issue 22 item 8: url 'local' (the setting or $VIP_URL) is the CLI's: the local VIP of
    ./.vip-local, its key file the default; a bad URL's error names the url setting."""
    import logging

    from snakemake_interface_common.exceptions import WorkflowError

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("VIP_URL", raising=False)
    log = logging.getLogger("t")
    try:
        p = StorageProvider(local_prefix=tmp_path / "p", logger=log,
                            settings=StorageProviderSettings(url="local", api_key_env=KEY_ENV))
        srv = LocalServer.attach(tmp_path / ".vip-local")
        assert srv is not None and p.client.url == srv.url.rstrip("/")
        obj = p.object("vip://vip/Home/local-url/x.txt")
        obj.local_path().parent.mkdir(parents=True)
        obj.local_path().write_text("x\n")
        obj.store_object()
        assert obj.exists() and obj.size() == 2
        p.client.close()
        monkeypatch.setenv("VIP_URL", "local")  # the environment's 'local': the same server
        q = StorageProvider(local_prefix=tmp_path / "q", logger=log,
                            settings=StorageProviderSettings(api_key_env=KEY_ENV))
        assert q.client.url == srv.url.rstrip("/") and q.object("vip://vip/Home/local-url/x.txt").exists()
        q.client.close()
    finally:
        srv = LocalServer.attach(tmp_path / ".vip-local")
        if srv is not None:
            srv.stop()
    monkeypatch.setenv(KEY_ENV, "some-test-key-123")
    for url, setting in (("vip.creatis.insa-lyon.fr", "--storage-vip-url"), (None, "$VIP_URL")):
        monkeypatch.setenv("VIP_URL", "ftp://x")
        with pytest.raises(WorkflowError) as err:
            StorageProvider(local_prefix=tmp_path / "r", logger=log,
                            settings=StorageProviderSettings(url=url, api_key_env=KEY_ENV))
        text = str(err.value)
        assert setting in text and "http://" in text and "'local'" in text, text
        assert "api-key-env" not in text, text


# --------------------------------------------------------------------------------------------
# VIP's clock ahead of ours (a relay shifting the server's Date header and its dates)
# --------------------------------------------------------------------------------------------

SKEW = 600  # seconds


def _shift_dates(obj):
    if isinstance(obj, list):
        return [_shift_dates(o) for o in obj]
    if isinstance(obj, dict):
        return {k: (v + SKEW if k == "lastModificationDate" and isinstance(v, (int, float))
                    else _shift_dates(v)) for k, v in obj.items()}
    return obj


def _skewed(path, response, data):
    """Every ``lastModificationDate`` of a JSON answer SKEW seconds ahead."""
    if response.headers.get("Content-Type", "").startswith("application/json") and data:
        try:
            return json.dumps(_shift_dates(json.loads(data))).encode()
        except ValueError:
            pass
    return data


def SkewedClockRelay(target: str) -> Relay:
    """A relay in front of a local VIP whose clock seems SKEW seconds ahead: the `Date` header
    and every `lastModificationDate` are shifted."""
    return Relay(target, rewrite=_skewed, clock_offset=SKEW)


SKEWED = """
rule all:
    input: "down.txt", storage.vip("vip://vip/Home/skew/up.txt")

rule down:  # a VIP input (written by someone else) -> a local output
    input: storage.vip("vip://vip/Home/skew/data.csv")
    output: "down.txt"
    shell: "cat {input} > {output}"

rule up:  # a local input -> a VIP output
    input: "local.txt"
    output: storage.vip("vip://vip/Home/skew/up.txt")
    shell: "cat {input} > {output}"
"""


def test_vip_clock_ahead_of_ours(vip_server, tmp_path, monkeypatch):
    relay = SkewedClockRelay(vip_server.url)
    relay.api_key = vip_server.api_key  # _provider reads the key from the object it is given
    try:
        c = VipClient(relay.url, api_key=vip_server.api_key, progress=False)
        src = tmp_path / "data.csv"
        src.write_text("a,b\n1,2\n")
        c.mkdir("/vip/Home/skew")
        c.upload(src, "/vip/Home/skew/data.csv")
        assert c.properties("/vip/Home/skew/data.csv").last_modification_date > time.time() + SKEW - 5

        monkeypatch.setenv(KEY_ENV, vip_server.api_key)
        p = _provider(relay, tmp_path / "direct")
        # on our clock (VIP's is SKEW = 600 s ahead); the margin covers a loaded test machine
        assert abs(p.object("vip://vip/Home/skew/data.csv").mtime() - time.time()) < 60
        p.client.close()

        work = tmp_path / "work"
        work.mkdir()
        (work / "Snakefile").write_text(textwrap.dedent(SKEWED))
        (work / "local.txt").write_text("local\n")
        # The offset is read from whole-second Date headers; on a loaded machine a late reply
        # makes it up to a second or two short, so an input dated within ~2 s of its output
        # cannot be ordered (a known limit, see README). This test is about the 10-minute
        # offset: its input is older than that ambiguity.
        time.sleep(3)
        first = _snakemake(work, relay)
        assert first.returncode == 0, first.stderr[-3000:]
        assert _jobs(first.stderr) == {"all": 1, "down": 1, "up": 1}
        second = _snakemake(work, relay)
        assert "Nothing to be done" in second.stderr, second.stderr[-3000:]
        c.close()
    finally:
        relay.close()


def test_snakemake_job_with_empty_output_fails_naming_it(vip_server, client, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    prefix = f"vip://vip/Home/emptyjob/{tmp_path.name}"
    (work / "Snakefile").write_text(textwrap.dedent(f"""
        rule empty:
            output: storage.vip("{prefix}/nothing.txt")
            shell: "touch {{output}}"
    """))
    run = _snakemake(work, vip_server)
    assert run.returncode != 0
    assert "nothing.txt is empty" in run.stderr and "VIP cannot store an empty file" in run.stderr
    assert not client.exists(f"/vip/Home/emptyjob/{tmp_path.name}/nothing.txt")


def test_date_book_shared_between_processes_and_compacted(tmp_path):
    a, b = DateBook(tmp_path), DateBook(tmp_path)  # e.g. the main process and a cluster job
    a.record_upload([("/vip/Home/x/out.txt", 5, 100.0)], when=100.25)
    assert b.resolve([("/vip/Home/x/out.txt", 5, 100.0)], skew=0) == [100.25]
    b.forget("/vip/Home/x")
    assert a.resolve([("/vip/Home/x/out.txt", 5, 100.0)], skew=0) == [100.0]
    for i in range(3):  # many rewrites of one file: the log is compacted
        a.record_upload([("/vip/Home/y", 1, float(i))] * 4000, when=float(i) + 0.5)
    assert len(a.path.read_text().splitlines()) < 100
    assert DateBook(tmp_path).resolve([("/vip/Home/y", 1, 2.0)], skew=0) == [2.5]
    assert b.resolve([("/vip/Home/y", 1, 2.0)], skew=0) == [2.5]  # re-reads the compacted book


def test_keep_storage_local_copies_no_retrieval_and_nothing_to_do(vip_server, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    prefix = f"vip://vip/Home/keep/{tmp_path.name}"
    (work / "Snakefile").write_text(textwrap.dedent(f"""
        rule all:
            input: storage.vip("{prefix}/b.txt")
        rule a:
            output: storage.vip("{prefix}/a.txt")
            shell: "echo a > {{output}}"
        rule b:
            input: storage.vip("{prefix}/a.txt")
            output: storage.vip("{prefix}/b.txt")
            shell: "cat {{input}} > {{output}}"
    """))
    run = _snakemake(work, vip_server, "--keep-storage-local-copies")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Retrieving from storage" not in run.stderr  # a.txt stayed here for rule b
    again = _snakemake(work, vip_server, "--keep-storage-local-copies")
    assert "Nothing to be done" in again.stderr, again.stderr[-3000:]


def test_touch_marks_outputs_up_to_date_without_changing_vip(vip_server, client, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    prefix = f"/vip/Home/touch/{tmp_path.name}"
    src = tmp_path / "in.txt"
    src.write_text("one\n")
    client.mkdir(prefix)
    client.upload(src, prefix + "/in.txt")
    (work / "Snakefile").write_text(textwrap.dedent(f"""
        rule copy:
            input: storage.vip("vip:/{prefix}/in.txt")
            output: storage.vip("vip:/{prefix}/out.txt")
            shell: "cat {{input}} {{input}} > {{output}}"
    """))
    assert _snakemake(work, vip_server).returncode == 0
    before = client.properties(prefix + "/out.txt")
    time.sleep(1.05)  # VIP dates are whole seconds
    src.write_text("two\n")
    client.upload(src, prefix + "/in.txt")
    assert "copy" in _jobs(_snakemake(work, vip_server, "-n").stdout)
    touched = _snakemake(work, vip_server, "--touch")
    assert touched.returncode == 0, touched.stderr[-3000:]
    dry = _snakemake(work, vip_server, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout + dry.stderr
    after = client.properties(prefix + "/out.txt")
    assert (after.size, after.last_modification_date) == (before.size, before.last_modification_date)

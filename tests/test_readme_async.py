"""The README's notebook example of `AsyncVipClient`, run as written (top-level `await` and all)
against a local VIP: only its portal URL becomes the local server's and the pause between status
rounds 60 s becomes 0.2 s. 200 executions watched while a tree goes up and another comes down."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import re
from pathlib import Path

from vip_smk.core.client import VipClient

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = "<!-- tests/test_readme_async.py runs this block against the local VIP -->"
N = 200


def readme_block() -> str:
    text = README.read_text()
    assert MARK in text, "the README's async example lost its marker"
    m = re.search(r"```python\n(.*?)```", text[text.index(MARK):], re.S)
    assert m is not None
    return m.group(1)


def test_readme_notebook_example_runs(make_server, tmp_path, monkeypatch):
    # 200 executions at once: the server's execution limit lifted (a new VIP account runs one)
    srv = make_server(max_running=0, count_requests=True, workers=2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VIP_API_KEY", srv.api_key)
    code = readme_block()
    assert code.count("https://vip.creatis.insa-lyon.fr") == 1 and "every=60" in code
    code = code.replace("https://vip.creatis.insa-lyon.fr", srv.url).replace("every=60", "every=0.2")

    with VipClient(srv.url, api_key=srv.api_key, progress=False) as vip:
        vip.mkdir("/vip/Home/API/study/runs")
        ids = [vip.launch("Sleep/1.0", {"duration": 0.5 if i < 3 else 0}, "/vip/Home/API/study/runs",
                          name=f"run-{i:03d}").identifier for i in range(N)]
        # the tree to come down, already on VIP; the one to go up, on this machine
        made = tmp_path / "made"
        for i in range(30):
            (made / f"s{i % 3}").mkdir(parents=True, exist_ok=True)
            (made / f"s{i % 3}" / f"r{i}.txt").write_text(f"result {i}\n")
        vip.upload_tree(made, "/vip/Home/API/study/outputs-1")
        for i in range(40):
            (tmp_path / "data" / "batch-2" / f"sub{i % 4}").mkdir(parents=True, exist_ok=True)
            (tmp_path / "data" / "batch-2" / f"sub{i % 4}" / f"in{i}.csv").write_text(f"t,x\n0,{i}\n")
    Path("my-executions.txt").write_text("\n".join(ids) + "\n")
    srv.reset_request_counts()

    ns: dict = {}
    out = io.StringIO()
    flow = eval(compile(code, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT), ns)
    with contextlib.redirect_stdout(out):
        asyncio.run(flow)
    printed = out.getvalue()

    states, up, down = ns["states"], ns["up"], ns["down"]
    assert sorted(states) == sorted(ids) and all(s.status == "Finished" for s in states.values())
    assert f"{N}/{N} executions over" in printed and f"{N} finished;" in printed
    rounds = printed.count("executions over")
    assert rounds >= 2, printed  # watched while still running (three take 0.5 s), not just once
    counts = srv.request_counts()["routes"]
    # one request a round for all 200 (VIP lists at most 500), never one per execution
    assert counts.get("GET /rest/executions") == rounds
    assert not any(r.startswith("GET /rest/executions/{") for r in counts), counts
    assert up.files_transferred == 40 and down.files_transferred == 30
    assert sorted(p.relative_to("outputs-1").as_posix() for p in Path("outputs-1").rglob("*.txt")) == sorted(
        p.relative_to(made).as_posix() for p in made.rglob("*.txt"))
    with VipClient(srv.url, api_key=srv.api_key, progress=False) as vip:
        assert len([p for p in vip.list("/vip/Home/API/study/inputs-2")]) == 4

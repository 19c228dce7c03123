"""`vip-smk show ID --boutiques`: the pipeline's whole Boutiques descriptor, as VIP serves it."""

from __future__ import annotations

import json

from test_cli import run


def test_show_boutiques_prints_the_descriptor(vip_server):
    d = json.loads(run(vip_server, "show", "BraTSStats/1.0", "--boutiques").stdout)
    assert d["name"] == "BraTSStats" and d["tool-version"] == "1.0"
    assert d["custom"]["vip:dot"] == ["t1", "t1ce", "t2", "flair"]
    assert d["output-files"][0]["path-template"] == "[T1].brats.txt"
    # plain `show` is unchanged: the CARMIN parameters
    assert "path-template" not in run(vip_server, "show", "BraTSStats/1.0").stdout


def test_show_boutiques_on_an_older_portal_says_so(make_server):
    srv = make_server(boutiques_format=False)
    proc = run(srv, "show", "TextStats/1.0", "--boutiques", check=False)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "does not serve the Boutiques descriptor of TextStats/1.0" in proc.stderr

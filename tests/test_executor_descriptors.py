"""`--executor vip` checks every VIP job against the pipeline's Boutiques descriptor before
anything runs: unequal vip:dot lists and an out-of-range value stop the run with one message,
zero `POST /rest/executions`, nothing uploaded (counted by the local server)."""

from __future__ import annotations

from test_executor_plugin import project, run_smk, server, vip  # noqa: F401  (fixtures)


def test_unequal_vip_dot_lists_stop_the_run_before_anything_is_sent(server, vip, tmp_path):  # noqa: F811
    work = project(tmp_path, """
        localrules:
            prep,


        rule pair:
            input:
                image_a=expand("prep/a{i}.csv", i=[1, 2, 3]),
                image_b=expand("prep/b{i}.csv", i=[1, 2]),
            output:
                directory("paired"),
            resources:
                vip_pipeline="PairStats/1.0",
            params:
                precision=20,
            shell:
                "# VIP"


        rule prep:
            output:
                "prep/{f}.csv",
            shell:
                "printf 'x\\\\n1\\\\n' > {output}"
    """)
    server.reset_request_counts()
    proc = run_smk(server, work, "ex-dot")
    assert proc.returncode != 0
    out = proc.output
    assert "rule pair" in out and "image_a (3), image_b (2)" in out, out[-3000:]
    assert "precision=20 is out of range: it must be <= 12" in out
    routes = server.request_counts()["routes"]
    assert "POST /rest/executions" not in routes, routes
    assert not [r for r in routes if r.startswith(("PUT ", "POST "))], routes  # nothing uploaded
    assert not vip.exists("/vip/Home/ex-dot")

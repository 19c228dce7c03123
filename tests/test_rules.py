"""VIP's rules (vip_smk.rules): pure functions, checked against what the reference says VIP does
(and, for the characters, against the local server, which keeps its own copy of the rule)."""

from __future__ import annotations

from datetime import datetime

import pytest

from vip_smk import rules


def test_value_characters_are_vips():
    ok = "a-Z_0.9,+@/(x):[y]?&= with spaces"
    assert rules.value_problem(ok) is None and rules.VALUE_CHARS.fullmatch(ok)
    assert rules.value_problem(3.5) is None and rules.value_problem(-2) is None
    for bad, shown in (("a;b", "';'"), ("$x", "'$'"), ("é", "'é'"), ("a\tb", "'\\t'"),
                       ("a\nb", "'\\n'"), ("a*b", "'*'"), ("a\\b", "'\\\\'")):
        problem = rules.value_problem(bad)
        assert problem is not None and shown in problem, (bad, problem)
    # one rule: every bad character listed once, sorted
    assert rules.value_problem("a;b;c$") == "contains '$' ';'"


def test_value_characters_match_the_local_server():
    """The server keeps its own copy (it emulates VIP): both accept and refuse the same."""
    import importlib

    pattern = None
    for module in ("vip_smk.server.inputs", "vip_smk.server.app"):
        try:
            pattern = getattr(importlib.import_module(module), "VALUE_RE", None)
        except ImportError:
            continue
        if pattern is not None:
            break
    assert pattern is not None, "the server's value pattern (VALUE_RE) was not found"
    for ch in map(chr, range(32, 127)):
        assert bool(pattern.match(ch)) == (rules.value_problem(ch) is None), repr(ch)
    for ch in "\t\n\ré":
        assert rules.value_problem(ch) is not None


def test_clean_name_and_name_rules():
    assert rules.clean_name("my file é.csv") == "my_file_.csv"
    assert rules.clean_name("ok-name_1.csv") == "ok-name_1.csv"
    assert rules.name_problem("session", "ok-Name_1") is None
    assert "' '" in rules.name_problem("session", "with space")
    assert rules.name_problem("execution", "with space-1_x") is None
    assert "'/'" in rules.name_problem("execution", "a/b")
    assert rules.name_problem("session", "") == "session name is empty"
    with pytest.raises(ValueError):
        rules.name_problem("pipeline", "x")


def test_statuses():
    for s in ("Initializing", "Ready", "Running", "SomethingNew"):
        assert rules.is_running(s) and not rules.is_over(s), s
    for s in ("Finished", "ExecutionFailed", "InitializationFailed", "Killed", "Unknown", "Removed"):
        assert rules.is_over(s) and not rules.is_running(s), s
    assert not rules.is_running(None) and not rules.is_over(None)
    assert rules.RUNNING_STATUSES == {"Initializing", "Ready", "Running"}
    assert rules.SUCCESS in rules.TERMINAL_STATUSES


def test_job_counts_one_meaning():
    jobs = {"1": {"status": "Completed", "exitCode": 0}, "2": {"status": "Failed", "exitCode": 1},
            "3": {"status": "Running"}, "4": {"status": "Queued"}, "5": {"status": "Killed"},
            "6": {"status": "Brand-new state"}}
    c = rules.job_counts(jobs)
    assert (c.total, c.done, c.failed, c.active, c.ok) == (6, 3, 2, 3, 1)
    assert rules.job_counts(["finished", "RUNNING"]) == rules.JobCounts(2, 1, 0, 1)
    # no jobs reported: the execution counts as one job, from its status
    assert rules.job_counts(None, "Finished") == rules.JobCounts(1, 1, 0, 0)
    assert rules.job_counts({}, "ExecutionFailed") == rules.JobCounts(1, 1, 1, 0)
    assert rules.job_counts([], "Ready") == rules.JobCounts(1, 0, 0, 1)
    assert rules.job_counts(None) == rules.JobCounts()
    assert rules.job_counts(jobs) + rules.job_counts(None, "Ready") == rules.JobCounts(7, 3, 2, 4)


def test_results_folder():
    assert rules.results_folder(datetime(2026, 11, 24, 23, 37, 7)) == "24-11-2026_23:37:07"
    assert len(rules.results_folder()) == len("24-11-2026_23:37:07")


WINDOWS_BAD = set('<>:"/\\|?*') | {chr(i) for i in range(32)}


@pytest.mark.parametrize("vip_name, local", [
    ("24-11-2026_23:37:07", "24-11-2026_23-37-07"),
    ("a.csv.stats.txt", "a.csv.stats.txt"),
    ("x--w3.tgz", "x--w3.tgz"),
    ("what?*.txt", "what--.txt"),
    ("with space", "with-space"),
    ("trailing.", "trailing-"),
    ("CON", "-CON"),
    ("nul.txt", "-nul.txt"),
    ("", "-"),
])
def test_local_name_valid_on_windows_and_unix(vip_name, local):
    assert rules.local_name(vip_name) == local
    assert not WINDOWS_BAD & set(local) and not local.endswith((".", " "))
    assert rules.local_name(local) == local  # stable

"""The study's summary: one row per session (dataset, pipeline, parameters, status, jobs
ok/failed, duration, outputs) as CSV, a text table and an HTML page with a chart."""

from __future__ import annotations

import csv
import html
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from vip_smk import rules
from vip_smk.util import read_json

from .config import Study
from .steps import _now, job_log, tree_size

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = [
    "session", "dataset", "pipeline", "pipeline_id", "parameters", "status", "jobs_ok",
    "jobs_failed", "duration_s", "outputs", "output_bytes", "executions",
]


def _fmt_params(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in params.items())


def summary_rows(study: Study) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(study.sessions):
        s = study.sessions[name]
        sdir = study.results / name
        done = read_json(sdir / "done.json") or {}
        execs = done.get("executions", [])
        durations = [d["duration_s"] for d in execs if d.get("duration_s") is not None]
        count, size = tree_size(sdir / "outputs")
        rows.append(
            {
                "session": name,
                "dataset": s.dataset,
                "pipeline": s.pipeline,
                "pipeline_id": s.pipeline_id,
                "parameters": _fmt_params(s.parameters),
                "status": done.get("status", "missing"),
                "jobs_ok": done.get("jobs_ok", 0),
                "jobs_failed": done.get("jobs_failed", 0),
                "duration_s": round(max(durations), 1) if durations else "",
                "outputs": count,
                "output_bytes": size,
                "executions": " ".join(d["id"] for d in execs),
            }
        )
    return rows


def _svg_chart(rows: list[dict[str, Any]]) -> str:
    """Horizontal bars: duration per session (colour = status), with jobs ok/failed."""
    bar_h, gap, left, width = 18, 6, 260, 420
    durations = [float(r["duration_s"] or 0) for r in rows]
    top = max(durations + [1e-9])
    height = len(rows) * (bar_h + gap) + 40
    colors = {"Finished": "#3b82f6"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 160}" height="{height}" '
        f'role="img" aria-label="Duration per session" font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="14" font-weight="bold">Execution duration (s) per session</text>',
    ]
    for i, (r, d) in enumerate(zip(rows, durations)):
        y = 24 + i * (bar_h + gap)
        w = max(1.0, width * d / top)
        color = colors.get(r["status"], "#ef4444")
        label = html.escape(r["session"])
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{label}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
            f'<title>{label}: {d:.1f} s, {html.escape(str(r["status"]))}</title></rect>'
        )
        parts.append(
            f'<text x="{left + w + 6:.1f}" y="{y + 13}">{d:.1f} s · {r["jobs_ok"]} ok'
            f'{", " + str(r["jobs_failed"]) + " failed" if r["jobs_failed"] else ""}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def summary_text(rows: list[dict[str, Any]]) -> str:
    cols = ["session", "pipeline", "parameters", "status", "jobs_ok", "jobs_failed", "duration_s", "outputs", "output_bytes"]
    heads = ["session", "pipeline", "parameters", "status", "ok", "failed", "time (s)", "files", "size"]
    table = [[str(r[c]) if c != "output_bytes" else _human(int(r[c])) for c in cols] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip() for t in table]
    return "\n".join(lines) + "\n"


def write_summary(study: Study, csv_path, html_path, txt_path=None) -> list[dict[str, Any]]:
    rows = summary_rows(study)
    Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(csv_path) + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=SUMMARY_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, csv_path)
    ok = sum(1 for r in rows if r["status"] == rules.SUCCESS)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in SUMMARY_COLUMNS)
    body = "\n".join(
        "<tr" + ("" if r["status"] == rules.SUCCESS else ' class="bad"') + ">"
        + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in SUMMARY_COLUMNS) + "</tr>"
        for r in rows
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Study {html.escape(study.name)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
th {{ background: #f3f4f6; }} tr.bad td {{ background: #fee2e2; }}
</style></head><body>
<h1>Study <code>{html.escape(study.name)}</code></h1>
<p>{len(rows)} session(s), {ok} finished, {len(rows) - ok} not finished. VIP: {html.escape(study.vip.url)},
folder <code>{html.escape(study.remote_root)}</code>. Written {html.escape(_now())}.</p>
{_svg_chart(rows)}
<table><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table></body></html>
"""
    tmp = Path(str(html_path) + ".tmp")
    tmp.write_text(page)
    os.replace(tmp, html_path)
    if txt_path:
        tmp = Path(str(txt_path) + ".tmp")
        tmp.write_text(summary_text(rows))
        os.replace(tmp, txt_path)
    return rows


def rule_summary(study: Study, wildcards, input, output, log_files) -> None:
    with job_log(log_files[0]):
        rows = write_summary(study, output.csv, output.html, output.txt)
        ok = sum(1 for r in rows if r["status"] == rules.SUCCESS)
        log.info("study %s: %d/%d session(s) finished; summary in %s", study.name, ok, len(rows), output.html)

"""The study's summary: one row per session (dataset, pipeline, parameters, status, jobs
ok/failed, time from launch to end, outputs, VIP's error) as CSV, a text table and an HTML
page with a chart. VIP dates an execution from its launch only: the time is queued + run."""

from __future__ import annotations

import csv
import html
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from vip_smk import rules
from vip_smk.study.logs import job_log
from vip_smk.study.model import Study
from vip_smk.study.steps import _now, tree_size
from vip_smk.util import read_json

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = [
    "session", "dataset", "pipeline", "pipeline_id", "parameters", "status", "jobs_ok",
    "jobs_failed", "queued_run_s", "outputs", "output_bytes", "executions", "error",
]

# The text and HTML tables: (column, heading); the same formatting in both.
DISPLAY = [
    ("session", "session"), ("pipeline", "pipeline"), ("parameters", "parameters"), ("status", "status"),
    ("jobs_ok", "ok"), ("jobs_failed", "failed"), ("queued_run_s", "queued + run"), ("outputs", "files"),
    ("output_bytes", "size"),
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
        errors = [f"{d['id']} {d['status']}" + (f" (error code {d['error_code']})" if d.get("error_code") else "")
                  + (f": {d['error']}" if d.get("error") else "")
                  for d in execs if d.get("status") != rules.SUCCESS]
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
                "queued_run_s": round(max(durations), 1) if durations else "",
                "outputs": count,
                "output_bytes": size,
                "executions": " ".join(d["id"] for d in execs),
                "error": "\n".join(errors),
            }
        )
    return rows


def _svg_chart(rows: list[dict[str, Any]]) -> str:
    """Horizontal bars: duration per session (colour = status), with jobs ok/failed."""
    bar_h, gap, left, width = 18, 6, 260, 420
    durations = [float(r["queued_run_s"] or 0) for r in rows]
    top = max(durations + [1e-9])
    height = len(rows) * (bar_h + gap) + 40
    colors = {"Finished": "#3b82f6"}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 160}" height="{height}" '
        f'role="img" aria-label="Time from launch to end per session" font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="14" font-weight="bold">Time from launch to end (queued + run) per session</text>',
    ]
    for i, (r, d) in enumerate(zip(rows, durations)):
        y = 24 + i * (bar_h + gap)
        w = max(1.0, width * d / top)
        color = colors.get(r["status"], "#ef4444")
        label = html.escape(r["session"])
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{label}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
            f'<title>{label}: {_duration(d)}, {html.escape(str(r["status"]))}</title></rect>'
        )
        parts.append(
            f'<text x="{left + w + 6:.1f}" y="{y + 13}">{_duration(d)} · {r["jobs_ok"]} ok'
            f'{", " + str(r["jobs_failed"]) + " failed" if r["jobs_failed"] else ""}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _duration(seconds: Any) -> str:
    if seconds in ("", None):
        return ""
    t = float(seconds)
    if t < 60:
        return f"{t:.1f} s"
    if t < 3600:
        return f"{int(t // 60)} min {int(t % 60):02d} s"
    return f"{int(t // 3600)} h {int(t % 3600 // 60):02d} min"


def _cell(row: Mapping[str, Any], col: str) -> str:
    if col == "output_bytes":
        return _human(int(row[col]))
    if col == "queued_run_s":
        return _duration(row[col])
    return str(row[col])


def summary_text(rows: list[dict[str, Any]]) -> str:
    heads = [h for _, h in DISPLAY]
    table = [[_cell(r, c) for c, _ in DISPLAY] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip() for t in table]
    lines.append("(queued + run: from the launch to the end of the execution, VIP's queue included)")
    failed = [r for r in rows if r.get("error")]
    if failed:
        lines.append("")
        lines.append("VIP's errors:")
        for r in failed:
            lines.append(f"{r['session']}: " + r["error"].replace("\n", "\n    "))
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
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in DISPLAY) + "<th>VIP's error</th>"
    body = "\n".join(
        "<tr" + ("" if r["status"] == rules.SUCCESS else ' class="bad"') + ">"
        + "".join(f"<td>{html.escape(_cell(r, c))}</td>" for c, _ in DISPLAY)
        + (f"<td><pre>{html.escape(r['error'])}</pre></td>" if r.get("error") else "<td></td>") + "</tr>"
        for r in rows
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Study {html.escape(study.name)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; }}
th {{ background: #f3f4f6; }} tr.bad td {{ background: #fee2e2; }}
pre {{ margin: 0; font-size: 12px; white-space: pre-wrap; }}
</style></head><body>
<h1>Study <code>{html.escape(study.name)}</code></h1>
<p>{len(rows)} session(s), {ok} finished, {len(rows) - ok} not finished. VIP: {html.escape(study.vip.url)},
folder <code>{html.escape(study.remote_root)}</code>. Written {html.escape(_now())}.
"Queued + run": from the launch to the end of the execution (VIP's queue included).</p>
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

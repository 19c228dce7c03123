"""Output and errors of the session classes, in vip-client's style: a stderr handler on the
``vip_smk`` logger when logging is not configured, the status report, the pipeline description,
VIP errors raised as RuntimeErrors (what vip-client raises) keeping their own class."""

from __future__ import annotations

import functools
import logging
import re
import sys
import textwrap
from datetime import datetime
from typing import Any, cast

from vip_smk import rules
from vip_smk.core.client import AuthError, CapacityError, Pipeline, VipError

logger = logging.getLogger("vip_smk.sessions.session")

__all__ = ["ensure_log_handler", "logger", "pipeline_text", "start_string", "status_report",
           "vip_errors"]


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (notebooks and test runners replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it; always follow sys.stderr
        pass


def ensure_log_handler() -> None:
    """Attach a plain stderr handler to the ``vip_smk`` logger if logging is not configured."""
    pkg = logging.getLogger("vip_smk")
    if pkg.hasHandlers():
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    pkg.addHandler(handler)
    if pkg.level == logging.NOTSET:
        pkg.setLevel(logging.INFO)


def start_string(start: Any) -> str | None:
    """VIP's ``startDate`` (ms since epoch, or a datetime / ISO string) -> ``YYYY/MM/DD HH:MM:SS``
    (local time, vip-client's form)."""
    if start is None or start == "":
        return None
    if isinstance(start, datetime):
        dt = start
    elif isinstance(start, (int, float)):
        dt = datetime.fromtimestamp(start / 1000 if start > 1e11 else start)
    else:
        text = str(start)
        try:
            return start_string(float(text))
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return text
    if dt.tzinfo is not None:
        dt = dt.astimezone().replace(tzinfo=None)
    return dt.strftime("%Y/%m/%d %H:%M:%S")


def _as_runtime_error(exc: VipError, cls_name: str) -> Exception:
    """A VipError re-raised so that it is also a RuntimeError (what vip-client raises for every
    VIP error), keeping its class (``except AuthError`` still works) and attributes, with
    vip-client's hints for bad keys and capacity."""
    hint = ""
    if isinstance(exc, AuthError):
        hint = f" Unable to communicate with VIP: run {cls_name}.init() with a valid API key."
    elif isinstance(exc, CapacityError):
        hint = (" Maximum number of executions reached: wait until some are over, or ask "
                "vip-support@creatis.insa-lyon.fr to raise your limit.")
    base = type(exc)
    both = cast("type[VipError]",  # (mypy types a class made by type() as a bare `type`)
                type(base.__name__, (base, RuntimeError), {"__module__": base.__module__,
                                                           "__doc__": base.__doc__}))
    new = both.__new__(both)
    new.__dict__.update(exc.__dict__)
    message = f"{getattr(exc, 'message', str(exc))}{hint}"
    new.args = (message,)
    if hasattr(exc, "message"):
        new.message = message
    return new


def vip_errors(method):
    """Decorator: VIP errors raised by a public step are also RuntimeErrors (vip-client)."""

    @functools.wraps(method)
    def wrapper(self_or_cls, *args, **kwargs):
        try:
            return method(self_or_cls, *args, **kwargs)
        except RuntimeError:
            raise
        except VipError as exc:
            cls = self_or_cls if isinstance(self_or_cls, type) else type(self_or_cls)
            raise _as_runtime_error(exc, cls.__name__) from exc

    return wrapper


def status_report(workflows: dict[str, dict]) -> str:
    """vip-client's report: workflows grouped by status, one line each with its start."""
    by_status: dict[str, list[str]] = {}
    for wid, wf in workflows.items():
        by_status.setdefault(str(wf.get("status")), []).append(wid)
    n = len(workflows)
    lines = []
    for status, ids in by_status.items():
        k = len(ids)
        if rules.is_running(status):
            head = (f"All executions are currently {status.lower()} on VIP." if k == n
                    else f"{k} execution(s) {'is' if k == 1 else 'are'} currently "
                         f"{status.lower()} on VIP:")
        elif status == rules.SUCCESS:
            head = (f"All executions ({n}) ended with success." if k == n
                    else f"{k} execution(s) ended with success:")
        elif status == "Removed":
            head = ("This session is over." if k == n
                    else f"Outputs from {k} execution(s) were removed from VIP servers:")
        else:
            head = (f"All executions ({n}) ended with status: {status}" if k == n
                    else f"{k} execution(s) ended with status: {status}")
        lines.append(head)
        for wid in ids:
            lines.append(f"\t{wid} | Started on: {workflows[wid].get('start')}")
    return "\n".join(lines)


def _strip_html(text: Any) -> str:
    return re.sub(r"<[^>]+>", "", str(text or ""))


def pipeline_text(p: Pipeline) -> str:
    """vip-client's ``show_pipeline`` box: name, version, description, required and optional
    parameters sorted by name with type, description and default."""
    line = "=" * 70
    desc = _strip_html(p.description).replace("\n", " ").strip()
    out = [line, f"NAME: {p.name} | VERSION: {p.version}", line]
    if desc:
        out += ["DESCRIPTION:", textwrap.fill(desc, 70, initial_indent="\t", subsequent_indent="\t")]
    out.append("INPUT_SETTINGS:")
    params = [q for q in p.parameters if q.name != "results-directory"]
    for title, opt in (("REQUIRED", False), ("OPTIONAL", True)):
        group = sorted((q for q in params if bool(q.is_optional) is opt), key=lambda q: q.name)
        if not group:
            continue
        out.append(f"{title}..." + "." * 50)
        for q in group:
            out.append(f"- {q.name}")
            extra = "" if q.default_value in rules.NO_DEFAULT else f" (default: {q.default_value})"
            text = f"[{q.type}] {_strip_html(q.description)}{extra}"
            out.append(textwrap.fill(text, 70, initial_indent="\t", subsequent_indent="\t"))
    out.append(line)
    return "\n".join(out)

"""Request counter for the local VIP server (test and benchmark aid, off by default).

With ``--count-requests`` every HTTP request that reaches the server is counted by method and
route (``"GET /rest/executions/{eid}"``; ``GET`` on ``/rest/path`` also by action:
``"GET /rest/path/{path}?action=list"``), injected faults included. The counts are served
outside VIP's API, at ``/__vip_smk/requests``:

- ``GET``    -> ``{"total": N, "routes": {"GET /rest/executions": n, ...}, "in_flight": k,
  "max_in_flight": m}`` (``m``: the most requests the server was answering at once since the
  last reset: how concurrent a client really is)
- ``DELETE`` -> resets the counts and ``max_in_flight`` (204).

Requests to ``/__vip_smk/...`` themselves are not counted.
"""

from __future__ import annotations

import json
import re
from collections import Counter

from starlette.routing import Match

PREFIX = "/__vip_smk"
COUNTS_PATH = PREFIX + "/requests"
_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def _action(scope) -> str | None:
    for part in scope.get("query_string", b"").decode("latin-1").split("&"):
        key, _, value = part.partition("=")
        if key == "action":
            return value
    return None


class RequestCounter:
    """ASGI middleware (outermost): counts requests per ``METHOD route``."""

    def __init__(self, app, routes):
        self.app = app
        self.routes = list(routes)
        self.counts: Counter = Counter()
        self.total = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def route_of(self, scope) -> str:
        method = scope["method"]
        template = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                template = route.path
                break
            if match == Match.PARTIAL and template is None:  # right path, wrong method
                template = route.path
        if template is None:
            return f"{method} (no route)"
        key = method + " " + _CONVERTER.sub(r"{\1}", template)
        if method == "GET" and template.startswith("/rest/path/"):
            key += f"?action={_action(scope) or ''}"
        return key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path == COUNTS_PATH:
            return await self._serve(scope, send)
        if not path.startswith(PREFIX + "/"):
            self.counts[self.route_of(scope)] += 1
            self.total += 1
        self.in_flight += 1  # one event loop: no lock needed
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _serve(self, scope, send):
        method = scope["method"]
        if method == "GET":
            body = json.dumps({"total": self.total, "routes": dict(sorted(self.counts.items())),
                               "in_flight": self.in_flight, "max_in_flight": self.max_in_flight}).encode()
            status = 200
        elif method == "DELETE":
            self.counts.clear()
            self.total = 0
            self.max_in_flight = self.in_flight
            body, status = b"", 204
        else:
            body = json.dumps({"errorCode": 8001, "errorMessage": f"Method {method} not supported "
                               f"on {COUNTS_PATH} (GET, DELETE)"}).encode()
            status = 405
        headers = [(b"content-length", str(len(body)).encode())]
        if body:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

"""A raw VIP API caller for the server tests: plain requests with the ``apikey`` header,
written only from VIP's API (no vip_smk client code)."""

from __future__ import annotations

import time

import requests

T = 30  # seconds, every request
#: VIP's states of an execution that is not over (Ready: queued, waiting for a slot)
ACTIVE = ("Initializing", "Ready", "Running")


class Api:
    def __init__(self, url: str, key: str):
        self.base = url + "/rest"
        self.s = requests.Session()
        self.s.headers["apikey"] = key

    def get(self, path, **kw):
        return self.s.get(self.base + path, timeout=T, **kw)

    def put(self, path, **kw):
        return self.s.put(self.base + path, timeout=T, **kw)

    def post(self, path, **kw):
        return self.s.post(self.base + path, timeout=T, **kw)

    def delete(self, path, **kw):
        return self.s.delete(self.base + path, timeout=T, **kw)

    def launch(self, pipeline, inputs, name="test", **extra) -> dict:
        """POST /executions; the reply (the Execution object)."""
        r = self.post("/executions", json={"name": name, "pipelineIdentifier": pipeline,
                                            "inputValues": inputs, **extra})
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, eid, timeout=30, until=lambda e: e["status"] not in ACTIVE) -> dict:
        """Poll GET /executions/{eid} until ``until(execution)`` (default: it is over)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            e = self.get(f"/executions/{eid}").json()
            if until(e):
                return e
            time.sleep(0.05)
        raise AssertionError(f"{eid} still {e['status']} after {timeout} s: {e}")

    def gone(self, path, timeout=10) -> None:
        """Wait until ``path`` no longer exists (VIP's DELETE completes after its 204)."""
        end = time.monotonic() + timeout
        while self.get(f"/path{path}", params={"action": "exists"}).json()["exists"]:
            assert time.monotonic() < end, f"{path} still there {timeout} s after DELETE"
            time.sleep(0.02)

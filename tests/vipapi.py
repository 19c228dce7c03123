"""A raw VIP API caller for the server tests: plain requests with the ``apikey`` header,
written only from VIP's API (no vip_smk client code)."""

from __future__ import annotations

import time

import requests

T = 30  # seconds, every request


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

    def wait(self, eid, timeout=30, until=lambda e: e["status"] != "Running") -> dict:
        """Poll GET /executions/{eid} until ``until(execution)``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            e = self.get(f"/executions/{eid}").json()
            if until(e):
                return e
            time.sleep(0.05)
        raise AssertionError(f"{eid} still {e['status']} after {timeout} s: {e}")

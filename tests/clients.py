"""Both clients behind one synchronous face, so that one suite checks both (tests/test_client.py
and tests/test_transfer.py run once with each): "sync" is `VipClient` itself; "async" is the
real `AsyncVipClient`, each of its coroutines run on one event loop in a thread of its own (no
stand-in: every request is the async client's, over httpx, to the local VIP)."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest

from vip_smk.core.client import VipClient

KINDS = ["sync", "async"]


_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    """The one event loop every bridged client runs on (a daemon thread of the test session)."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            _LOOP = asyncio.new_event_loop()
            threading.Thread(target=_LOOP.run_forever, name="async-clients", daemon=True).start()
        return _LOOP


class AsyncBridge:
    """An `AsyncVipClient` driven from synchronous code (constructor: VipClient's arguments)."""

    def __init__(self, *args, **kwargs):
        from vip_smk import AsyncVipClient

        async def make():
            return AsyncVipClient(*args, **kwargs)

        object.__setattr__(self, "_client", self._run(make()))

    @staticmethod
    def _run(coro):
        return asyncio.run_coroutine_threadsafe(coro, _loop()).result()

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **kw: self._run(attr(*a, **kw))
        return attr

    def __setattr__(self, name, value):
        setattr(self._client, name, value)

    def __repr__(self) -> str:
        return repr(self._client)

    def close(self) -> None:
        self._run(self._client.aclose())

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


CLIENTS = {"sync": VipClient, "async": AsyncBridge}


def use_client_kind(module_globals: dict):
    """A module's autouse fixture: the module's `VipClient` is each kind in turn; a test marked
    `sync_only` (it reads the sync transport's own objects) runs once."""

    @pytest.fixture(autouse=True, params=KINDS)
    def client_kind(request, monkeypatch):
        if request.param != "sync" and request.node.get_closest_marker("sync_only"):
            pytest.skip("reads the synchronous transport's own objects (requests' session)")
        monkeypatch.setitem(module_globals, "VipClient", CLIENTS[request.param])
        return request.param

    return client_kind

"""Latency and fault injection for the local VIP server (test aid, off by default).

Every ``/rest`` request is delayed by ``latency_ms``; with probability ``fault_rate`` it is
answered ``503`` (a VIP JSON error) or its connection is broken (reset). For requests other
than GET, a third of the faults happen *after* the handler ran: the action took place but the
reply is lost, so clients' no-duplicate logic can be tested. ``seed`` makes the sequence of
decisions deterministic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import struct
from collections import Counter

log = logging.getLogger(__name__)

_BODY_503 = json.dumps(
    {"errorCode": 8000, "errorMessage": "Service temporarily unavailable (injected fault)"}
).encode()


async def _send_503(send) -> None:
    await send({
        "type": "http.response.start",
        "status": 503,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(_BODY_503)).encode()),
                    (b"retry-after", b"0")],
    })
    await send({"type": "http.response.body", "body": _BODY_503})


class _Reset(Exception):
    pass


def _abort(send) -> bool:
    """Reset the TCP connection under ``send`` (uvicorn's transport); False if not reachable."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()
    return True


class FaultInjector:
    """ASGI middleware (outermost, so that ``send`` is the server's own)."""

    def __init__(self, app, fault_rate: float = 0.0, latency_ms: float = 0.0, seed: int | None = None):
        self.app = app
        self.fault_rate = float(fault_rate)
        self.latency = float(latency_ms) / 1000.0
        self.rng = random.Random(seed)
        self.stats: Counter = Counter()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/rest"):
            return await self.app(scope, receive, send)
        if self.latency:
            await asyncio.sleep(self.latency)
        if not self.fault_rate or self.rng.random() >= self.fault_rate:
            return await self.app(scope, receive, send)
        method = scope["method"]
        kinds = ["503", "reset"] if method in ("GET", "HEAD") else ["503", "reset", "after"]
        kind = self.rng.choice(kinds)
        self.stats[kind] += 1
        log.info("injected fault %s on %s %s", kind, method, scope["path"])
        if kind == "503":
            await self._drain(receive)
            return await _send_503(send)
        if kind == "reset":
            await self._drain(receive)
            if _abort(send):
                await self._after_abort(send)
            else:
                await _send_503(send)
            return
        # "after": run the handler, then lose its reply
        after_reset = self.rng.random() < 0.5

        async def swallow(message):
            return None

        await self.app(scope, receive, swallow)
        if after_reset and _abort(send):
            return await self._after_abort(send)
        await _send_503(send)

    @staticmethod
    async def _after_abort(send) -> None:
        # let the server notice the lost connection, then "answer" (dropped) so that it does
        # not log an ASGI error about a missing response
        for _ in range(3):
            await asyncio.sleep(0)
        try:
            await _send_503(send)
        except Exception:
            pass

    @staticmethod
    async def _drain(receive) -> None:
        while True:
            msg = await receive()
            if msg["type"] != "http.request" or not msg.get("more_body"):
                return

"""The sockets under `AsyncVipClient`'s connections: an httpcore network backend on asyncio's
own streams (httpcore's public `AsyncNetworkBackend` interface), in place of httpcore's default
anyio backend.

Why: a tree of small files is bound by the event loop's CPU per request, not by the network
(`bench/async_client.py`), and httpcore's anyio layer is a fixed part of it (a cancel scope, an
exception map and an attribute table per read and per write); asyncio's streams do the same
work directly. Timeouts, errors (httpcore's `ReadTimeout`, `ReadError`, ... which httpx maps as
for its own backend), TLS (`start_tls`) and the idle-connection check are kept."""

from __future__ import annotations

import asyncio
import select
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore

_READ = 1 << 16  # bytes asked of the stream at most per read (httpcore asks 64 KiB)


def _closed_or_readable(sock: Any) -> bool:
    """An idle connection's socket with data (or EOF) waiting: the server closed it."""
    if sock is None:
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock.fileno()], [], [], 0)  # (Windows: no poll)
        return bool(readable)
    except (OSError, ValueError, AttributeError):
        return True


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection: an asyncio `StreamReader` / `StreamWriter` pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader, self._writer = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            if timeout is None:
                return await self._reader.read(min(max_bytes, _READ))
            async with asyncio.timeout(timeout):
                return await self._reader.read(min(max_bytes, _READ))
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc) or "read timed out") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            if self._writer.transport.get_write_buffer_size() == 0:
                return  # all of it went to the socket at once: no drain to wait for
            if timeout is None:
                await self._writer.drain()
                return
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc) or "write timed out") from exc
        except (OSError, RuntimeError) as exc:  # RuntimeError: the transport is closing
            raise httpcore.WriteError(str(exc)) from exc

    async def aclose(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass  # closing a connection the peer already dropped

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or "TLS handshake timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        w = self._writer
        if info == "ssl_object":
            return w.get_extra_info("ssl_object")
        if info == "client_addr":
            return w.get_extra_info("sockname")
        if info == "server_addr":
            return w.get_extra_info("peername")
        if info == "socket":
            return w.get_extra_info("socket")
        if info == "is_readable":
            # EOF or bytes already taken in by asyncio, or waiting on the socket
            return (self._reader.at_eof() or w.transport.is_closing()
                    or _closed_or_readable(w.get_extra_info("socket")))
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connections made by `asyncio.open_connection` (TCP_NODELAY, as asyncio sets it)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None, limit=1 << 20)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or f"connect to {host}:{port} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        sock = writer.get_extra_info("socket")
        for option in socket_options or ():
            if sock is not None:
                sock.setsockopt(*option)
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or f"connect to {path} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


__all__ = ["AsyncioBackend", "AsyncioStream"]


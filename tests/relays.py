"""An HTTP relay on 127.0.0.1 for tests: in front of a real local VIP server (``target``), or as a
plain forward proxy (``target=None``: absolute-URI requests, as clients send them to a proxy
named by ``HTTP_PROXY``). It records every call and may rewrite answers (``rewrite``)."""

from __future__ import annotations

import email.utils
import http.server
import threading
import time
from collections.abc import Callable

import requests

_HOP = ("host", "content-length", "connection", "proxy-connection")
_NOT_RELAYED = ("content-length", "transfer-encoding", "connection", "content-encoding", "date",
                "server")


LOSE = b"<lose this reply>"


class _Served:
    """An HTTP server on 127.0.0.1 (a free port) in a daemon thread: ``.url``, ``.close()``
    (also a context manager)."""

    def _serve(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Relay(_Served):
    """``Relay(target=None, rewrite=None, clock_offset=0)``; ``.url``, ``.calls`` [(method, path
    or URL)], ``.close()`` (also a context manager). ``rewrite(path, response, body) -> body`` may
    change what the client receives (``LOSE``: the connection is closed without an answer, as a
    reply lost on the way back although VIP acted); ``clock_offset`` (seconds) shifts the ``Date`` header, as a
    server whose clock is ahead (or behind) would send it."""

    def __init__(self, target: str | None = None,
                 rewrite: Callable[[str, requests.Response, bytes], bytes] | None = None,
                 clock_offset: float = 0.0):
        relay = self
        self.calls: list[tuple[str, str]] = []
        self.session = requests.Session()
        self.session.trust_env = False  # never through the proxy variables the test sets

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self):
                relay.calls.append((self.command, self.path))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                url = self.path if target is None else target + self.path
                r = relay.session.request(self.command, url, data=body or None, headers=headers,
                                          allow_redirects=False, timeout=60)
                data = r.content
                if rewrite is not None:
                    data = rewrite(self.path, r, data)
                if data is LOSE:
                    self.close_connection = True
                    return
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in _NOT_RELAYED:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _relay

            def date_time_string(self, timestamp=None):  # the Date header send_response adds
                return email.utils.formatdate(time.time() + clock_offset, usegmt=True)

            def log_message(self, *args):
                pass

        self._serve(Handler)

    def close(self) -> None:
        super().close()
        self.session.close()


class Redirector(_Served):
    """``Redirector(target)``: answers every request with ``307 Temporary Redirect`` to the same
    path on ``target`` (a front that moved, as a proxy or a load balancer may answer); ``.url``,
    ``.calls`` [(method, path)], ``.close()`` (also a context manager)."""

    def __init__(self, target: str):
        relay = self
        self.calls: list[tuple[str, str]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _redirect(self):
                relay.calls.append((self.command, self.path))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(307)
                self.send_header("Location", target + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = do_POST = do_DELETE = _redirect

            def log_message(self, *args):
                pass

        self._serve(Handler)

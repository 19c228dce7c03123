"""``vip-smk serve`` / ``python -m vip_smk.server``: a local VIP server on this machine.

It answers VIP's REST API (under ``<url>/rest/``, header ``apikey``) and runs Boutiques apps
(the shipped ones plus those of ``--apps-dir``) with a bounded pool of workers. Everything
lives under ``--data-dir``: ``vip.sqlite`` (users, executions, jobs), ``users/<name>/Home``
and ``users/<name>/Trash`` (each user's VIP space), ``work/`` (job dirs, stdout/stderr).

Restart: stopping the server loses nothing. Executions that were still running when it
stopped (or crashed) are run again from the start of their unfinished jobs on the next start
on the same data dir; finished jobs are not re-run.

Users: ``--user NAME:KEY[:PASSWORD]`` (repeatable; PASSWORD enables ``POST
/rest/authenticate``), or the same specs one per line in ``$VIP_SMK_SERVE_USERS`` (keeps the
keys out of the process list on shared machines; ``LocalServer`` uses it). With no ``--user``, a user ``local`` is created on the first start, its
key printed once and stored in ``<data-dir>/apikey`` (mode 0600), and reused afterwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (starlette comes with the server extra: imported where the server starts)
    from starlette.types import ASGIApp

log = logging.getLogger("vip_smk.server")

DEFAULT_DATA_DIR = ".vip-local"
USERS_ENV = "VIP_SMK_SERVE_USERS"
MAX_SIZE_DIRECT_TRANSFER = 15_000_000  # VIP-portal's shipped maxSizeDirectTransfer (bytes)


def _shipped_apps() -> str:
    """The shipped apps' identifiers, read from their descriptors as the server loads them."""
    from vip_smk.server.pipelines import load_pipelines

    return ", ".join(sorted(load_pipelines(), key=str.lower))


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.description = (
        "Run a local VIP server on this machine: VIP's REST API under URL/rest/ (header "
        f"'apikey'), running Boutiques apps here (shipped: {_shipped_apps()}; add yours with --apps-dir). "
        "As strict as VIP by default. Give the printed 'VIP portal URL' to VIP clients."
    )
    parser.epilog = (
        "Restart behaviour: nothing is lost; executions that were running when the server stopped "
        "(or crashed) are run again on the next start on the same --data-dir (their unfinished "
        "jobs restart from scratch). Results go to RESULTS_LOCATION/dd-mm-yyyy_HH:MM:SS/, a name "
        "never given twice (if it was ever taken, the next free second). "
        "Users: --user NAME:KEY[:PASSWORD] or, to keep keys out of `ps`, one spec per line in "
        "$VIP_SMK_SERVE_USERS; with neither, a user 'local' is created once and its key kept in "
        "DATA_DIR/apikey."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (0 = pick a free one; default 8080)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help=f"where everything is kept (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--apps-dir", action="append", default=[], metavar="DIR",
                        help="extra directory of Boutiques descriptors (*.json); repeatable")
    parser.add_argument("--user", action="append", default=[], metavar="NAME:KEY[:PASSWORD]",
                        help="a user and its API key (and optional password); repeatable")
    parser.add_argument("--workers", type=int, default=2, help="jobs run in parallel (default 2)")
    parser.add_argument("--max-running", type=int, default=1, metavar="N",
                        help="executions in flight per user (error 2001 beyond); default 1, a new "
                             "VIP account's capacity (VIP's support raises it); 0 = unlimited")
    parser.add_argument("--fault-rate", type=float, default=0.0,
                        help="fraction of /rest requests answered 503 or reset (tests; default 0)")
    parser.add_argument("--latency", type=float, default=0.0, metavar="MS",
                        help="delay added to every /rest request, in ms (default 0)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault injection")
    strict = parser.add_argument_group(
        "VIP's limits (strict by default, as VIP-portal; the options below make the server "
        "kinder or model VIP's delays)")
    strict.add_argument("--list-limit", type=int, default=500, metavar="N",
                        help="GET executions lists the newest N (defaultLimitListExecutions; default 500)")
    strict.add_argument("--max-download-size", type=_size, default=MAX_SIZE_DIRECT_TRANSFER, metavar="BYTES",
                        help="refuse downloads of larger files, reported as maxSizeDirectTransfer "
                             "(suffixes K, M, G; default 15000000, VIP-portal's shipped value; 0 = no limit)")
    strict.add_argument("--md5", action="store_true",
                        help="answer action=md5 (VIP: error 8001, not implemented)")
    strict.add_argument("--no-boutiques-format", action="store_true",
                        help="act as a portal older than 4.6: GET pipelines/{id}?format=boutiques "
                             "answers the CARMIN pipeline (VIP 4.6: the Boutiques descriptor)")
    strict.add_argument("--archive-uploads", action="store_true",
                        help="extract 'Archive' (zip) uploads (VIP: refused)")
    strict.add_argument("--results-location", action="store_true",
                        help="fill executions' resultsLocation (VIP 4.6: always null)")
    strict.add_argument("--null-dates", type=float, default=0.0, metavar="P",
                        help="serve a null lastModificationDate for a share P of files, chosen by "
                             "path and --seed (default 0)")
    strict.add_argument("--storage-delay", type=float, default=0.0, metavar="MS",
                        help="per-file grid transfer time added to uploads and downloads (default 0)")
    strict.add_argument("--delete-delay", type=float, default=100.0, metavar="MS",
                        help="DELETE answers 204 at once and the path goes MS later, as VIP's "
                             "asynchronous delete (0 = gone before the answer; default 100)")
    parser.add_argument("--count-requests", action="store_true",
                        help="count requests by method and route, served (outside /rest) at "
                             "GET /__vip_smk/requests; DELETE there resets them (default off)")
    parser.add_argument("--log-level", default="INFO", help="server log level (default INFO)")
    parser.add_argument("--parent-pid", type=int, default=None, metavar="PID",
                        help="stop (killing running apps) as soon as process PID is gone: a "
                             "server started for a test or a notebook does not outlive it even "
                             "when it is killed -9 (LocalServer sets it unless detach=True)")
    return parser


def _size(text: str) -> int:
    units = {"K": 1000, "M": 1000 ** 2, "G": 1000 ** 3, "T": 1000 ** 4}
    t = text.strip().upper().removesuffix("B")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (bytes, or with K, M, G)")


def parse_user(spec: str) -> tuple[str, str, str | None]:
    parts = spec.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"--user expects NAME:KEY[:PASSWORD], got {spec.split(':', 1)[0]!r}:...")
    name = parts[0]
    if not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ValueError(f"invalid user name {name!r} (letters, digits, '-', '_', '.')")
    return name, parts[1], (parts[2] if len(parts) == 3 else None)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from vip_smk.server.app import Config, build_app
    from vip_smk.server.counter import RequestCounter
    from vip_smk.server.engine import Engine
    from vip_smk.server.faults import FaultInjector
    from vip_smk.server.pipelines import load_pipelines
    from vip_smk.server.store import Store, new_key

    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    data_dir = Path(args.data_dir).resolve()
    # users may also come from the environment (one NAME:KEY[:PASSWORD] per line): unlike
    # arguments, the environment is not visible to other users of the machine (ps); it is
    # removed here so that jobs do not inherit it
    env_users = [u for u in os.environ.pop(USERS_ENV, "").splitlines() if u.strip()]
    try:
        users = [parse_user(u) for u in [*args.user, *env_users]]
        pipelines = load_pipelines(args.apps_dir)
    except (ValueError, FileNotFoundError) as e:
        print(f"vip-smk serve: {e}", file=sys.stderr)
        return 2
    data_dir.mkdir(parents=True, exist_ok=True)
    # one server per data dir: the lock is held as long as this process lives
    # (an OS lock, via filelock: flock on Unix, msvcrt on Windows; the OS releases a dead
    # holder's, so a killed server never blocks the next start)
    from filelock import FileLock, Timeout

    data_lock = FileLock(data_dir / "server.lock", timeout=0, thread_local=False)
    try:
        data_lock.acquire()
    except Timeout:
        print(f"vip-smk serve: another server is already running on {data_dir}", file=sys.stderr)
        return 1
    store = Store(data_dir)
    generated = None
    if users:
        for name, user_key, password in users:
            store.add_user(name, user_key, password)
    else:
        keyfile = data_dir / "apikey"
        existing = store.user_by_name("local")
        key = keyfile.read_text().strip() if keyfile.exists() else None
        if not key:
            key = existing.apikey if existing else new_key()
            if not existing:
                generated = key
            fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key + "\n")
        store.add_user("local", key)

    try:
        # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on such sockets (else Nagle +
        # delayed ACK add ~40 ms to every request on a kept-alive connection)
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM,
                             socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(2048)
    except OSError as e:
        print(f"vip-smk serve: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        store.close()
        return 1
    port = sock.getsockname()[1]
    host = args.host if ":" not in args.host else f"[{args.host}]"
    url = f"http://{host}:{port}"

    engine = Engine(store, pipelines, workers=args.workers)
    config = Config(max_running=args.max_running or None, list_limit=args.list_limit,
                    max_download_size=args.max_download_size or None, md5=args.md5,
                    archive_uploads=args.archive_uploads, null_dates=args.null_dates,
                    results_location=args.results_location,
                    seed=args.seed, storage_delay_ms=args.storage_delay,
                    delete_delay_ms=args.delete_delay,
                    boutiques_format=not args.no_boutiques_format)
    starlette_app = build_app(store, engine, pipelines, config)
    api = starlette_app.state.api
    routes = starlette_app.routes
    app: ASGIApp = starlette_app
    if args.fault_rate or args.latency:
        app = FaultInjector(app, fault_rate=args.fault_rate, latency_ms=args.latency, seed=args.seed)
    if args.count_requests:  # outermost: injected faults are counted too
        app = RequestCounter(app, routes)
    engine.recover()

    server_json = data_dir / "server.json"
    _write_json(server_json, {"url": url, "port": port, "pid": os.getpid()})
    print(f"VIP portal URL: {url}", flush=True)
    if generated:  # the key itself only to a terminal: redirected output is a log (0644)
        shown = generated if sys.stdout.isatty() else "not shown here (output is not a terminal)"
        print(f"API key: {shown}  (user 'local', stored in {data_dir / 'apikey'})", flush=True)
    log.info("serving %d pipeline(s) from %s with %d worker(s)", len(pipelines), data_dir, args.workers)
    uv_config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=3,
                            lifespan="off")
    # uvicorn restores these handlers and re-raises the signal it caught once it has stopped:
    # make that a no-op so that the clean-up below runs (jobs stopped, server.json removed)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server = uvicorn.Server(uv_config)
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid, server), daemon=True,
                         name="parent-watch").start()
    try:
        server.run(sockets=[sock])
    finally:
        engine.shutdown()
        api.deleter.flush()
        try:
            if json.loads(server_json.read_text()).get("pid") == os.getpid():
                server_json.unlink()
        except (OSError, ValueError):
            pass
        store.close()
        data_lock.release()
        log.info("stopped")
    return 0


def _watch_parent(pid: int, server, interval: float = 0.25) -> None:
    """Stop ``server`` when process ``pid`` is gone (portable: polls the pid, and on Unix also
    whether this process was re-parented, which covers a reused pid). The clean-up of
    :func:`serve` then kills the running apps."""
    from vip_smk.util import pid_alive

    ours = os.name != "nt" and os.getppid() == pid
    while not server.should_exit:
        if not pid_alive(pid) or (ours and os.getppid() != pid):
            log.warning("the parent process (pid %s) is gone: stopping", pid)
            server.should_exit = True
            return
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = add_serve_arguments(argparse.ArgumentParser(prog="python -m vip_smk.server"))
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

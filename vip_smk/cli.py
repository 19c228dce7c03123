"""`vip-smk` command line: client verbs on VIP (or a local server) and `serve`.

Global options `--url` (default `$VIP_URL` or VIP's portal; `local`: the local VIP server of
the current directory's `.vip-local/`, as the demo study runs it, started if needed: the one rule
of `vip_smk.api.urls.resolve_url`) and the key's source,
`--api-key-env NAME` (default `VIP_API_KEY`) or `--api-key-file PATH`, may be given before or after
the verb. The key itself never goes on the command line (it would show in `ps` and shell history). Errors are
one line on stderr and a non-zero exit code (1 for VIP errors, 2 for usage, 130 on Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path, PurePosixPath

from vip_smk.api.urls import LOCAL_DIR  # noqa: F401  (the study's default vip.local_dir)

STDOUT = "-"  # `get FILE -`: the file's content on stdout


def _add_globals(p: argparse.ArgumentParser, default) -> None:
    p.add_argument("--url", default=default,
                   help="VIP portal URL, or 'local' for the local VIP server of this directory "
                        "(.vip-local/, started if needed; the demo study's) "
                        "(default: $VIP_URL or https://vip.creatis.insa-lyon.fr)")
    p.add_argument("--api-key-env", default=default, metavar="NAME",
                   help="the environment variable holding your API key (default: VIP_API_KEY)")
    p.add_argument("--api-key-file", default=default, metavar="PATH",
                   help="a file holding your API key (instead of a variable)")
    p.add_argument("--workers", type=int, default=default, help="parallel transfers (default 32, the connection limit)")
    p.add_argument("-q", "--quiet", action="store_true", default=default, help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", default=default, help="log requests and retries")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vip-smk", description="Run pipelines on VIP.")
    _add_globals(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _add_globals(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("pipelines", parents=[common], help="list the pipelines you may run")
    p = sub.add_parser("show", parents=[common], help="describe a pipeline and its parameters")
    p.add_argument("pipeline_id", metavar="ID", help="pipeline identifier, e.g. TextStats/1.0 (see: pipelines)")
    p.add_argument("--boutiques", action="store_true",
                   help="print the whole Boutiques descriptor (JSON), as VIP serves it")
    p = sub.add_parser("ls", parents=[common], help="list a VIP directory")
    p.add_argument("path", nargs="?", default="/vip/Home", metavar="PATH",
                   help="VIP directory (default /vip/Home)")
    p.add_argument("-l", "--long", action="store_true", help="sizes and dates")
    p = sub.add_parser("put", parents=[common],
                       help="upload a file into VIPDIR, or sync a directory's contents into VIPDIR")
    p.add_argument("local", metavar="LOCAL", help="local file or directory")
    p.add_argument("vip_dir", metavar="VIPDIR", help="VIP directory, e.g. /vip/Home/data (created if needed)")
    p.add_argument("--checksum", action="store_true", help="also compare md5 when sizes match")
    p = sub.add_parser("get", parents=[common],
                       help="download a VIP file (into LOCAL, or LOCAL/NAME if LOCAL is a directory, "
                            "or to stdout if LOCAL is -), or mirror a VIP directory's contents into LOCAL")
    p.add_argument("vip_path", metavar="VIPPATH", help="VIP file or directory, e.g. /vip/Home/out/result.txt")
    p.add_argument("local", metavar="LOCAL",
                   help="local file or directory; '-': write the file's content to stdout")
    p.add_argument("--extract", action="store_true", help="extract tarballs (into NAME/)")
    p = sub.add_parser("rm", parents=[common], help="delete a VIP file or directory")
    p.add_argument("path", metavar="PATH", help="VIP file or directory (a directory: with its contents)")
    p.add_argument("-f", "--force", action="store_true", help="no error if it does not exist")
    p = sub.add_parser("mkdir", parents=[common], help="create a VIP directory (and parents)")
    p.add_argument("path", metavar="PATH", help="VIP directory, e.g. /vip/Home/data")
    p = sub.add_parser("launch", parents=[common], help="launch an execution")
    p.add_argument("pipeline_id", metavar="ID", help="pipeline identifier, e.g. TextStats/1.0 (see: pipelines)")
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=VALUE",
                   help="input value (repeat a NAME for a list)")
    p.add_argument("--results", required=True, metavar="VIPDIR", help="results location on VIP")
    p.add_argument("--name", default="vip-smk", help="execution name")
    p.add_argument("--wait", action="store_true", help="wait until it is over")
    p = sub.add_parser("status", parents=[common], help="list executions, or show one")
    p.add_argument("execution_id", nargs="?", metavar="ID",
                   help="execution identifier (workflow-...); none: list your executions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("kill", parents=[common], help="kill an execution")
    p.add_argument("execution_id", metavar="ID", help="execution identifier (workflow-...)")
    p = sub.add_parser("logs", parents=[common], help="print an execution's stdout and stderr")
    p.add_argument("execution_id", metavar="ID", help="execution identifier (workflow-...)")

    serve = sub.add_parser("serve", help="run a local VIP server on this machine")
    try:
        from vip_smk.server.__main__ import add_serve_arguments
    except ImportError:  # server package incomplete: the client verbs still work
        pass
    else:
        add_serve_arguments(serve)
    return parser


def _client(args):
    """The client of `--url` (`local`: the embedded server of this directory's `.vip-local/`,
    started if needed, with its key unless --api-key-env/--api-key-file is given)."""
    from vip_smk.api.urls import resolve_url
    from vip_smk.core.client import AuthError, VipClient

    kw: dict = {}
    if getattr(args, "workers", None):
        kw["workers"] = args.workers
    where = resolve_url(args.url, setting="--url")
    if args.api_key_file:
        kw["api_key_file"] = args.api_key_file
    elif args.api_key_env:
        kw["api_key_env"] = args.api_key_env
    elif where.key_file is not None:
        kw["api_key_file"] = where.key_file  # `local`: the local server's key
    else:
        kw["api_key_env"] = "VIP_API_KEY"
    try:
        client = VipClient(url=where.url, progress=False if args.quiet else None, **kw)
    except AuthError as exc:
        if "api_key_env" in kw and "not set" in str(exc):
            raise AuthError(f"{exc}: export your VIP API key in it, or give --api-key-env NAME "
                            "or --api-key-file PATH", call="api_key") from None
        raise
    # an interactive verb: a server that is not there is said at once (not retried for ~10 s)
    client.transport.fail_fast_unreachable = True
    return client


def _date(ms) -> str:
    if not ms:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(ms) / 1000))
    except (TypeError, ValueError, OverflowError):
        return str(ms)


def _parse_inputs(items: list[str]) -> dict:
    values: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--input {item!r}: expected NAME=VALUE")
        name, value = item.split("=", 1)
        name = name.strip()
        if name in values:
            prev = values[name]
            values[name] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            values[name] = value
    return values


def _print_execution(ex) -> None:
    print(f"{ex.identifier}  {ex.status}")
    print(f"  name:     {ex.name}")
    print(f"  pipeline: {ex.pipeline_identifier}")
    print(f"  started:  {_date(ex.start_date)}   ended: {_date(ex.end_date)}")
    if ex.input_values:
        print("  inputs:")
        for k, v in ex.input_values.items():
            print(f"    {k} = {json.dumps(v) if not isinstance(v, str) else v}")
    if ex.jobs:
        states: dict[str, int] = {}
        for job in ex.jobs.values():
            st = job.get("status", "?") if isinstance(job, dict) else str(job)
            states[st] = states.get(st, 0) + 1
        print("  jobs:     " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    if ex.output_paths:
        print("  outputs:")
        for path in ex.output_paths:
            print(f"    {path}")


def run(args) -> int:
    c = _client(args)
    cmd = args.command
    if cmd == "pipelines":
        for p in sorted(c.pipelines(), key=lambda p: p.identifier.lower()):
            print(p.identifier)
    elif cmd == "show" and args.boutiques:
        print(json.dumps(c.descriptor(args.pipeline_id), indent=2, ensure_ascii=False))
    elif cmd == "show":
        p = c.pipeline(args.pipeline_id)
        print(f"{p.identifier}  ({p.name} {p.version})")
        if p.description:
            print(f"  {p.description}")
        for title, params in (("required", [q for q in p.parameters if q.is_required]),
                              ("optional", [q for q in p.parameters if not q.is_required])):
            if params:
                print(f"{title}:")
                for q in sorted(params, key=lambda q: q.name):
                    default = "" if q.default_value is None else f" (default {q.default_value})"
                    desc = f"  {q.description}" if q.description else ""
                    print(f"  {q.name:<20} [{q.type}]{default}{desc}")
    elif cmd == "ls":
        for info in sorted(c.list(args.path), key=lambda i: i.path):
            name = info.name + ("/" if info.is_directory else "")
            if args.long:
                when = _date((info.last_modification_date or 0) * 1000) if info.last_modification_date else "-"
                size = "-" if info.is_directory else str(info.size)
                print(f"{'d' if info.is_directory else '-'} {size:>12}  {when}  {name}")
            else:
                print(name)
    elif cmd == "put":
        local = Path(args.local)
        if local.is_dir():
            print(c.upload_tree(local, args.vip_dir, checksum=args.checksum))
        elif local.exists():
            target = args.vip_dir.rstrip("/") + "/" + local.name
            c.mkdir(args.vip_dir)
            from vip_smk.transfer.progress import Progress, want_progress

            bar = Progress(want_progress(c.progress), local.name, local.stat().st_size, 1)
            try:
                c.upload(local, target, progress=bar.add_bytes)
                bar.file_done()
            finally:
                bar.close()
            print(f"uploaded {local} -> {target}")
        else:
            raise FileNotFoundError(f"{local}: no such file or directory")
    elif cmd == "get":
        info = c.properties(args.vip_path)
        local = Path(args.local)
        if args.local == STDOUT:
            if info.is_directory:
                raise ValueError(f"get {args.vip_path} -: a directory cannot go to stdout; give a local directory")
            sys.stdout.flush()
            sys.stdout.buffer.write(c.read_bytes(args.vip_path, size=info.size))
            sys.stdout.buffer.flush()
        elif info.is_directory:
            print(c.download_tree(args.vip_path, local, extract=args.extract))
        else:
            if local.is_dir() or args.local.endswith(("/", os.sep)):
                local = local / PurePosixPath(args.vip_path).name
            c.check_download_size(args.vip_path, info.size)  # TooLarge says why, before anything
            print(c.download_files([(info if info.size is not None else args.vip_path, local)],
                                   extract=args.extract))
    elif cmd == "rm":
        c.delete(args.path, missing_ok=args.force)
        print(f"deleted {args.path}")
    elif cmd == "mkdir":
        c.mkdir(args.path)
        print(f"created {args.path}")
    elif cmd == "launch":
        ex = c.launch(args.pipeline_id, _parse_inputs(args.input), args.results, name=args.name)
        print(ex.identifier)
        if args.wait:
            ex = c.wait(ex.identifier)
            _print_execution(ex)
            return 0 if ex.status == "Finished" else 1
    elif cmd == "status":
        if args.execution_id:
            ex = c.execution(args.execution_id)
            if args.json:
                print(json.dumps(ex.to_json(), indent=2))
            else:
                _print_execution(ex)
        else:
            exs = sorted(c.executions(), key=lambda e: e.start_date or 0)
            if args.json:
                print(json.dumps([e.to_json() for e in exs], indent=2))
            elif not exs:
                print("no executions")
            else:
                print(f"{'ID':<18} {'STATUS':<16} {'STARTED':<20} {'PIPELINE':<20} NAME")
                for e in exs:
                    print(f"{e.identifier:<18} {str(e.status):<16} {_date(e.start_date):<20} "
                          f"{str(e.pipeline_identifier):<20} {e.name}")
    elif cmd == "kill":
        c.kill(args.execution_id)
        print(f"killed {args.execution_id}")
    elif cmd == "logs":
        out, err = c.stdout(args.execution_id), c.stderr(args.execution_id)
        sys.stdout.write(out)
        if err:
            sys.stdout.write(("" if out.endswith("\n") or not out else "\n") + "--- stderr ---\n" + err)
    return 0


def _too_large(exc) -> str | None:
    """A transfer whose every failure is a file over VIP's direct-transfer limit: what to do
    instead (running again would fail the same way), else None."""
    from vip_smk.api.errors import TooLarge

    failures = getattr(exc, "failures", None)
    if not failures or not all(isinstance(e, TooLarge) for _, e in failures):
        return None
    limit = next((e.limit for _, e in failures if getattr(e, "limit", None)), None)
    report = getattr(exc, "report", None)
    done = f" ({report.files_transferred} done, {report.files_skipped} unchanged)" if report else ""
    files = "; ".join(f"{p} ({e.size:,} bytes)" if getattr(e, "size", None) else str(p) for p, e in failures[:10])
    more = f"; ... and {len(failures) - 10} more" if len(failures) > 10 else ""
    over = f"VIP's direct-transfer limit of {limit:,} bytes" if limit else "VIP's direct-transfer limit"
    return (f"{exc.call} {exc.target}: {len(failures)} file(s) over {over} (maxSizeDirectTransfer){done}: "
            f"{files}{more}; VIP serves larger files only through the VIP portal (download them there) "
            "or have the pipeline write smaller files; running again will not help")


def _missing_server_packages() -> list[str]:
    """The `server` extra's packages that cannot be imported here."""
    import importlib.util

    return [name for name in ("uvicorn", "starlette", "boutiques") if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        missing = _missing_server_packages()
        if missing:
            print(f"vip-smk serve: the local VIP server needs {', '.join(missing)}, which this "
                  "installation lacks: pip install 'vip-smk[server]'", file=sys.stderr)
            return 1
        from vip_smk.server.__main__ import serve

        return serve(args) or 0
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from vip_smk.core.client import VipError

    try:
        return run(args)
    except KeyboardInterrupt:
        print("vip-smk: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return 1
    except VipError as exc:
        too_large = _too_large(exc)
        if too_large:
            print(f"vip-smk: TooLarge: {too_large}", file=sys.stderr)
            return 1
        # one line; multi-line messages (pre-flight problems, failed files) joined with "; "
        lines = [" ".join(line.split()) for line in str(exc).splitlines() if line.strip()]
        text = lines[0].rstrip(":") + (": " + "; ".join(lines[1:]) if len(lines) > 1 else "")
        print(f"vip-smk: {type(exc).__name__}: {text}", file=sys.stderr)
        return 1
    except (OSError, ValueError, TimeoutError, RuntimeError) as exc:
        print(f"vip-smk: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

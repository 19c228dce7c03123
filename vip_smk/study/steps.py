"""The study's steps, one per Snakemake target, each a call of the shared core
(`vip_smk.core`): the study adds its markers, its remote layout and its resume rules.

    upload_dataset   -> results/datasets/<dataset>/uploaded.json
    launch_session   -> results/<session>/launched.json   (launch or adopt: never twice)
    wait_session     -> results/<session>/done.json
    download_session -> results/<session>/outputs/
    finish_session   -> results/<session>/finished        (vip.cleanup)
    finish_dataset   -> results/datasets/<dataset>/finished
    check_study      -> results/study_ok                   (fails naming the failed sessions)

Remote layout (VipSession's ``/vip/Home/API/<session>/...``, one level down so that two
studies never share a folder)::

    <vip.root>/<study name>/datasets/<dataset>/...      uploaded once, shared
    <vip.root>/<study name>/<session>/OUTPUTS            resultsLocation of the session
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

from tqdm.auto import tqdm

from vip_smk import core, rules
from vip_smk.core import content
from vip_smk.study import content as sc
from vip_smk.study.connect import StudyError, StudyVip, pipeline_record, save_descriptors
from vip_smk.study.model import Session, Study
from vip_smk.util import read_json, write_json_atomic

log = logging.getLogger(__name__)

def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# --------------------------------------------------------------------------------------------
# upload
# --------------------------------------------------------------------------------------------


def _remote_records(client, study: Study, dataset: str) -> dict[str, Any]:
    """The record of the dataset's content we left on VIP after its last upload ({} if none)."""
    from vip_smk.api.errors import NotFound, VipError

    path = sc.remote_record_path(study, dataset)
    try:
        data = json.loads(client.read_bytes(path))
    except NotFound:
        return {}
    except (VipError, ValueError) as exc:
        log.warning("dataset %s: the content record on VIP (%s) is unreadable (%s): comparing afresh",
                    dataset, path, exc)
        return {}
    return {f["path"]: f for f in data.get("files", []) if isinstance(f, dict) and "path" in f}


def _put_json(client, data: Any, local_tmp: Path, vip_path: str) -> None:
    """A small JSON record of ours onto VIP (through a local file: one PUT)."""
    write_json_atomic(local_tmp, data)
    try:
        client.upload(local_tmp, vip_path)
    finally:
        with contextlib.suppress(OSError):
            local_tmp.unlink()


def upload_dataset(study: Study, dataset: str, marker: str | os.PathLike, client=None) -> dict:
    """Upload the dataset folder to <root>/<study>/datasets/<dataset>: only the files whose
    CONTENT is not the one recorded as sent (core.content), hidden and excluded files left out.

    The record of what was sent is ``inventory.json`` beside the marker (it survives
    Snakemake's removal of the marker) and ``<dataset>.content.json`` on VIP beside the data (it
    survives ``rm -rf results`` and a fresh clone: VIP serves no md5)."""
    from concurrent.futures import ThreadPoolExecutor

    from vip_smk.transfer import scheduling
    from vip_smk.transfer.trees import list_tree

    local = study.datasets[dataset]
    remote = study.remote_dataset_dir(dataset)
    rels = sc.dataset_files(study, dataset)
    inv_file = Path(marker).parent / sc.INVENTORY
    known: Mapping[str, Any] = sc.read_records(inv_file)
    with StudyVip(study.vip, study.workdir, client) as conn:
        c = conn.client
        where = "results"
        if not known:
            known, where = _remote_records(c, study, dataset), "VIP"
        on_vip = {}
        if c.exists(remote):
            on_vip = {i.path.rstrip("/")[len(remote) + 1:]: i for i in list_tree(c, remote, workers=study.vip.workers)}
        records: dict[str, content.Fingerprint] = {}
        to_send = []
        for rel in rels:
            rec = content.same_content(local / rel, known.get(rel))
            there = on_vip.get(rel)
            if rec is not None and there is not None and there.size in (None, rec.size):
                records[rel] = rec
            else:
                to_send.append(rel)
        log.info("dataset %s: %d file(s) in %s; %d unchanged on VIP (record in %s), sending %d to %s",
                 dataset, len(rels), local, len(records), where if known else "none", len(to_send), remote)
        if to_send:
            c.mkdir(remote, parents=True)
            for d in sorted({str(PurePosixPath(r).parent) for r in to_send} - {"."}):
                c.mkdir(f"{remote}/{d}", parents=True)
            total = sum((local / r).stat().st_size for r in to_send)
            bar = tqdm(desc=f"dataset {dataset}: upload", total=total, unit="B", unit_scale=True,
                       disable=None, leave=False)
            lock = threading.Lock()

            def progress(n: int) -> None:
                with lock:
                    bar.update(n)

            def send(rel: str) -> tuple[str, content.Fingerprint]:
                if known.get(rel) is not None:
                    log.info("dataset %s: %s changed: sending it again", dataset, rel)
                before = (local / rel).stat()  # the record pairs the digest with the stat before the read
                digest = c.upload(local / rel, f"{remote}/{rel}", progress=progress, hasher=content.hasher)
                return rel, content.fingerprint(local / rel, digest, before=before)  # hashed while sent

            try:
                with ThreadPoolExecutor(scheduling.pool_size(c, study.vip.workers), thread_name_prefix="vip-up") as ex:
                    records.update(ex.map(send, to_send))
            finally:
                bar.close()
        record = sc.records_json(dataset, records)
        if to_send or where != "results" or not known:
            _put_json(c, record, Path(marker).parent / "content.json.tmp", sc.remote_record_path(study, dataset))
    files = record["files"]
    info = {
        "dataset": dataset, "local_dir": str(local), "vip_dir": remote, "vip": study.vip.public(),
        "files": files, "count": len(files), "bytes": sum(f["size"] for f in files),
        "fingerprint": content.tree_digest(records)[:16], "sent": to_send,
        "uploaded_at": _now(), "sessions": study.sessions_of_dataset(dataset),
    }
    write_json_atomic(inv_file, record)
    write_json_atomic(marker, info)
    return info


# --------------------------------------------------------------------------------------------
# launch (or adopt)
# --------------------------------------------------------------------------------------------


def _stopped(name: str, ids: list[str]) -> StudyError:
    """Ctrl-C (Study.stop): what is left on VIP, in one line."""
    if not ids:
        return StudyError(f"session {name}: stopped (Ctrl-C) while waiting for a slot, not launched; the "
                          f"executions in flight keep running on VIP: run again to resume")
    return StudyError(f"session {name}: stopped (Ctrl-C); execution(s) {', '.join(ids)} keep running on VIP: "
                      f"run again to resume (nothing is launched twice)")


def _history_path(marker: Path) -> Path:
    return marker.parent / "launch-history.json"


def _remote_launches_path(study: Study, name: str) -> str:
    """Beside the session's OUTPUTS on VIP: which input content each of its executions ran on."""
    return f"{study.remote_session_dir(name)}/launches.json"


def _remote_launches(client, study: Study, name: str) -> dict[str, str]:
    """Execution id -> session input digest, as recorded on VIP ({} if none)."""
    from vip_smk.api.errors import NotFound, VipError

    try:
        data = json.loads(client.read_bytes(_remote_launches_path(study, name)))
    except NotFound:
        return {}
    except (VipError, ValueError) as exc:
        log.warning("session %s: the launch record on VIP is unreadable (%s)", name, exc)
        return {}
    runs = data.get("executions", {}) if isinstance(data, dict) else {}
    return {str(k): str(v.get("digest")) for k, v in runs.items() if isinstance(v, dict)}


def _not_adoptable(study: Study, session: Session, executions, history: list[dict], digest: str,
                   remote: Mapping[str, str]) -> set[str]:
    """Executions of this session's name the core must not adopt. Decided by the content their
    inputs had (the digest recorded with each launch, in results/ and on VIP), never by dates:
    another study's (other results location: not ours), another content (superseded), no record
    (unknown content; except right after an interrupted launch of this content), failed ones
    already reported."""
    known = {eid: h.get("digest") for h in history for eid in h.get("executions", [])}
    known.update({eid: d for eid, d in remote.items() if eid not in known or known[eid] is None})
    pending = any(h.get("digest") == digest and not h.get("executions") for h in history)
    reported = {eid for h in history for eid in h.get("failed_reported", [])}
    ours = study.results_location(session.name).rstrip("/")
    out: set[str] = set()
    for e in executions:
        if e.name != session.name:
            continue
        loc = (e.extra or {}).get("resultsLocation")
        if isinstance(loc, str) and loc.rstrip("/") != ours:
            log.debug("session %s: execution %s belongs to another study (results in %s): ignored",
                      session.name, e.identifier, loc)
            out.add(e.identifier)
        elif e.identifier in known:
            if known[e.identifier] != digest:
                log.info("session %s: execution %s ran on other input content: not reused", session.name, e.identifier)
                out.add(e.identifier)
        elif not pending:
            # VIP 4.6 lists no resultsLocation: an execution of this name that neither our
            # results/ nor our record on VIP knows is another study's, or older than the records
            log.info("session %s: execution %s (same name) is not in this study's records "
                     "(another study's, or launched before them): left alone", session.name, e.identifier)
            out.add(e.identifier)
    return out | reported


def _launch_lock(study: Study):
    """The study's launch lock (`.snakemake/vip-smk/launch.lock`, filelock: an OS lock, released
    if its holder dies): held from the listing that counts executions in flight to the POST."""
    from filelock import FileLock

    path = Path(study.workdir) / ".snakemake" / "vip-smk" / "launch.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path, thread_local=False)


def launch_session(study: Study, name: str, marker: str | os.PathLike, uploaded: str | os.PathLike | None = None,
                   client=None, exclude: set[str] | frozenset[str] = frozenset()) -> dict:
    """Launch the session's execution, or adopt the one already on VIP (core.launch_or_adopt).
    Waits for a free slot (vip.max_running, VIP error 2001) inside this job. `marker` is
    written atomically right after the POST."""
    from vip_smk.api.errors import CapacityError, ServerError, TransportError

    session = study.sessions[name]
    marker = Path(marker)
    up = read_json(uploaded) if uploaded else None
    if up is None:  # (a failed session relaunched from wait_session) the dataset's last upload
        up = read_json(study.results / "datasets" / session.dataset / "uploaded.json")
    history_file = _history_path(marker)
    history = read_json(history_file, [])
    poll = float(study.vip.poll_seconds)
    cap = study.vip.max_running
    with StudyVip(study.vip, study.workdir, client) as conn:
        if up is not None and not conn.client.exists(up["vip_dir"]):
            log.warning("dataset %s is no longer on VIP (cleanup?): uploading it again", session.dataset)
            upload_dataset(study, session.dataset, study.results / "datasets" / session.dataset / "uploaded.json",
                           client=conn.client)
        if not study.vip.is_local:  # kept for the next dry run (the shipped apps need none)
            save_descriptors(study.vip, study.workdir,
                             {session.pipeline_id: pipeline_record(conn.client, session.pipeline_id)})
        # the content of its files on VIP: the upload's record (ours, or the one left on VIP)
        files = (up or {}).get("files") or list(_remote_records(conn.client, study, session.dataset).values())
        fp = sc.session_digest(study, session, {f["path"]: f for f in files if isinstance(f, dict) and "path" in f})
        results_location = study.results_location(name)
        remote_runs = _remote_launches(conn.client, study, name)
        # an interrupted launch (kill -9 between the POST and the marker) is adopted on return
        before = list(history)
        history.append({"digest": fp, "executions": [], "at": _now()})
        write_json_atomic(history_file, history)
        # (a Finished execution whose results were removed, vip.cleanup, is not adopted: the core
        # adopts one only while its returned files are on VIP, core.adoptable_on_vip)
        conn.client.mkdir(results_location, parents=True)
        waited_since = None
        while True:
            try:
                conn.ensure()
                # the study's jobs launch one at a time (an OS lock: they are separate
                # processes), so that the count of executions in flight is still true when used
                with _launch_lock(study) if cap else contextlib.nullcontext():
                    executions = conn.client.executions()
                    excluded = _not_adoptable(study, session, executions, before, fp, remote_runs) | set(exclude)
                    mine_running = sum(1 for e in executions if e.name in study.sessions and rules.is_running(e.status))
                    full = bool(cap and mine_running >= cap and core.adoptable_on_vip(
                        conn.client, name=name, pipeline_id=session.pipeline_id, values=session.input_values,
                        executions=executions, exclude=excluded) is None)
                    if not full:
                        ex, adopted = core.launch_or_adopt(conn.client, session.pipeline_id, session.input_values,
                                                           results_location, name, executions=executions,
                                                           exclude=excluded)
                        break
                if waited_since is None:
                    waited_since = time.monotonic()
                    log.info("session %s: %d execution(s) in flight (vip.max_running): waiting for a slot", name, cap)
                if study.stop.wait(poll):
                    raise _stopped(name, [])
            except CapacityError as exc:
                if waited_since is None:
                    waited_since = time.monotonic()
                log.info("session %s: VIP is at capacity (%s): waiting for a slot", name, exc.code or exc)
                if study.stop.wait(poll):
                    raise _stopped(name, []) from None
            except (TransportError, ServerError) as exc:
                conn.recover(exc, f"session {name}")
        if remote_runs.get(ex.identifier) != fp:
            remote_runs[ex.identifier] = fp
            _put_json(conn.client, {"session": name, "executions": {
                eid: {"digest": d} for eid, d in remote_runs.items()}}, marker.parent / "launches.json.tmp",
                _remote_launches_path(study, name))
    info = {
        "session": name, "dataset": session.dataset, "pipeline": session.pipeline,
        "pipeline_id": session.pipeline_id, "parameters": session.parameters,
        "input_values": session.input_values, "results_location": results_location,
        "executions": [ex.identifier], "adopted": adopted, "digest": fp,
        "launched_at": _now(), "vip": study.vip.public(),
    }
    write_json_atomic(marker, info)
    history = [h for h in history if h.get("executions")]  # the pending entry: done
    if not any(ex.identifier in h.get("executions", []) for h in history):
        history.append({"digest": fp, "executions": [ex.identifier], "at": info["launched_at"]})
    write_json_atomic(history_file, history)
    if waited_since is not None:
        log.info("session %s: waited %.0f s for a slot", name, time.monotonic() - waited_since)
    return info


# --------------------------------------------------------------------------------------------
# wait
# --------------------------------------------------------------------------------------------


def _progress(bar, executions) -> None:
    """Jobs done / total over the session's executions (when VIP reports its jobs)."""
    counts = rules.JobCounts()
    for e in executions:
        if e.jobs:
            counts = counts + rules.job_counts(e.jobs)
    if counts.total:
        if bar.total != counts.total:
            bar.total = counts.total
        bar.n = counts.done
        bar.refresh()


def _reported_failed(history_file: Path, ids: list[str]) -> bool:
    """Did an earlier run already write a done.json for these (failed) executions?"""
    reported = {eid for h in read_json(history_file, []) for eid in h.get("failed_reported", [])}
    return bool(ids) and set(ids) <= reported


def _note_failed_reported(history_file: Path, ids: list[str]) -> None:
    history = read_json(history_file, [])
    for h in history:
        if set(h.get("executions", [])) & set(ids):
            h["failed_reported"] = sorted(set(h.get("failed_reported", [])) | set(ids))
    write_json_atomic(history_file, history)


def wait_session(study: Study, name: str, launched: str | os.PathLike, marker: str | os.PathLike,
                 client=None) -> dict:
    """Wait for the session's executions (core.wait: one `GET executions` per round for all
    of them). A failed execution whose done.json the user deleted is launched again."""
    from vip_smk.api.errors import ServerError, TransportError

    info = read_json(launched, strict=True)
    ids = list(info["executions"])
    history_file = _history_path(Path(launched))
    max_wait = study.vip.max_wait_hours
    deadline = time.monotonic() + max_wait * 3600 if max_wait else None
    last: dict[str, str | None] = {}
    bar = tqdm(desc=f"{name}: jobs done", unit="job", total=None, disable=None, leave=False)

    def on_round(current: dict) -> None:
        for eid, e in current.items():
            if last.get(eid) != e.status:
                log.info("session %s: execution %s is %s", name, eid, e.status)
                last[eid] = e.status
        _progress(bar, current.values())

    try:
        with StudyVip(study.vip, study.workdir, client) as conn:
            if _reported_failed(history_file, ids):
                log.info("session %s: execution(s) %s failed and its done.json was removed: launching again",
                         name, ", ".join(ids))
                info = launch_session(study, name, launched, client=conn.client, exclude=set(ids))
                ids = list(info["executions"])
            while True:
                try:
                    conn.ensure()
                    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                    current = core.wait(conn.client, ids, refresh=float(study.vip.poll_seconds),
                                        first=min(1.0, float(study.vip.poll_seconds)), timeout=remaining,
                                        on_round=on_round, stop=study.stop)
                    break
                except (TransportError, ServerError) as exc:
                    conn.recover(exc, f"session {name}")
            if study.stop.is_set() and any(e.is_running for e in current.values()):
                raise _stopped(name, ids)
            gone = [eid for eid in ids if eid not in current]
            if gone:
                raise StudyError(
                    f"session {name}: execution {', '.join(gone)} no longer exists on VIP; delete "
                    f"results/{name}/launched.json (or the session folder) to launch it again")
            if any(e.is_running for e in current.values()):
                raise StudyError(f"session {name}: still running after vip.max_wait_hours={max_wait}; "
                                 f"run again to keep waiting")
            details = []
            for eid in ids:
                e = conn.client.execution(eid)  # full record: jobs, returnedFiles
                counts = rules.job_counts(e.jobs, e.status)
                d = {
                    "id": eid, "status": e.status, "start_date": e.start_date, "end_date": e.end_date,
                    "duration_s": round((e.end_date - e.start_date) / 1000, 3) if e.start_date and e.end_date else None,
                    "jobs": e.jobs or {}, "jobs_ok": counts.ok, "jobs_failed": counts.failed,
                    "error_code": e.error_code, "returned_files": e.returned_files or {}, "outputs": e.output_paths,
                }
                if e.status != rules.SUCCESS:
                    with contextlib.suppress(Exception):
                        d["error"] = core.failure_detail(conn.client, e)
                        log.warning("session %s: execution %s %s:\n%s", name, eid, e.status, d["error"])
                details.append(d)
    finally:
        bar.close()
    statuses = {d["status"] for d in details}
    done = {
        "session": name, "status": statuses.pop() if len(statuses) == 1 else "Mixed",
        "executions": details, "jobs_ok": sum(d["jobs_ok"] for d in details),
        "jobs_failed": sum(d["jobs_failed"] for d in details),
        "results_location": info["results_location"], "finished_at": _now(),
    }
    write_json_atomic(marker, done)
    if done["status"] != rules.SUCCESS:
        _note_failed_reported(history_file, [d["id"] for d in details if d["status"] != rules.SUCCESS])
    return done


# --------------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------------


def download_session(study: Study, name: str, done: str | os.PathLike, outdir: str | os.PathLike,
                     client=None) -> dict:
    """Download the session's outputs into `outdir` in the core's layout (core.download_results;
    tarballs extracted by its one rule). Partial downloads are kept in `<outdir>.partial/` and
    resumed by the next run; `outdir` appears atomically when everything is there."""
    from vip_smk.api.errors import ServerError, TransportError

    info = read_json(done, strict=True)
    outdir = Path(outdir)
    staging = outdir.parent / (outdir.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    ids = [d["id"] for d in info["executions"] if d.get("outputs")]
    if ids:
        with StudyVip(study.vip, study.workdir, client) as conn:
            while True:
                try:
                    conn.ensure()
                    executions = [conn.client.execution(eid) for eid in ids]
                    log.info("session %s: downloading the outputs of %d execution(s)", name, len(executions))
                    report = core.download_results(conn.client, executions, staging, unzip=True,
                                                   vip_root=info["results_location"])
                    break
                except (TransportError, ServerError) as exc:
                    conn.recover(exc, f"session {name}")
        # over VIP's direct-transfer limit: found by the core's download (client.TooLarge), one line each
        too_large = sorted((p, size, limit) for p, (size, limit) in report.too_large.items())
        for path, size, limit in too_large:
            log.error("session %s: %s", name, _too_large_line(path, size, limit))
        if too_large:
            first = _too_large_line(*too_large[0])
            more = f" (and {len(too_large) - 1} more such file(s))" if len(too_large) > 1 else ""
            raise StudyError(f"session {name}: {first}{more}; its other outputs are kept in {staging}")
        if not report.ok:
            lines = "; ".join(f"{p}: {why}" for p, why in list(report.failed.items())[:5])
            raise StudyError(f"session {name}: {len(report.failed)} output file(s) not downloaded ({lines}); "
                             f"run again to resume (what arrived is kept in {staging})")
    if outdir.exists():
        shutil.rmtree(outdir)
    os.replace(staging, outdir)
    count, size = tree_size(outdir)
    log.info("session %s: %d file(s), %d bytes in %s", name, count, size, outdir)
    return {"files": count, "bytes": size}


def _too_large_line(path: str, size: int, limit: int) -> str:
    return (f"output {path} is {size:,} bytes, over VIP's direct-transfer limit of {limit:,} bytes "
            f"(maxSizeDirectTransfer): it cannot be downloaded through the API; fetch it from the VIP portal")


def tree_size(root: Path) -> tuple[int, int]:
    count = size = 0
    if root.is_dir():
        for p in root.rglob("*"):
            if p.is_file() and p.name != ".snakemake_timestamp":
                count += 1
                size += p.stat().st_size
    return count, size


# --------------------------------------------------------------------------------------------
# cleanup, verdict
# --------------------------------------------------------------------------------------------


def _remove(study: Study, remote: str, marker, why: str, record: dict, client=None) -> None:
    with StudyVip(study.vip, study.workdir, client) as conn:
        log.info("%s: removing %s from VIP", why, remote)
        core.remove_remote(conn.client, remote)
    write_json_atomic(marker, {**record, "removed": remote, "at": _now()})


def finish_session(study: Study, name: str, marker: str | os.PathLike, client=None) -> None:
    """Remove the session's remote folder (its outputs are downloaded)."""
    _remove(study, study.remote_session_dir(name), marker, f"session {name}", {"session": name}, client)


def finish_dataset(study: Study, dataset: str, marker: str | os.PathLike, client=None) -> None:
    """Remove the dataset's remote copy: every session of the study using it is finished."""
    _remove(study, study.remote_dataset_dir(dataset), marker, f"dataset {dataset}: no session needs it any more",
            {"dataset": dataset}, client)
    with StudyVip(study.vip, study.workdir, client) as conn:  # and our record of its content
        core.remove_remote(conn.client, sc.remote_record_path(study, dataset))


def failed_sessions(study: Study) -> dict[str, str]:
    """Session -> status, for every session whose done.json says it did not finish."""
    out = {}
    for name in sorted(study.sessions):
        done = read_json(study.results / name / "done.json") or {}
        if done.get("status") != rules.SUCCESS:
            out[name] = done.get("status", "missing")
    return out


def check_study(study: Study, marker: str | os.PathLike) -> None:
    """The study's verdict, after the summary: a failed session fails the run (exit status
    non-zero) naming it, unless vip.allow_failures."""
    failed = failed_sessions(study)
    if failed and not study.vip.allow_failures:
        listed = ", ".join(f"{n} ({s})" for n, s in list(failed.items())[:10])
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        raise StudyError(
            f"study {study.name}: {len(failed)} of {len(study.sessions)} session(s) did not finish: "
            f"{listed}{more}. Their outputs and the summary are in {study.results}/; delete "
            f"{study.results}/<session>/done.json to launch one again, or set vip.allow_failures: true")
    write_json_atomic(marker, {"study": study.name, "failed": failed, "at": _now()})

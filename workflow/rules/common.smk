# Helpers shared by the rules; STUDY (vip_smk.study.Study) and R (results folder) come from
# the Snakefile.


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    session="[A-Za-z0-9_-]+",


if workflow.is_main_process:
    # A run killed with kill -9 leaves Snakemake's lock behind: drop it if its process is gone.
    vs.clear_stale_lock(".")
    # Ctrl-C: the waiting job ends within a second, its executions keep running on VIP
    vs.stop_on_interrupt(STUDY)


onstart:
    vs.record_run(".")
    # a real run (not -n): keep the pipelines read from VIP, the next dry run asks nothing
    vs.save_descriptors(STUDY.vip, STUDY.workdir, STUDY.learned)


onsuccess:
    vs.forget_run(".")


onerror:
    vs.forget_run(".")


# Content decides (vip_smk.core.content), never an mtime: the dataset files are ancient() inputs
# of the upload and its params carry the digest of their content (a stat per file, a hash only
# where the mtime moved), so a `touch` reruns nothing; each launch's params carry the digest of
# the content it uses (its adoption is decided by the same digest, recorded with the launch).
CONTENT = vs.StudyContent(STUDY, update=workflow.is_main_process)


def dataset_files(wildcards):
    root = STUDY.datasets[wildcards.dataset]
    return [
        ancient(str(root / rel)) for rel in vs.dataset_files(STUDY, wildcards.dataset)
    ]


def dataset_content(wildcards):
    return CONTENT.dataset_digest(wildcards.dataset)


def session_content(wildcards):
    return CONTENT.session_digest(wildcards.session)


def uploaded_marker(wildcards):
    # A launch follows its OWN inputs' content, never the dataset marker's date. The marker is
    # rewritten whenever the dataset is (re-)sent (another file of it changed, `vip.cleanup`
    # removed it), and a session re-entered then cannot always adopt (its cleaned-up execution
    # has nothing left on VIP): it would relaunch. So when the session already launched on the
    # content it would use now (the digest in its launched.json), the marker is ancient(): the
    # upload rerunning reruns nothing of it. Otherwise a plain input: a session whose files
    # changed relaunches in the same run as the upload (Snakemake checks no params of a job
    # whose input is made in that run). Always the same file: a changed set of inputs would
    # itself be a reason to rerun.
    session = STUDY.sessions[wildcards.session]
    marker = f"{R}/datasets/{session.dataset}/uploaded.json"
    launched = vs.read_json(f"{R}/{wildcards.session}/launched.json") or {}
    if launched.get("digest") == CONTENT.session_digest(wildcards.session):
        return ancient(marker)
    return marker


def upload_params(wildcards):
    # Another VIP (or study folder) means another upload.
    return f"{STUDY.vip.url} {STUDY.remote_dataset_dir(wildcards.dataset)}"


def launch_params(wildcards):
    # Snakemake reruns a launch whose parameters changed (and only that session).
    return STUDY.launch_params(wildcards.session)


def dataset_sessions_finished(wildcards):
    return [f"{R}/{s}/finished" for s in STUDY.sessions_of_dataset(wildcards.dataset)]


def session_targets():
    # Every session's done.json and outputs/ are targets themselves (not only inputs of the
    # summary): whatever is deleted under results/ is made again by the next run.
    return [
        f"{R}/{s}/{f}"
        for s in sorted(STUDY.sessions)
        for f in ("launched.json", "done.json", "outputs")
    ] + [f"{R}/datasets/{d}/uploaded.json" for d in STUDY.used_datasets]


def finished_targets():
    if not STUDY.vip.cleanup:
        return []
    return [f"{R}/{s}/finished" for s in sorted(STUDY.sessions)] + [
        f"{R}/datasets/{d}/finished" for d in STUDY.used_datasets
    ]

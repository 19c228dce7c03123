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


def dataset_files(wildcards):
    root = STUDY.datasets[wildcards.dataset]
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def uploaded_marker(wildcards):
    return f"{R}/datasets/{STUDY.sessions[wildcards.session].dataset}/uploaded.json"


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
        f"{R}/{s}/{f}" for s in sorted(STUDY.sessions) for f in ("done.json", "outputs")
    ]


def finished_targets():
    if not STUDY.vip.cleanup:
        return []
    return [f"{R}/{s}/finished" for s in sorted(STUDY.sessions)] + [
        f"{R}/datasets/{d}/finished" for d in STUDY.used_datasets
    ]

# Helpers shared by the rules; STUDY (vip_smk.study.Study) and R (results folder) come from
# the Snakefile.


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    session="[A-Za-z0-9_-]+",


if workflow.is_main_process:
    # A run killed with kill -9 leaves Snakemake's lock behind: drop it if its process is gone.
    vs.clear_stale_lock(".")


onstart:
    vs.record_run(".")


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
    return f"{STUDY.vip['url']} {STUDY.remote_dataset_dir(wildcards.dataset)}"


def launch_params(wildcards):
    # Snakemake reruns a launch whose parameters changed (and only that session).
    s = STUDY.sessions[wildcards.session]
    return vs.json.dumps(
        {
            "vip": STUDY.vip["url"],
            "results": STUDY.results_location(s.name),
            "pipeline": s.pipeline_id,
            "inputs": s.input_values,
        },
        sort_keys=True,
    )


def dataset_sessions_finished(wildcards):
    return [f"{R}/{s}/finished" for s in STUDY.sessions_of_dataset(wildcards.dataset)]


def finished_targets():
    if not STUDY.vip["cleanup"]:
        return []
    return [f"{R}/{s}/finished" for s in sorted(STUDY.sessions)] + [
        f"{R}/datasets/{d}/finished" for d in STUDY.used_datasets
    ]

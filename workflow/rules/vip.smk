# Upload -> launch -> wait -> download (-> finish), one file target per step.
# Priorities: with --cores 1 every upload and launch runs before any waiting, so the remote
# executions run side by side; a finished session is downloaded before waiting on the next.


rule upload_dataset:
    input:
        dataset_files,
    output:
        f"{R}/datasets/{{dataset}}/uploaded.json",
    log:
        f"{R}/logs/upload_dataset/{{dataset}}.log",
    priority: 30
    run:
        with vs.job_log(log[0]):
            vs.upload_dataset(STUDY, wildcards.dataset, output[0])


rule launch_session:
    input:
        uploaded_marker,
    output:
        f"{R}/{{session}}/launched.json",
    log:
        f"{R}/logs/launch_session/{{session}}.log",
    priority: 20
    params:
        launch=launch_params,
    run:
        with vs.job_log(log[0]):
            vs.launch_session(
                STUDY, wildcards.session, output[0], uploaded=input[0]
            )


rule wait_session:
    input:
        f"{R}/{{session}}/launched.json",
    output:
        f"{R}/{{session}}/done.json",
    log:
        f"{R}/logs/wait_session/{{session}}.log",
    priority: 0
    run:
        with vs.job_log(log[0]):
            vs.wait_session(STUDY, wildcards.session, input[0], output[0])


rule download_outputs:
    input:
        f"{R}/{{session}}/done.json",
    output:
        directory(f"{R}/{{session}}/outputs"),
    log:
        f"{R}/logs/download_outputs/{{session}}.log",
    priority: 10
    run:
        with vs.job_log(log[0]):
            vs.download_session(STUDY, wildcards.session, input[0], output[0])


rule finish_session:
    input:
        f"{R}/{{session}}/outputs",
    output:
        f"{R}/{{session}}/finished",
    log:
        f"{R}/logs/finish_session/{{session}}.log",
    priority: 5
    run:
        with vs.job_log(log[0]):
            vs.finish_session(STUDY, wildcards.session, output[0])


rule finish_dataset:
    input:
        dataset_sessions_finished,
    output:
        f"{R}/datasets/{{dataset}}/finished",
    log:
        f"{R}/logs/finish_dataset/{{dataset}}.log",
    priority: 5
    run:
        with vs.job_log(log[0]):
            vs.finish_dataset(STUDY, wildcards.dataset, output[0])

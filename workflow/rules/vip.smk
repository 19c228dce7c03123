# Upload -> launch -> wait + download (-> finish): a file target per step.
# Priorities: with --cores 1 every upload and launch runs before any waiting, so the remote
# executions run side by side. Waiting and downloading share one job per session (done.json
# is written when the executions are over, outputs/ when the files are in): a finished session
# is downloaded before waiting on the next, and a 500-session study has 2 jobs per session.


rule upload_dataset:
    input:
        dataset_files,
    output:
        f"{R}/datasets/{{dataset}}/uploaded.json",
    log:
        f"{R}/logs/upload_dataset/{{dataset}}.log",
    priority: 30
    params:
        remote=upload_params,
        content=dataset_content,
    run:
        error = vs.rule_upload(STUDY, wildcards, input, output, log)
        if error:  # raised here: Snakemake then shows no internal frame
            raise error


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
        content=session_content,
    run:
        error = vs.rule_launch(STUDY, wildcards, input, output, log)
        if error:  # raised here: Snakemake then shows no internal frame
            raise error


rule wait_and_download:
    input:
        f"{R}/{{session}}/launched.json",
    output:
        done=f"{R}/{{session}}/done.json",
        outputs=directory(f"{R}/{{session}}/outputs"),
    log:
        f"{R}/logs/wait_and_download/{{session}}.log",
    priority: 10
    run:
        error = vs.rule_wait_and_download(STUDY, wildcards, input, output, log)
        if error:  # raised here: Snakemake then shows no internal frame
            raise error


rule finish_session:
    input:
        f"{R}/{{session}}/outputs",
    output:
        f"{R}/{{session}}/finished",
    log:
        f"{R}/logs/finish_session/{{session}}.log",
    priority: 5
    run:
        error = vs.rule_finish_session(STUDY, wildcards, input, output, log)
        if error:  # raised here: Snakemake then shows no internal frame
            raise error


rule finish_dataset:
    input:
        dataset_sessions_finished,
    output:
        f"{R}/datasets/{{dataset}}/finished",
    log:
        f"{R}/logs/finish_dataset/{{dataset}}.log",
    priority: 5
    run:
        error = vs.rule_finish_dataset(STUDY, wildcards, input, output, log)
        if error:  # raised here: Snakemake then shows no internal frame
            raise error

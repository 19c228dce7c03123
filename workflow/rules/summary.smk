# One row per session: dataset, pipeline, parameters, status, jobs ok/failed, duration,
# output count and size; the HTML page has a chart. Both go into `snakemake --report`.
# Then the verdict: a session that did not finish fails the run (exit status 1), naming it,
# unless vip.allow_failures.


rule summary:
    input:
        expand(f"{R}/{{session}}/done.json", session=sorted(STUDY.sessions)),
        expand(f"{R}/{{session}}/outputs", session=sorted(STUDY.sessions)),
    output:
        csv=report(
            f"{R}/study_summary.csv",
            category="Summary",
            caption="../report/summary.rst",
        ),
        html=report(
            f"{R}/study_summary.html",
            category="Summary",
            caption="../report/summary.rst",
        ),
        txt=f"{R}/study_summary.txt",
    log:
        f"{R}/logs/summary.log",
    priority: -10
    run:
        vs.rule_summary(STUDY, wildcards, input, output, log)


rule check_study:
    input:
        rules.summary.output,
    output:
        f"{R}/study_ok.json",
    log:
        f"{R}/logs/check_study.log",
    priority: -20
    run:
        error = vs.rule_check(STUDY, wildcards, input, output, log)
        if error:  # raised here: Snakemake then shows no internal frame
            raise error

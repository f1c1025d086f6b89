"""`inferwatch` command line: simulate logs, run the pipeline once, manage the local Superset."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from inferwatch.config import Settings
from inferwatch.filemodes import restrict_umask, secure_tree


def _settings(lake: str | None, data_dir: str | None) -> Settings:
    env = {}
    if lake:
        env["INFERWATCH_LAKE_URL"] = lake
    if data_dir:
        env["INFERWATCH_DATA_DIR"] = data_dir
    settings = Settings.from_env({**os.environ, **env})
    secure_tree(settings.data_dir)  # an older, world-readable data dir is tightened here
    return settings


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


lake_option = click.option(
    "--lake", envvar="INFERWATCH_LAKE_URL", help="Lake root URL or path [env INFERWATCH_LAKE_URL]."
)
data_dir_option = click.option(
    "--data-dir",
    envvar="INFERWATCH_DATA_DIR",
    help="Where InferWatch keeps its state [env INFERWATCH_DATA_DIR; default ./data].",
)


def _run_pipeline(settings: Settings) -> None:
    """The pipeline DAG once, in-process; exit 1 unless it succeeded."""
    from inferwatch.runner import run_once

    state = run_once(settings)
    click.echo(f"inferwatch_pipeline: {state}")
    if state != "success":
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """InferWatch: raw inference logs → validated usage dashboards."""
    # What this process and the servers it starts write is for this user alone (README:
    # Governance, file modes).
    restrict_umask()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@lake_option
@data_dir_option
@click.option("--start", type=click.DateTime(), help="UTC start (default: 14 days before --end).")
@click.option("--end", type=click.DateTime(), help="UTC end (default: the previous full hour).")
@click.option("--events", default=200_000, show_default=True, help="Events to generate.")
@click.option("--seed", default=42, show_default=True)
@click.option("--objects-per-hour", default=1, show_default=True)
@click.option("--truth-dir", type=click.Path(), help="Where the truth goes [DATA_DIR/truth].")
@click.option("--if-empty", is_flag=True, help="Do nothing if the lake already has raw/ logs.")
def simulate(lake, data_dir, start, end, events, seed, objects_per_hour, truth_dir, if_empty):
    """Write realistic sample logs (contract v1), references, registry and the truth."""
    from inferwatch.lake import Lake
    from inferwatch.simulate import simulate as run_simulation

    settings = _settings(lake, data_dir)
    target = Lake(settings.lake_url)
    if if_empty and any(True for _ in target.list("raw")):
        click.echo(f"{settings.lake_url} already has raw logs; not simulating")
        return
    started = time.monotonic()
    summary = run_simulation(
        settings.lake_url,
        truth_dir=Path(truth_dir) if truth_dir else settings.data_dir / "truth",
        start=_utc(start), end=_utc(end), events=events, seed=seed,
        objects_per_hour=objects_per_hour, progress=click.echo,
    )  # fmt: skip
    click.echo(json.dumps(summary, indent=1, default=str))
    click.echo(f"simulated in {time.monotonic() - started:.1f}s into {settings.lake_url}")


@main.command()
@lake_option
@data_dir_option
def run(lake, data_dir):
    """Run the pipeline DAG once, in-process (dag.test), over whatever is new in the lake."""
    _run_pipeline(_settings(lake, data_dir))


@main.command()
@lake_option
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the problems as a JSON list.")
def check(lake, data_dir, as_json):
    """Check the configuration; exit 1 on any error, one line per problem.

    The lake URL opens and its root (and raw/) can be listed; an s3:// lake's Airflow
    connection is defined and its bucket answers; the data dir is writable;
    INFERWATCH_PRODUCERS parses; every registry/ and reference/ file in the lake parses; and
    Superset and SMTP answer when configured. Each line names the setting (or lake file) to
    fix. Nothing is written to the lake. Every pipeline run starts with the same checks (task
    check_config), where Superset and SMTP only warn. README: Checking the configuration.
    """
    from inferwatch import airflow_env
    from inferwatch.check import errors, is_s3, run_checks

    overrides = {"INFERWATCH_LAKE_URL": lake, "INFERWATCH_DATA_DIR": data_dir}
    try:
        settings = Settings.from_env({**os.environ, **{k: v for k, v in overrides.items() if v}})
    except ValueError as error:  # e.g. INFERWATCH_THRESHOLDS that is not JSON
        click.echo(f"error   INFERWATCH_*: a setting does not parse: {error}")
        sys.exit(1)
    if is_s3(settings.lake_url):
        # The connection is looked up where `inferwatch run` looks it up (its Airflow home,
        # unless AIRFLOW_* variables say otherwise).
        for key, value in airflow_env.airflow_environment(settings).items():
            os.environ.setdefault(key, value)
    problems = run_checks(settings)
    if as_json:
        click.echo(json.dumps([problem.as_dict() for problem in problems], indent=1))
    else:
        for problem in problems:
            click.echo(problem.line())
        bad = len(errors(problems))
        click.echo(f"{bad} error(s), {len(problems) - bad} warning(s): lake {settings.lake_url}, "
                   f"data dir {settings.data_dir}")  # fmt: skip
    sys.exit(1 if errors(problems) else 0)


@main.command()
@lake_option
@data_dir_option
def rebuild(lake, data_dir):
    """Rebuild every mart from bronze (dbt --full-refresh), e.g. after changing a model.

    Bronze is immutable, so nothing is re-read from raw/. Then `inferwatch run` validates
    and publishes the result.
    """
    from inferwatch import pipeline
    from inferwatch.orchestrate import current_lake

    settings = _settings(lake, data_dir)
    # current_lake: an s3:// lake needs the credentials of its Airflow connection, as in a run.
    result = pipeline.transform(settings, current_lake(settings), full_refresh=True)
    click.echo(json.dumps(result))


@main.command("replay-quarantine")
@lake_option
@data_dir_option
@click.option("--reason", help="Only lines whose quarantine reason starts with this text, "
              "e.g. 'line too long' or 'wrong type: latency_ms'.")  # fmt: skip
@click.option("--object", "object_prefix", help="Only raw objects whose key starts with this, "
              "e.g. raw/sagemaker/ or one object's full key.")  # fmt: skip
@click.option("--no-run", is_flag=True, help="Only replay; the next `inferwatch run` (or "
              "scheduled run) builds, validates and publishes.")  # fmt: skip
def replay_quarantine(lake, data_dir, reason, object_prefix, no_run):
    """Re-judge quarantined lines with the current parser and adapters, after a fix.

    The lines are re-read from their raw objects by line number (quarantined text is
    PII-scrubbed; raw/ is not), so replay needs the raw object in the version that was
    ingested: objects gone or rewritten since are skipped and named. Lines that now pass are
    loaded exactly once and leave quarantine; mart_ingestion's counts move from quarantined to
    loaded. Running it again adds nothing. Then the pipeline runs once (unless --no-run) and
    rebuilds the days the new events fall on.
    """
    from inferwatch import pipeline
    from inferwatch.orchestrate import current_lake

    settings = _settings(lake, data_dir)
    report = pipeline.replay_quarantine(
        settings, current_lake(settings), "cli", reason=reason, object_prefix=object_prefix
    )
    click.echo(json.dumps(report, indent=1, default=str))
    if report["objects_changed"] and not no_run:
        _run_pipeline(settings)


@main.group("quarantine")
def quarantine_group() -> None:
    """Quarantined lines and the publishing gate (README: Validation: the publishing gate)."""


@quarantine_group.command("acknowledge")
@data_dir_option
@click.argument("object_key")
@click.option("--reason", required=True, help="Why these lines may be left out, e.g. "
              "'test upload, producer fixed in v2.3'; recorded in the audit log.")  # fmt: skip
def quarantine_acknowledge(data_dir, object_key, reason):
    """Let the gate leave out OBJECT_KEY's quarantined lines, so the build publishes.

    For a build held back by the quarantine checks (a model lost more than 10% of its lines
    in the run, or quarantine took more than half of the run) when the lines cannot or need
    not be fixed and replayed. The lines stay in fct_quarantine; the gate leaves them out
    from the next run on (a rewritten object is judged again) and records the
    acknowledgement in mart_data_quality. Who, when and why go to the audit log and to the
    owner-only file DATA_DIR/gate/acknowledged.json. Then `inferwatch run` publishes.
    """
    from inferwatch import pipeline
    from inferwatch.validate import gate_state

    settings = _settings(None, data_dir)
    with pipeline.pipeline_lock(settings, f"acknowledge {object_key}"):
        try:
            ack = gate_state.acknowledge(
                settings.warehouse_path, settings.gate_dir, object_key, reason,
                duckdb_config=settings.duckdb_config,
            )  # fmt: skip
        except ValueError as error:
            raise click.ClickException(str(error)) from error
        gate_state.record_in_audit_log(settings, ack)
    click.echo(
        f"acknowledged {ack.object_key}: {ack.lines_quarantined} quarantined lines left out "
        "by the gate from the next run on"
    )


@main.command("spark-build")
@lake_option
@data_dir_option
@click.option("--full-refresh", is_flag=True, help="Rebuild every selected table from bronze.")
@click.option("--no-data-tests", is_flag=True, help="Seeds and models only, no dbt data tests.")
def spark_build(lake, data_dir, full_refresh, no_data_tests):
    """Build the marts on the Spark target (dbt-spark, `make spark`) from bronze.

    The same dbt models as the DuckDB build; the tables land as Parquet under
    DATA_DIR/spark/warehouse (docs/scaling.md: which marts, and how to point it at a cluster).
    Publishing and the dashboards stay on the DuckDB build.
    """
    from inferwatch.orchestrate import current_lake
    from inferwatch.transform import build_spark

    settings = _settings(lake, data_dir)
    outcome = build_spark(settings, current_lake(settings), full_refresh=full_refresh,
                          data_tests=not no_data_tests)  # fmt: skip
    click.echo(json.dumps(outcome.as_dict()))


@main.command()
@lake_option
@data_dir_option
def compact(lake, data_dir):
    """Merge bronze's small files into one file per partition, atomically.

    Events go to bronze/events/day=YYYY-MM-DD/, quarantine and manifest rows to
    .../month=YYYY-MM/. Rows are copied unchanged (batch ids included), so no mart figure
    changes and a rewritten or replayed object still replaces its rows. Safe to interrupt:
    the next compaction or pipeline run finishes or undoes the swap. Holds the pipeline lock.
    """
    from inferwatch import pipeline
    from inferwatch.orchestrate import current_lake

    settings = _settings(lake, data_dir)
    click.echo(json.dumps(pipeline.compact(settings, current_lake(settings), "cli"), indent=1))


@main.command()
@lake_option
@data_dir_option
@click.option("--dry-run/--apply", default=True, show_default=True,
              help="Only report what would go, or delete it.")  # fmt: skip
@click.option("--bronze-days", type=int,
              help="Keep bronze events of the last N UTC days "
              "[env INFERWATCH_RETENTION_BRONZE_DAYS; default: forever].")  # fmt: skip
@click.option("--quarantine-days", type=int,
              help="Keep quarantine months that ended less than N days ago "
              "[env INFERWATCH_RETENTION_QUARANTINE_DAYS; default: forever].")  # fmt: skip
@click.option("--raw-days", type=int,
              help="Raw objects first ingested more than N days ago may go "
              "[env INFERWATCH_RETENTION_RAW_DAYS]; needs --delete-raw.")  # fmt: skip
@click.option("--delete-raw", is_flag=True, default=None,
              help="Allow deleting raw objects [env INFERWATCH_RETENTION_RAW_ENABLED=true]. "
              "Off by default: raw/ belongs to the producers.")  # fmt: skip
def retention(lake, data_dir, dry_run, bronze_days, quarantine_days, raw_days, delete_raw):
    """Apply the retention policy to bronze, quarantine and (opt-in) raw; report what goes.

    Bronze is compacted first and dropped by whole day (events) or month (quarantine)
    partitions; the manifest is kept, so expired raw objects are never ingested again. Raw
    objects go only if explicitly enabled, only when fully ingested in their listed version and
    free of quarantined lines (a replay re-reads raw); mart_ingestion shows them as
    `raw_expired`. Marts keep their figures for expired days until `inferwatch rebuild`.
    A dry run sees only compacted partitions: run `inferwatch compact` first for a full preview.
    """
    import dataclasses

    from inferwatch import pipeline
    from inferwatch.maintain.retention import RetentionPolicy
    from inferwatch.orchestrate import current_lake

    settings = _settings(lake, data_dir)
    overrides = {
        "bronze_days": bronze_days, "quarantine_days": quarantine_days, "raw_days": raw_days,
        "raw_enabled": delete_raw,
    }  # fmt: skip
    policy = dataclasses.replace(
        RetentionPolicy.from_env(), **{k: v for k, v in overrides.items() if v is not None}
    )
    report = pipeline.retention(settings, current_lake(settings), "cli", policy, dry_run=dry_run)
    click.echo(json.dumps(report, indent=1, default=str))


@main.group()
def superset() -> None:
    """Manage the local Superset (its own virtual environment, bound to 127.0.0.1)."""


@superset.command("start")
@data_dir_option
@click.option("--port", default=8088, show_default=True)
def superset_start(data_dir, port):
    """Prepare (first time) and start Superset with its report workers (Redis, Celery worker
    and beat); returns when /health answers and the workers are ready."""
    from inferwatch.secrets import ensure_secrets
    from inferwatch.serve import superset_server

    settings = _settings(None, data_dir)
    secrets = ensure_secrets(settings.secrets_path)
    home = settings.data_dir / "superset"
    superset_server.prepare(
        home,
        admin_password=secrets["SUPERSET_ADMIN_PASSWORD"],
        secret_key=secrets["SUPERSET_SECRET_KEY"],
    )
    pid = superset_server.start(
        home, port=port, reports=True, extra_env=superset_server.reports_env(settings)
    )
    workers = superset_server.report_workers.running(home)
    click.echo(f"superset pid {pid} on http://127.0.0.1:{port}; reports: {workers}")


@superset.command("stop")
@data_dir_option
def superset_stop(data_dir):
    """Stop the Superset and its report workers started from this data dir (by pid files)."""
    from inferwatch.serve import superset_server

    settings = _settings(None, data_dir)
    superset_server.stop(settings.data_dir / "superset")


@superset.command("sync")
@data_dir_option
def superset_sync(data_dir):
    """Import/update the dashboards, charts, datasets and database from superset/."""
    from inferwatch.serve.superset_sync import sync

    settings = _settings(None, data_dir)
    click.echo(json.dumps(sync(settings), indent=1, default=str))


@main.group("airflow")
def airflow_group() -> None:
    """Manage the local Airflow (API server, scheduler, DAG processor, triggerer) on 127.0.0.1."""


@airflow_group.command("start")
@lake_option
@data_dir_option
@click.option("--port", default=8080, show_default=True)
def airflow_start(lake, data_dir, port):
    """Start the Airflow components (reusing running ones); returns when the API is healthy."""
    from inferwatch.serve import airflow_services

    pids = airflow_services.start(_settings(lake, data_dir), port=port)
    click.echo(f"airflow on http://127.0.0.1:{port} (pids {pids})")


@airflow_group.command("stop")
@data_dir_option
def airflow_stop(data_dir):
    """Stop the Airflow components started from this data dir (by their pid files)."""
    from inferwatch.serve import airflow_services

    click.echo(f"stopped: {airflow_services.stop(_settings(None, data_dir))}")


@main.group("audit")
def audit_group() -> None:
    """The hash-chained audit trail (mart_audit_log): collect new events, verify the chain."""


@audit_group.command("collect")
@lake_option
@data_dir_option
def audit_collect(lake, data_dir):
    """Append new Superset, Airflow and pipeline-run events (what the `audit` task does)."""
    from inferwatch.audit.collect import collect

    click.echo(json.dumps(collect(_settings(lake, data_dir)), default=str))


@audit_group.command("verify")
@lake_option
@data_dir_option
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False),
    help="Another copy to check, e.g. the published audit.duckdb [the ledger].",
)
def audit_verify(lake, data_dir, path):
    """Re-hash the chain under the audit key and check the heads anchored in the lake; exit 1
    naming the first edited, inserted or deleted row."""
    from inferwatch.audit.collect import ledger_path, verify

    settings = _settings(lake, data_dir)  # its audit key, and its lake's anchored heads
    path = Path(path) if path else ledger_path(settings)
    if not path.exists():
        raise click.ClickException(f"no audit ledger at {path}: run `inferwatch audit collect`")
    outcome = verify(path, settings)
    click.echo(outcome.message())
    if not outcome.ok:
        sys.exit(1)


@main.group("model")
def model_group() -> None:
    """Monitor your own model: register a version, add its training reference, check both.

    The files land in the lake (INFERWATCH_LAKE_URL) where the pipeline reads them:
    registry/<model>/<version>.json and reference/<model>/<version>/reference.parquet.
    Step by step: docs/onboarding.md.
    """


def _onboard_lake(lake: str | None, data_dir: str | None):
    from inferwatch.orchestrate import current_lake

    # current_lake: an s3:// lake needs the credentials of its Airflow connection, as in a run.
    return current_lake(_settings(lake, data_dir))


def _onboard_step(step):
    """Run one onboarding step; its refusal (OnboardError) is a one-line error and exit 1."""
    from inferwatch.onboard import OnboardError

    try:
        return step()
    except OnboardError as error:
        raise click.ClickException(str(error)) from error


@model_group.command("register")
@lake_option
@data_dir_option
@click.argument("model")
@click.argument("version")
@click.option("--git-commit", required=True, help="Commit the model was built from.")
@click.option(
    "--training-data-hash",
    required=True,
    help="Hash (or other identifier) of the training data set, e.g. sha256:….",
)
@click.option(
    "--deployed-at",
    required=True,
    help="When the version went live, ISO 8601 (UTC if no offset), e.g. 2025-04-30T12:00:00Z.",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="NAME=VALUE",
    help="Training-time metric, repeatable. The performance mart compares accuracy, "
    "f1_macro, ece (classification) or mae, rmse (regression) with production.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Training parameter, repeatable (shown on Models and lineage).",
)
@click.option(
    "--task",
    type=click.Choice(["classification", "regression"]),
    help="Kept in the entry; the pipeline scores by dbt_project/seeds/"
    "performance_thresholds.csv (`model check` says if they differ).",
)
@click.option("--force", is_flag=True, help="Replace a different entry already registered.")
def model_register(
    lake,
    data_dir,
    model,
    version,
    git_commit,
    training_data_hash,
    deployed_at,
    metrics,
    params,
    task,
    force,
):
    """Write MODEL VERSION's registry entry: registry/<model>/<version>.json in the lake.

    Models and lineage shows its commit, training data, deploy time and metrics from the next
    run on; the performance marts show the metrics beside production's. The same entry again
    changes nothing; a different one is refused unless --force.
    """
    from inferwatch import onboard

    def step():
        entry = onboard.registry_entry(
            model,
            version,
            git_commit=git_commit,
            training_data_hash=training_data_hash,
            deployed_at=deployed_at,
            metrics=onboard.parse_pairs(metrics, "metric", numeric=True),
            params=onboard.parse_pairs(params, "param", numeric=False),
            task=task,
        )
        return onboard.write_registry(_onboard_lake(lake, data_dir), entry, force=force)

    click.echo(_onboard_step(step))


@model_group.command("reference")
@lake_option
@data_dir_option
@click.argument("model")
@click.argument("version")
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Sample of the training data: .parquet, or .csv with a header.",
)
@click.option(
    "--features",
    help="Comma-separated input feature columns, named as in the logs' "
    "input_features [every column but the outputs].",
)
@click.option(
    "--prediction-column",
    help="The sample's column holding the model's prediction "
    "[prediction, if present]; written as `prediction`.",
)
@click.option(
    "--confidence-column",
    help="The sample's column holding the confidence "
    "[confidence, if present]; written as `confidence`.",
)
@click.option(
    "--force", is_flag=True, help="Replace whatever the version's reference folder holds."
)
def model_reference(
    lake, data_dir, model, version, source, features, prediction_column, confidence_column, force
):
    """Validate a training sample and write it as MODEL VERSION's training reference.

    Writes reference/<model>/<version>/reference.parquet: the feature columns, then
    `prediction` and `confidence`. Refused with the reason: an empty sample, a missing column,
    a name the log contract refuses, a column that is neither numeric, text nor boolean, or
    one with no value. Nulls are reported. Drift and feature distributions are measured
    against it from the next run on (also for later versions without a reference).
    """
    from inferwatch import onboard

    def step():
        reference, findings = onboard.build_reference(
            onboard.read_sample(source),
            features=onboard.split_columns(features),
            prediction_column=prediction_column,
            confidence_column=confidence_column,
        )
        for finding in findings:
            click.echo(finding.line())
        lake_ = _onboard_lake(lake, data_dir)
        return onboard.write_reference(lake_, model, version, reference, force=force)

    click.echo(_onboard_step(step))


@model_group.command("check")
@lake_option
@data_dir_option
@click.argument("model")
@click.argument("version", required=False)
def model_check(lake, data_dir, model, version):
    """Read MODEL's registry entries, references and bronze events back; say what the next run
    will do with them, one line per fact.

    Which features get numeric bins (deciles for PSI, fine bins for KS) or categorical top-k
    bins (PSI, Jensen–Shannon), the drift thresholds, whether performance can be computed,
    and which events bronze already holds per version. Lines starting WARNING are gaps the
    dashboards will show; ERROR lines are what the pipeline would misread (exit 1).
    """
    from inferwatch import onboard

    findings = _onboard_step(lambda: onboard.check(_onboard_lake(lake, data_dir), model, version))
    for finding in findings:
        click.echo(finding.line())
    if onboard.has_errors(findings):
        sys.exit(1)


@main.command()
@data_dir_option
def urls(data_dir):
    """Print where the dashboards and the Airflow UI are, and how to log in."""
    from inferwatch.secrets import ensure_secrets
    from inferwatch.serve import airflow_services
    from inferwatch.serve.data_docs import DATA_DOCS, DBT_DOCS
    from inferwatch.serve.superset_access import demo_logins

    settings = _settings(None, data_dir)
    secrets = ensure_secrets(settings.secrets_path)
    user, password = airflow_services.admin_login(settings)
    demo = "".join(
        f"          {login} ({role}) / {secret}\n"
        for login, (role, secret) in demo_logins(settings.secrets_path).items()
        if secret  # created by `inferwatch superset sync`
    )
    click.echo(
        f"Superset  {settings.superset_url}  (admin / {secrets['SUPERSET_ADMIN_PASSWORD']})\n"
        f"{demo}"
        f"Airflow   {settings.airflow_url}  ({user} / {password})\n"
        f"Data Docs {DATA_DOCS.url(settings.airflow_url)}  (Airflow login)\n"
        f"dbt Docs  {DBT_DOCS.url(settings.airflow_url)}  (Airflow login)\n"
        f"Published {settings.serving_path} and {settings.ops_path}\n"
        f"Reports   {settings.superset_url}/report/list/  (superset/reports/*.yaml; to "
        f"{', '.join(settings.report_emails) or 'nobody: set INFERWATCH_REPORT_EMAILS'} via "
        f"{settings.smtp_host}:{settings.smtp_port})\n"
        f"Secrets   {settings.secrets_path} (owner-only)"
    )


if __name__ == "__main__":
    main()

"""InferWatch pipeline: raw logs → bronze → dbt marts → GX gate → published DuckDB → Superset."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import TriggerRule, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from inferwatch import pipeline
from inferwatch.alerts.airflow_notifier import RETRAINING_SIGNAL, PipelineRunNotifier
from inferwatch.check import ConfigError
from inferwatch.config import pipeline_schedule
from inferwatch.orchestrate import current_lake, current_settings

DOC = """
### InferWatch pipeline
Manifest-driven: every run ingests **every raw object not yet in the manifest** (the data
interval only labels the run), then rebuilds the marts of every hour and day the new events touch.

| task | does | safe to clear? |
|---|---|---|
| `check_config` | `inferwatch check`: the lake, its connection, the data dir, producers, registry and reference files; an error fails the run at once (no retry), one line per setting to fix | yes |
| `discover` | lists `raw/` and compares with the manifest (key, size, etag/mtime) | yes |
| `ingest` | parses, validates and scrubs PII into bronze Parquet; bad lines to `quarantine/` | yes: a chunk only counts once its manifest file lands |
| `transform` | `dbt build` of what reads lake files changed since the last passing build (new events: the hours and days they touch; reference, registry, label and anomaly-score models only when their files changed; everything on a first run or a new project version), each model's column tests in one node; then dbt's docs site ([dbt Docs](inferwatch-dbt-docs/)) | yes |
| `score_anomalies` | isolation forest per model version scores a sample of each touched day's inputs; builds `mart_input_anomalies_daily` | yes: a day's scores are rewritten whole |
| `validate` | Great Expectations checkpoint on the candidate warehouse ([Data Docs](inferwatch-data-docs/)) | yes |
| `publish` | `ops.duckdb` always, `serving.duckdb` only when the gate passed (under the publish lock: no Superset report is taken meanwhile) | yes |
| `refresh_superset` | re-syncs Superset datasets and report schedules (under the publish lock) when the assets or the served columns changed since its last sync, else only drops Superset's cached results; logs and goes on if Superset is down | yes |
| `alert` | alert rules on the published marts; new alerts by e-mail/webhook, logged in `ops.duckdb` (`alerts`; beside the refresh, without waiting for its lock) | yes: deduplicated per rule, model, version and period |
| `signal_retraining` | emits the `inferwatch_retraining_signal` Asset event when a drift or input-anomaly alert is new (else skipped) | yes |
| `audit` | appends new Superset/Airflow/run events to the hash-chained `mart_audit_log` (runs even after a failure; teardown) | yes: per-source watermarks |

Lake: `INFERWATCH_LAKE_URL` (S3 credentials from the `inferwatch_lake` connection).
State: `INFERWATCH_DATA_DIR`. Data Docs: `$INFERWATCH_DATA_DIR/data_docs/index.html`; dbt Docs:
`$INFERWATCH_DATA_DIR/dbt_docs/index.html`.
A task that fails for good (or a build held back by the gate) is a `pipeline_run` alert.
"""

VALIDATE_DOC = """
Great Expectations on the candidate warehouse (read-only, pushed down to DuckDB).
**Critical** suites hold the build back: `contract`, `reconciliation`, `quarantine` (a model
losing over 10% of its lines in the run, or over half the run quarantined).
**Warnings** publish and are recorded for alerting: `junk` (lines naming no valid model),
`freshness`, `volume`, `drift`, `output_distribution`. Severity and thresholds per model: `expectations/policy.yml`
(or the file `INFERWATCH_VALIDATION_POLICY` names). Results: `mart_data_quality` in
`ops.duckdb`; [Data Docs](inferwatch-data-docs/) of every run.
"""


@dag(
    dag_id="inferwatch_pipeline",
    schedule=pipeline_schedule(),  # INFERWATCH_SCHEDULE (README: Scheduling); 1h unset
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 1,
        "retry_delay": timedelta(minutes=2),
        "on_failure_callback": PipelineRunNotifier(),
    },
    doc_md=DOC,
    tags=["inferwatch"],
)
def inferwatch_pipeline():
    @task(
        retries=0,  # a retry would find the same configuration: fail at once
        doc_md="Check the configuration (`inferwatch check`; README: Checking the "
        "configuration). Each error names the setting to fix; Superset and SMTP only warn.",
    )
    def check_config() -> list[str]:
        try:
            return pipeline.check_config(current_settings())
        except (ConfigError, ValueError) as error:  # ValueError: a setting that does not parse
            raise AirflowFailException(str(error)) from error

    @task(doc_md="List raw objects that are new or rewritten since the manifest last saw them.")
    def discover() -> list[dict]:
        settings = current_settings()
        return pipeline.discover(current_lake(settings))

    @task(doc_md="Raw lines → typed, PII-scrubbed bronze Parquet; bad lines → quarantine.")
    def ingest(objects: list[dict], **context) -> dict:
        settings = current_settings()
        return pipeline.ingest(settings, current_lake(settings), objects, context["run_id"])

    @task(
        doc_md="`dbt build` of what reads lake files changed since the last passing build "
        "(incremental on the hours and days new events touch); then dbt's docs site of the "
        "build ([dbt Docs](inferwatch-dbt-docs/))."
    )
    def transform(ingest_report: dict) -> dict:
        settings = current_settings()
        return pipeline.transform(settings, current_lake(settings))

    @task(
        doc_md="Isolation-forest scores of a sample of each touched day's inputs (per model "
        "version, fitted on its training reference) → `mart_input_anomalies_daily`."
    )
    def score_anomalies(build: dict, ingest_report: dict) -> dict:
        settings = current_settings()
        return pipeline.score_anomalies(settings, current_lake(settings), ingest_report)

    @task(doc_md=VALIDATE_DOC)
    def validate(build: dict, **context) -> dict:
        return pipeline.validate(current_settings(), context["run_id"])

    @task(doc_md="Swap in ops.duckdb always, serving.duckdb only if the gate passed.")
    def publish(validation: dict, ingest_report: dict, **context) -> dict:
        started = context["dag_run"].start_date
        try:
            return pipeline.publish(
                current_settings(), context["run_id"], validation, ingest_report, str(started)
            )
        except pipeline.GateFailed as failed:  # a retry would decide the same: fail at once
            raise AirflowFailException(str(failed)) from failed

    @task(
        doc_md="Refresh Superset's datasets over its REST API when the assets or the served "
        "columns changed since the last sync (skipped if Superset is down)."
    )
    def refresh_superset(published: dict) -> bool:
        return pipeline.refresh_superset(current_settings())

    @task(
        trigger_rule=TriggerRule.ALL_DONE,
        doc_md="Evaluate the alert rules (README: Alerts) on the published marts, also after a "
        "held-back build; deliver new alerts by e-mail and webhook; log them in `ops.duckdb`.",
    )
    def alert(**context) -> dict:
        return pipeline.alert(current_settings(), context["run_id"])

    @task(
        outlets=[RETRAINING_SIGNAL],
        doc_md="Emit the retraining signal (an Asset event for `retraining_trigger`) when the "
        "alert step raised a new drift or input-anomaly alert; skipped otherwise.",
    )
    def signal_retraining(alerted: dict, *, outlet_events=None) -> int:
        if not alerted["retraining"]:
            raise AirflowSkipException("no new drift or input-anomaly alert")
        outlet_events[RETRAINING_SIGNAL].extra = {"requests": alerted["retraining"]}
        return len(alerted["retraining"])

    @task(doc_md="Append new Superset, Airflow and run-outcome events to `mart_audit_log`.")
    def audit() -> dict:
        return pipeline.audit(current_settings())

    # A setup task: when it fails, the audit teardown does not run either (it would anchor its
    # heads in a lake folder that is not there, or retry a missing connection).
    checked = check_config().as_setup()
    objects = discover()
    checked >> objects
    report = ingest(objects)
    validation = validate(score_anomalies(transform(report), report))
    published = publish(validation, report)
    # A teardown: runs whatever the tasks before it did, and does not decide the run's state.
    refresh_superset(published) >> audit().as_teardown(setups=checked)
    alerted = alert()
    published >> alerted
    signal_retraining(alerted)


inferwatch_pipeline()

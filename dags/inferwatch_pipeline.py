"""InferWatch pipeline: raw logs → bronze → dbt marts → GX gate → published DuckDB → Superset."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowFailException

from inferwatch import pipeline
from inferwatch.orchestrate import current_lake, current_settings

DOC = """
### InferWatch pipeline
Manifest-driven: every run ingests **every raw object not yet in the manifest** (the data
interval only labels the run), then rebuilds the marts of every day the new events touch.

| task | does | safe to clear? |
|---|---|---|
| `discover` | lists `raw/` and compares with the manifest (key, size, etag/mtime) | yes |
| `ingest` | parses, validates and scrubs PII into bronze Parquet; bad lines to `quarantine/` | yes: a chunk only counts once its manifest file lands |
| `transform` | `dbt build` (incremental: days touched by newly ingested events) | yes |
| `validate` | Great Expectations checkpoint on the candidate warehouse ([Data Docs](inferwatch-data-docs/)) | yes |
| `publish` | `ops.duckdb` always, `serving.duckdb` only when the gate passed | yes |
| `refresh_superset` | re-syncs Superset datasets; logs and goes on if Superset is down | yes |

Lake: `INFERWATCH_LAKE_URL` (S3 credentials from the `inferwatch_lake` connection).
State: `INFERWATCH_DATA_DIR`. Data Docs: `$INFERWATCH_DATA_DIR/data_docs/index.html`.
"""

VALIDATE_DOC = """
Great Expectations on the candidate warehouse (read-only, pushed down to DuckDB).
**Critical** suites hold the build back: `contract`, `reconciliation`.
**Warnings** publish and are recorded for alerting: `freshness`, `volume`, `drift`,
`output_distribution`. Severity and thresholds per model: `expectations/policy.yml`
(or the file `INFERWATCH_VALIDATION_POLICY` names). Results: `mart_data_quality` in
`ops.duckdb`; [Data Docs](inferwatch-data-docs/) of every run.
"""


@dag(
    dag_id="inferwatch_pipeline",
    schedule=timedelta(hours=1),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=2)},
    doc_md=DOC,
    tags=["inferwatch"],
)
def inferwatch_pipeline():
    @task(doc_md="List raw objects that are new or rewritten since the manifest last saw them.")
    def discover() -> list[dict]:
        settings = current_settings()
        return pipeline.discover(current_lake(settings))

    @task(doc_md="Raw lines → typed, PII-scrubbed bronze Parquet; bad lines → quarantine.")
    def ingest(objects: list[dict], **context) -> dict:
        settings = current_settings()
        return pipeline.ingest(settings, current_lake(settings), objects, context["run_id"])

    @task(doc_md="`dbt build` of staging → marts, incremental on the days that got new events.")
    def transform(ingest_report: dict) -> dict:
        settings = current_settings()
        return pipeline.transform(settings, current_lake(settings))

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

    @task(doc_md="Refresh Superset's datasets over its REST API (skipped if Superset is down).")
    def refresh_superset(published: dict) -> bool:
        return pipeline.refresh_superset(current_settings())

    report = ingest(discover())
    validation = validate(transform(report))
    refresh_superset(publish(validation, report))


inferwatch_pipeline()

"""Retraining trigger: each retraining signal of the pipeline becomes a request in the registry."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task

from inferwatch.alerts.airflow_notifier import RETRAINING_SIGNAL
from inferwatch.orchestrate import current_lake, current_settings

DOC = """
### Retraining trigger
Scheduled on the `inferwatch_retraining_signal` Asset, which the pipeline's `signal_retraining`
task emits when a drift or input-anomaly alert is new. Writes one request per (model, version,
reason, day) to `registry/retraining_requests/<model>/<version>/<day>__<reason>.json` in the
lake, with the alert's evidence. InferWatch does not train: the ML team's tooling reads the
requests. Idempotent: an existing request is never rewritten; logged alerts without a request
(a missed signal) get one on the next trigger.
"""


@dag(
    dag_id="retraining_trigger",
    schedule=[RETRAINING_SIGNAL],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["inferwatch"],
)
def retraining_trigger():
    @task(doc_md="Write the retraining requests the signal (and the alert log) ask for.")
    def request_retraining(*, triggering_asset_events=None, **context) -> dict:
        from inferwatch.alerts.retraining import request_retraining as write

        signalled = [
            request
            for event in (triggering_asset_events or {}).get(RETRAINING_SIGNAL, [])
            for request in (event.extra or {}).get("requests", [])
        ]
        settings = current_settings()
        return write(settings, current_lake(settings), signalled, source=context["run_id"])

    request_retraining()


retraining_trigger()

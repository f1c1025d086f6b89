"""The Airflow layer of alerting: a notifier for failed or held-back pipeline runs, and the
Asset the retraining signal is emitted on. The only module of ``alerts`` importing Airflow."""

from __future__ import annotations

from airflow.sdk import Asset
from airflow.sdk.bases.notifier import BaseNotifier

#: Emitted by the pipeline when a drift or input-anomaly alert is new; consumed by the
#: ``retraining_trigger`` DAG.
# An "x-" scheme: Airflow normalises other schemes through the providers' URI handlers, which
# loads every provider (the Amazon one imports boto3) and cost each parse of the DAG ~0.6 s.
RETRAINING_SIGNAL = Asset(
    name="inferwatch_retraining_signal", uri="x-inferwatch://retraining/signal", group="inferwatch"
)


class PipelineRunNotifier(BaseNotifier):
    """``on_failure_callback`` of the pipeline's tasks: a failed task (after its retries) or
    a held-back build (the gate failed) becomes a ``pipeline_run`` alert, logged and sent."""

    def notify(self, context) -> None:
        from inferwatch import pipeline
        from inferwatch.alerts.step import record_run_failure
        from inferwatch.orchestrate import current_settings
        from inferwatch.publish import publish_ops

        settings = current_settings()
        dag_run = context.get("dag_run")
        ti = context.get("ti") or context.get("task_instance")
        run_id = getattr(dag_run, "run_id", None) or context.get("run_id") or "unknown"
        outcome = record_run_failure(
            settings, run_id=run_id, task_id=getattr(ti, "task_id", "unknown"),
            started=getattr(dag_run, "start_date", None),
            reason=str(context.get("exception") or "task failed"),
        )  # fmt: skip
        if outcome["new"]:
            with (
                pipeline.pipeline_lock(settings, f"alert {run_id}"),
                pipeline.publish_lock(settings, f"alert {run_id}"),
            ):
                publish_ops(settings)

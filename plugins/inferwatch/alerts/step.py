"""The pipeline's ``alert`` step: evaluate the rules on the published marts, drop what was
already logged (dedupe), deliver what is new and recent, and log everything raised."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import duckdb

from inferwatch.alerts import delivery
from inferwatch.alerts import log as alert_log
from inferwatch.alerts.evaluate import Alert, evaluate
from inferwatch.alerts.ingest_limits import ingest_limit_alerts
from inferwatch.alerts.rules import Rules, load_rules
from inferwatch.config import Settings

log = logging.getLogger(__name__)

#: Rules whose alerts ask for retraining (the feedback loop; see ``retraining``).
RETRAINING_REASONS = ("drift", "input_anomaly")
#: Requests carried in one retraining signal (an XCom and an asset event's extra).
MAX_SIGNALLED = 100


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def dashboard_url(settings: Settings, rules: Rules, rule: str) -> str:
    slug = rules.dashboards.get(rule, "inference-overview")
    return f"{settings.superset_url}/superset/dashboard/{slug}/"


def evaluate_and_deliver(settings: Settings, run_id: str, as_of: datetime | None = None) -> dict:
    """The whole step; ``as_of`` (naive UTC, default now) is the clock of staleness and age."""
    rules = load_rules(settings.alert_rules_path)
    as_of = as_of or _utc_now()
    alerts: list[Alert] = []
    if settings.serving_path.exists():
        with duckdb.connect(str(settings.serving_path), read_only=True) as con:
            alerts = evaluate(con, rules, as_of)
    alerts += ingest_limit_alerts(settings, rules, run_id)
    return record_and_send(settings, rules, alerts, run_id, as_of)


def record_and_send(
    settings: Settings, rules: Rules, alerts: list[Alert], run_id: str, as_of: datetime
) -> dict:
    done = alert_log.done_keys(settings)
    oldest = as_of - timedelta(hours=rules.max_alert_age_hours())
    rows, deliverable = [], []
    for alert in alerts:
        if alert.dedupe_key in done:
            continue
        done.add(alert.dedupe_key)
        row = {**alert.as_dict(), "dashboard_url": dashboard_url(settings, rules, alert.rule),
               "run_id": run_id, "evaluated_at": _utc_now(), "channels": ""}  # fmt: skip
        too_old = (alert.known_at or alert.period_start) < oldest and not alert.current
        row["status"] = "suppressed_old" if too_old else "pending"
        rows.append(row)
        if row["status"] == "pending":
            deliverable.append(row)
    for row in deliverable:  # the task log is a channel too: one escaped line per alert
        log.info("alert: %s", delivery.log_line(row))
    if deliverable:
        # deliver() reports a failing channel (whatever the error) instead of raising: the
        # alerts below are then logged as failed and retried next run.
        outcome = delivery.deliver(settings, deliverable) if delivery.channels(settings) else {}
        delivered = [channel for channel, error in outcome.items() if error is None]
        status = "logged" if not outcome else ("sent" if delivered else "failed")
        for row in deliverable:
            row["status"], row["channels"] = status, ",".join(delivered)
    alert_log.append(settings, rows)
    counts = {status: sum(r["status"] == status for r in rows)
              for status in ("sent", "logged", "failed", "suppressed_old")}  # fmt: skip
    log.info("alerts: %d raised, %d new: %s", len(alerts), len(rows), counts)
    return {
        "raised": len(alerts),
        "new": len(rows),
        **counts,
        # the signal's evidence; retraining_trigger also reads the log, so a cap loses nothing
        "retraining": [retraining_request(r) for r in rows
                       if r["rule"] in RETRAINING_REASONS][:MAX_SIGNALLED],
    }  # fmt: skip


def retraining_request(row: dict) -> dict:
    """What the retraining signal carries for one drift or input-anomaly alert."""
    return {
        "model": row["model"],
        "model_version": row["model_version"],
        "reason": row["rule"],
        "day": str(row["period_start"])[:10],
        "evidence": {
            "alert_id": row["alert_id"], "metric": row["metric"], "value": row["value"],
            "threshold": row["threshold"], "baseline_kind": row["baseline_kind"],
            "message": row["message"], "dashboard_url": row["dashboard_url"],
        },
    }  # fmt: skip


def record_run_failure(
    settings: Settings, run_id: str, task_id: str, started: datetime | None, reason: str
) -> dict:
    """A failed or held-back pipeline run, as an alert (called by the Airflow notifier)."""
    rules = load_rules(settings.alert_rules_path)
    if rules.rule("pipeline_run", None) is None:
        return {"new": 0}
    held_back = "validation gate failed" in reason
    started = (started or _utc_now()).replace(tzinfo=None)
    alert = Alert(
        rule="pipeline_run", model=None, model_version=None,
        metric="held_back" if held_back else "failed", period_start=started, period_grain="run",
        value=None, threshold=None, baseline_kind="none", severity="critical",
        message=(f"pipeline run {run_id} {'held back by the gate' if held_back else 'failed'} "
                 f"in task {task_id}: {reason[:500]}"),
        details={"run_id": run_id, "task_id": task_id}, current=True,
    )  # fmt: skip
    return record_and_send(settings, rules, [alert], run_id, _utc_now())

"""The ``ingest_limits`` alert: a run whose ingest ran into a limit (README: Limits).

The ingest step records what it refused in its report (``limits_tripped``: objects over a size
cap, lines over the models-per-run or features-per-model caps, quarantined with a reason);
``publish`` keeps that report in the run's record, held-back build or not. The alert step reads
it back here: one alert per run, so a flood of junk names is one message, not one per name.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from inferwatch.alerts.evaluate import Alert
from inferwatch.alerts.rules import Rules
from inferwatch.config import Settings
from inferwatch.publish import run_record_path

RULE = "ingest_limits"


def ingest_limit_alerts(settings: Settings, rules: Rules, run_id: str) -> list[Alert]:
    if rules.rule(RULE, None) is None:
        return []
    try:
        record = json.loads(run_record_path(settings, run_id).read_text())
    except FileNotFoundError:  # the run never reached publish: its failure is the alert
        return []
    tripped = (record.get("ingest") or {}).get("limits_tripped") or []
    if not tripped:
        return []
    lines = sum(int(t.get("lines") or 0) for t in tripped)
    objects = sum(int(t.get("objects") or 0) for t in tripped)
    return [
        Alert(
            rule=RULE, model=None, model_version=None,
            metric=",".join(t["limit"] for t in tripped),
            period_start=_started(record), period_grain="run",
            value=float(lines + objects), threshold=None, baseline_kind="fixed_limit",
            message=f"run {run_id} reached ingest limits: "
            + "; ".join(f"{t['message']} ({t['setting']}={t['cap']})" for t in tripped),
            details={"run_id": run_id, "limits": tripped}, current=True,
        )
    ]  # fmt: skip


def _started(record: dict) -> datetime:
    """The run's start (naive UTC): one alert per run, whatever the number of alert steps."""
    try:
        started = datetime.fromisoformat(str(record.get("started_at")))
    except ValueError:
        return datetime.now(UTC).replace(tzinfo=None)
    return started.astimezone(UTC).replace(tzinfo=None) if started.tzinfo else started

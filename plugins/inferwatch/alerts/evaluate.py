"""Evaluate the alert rules on the published marts (serving.duckdb): one ``Alert`` per rule,
model (version) and hour (or day, for drift and input anomalies) over its threshold; and on
the gate's records in ops.duckdb (junk published), one per run."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from inferwatch.alerts import baselines
from inferwatch.alerts.rules import Rules

log = logging.getLogger(__name__)

#: rule → its metric in mart_anomalies_hourly (usage alerts both ways, error rate and latency
#: upwards, confidence downwards).
HOURLY_RULES = {
    "usage": "requests",
    "error_rate": "error_rate",
    "confidence_drop": "confidence_mean",
    "latency_p95": "latency_p95_ms",
}


@dataclass
class Alert:
    rule: str
    model: str | None
    model_version: str | None
    metric: str
    period_start: datetime
    period_grain: str  # hour, day or run
    value: float | None
    threshold: float | None
    baseline_kind: str
    baseline_value: float | None = None
    baseline_spread: float | None = None
    z_score: float | None = None
    message: str = ""
    severity: str = "warning"
    details: dict = field(default_factory=dict)
    #: About the present (stale data, a failed run), not a past period: never "too old to send".
    current: bool = False
    #: When the evidence became known, if later than the period (ground truth arrives weeks
    #: after the predictions it judges): the alert's age counts from here.
    known_at: datetime | None = None

    @property
    def dedupe_key(self) -> str:
        """The same alert for the same period is logged and sent once, whatever the run."""
        return "|".join([self.rule, self.model or "", self.model_version or "",
                         self.period_start.isoformat()])  # fmt: skip

    @property
    def alert_id(self) -> str:
        return hashlib.sha256(self.dedupe_key.encode()).hexdigest()[:16]

    def as_dict(self) -> dict:
        return {**asdict(self), "dedupe_key": self.dedupe_key, "alert_id": self.alert_id}


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params=()) -> list[dict]:
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The marts served: views in serving.duckdb (a catalog over Parquet), tables elsewhere."""
    listed = con.execute("select table_name from information_schema.tables").fetchall()
    return {name for (name,) in listed}


def hourly_alerts(con: duckdb.DuckDBPyConnection, rules: Rules) -> list[Alert]:
    """Usage, error rate, confidence and latency: every complete hour of mart_anomalies_hourly."""
    alerts: list[Alert] = []
    rows = _rows(con, "select * from mart_anomalies_hourly where not is_latest_hour "
                      "order by model, model_version, metric, hour")  # fmt: skip
    metric_rules = {metric: rule for rule, metric in HOURLY_RULES.items()}
    for row in rows:
        rule = metric_rules[row["metric"]]
        params = rules.rule(rule, row["model"])
        if params is None:
            continue
        alert = _check_hour(rule, params, row)
        if alert is not None:
            alerts.append(alert)
    return alerts


def _check_hour(rule: str, params: dict, row: dict) -> Alert | None:
    value, size = row["metric_value"], row["sample_size"]
    if rule == "latency_p95":
        if size < params.get("min_requests", 0) or value <= params["limit_ms"]:
            return None
        text = f"p95 latency {value:.0f} ms over the limit of {params['limit_ms']} ms"
        return _hour_alert(rule, row, params["limit_ms"], None, "fixed_limit", text)
    if size < params.get("min_requests", 0):
        return None
    baseline = baselines.choose(row, params["min_history_days"])
    if baseline is None:
        return None
    z = baseline.z(value)
    margin = value - baseline.center
    if rule == "usage":
        fired = abs(z) > params["z"] and abs(margin) >= params.get("min_change", 0)
        what = "spike" if z > 0 else "collapse"
        text = f"usage {what}: {value:.0f} requests in the hour vs {baseline.center:.1f} expected"
    elif rule == "error_rate":
        fired = z > params["z"] and margin >= params.get("min_increase", 0)
        text = f"error rate {value:.1%} vs {baseline.center:.1%} expected"
    else:  # confidence_drop
        fired = z < -params["z"] and -margin >= params.get("min_drop", 0)
        text = f"mean confidence {value:.3f} vs {baseline.center:.3f} expected"
    if not fired:
        return None
    # the value the hour had to cross: z standard deviations above (or below) the baseline
    threshold = baseline.center + (params["z"] if z > 0 else -params["z"]) * baseline.spread
    return _hour_alert(rule, row, threshold, baseline, baseline.kind,
                       f"{text} (z = {z:+.1f}, {baseline.kind})", z)  # fmt: skip


def _hour_alert(rule, row, threshold, baseline, kind, message, z=None) -> Alert:
    version = None if row["model_version"] == "all" else row["model_version"]
    return Alert(
        rule=rule, model=row["model"], model_version=version, metric=row["metric"],
        period_start=row["hour"], period_grain="hour", value=float(row["metric_value"]),
        threshold=float(threshold), baseline_kind=kind,
        baseline_value=None if baseline is None else float(baseline.center),
        baseline_spread=None if baseline is None else float(baseline.spread),
        z_score=None if z is None else float(z), message=message,
        details={"sample_size": int(row["sample_size"]), "history_days": row["history_days"]},
    )  # fmt: skip


def drift_alerts(con: duckdb.DuckDBPyConnection, rules: Rules) -> list[Alert]:
    """One alert per model version and day with any feature (or output) at the drift status."""
    alerts = []
    for row in _rows(con, """
        select model, model_version, day, max(psi) as psi, any_value(psi_drift_threshold) as limit,
               bool_or(uses_fallback_reference) as fallback,
               string_agg(feature || ' (PSI ' || round(psi, 3) || ')', ', ' order by psi desc)
                   filter (where status = 'drift') as features
        from mart_drift_daily group by all order by all
    """):  # fmt: skip
        params = rules.rule("drift", row["model"])
        if params is None or not row["features"]:
            continue
        alerts.append(Alert(
            rule="drift", model=row["model"], model_version=row["model_version"], metric="psi",
            period_start=datetime.combine(row["day"], datetime.min.time()), period_grain="day",
            value=float(row["psi"]), threshold=float(row["limit"]),
            baseline_kind="fallback_reference" if row["fallback"] else "training_reference",
            message=f"drift against the training reference: {row['features']}",
            severity="critical", details={"features": row["features"]},
        ))  # fmt: skip
    return alerts


def anomaly_alerts(con: duckdb.DuckDBPyConnection, rules: Rules) -> list[Alert]:
    """Days whose share of anomalous sampled inputs exceeds the rule's ``max_share``."""
    alerts = []
    for row in _rows(con, "select * from mart_input_anomalies_daily order by all"):
        params = rules.rule("input_anomaly", row["model"])
        if params is None or row["scored_events"] < params.get("min_scored", 0):
            continue
        if row["anomalous_share"] <= params["max_share"]:
            continue
        alerts.append(Alert(
            rule="input_anomaly", model=row["model"], model_version=row["model_version"],
            metric="anomalous_share",
            period_start=datetime.combine(row["day"], datetime.min.time()), period_grain="day",
            value=float(row["anomalous_share"]), threshold=float(params["max_share"]),
            baseline_kind="training_reference", baseline_value=float(row["expected_share"]),
            message=(f"{row['anomalous_share']:.1%} of {row['scored_events']} sampled inputs "
                     f"anomalous (isolation forest; {row['expected_share']:.0%} expected)"),
            severity="critical", details={"scored_events": int(row["scored_events"])},
        ))  # fmt: skip
    return alerts


#: Absolute floors of the performance_below rule: parameter → (column, fires when below).
PERFORMANCE_FLOORS = {
    "min_accuracy": ("accuracy", True),
    "min_f1_macro": ("f1_macro", True),
    "max_mae": ("mae", False),
}
STATUS_RANK = {"stable": 0, "warning": 1, "drift": 2}


def performance_alerts(con: duckdb.DuckDBPyConnection, rules: Rules) -> list[Alert]:
    """A version and prediction day whose labelled quality fell below its training-time figure
    (concept-drift status at or above ``status``) or below an absolute floor of the model's."""
    alerts = []
    for row in _rows(con, "select * from mart_model_performance_daily order by all"):
        params = rules.rule("performance_below", row["model"])
        if params is None or row["labelled_predictions"] < params.get("min_labels", 0):
            continue
        metric = "mae" if row["task"] == "regression" else "accuracy"
        value, threshold, why = row[metric], None, None
        wanted = STATUS_RANK.get(params.get("status", "drift"), 2)
        if STATUS_RANK.get(row["concept_drift_status"], -1) >= wanted:
            training = row[f"training_{metric}"]
            tolerance = row["drift_tolerance" if wanted == 2 else "warning_tolerance"]
            threshold = (training - tolerance if metric == "accuracy"
                         else training * (1 + tolerance))  # fmt: skip
            why = f"{row['concept_drift_status']} against training {metric} {training:.3f}"
        else:
            for name, (column, below) in PERFORMANCE_FLOORS.items():
                limit, got = params.get(name), row[column]
                if (
                    limit is not None
                    and got is not None
                    and (got < limit if below else got > limit)
                ):
                    metric, value, threshold = column, got, float(limit)
                    why = f"{'under' if below else 'over'} the floor of {limit}"
                    break
        if why is None or value is None:
            continue
        alerts.append(Alert(
            rule="performance_below", model=row["model"], model_version=row["model_version"],
            metric=metric,
            period_start=datetime.combine(row["day"], datetime.min.time()), period_grain="day",
            value=float(value), threshold=float(threshold),
            baseline_kind="training_reference",
            baseline_value=None if row[f"training_{metric}"] is None
            else float(row[f"training_{metric}"]),
            message=(f"{metric} {value:.3f} on {row['labelled_predictions']} labelled predictions "
                     f"({row['label_coverage']:.0%} of the day): {why}"),
            severity="critical", known_at=row["newest_labeled_at"],
            details={"labelled_predictions": int(row["labelled_predictions"]),
                     "label_coverage": float(row["label_coverage"]),
                     "concept_drift_status": row["concept_drift_status"]},
        ))  # fmt: skip
    return alerts


def fairness_alerts(con: duckdb.DuckDBPyConnection, rules: Rules) -> list[Alert]:
    """One alert per version and day with a segment (enough labels) whose ratio to the best
    segment of its feature is under the rule's ``floor``; too few labels never fire."""
    alerts = []
    rows = _rows(con, "select * from mart_fairness_daily order by model, model_version, day, "
                      "segment_feature, segment")  # fmt: skip
    known_at = {
        (r["model"], r["model_version"], r["day"]): r["newest_labeled_at"]
        for r in _rows(con, "select model, model_version, day, newest_labeled_at "
                            "from mart_model_performance_daily")
    } if "mart_model_performance_daily" in _tables(con) else {}  # fmt: skip
    by_day: dict[tuple, list[tuple[str, dict, float]]] = {}
    for row in rows:
        params = rules.rule("fairness_ratio", row["model"])
        if params is None:
            continue
        for metric in params.get("metrics") or ["accuracy_ratio"]:
            ratio = row.get(metric)
            if ratio is not None and ratio < params["floor"]:
                key = (row["model"], row["model_version"], row["day"])
                by_day.setdefault(key, []).append((metric, row, float(ratio)))
    for (model, version, day), hits in by_day.items():
        params = rules.rule("fairness_ratio", model)
        metric, worst, ratio = min(hits, key=lambda h: h[2])
        names = ", ".join(f"{r['segment_feature']}={r['segment']} ({m} {x:.2f})"
                          for m, r, x in hits)  # fmt: skip
        alerts.append(Alert(
            rule="fairness_ratio", model=model, model_version=version, metric=metric,
            period_start=datetime.combine(day, datetime.min.time()), period_grain="day",
            value=ratio, threshold=float(params["floor"]), baseline_kind="fixed_limit",
            baseline_value=1.0, known_at=known_at.get((model, version, day)),
            message=f"segments under {params['floor']:.0%} of the best segment: {names}",
            details={"segments": [{"feature": r["segment_feature"], "segment": r["segment"],
                                   "metric": m, "ratio": x,
                                   "labelled_predictions": int(r["labelled_predictions"])}
                                  for m, r, x in hits]},
        ))  # fmt: skip
    return alerts


def stale_alerts(con: duckdb.DuckDBPyConnection, rules: Rules, as_of: datetime) -> list[Alert]:
    """A model whose newest event is older than ``max_age_hours`` at ``as_of`` (naive UTC).

    Keyed by the newest event's hour: one alert per stale episode, not one per run.
    """
    alerts = []
    for row in _rows(con, "select model, max(hour) + interval 1 hour as newest "
                          "from mart_inference_hourly group by model order by model"):  # fmt: skip
        params = rules.rule("stale_data", row["model"])
        if params is None:
            continue
        age_h = (as_of - row["newest"]) / timedelta(hours=1)
        if age_h <= params["max_age_hours"]:
            continue
        alerts.append(Alert(
            rule="stale_data", model=row["model"], model_version=None, metric="data_age_hours",
            period_start=row["newest"] - timedelta(hours=1), period_grain="hour",
            value=round(age_h, 2), threshold=float(params["max_age_hours"]),
            baseline_kind="fixed_limit",
            message=f"no events for {age_h:.1f} h (until {row['newest']})",
            current=True,
        ))  # fmt: skip
    return alerts


def junk_alerts(ops: duckdb.DuckDBPyConnection, rules: Rules) -> list[Alert]:
    """Runs that published with junk: quarantined lines naming no valid model, which the gate
    lets through with a warning (suite ``junk``, check ``junk_lines``) and says so here."""
    params = rules.rule("junk_lines_published", None)
    if params is None or not {"pipeline_runs", "mart_data_quality"} <= _tables(ops):
        return []
    alerts = []
    for row in _rows(ops, """
        select runs.run_id, runs.started_at, quality.details
        from pipeline_runs as runs
        inner join mart_data_quality as quality on runs.run_id = quality.run_id
        where runs.outcome = 'published' and quality.suite = 'junk'
            and quality."column" = 'junk_lines' and not quality.success
        order by runs.started_at, runs.run_id
    """):  # fmt: skip
        objects = _samples(row["details"])
        total = objects[0].get("junk_lines_in_run") if objects else None
        if total is None or total < params.get("min_lines", 1):
            continue
        named = ", ".join(
            f"{o['object_key']} ({o['junk_lines']}, mostly {o['top_reason']})" for o in objects[:5]
        )
        alerts.append(Alert(
            rule="junk_lines_published", model=None, model_version=None, metric="junk_lines",
            period_start=row["started_at"], period_grain="run", value=float(total),
            threshold=float(params.get("min_lines", 1)), baseline_kind="fixed_limit",
            message=(f"published with {total} quarantined lines that name no valid model "
                     f"(run {row['run_id']}): {named}"),
            details={"run_id": row["run_id"], "objects": [o["object_key"] for o in objects]},
        ))  # fmt: skip
    return alerts


def _samples(details: str | None) -> list[dict]:
    try:
        return json.loads(details or "[]")
    except ValueError:  # evidence clipped to its size limit
        return []


def _ops_beside(con: duckdb.DuckDBPyConnection) -> Path | None:
    """ops.duckdb sits beside serving.duckdb in the data dir (Settings.ops_path)."""
    (path,) = con.execute(
        "select path from duckdb_databases() where database_name = current_database()"
    ).fetchone()
    ops = Path(path).with_name("ops.duckdb") if path else None
    return ops if ops is not None and ops.is_file() else None


def evaluate(
    con: duckdb.DuckDBPyConnection, rules: Rules, as_of: datetime, ops_path: Path | None = None
) -> list[Alert]:
    """Every rule over whatever marts the published file holds, and the ops file's records
    (``ops_path``, default: beside the published file)."""
    alerts = _mart_alerts(con, rules, as_of)
    ops_path = ops_path or _ops_beside(con)
    if ops_path is not None:
        try:
            with duckdb.connect(str(ops_path), read_only=True) as ops:
                alerts += junk_alerts(ops, rules)
        except duckdb.Error as error:  # the marts' alerts must still go out
            log.warning("alerts: ops records at %s not readable: %s", ops_path, error)
    return alerts


def _mart_alerts(con: duckdb.DuckDBPyConnection, rules: Rules, as_of: datetime) -> list[Alert]:
    tables = _tables(con)
    alerts: list[Alert] = []
    if "mart_anomalies_hourly" in tables:
        alerts += hourly_alerts(con, rules)
    if "mart_drift_daily" in tables:
        alerts += drift_alerts(con, rules)
    if "mart_input_anomalies_daily" in tables:
        alerts += anomaly_alerts(con, rules)
    if "mart_inference_hourly" in tables:
        alerts += stale_alerts(con, rules, as_of)
    if "mart_model_performance_daily" in tables:
        alerts += performance_alerts(con, rules)
    if "mart_fairness_daily" in tables:
        alerts += fairness_alerts(con, rules)
    return alerts

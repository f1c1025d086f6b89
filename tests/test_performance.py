"""Ground truth, concept drift and fairness slices (docs/labels.md) against scikit-learn.

The expected figures never come from the marts: predictions are read from bronze's event files
(de-duplicated by event_id, first arrival wins, as the contract says), labels from the label
objects' JSON lines under ``labels/`` with ``json``, joined by event_id (else request_id) here,
and scored with scikit-learn (accuracy_score, precision_recall_fscore_support,
mean_absolute_error, mean_squared_error) and a plain 10-bin ECE.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
)

from conftest import settings_for
from inferwatch import pipeline
from inferwatch.lake import Lake
from inferwatch.transform import run_dbt

TOL = 1e-9


# ---------------------------------------------------------------- the plain computation
def label_text(value) -> str:
    """A label as bronze spells a prediction: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def read_labels(lake: Path) -> pd.DataFrame:
    """Every label line that keeps the contract (the simulator breaks a few on purpose)."""
    rows = []
    for path in sorted((lake / "labels").rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                obj = json.loads(line)
                datetime.fromisoformat(obj["labeled_at"].replace("Z", "+00:00"))
                label = label_text(obj["label"])
            except (ValueError, KeyError):
                continue
            rows.append(
                {
                    "event_id": obj.get("event_id"),
                    "request_id": obj.get("request_id"),
                    "label": label,
                    "labeled_at": obj["labeled_at"],
                }
            )
    return pd.DataFrame(rows, columns=["event_id", "request_id", "label", "labeled_at"])


def read_predictions(lake: Path) -> pd.DataFrame:
    """Accepted events from bronze, one per event_id (first arrival), with a prediction."""
    events = duckdb.sql(f"""
        select event_id, request_id, model, model_version, cast(event_ts as date) as day,
               prediction, confidence
        from read_parquet('{lake}/bronze/events/*/*.parquet')
        qualify row_number() over (
            partition by event_id order by ingested_at, object_key, line_number) = 1
    """).df()
    return events[events["prediction"].notna()]


def joined(lake: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    predictions, labels = read_predictions(lake), read_labels(lake)
    labels = labels.sort_values("labeled_at")
    by_event = labels[labels["event_id"].notna()].drop_duplicates("event_id", keep="last")
    by_request = labels[labels["event_id"].isna()].drop_duplicates("request_id", keep="last")
    matched = (
        pd.concat(
            [
                predictions.merge(by_event[["event_id", "label", "labeled_at"]], on="event_id"),
                predictions.merge(
                    by_request[["request_id", "label", "labeled_at"]], on="request_id"
                ),
            ]
        )
        .sort_values("labeled_at")
        .drop_duplicates("event_id", keep="last")
    )
    return predictions, matched


def ece(correct: np.ndarray, confidence: np.ndarray, bins: int = 10) -> float:
    which = np.minimum(np.floor(confidence * bins), bins - 1)
    total = 0.0
    for b in np.unique(which):
        sel = which == b
        total += sel.sum() * abs(correct[sel].mean() - confidence[sel].mean())
    return total / len(correct)


def expected_daily(predictions: pd.DataFrame, matched: pd.DataFrame) -> pd.DataFrame:
    counts = predictions.groupby(["model", "model_version", "day"]).size()
    rows = []
    for (model, version, day), group in matched.groupby(["model", "model_version", "day"]):
        y_true, y_pred = group["label"].to_numpy(), group["prediction"].to_numpy()
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, average="macro", zero_division=0
        )
        rated = group[group["confidence"].notna()]
        rows.append(
            {
                "model": model,
                "model_version": version,
                "day": day,
                "predictions": int(counts[model, version, day]),
                "labelled": len(group),
                "accuracy": accuracy_score(y_true, y_pred),
                "precision_macro": precision,
                "recall_macro": recall,
                "f1_macro": f1,
                "ece": ece(
                    (rated["label"] == rated["prediction"]).to_numpy(),
                    rated["confidence"].to_numpy(),
                ),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the session lake
@pytest.fixture(scope="module")
def expected(pipeline_run, sim_lake):
    lake, _ = sim_lake
    predictions, matched = joined(lake)
    return predictions, matched, expected_daily(predictions, matched)


@pytest.fixture(scope="module")
def performance(pipeline_run) -> pd.DataFrame:
    with pipeline_run.serving() as con:
        return con.sql("select * from mart_model_performance_daily").df()


def test_daily_metrics_equal_scikit_learn(expected, performance):
    predictions, matched, want = expected
    assert len(matched) > 20_000  # the simulator labels churn and fraud predictions
    got = performance[performance["labelled_predictions"] > 0]
    merged = want.merge(got, on=["model", "model_version", "day"], how="outer", indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"]
    assert (merged["labelled"] == merged["labelled_predictions"]).all()
    assert (merged["predictions_x"] == merged["predictions_y"]).all()
    for column in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "ece"):
        assert np.allclose(merged[f"{column}_x"], merged[f"{column}_y"], rtol=0, atol=TOL), column
    # every predicting version and day has a row, labelled or not (coverage 0 says so)
    days = predictions.groupby(["model", "model_version", "day"]).size()
    assert len(performance) == len(days)
    keys = zip(performance["model"], performance["model_version"], performance["day"], strict=True)
    coverage = dict(zip(keys, performance["label_coverage"], strict=True))
    labelled = matched.groupby(["model", "model_version", "day"]).size()
    for key, total in days.items():
        assert coverage[key] == pytest.approx(labelled.get(key, 0) / total, abs=TOL), key
    overall = performance.groupby("model")[["labelled_predictions", "predictions"]].sum()
    print(
        "\nlabel coverage on the session lake:\n"
        + (overall["labelled_predictions"] / overall["predictions"]).round(3).to_string()
    )


def test_per_class_metrics_equal_scikit_learn(expected, pipeline_run):
    _, matched, _ = expected
    with pipeline_run.serving() as con:
        got = con.sql("select * from mart_model_performance_class_daily").df()
    checked = 0
    for (model, version, day), group in matched.groupby(["model", "model_version", "day"]):
        classes = sorted(set(group["label"]) | set(group["prediction"]))
        precision, recall, f1, support = precision_recall_fscore_support(
            group["label"], group["prediction"], labels=classes, zero_division=0
        )
        rows = got[
            (got["model"] == model) & (got["model_version"] == version) & (got["day"] == day)
        ].set_index("class_label")
        assert sorted(rows.index) == classes
        for i, cls in enumerate(classes):
            assert rows.loc[cls, "support"] == support[i]
            for column, value in (("precision", precision), ("recall", recall), ("f1", f1)):
                assert rows.loc[cls, column] == pytest.approx(value[i], abs=TOL), (cls, column)
        checked += 1
    assert checked >= 20


def test_concept_drift_on_the_drifted_version_and_days_only(pipeline_run, performance):
    truth = json.loads((pipeline_run.truth_dir / "summary.json").read_text())["concept_drift"]
    first = datetime.fromisoformat(truth["start"].replace("Z", "+00:00")).date()
    end = datetime.fromisoformat(truth["end"].replace("Z", "+00:00")).date()
    drifted_days = {first + timedelta(days=i) for i in range((end - first).days)}
    assert len(drifted_days) >= 3
    status = {
        (
            r.model,
            r.model_version,
            r.day.date() if hasattr(r.day, "date") else r.day,
        ): r.concept_drift_status
        for r in performance.itertuples()
    }
    flagged = {key for key, value in status.items() if value == "drift"}
    target = (truth["model"], truth["model_version"])
    assert flagged == {(*target, day) for day in drifted_days}
    # the version's other days with enough labels are stable, and no other version warns
    others = {v for (m, mv, d), v in status.items() if (m, mv) == target and d not in drifted_days}
    assert others <= {"stable", "insufficient_labels"} and "stable" in others
    assert not {k for k, v in status.items() if v == "warning"}
    # the inputs did not change: input drift stays stable on those days
    with pipeline_run.serving() as con:
        input_status = con.sql(
            "select distinct status from mart_drift_daily where model = ? and model_version = ?"
            " and day between ? and ?",
            params=[*target, min(drifted_days), max(drifted_days)],
        ).fetchall()
    assert input_status == [("stable",)]


def test_fairness_slices_mark_small_segments_and_show_the_gap(pipeline_run, sim_lake, expected):
    """Per-segment accuracy equals scikit-learn's; the simulated under-served country is under
    the 0.8 floor; segments with too few labels are kept and marked, not hidden."""
    _, matched, _ = expected
    gap = json.loads((pipeline_run.truth_dir / "summary.json").read_text())["fairness_gap"]
    with pipeline_run.serving() as con:
        got = con.sql("select * from mart_fairness_daily").df()
    assert (~got["has_enough_labels"]).any() and got["accuracy_ratio"][
        ~got["has_enough_labels"]
    ].isna().all()
    fraud = matched[matched["model"] == gap["model"]]
    # the segment of each labelled prediction, from the raw input_features in bronze
    lake, _ = sim_lake
    features = duckdb.sql(f"""
        select distinct event_id, input_features ->> 'country' as segment
        from read_parquet('{lake}/bronze/events/*/*.parquet') where model = '{gap["model"]}'
    """).df()
    fraud = fraud.merge(features, on="event_id")
    for (day, segment), group in fraud.groupby(["day", "segment"]):
        row = got[
            (got["model"] == gap["model"])
            & (got["day"] == day)
            & (got["segment_feature"] == "country")
            & (got["segment"] == segment)
        ]
        assert len(row) == 1
        assert row["labelled_predictions"].iloc[0] == len(group)
        assert row["accuracy"].iloc[0] == pytest.approx(
            accuracy_score(group["label"], group["prediction"]), abs=TOL
        )
    flagged = got[got["below_floor"]]
    assert set(flagged["segment"]) == {gap["segment"]}
    summary = (
        got[got["has_enough_labels"]]
        .groupby(["model", "segment_feature", "segment"])["accuracy_ratio"]
        .median()
    )
    print("\nmedian daily accuracy ratio to the best segment:\n" + summary.round(3).to_string())


# ---------------------------------------------------------------- late labels, a small lake
DAYS = ("2025-06-01", "2025-06-02", "2025-06-03")


def _event(model: str, day: str, i: int, prediction, confidence=None) -> str:
    event = {
        "event_id": f"{model}-{day}-{i}",
        "timestamp": f"{day}T{10 + i % 8:02d}:00:00Z",
        "model": model,
        "model_version": "v1",
        "request_id": f"req-{model}-{day}-{i}",
        "prediction": prediction,
        "input_features": {"country": "DE" if i % 3 else "FR"},
    }
    if confidence is not None:
        event["confidence"] = confidence
    return json.dumps(event)


def _label(model: str, day: str, i: int, label, labeled_at: str, by_request: bool = False) -> str:
    key = (
        {"request_id": f"req-{model}-{day}-{i}"}
        if by_request
        else {"event_id": f"{model}-{day}-{i}"}
    )
    return json.dumps({**key, "label": label, "labeled_at": labeled_at, "source": "test"})


def _truth(model: str, i: int):
    if model == "churn_small":
        return "churn" if i % 4 == 0 else "stay"
    return 30.0 + (i % 5) * 2.0


def _prediction(model: str, i: int):
    if model == "churn_small":
        return "churn" if i % 3 == 0 else "stay"
    return 30.0 + (i % 7)


def _write_small_lake(lake: Path) -> None:
    for day in DAYS:
        for model in ("churn_small", "delivery_eta"):
            lines = [
                _event(
                    model,
                    day,
                    i,
                    _prediction(model, i),
                    0.55 + (i % 9) / 20 if model == "churn_small" else None,
                )
                for i in range(40)
            ]
            path = lake / f"raw/{model}/{day}/part-0.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")
    (lake / "registry/delivery_eta").mkdir(parents=True)
    (lake / "registry/delivery_eta/v1.json").write_text(
        json.dumps({"model": "delivery_eta", "version": "v1", "training_metrics": {"mae": 3.0}})
    )


def _write_labels(lake: Path, key: str, rows: list[str]) -> None:
    path = lake / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


#: What the pipeline's transform step builds that these marts need (the whole project would
#: double the test's time for models it does not read).
SELECTED = (
    "+mart_model_performance_daily +mart_model_performance_class_daily +mart_fairness_daily "
    "+mart_label_ingestion +fct_label_quarantine"
)


def _build(settings, lake: Lake) -> None:
    objects = pipeline.discover(lake)
    pipeline.ingest(settings, lake, objects, "late-labels")
    outcome = run_dbt(settings, lake, "build", "--select", *SELECTED.split())
    assert outcome.success, outcome.failures


def _marts(settings) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return {
            table: con.sql(f"select * from {table} order by all").df()
            for table in ("mart_model_performance_daily", "mart_fairness_daily")
        }


def test_late_labels_rebuild_only_their_prediction_days(tmp_path):
    root = tmp_path / "lake"
    _write_small_lake(root)
    models = ("churn_small", "delivery_eta")
    # first delivery: every label of day 1, half of day 2 (one by request_id)
    first = [
        _label(m, DAYS[0], i, _truth(m, i), "2025-06-04T00:00:00Z", by_request=i == 7)
        for m in models
        for i in range(40)
    ]
    first += [
        _label(m, DAYS[1], i, _truth(m, i), "2025-06-05T00:00:00Z")
        for m in models
        for i in range(20)
    ]
    _write_labels(root, "labels/2025/06/05/part-0.jsonl", first)
    settings = settings_for(str(root), tmp_path / "state")
    lake = Lake(str(root))
    _build(settings, lake)
    before = _marts(settings)

    # weeks later: the rest of day 2, one line without a label, one comment with an e-mail
    late = [
        _label(m, DAYS[1], i, _truth(m, i), "2025-06-25T00:00:00Z")
        for m in models
        for i in range(20, 40)
    ]
    late.append(json.dumps({"event_id": "churn_small-2025-06-03-1", "labeled_at": "2025-06-25"}))
    late.append(
        json.dumps(
            {
                "event_id": "churn_small-2025-06-03-2",
                "label": "stay",
                "labeled_at": "2025-06-25T00:00:00Z",
                "comment": "customer jane.doe@example.com confirmed",
            }
        )
    )
    _write_labels(root, "labels/2025/06/25/part-0.jsonl", late)
    _build(settings, lake)
    after = _marts(settings)

    for table in before:
        old, new = before[table], after[table]
        for day in (DAYS[0],):
            same = old[old["day"] == pd.Timestamp(day)].reset_index(drop=True)
            again = new[new["day"] == pd.Timestamp(day)].reset_index(drop=True)
            # not rebuilt: every figure and the watermark it was built with are unchanged
            pd.testing.assert_frame_equal(same, again, check_dtype=False)
        changed = new[new["day"].isin([pd.Timestamp(DAYS[1]), pd.Timestamp(DAYS[2])])]
        assert (changed["source_watermark"] > old["source_watermark"].max()).all(), table

    perf = after["mart_model_performance_daily"].set_index(["model", "day"])
    churn2, eta2 = (
        perf.loc[("churn_small", pd.Timestamp(DAYS[1]))],
        perf.loc[("delivery_eta", pd.Timestamp(DAYS[1]))],
    )
    assert churn2["labelled_predictions"] == 40 and churn2["label_coverage"] == 1.0
    assert perf.loc[("churn_small", pd.Timestamp(DAYS[2])), "labelled_predictions"] == 1
    y_true = [_truth("churn_small", i) for i in range(40)]
    y_pred = [_prediction("churn_small", i) for i in range(40)]
    assert churn2["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=TOL)
    assert churn2["f1_macro"] == pytest.approx(
        precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)[2],
        abs=TOL,
    )
    e_true = [_truth("delivery_eta", i) for i in range(40)]
    e_pred = [_prediction("delivery_eta", i) for i in range(40)]
    assert eta2["task"] == "regression" and pd.isna(eta2["accuracy"])
    assert eta2["mae"] == pytest.approx(mean_absolute_error(e_true, e_pred), abs=TOL)
    assert eta2["rmse"] == pytest.approx(math.sqrt(mean_squared_error(e_true, e_pred)), abs=TOL)
    assert eta2["training_mae"] == 3.0
    day1 = perf.loc[("delivery_eta", pd.Timestamp(DAYS[0]))]
    assert day1["labelled_predictions"] == 40  # the label by request_id matched too

    # same manifest, quarantine and PII rules as the logs
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        quarantined = con.sql(
            "select object_key, line_number, reason from fct_label_quarantine"
        ).fetchall()
        ingestion = con.sql(
            "select object_key, lines_read, lines_loaded, lines_quarantined, "
            "reconciles from mart_label_ingestion order by 1"
        ).fetchall()
    assert quarantined == [("labels/2025/06/25/part-0.jsonl", 41, "missing field: label")]
    assert ingestion == [
        ("labels/2025/06/05/part-0.jsonl", 120, 120, 0, True),
        ("labels/2025/06/25/part-0.jsonl", 42, 41, 1, True),
    ]
    comments = duckdb.sql(
        f"select comment from read_parquet('{root}/bronze/labels/rows/*/*.parquet')"
        " where comment is not null"
    ).fetchall()
    assert comments == [("customer [redacted:email] confirmed",)]
    assert pipeline.discover(lake) == []  # a third run would find nothing new


def test_broken_label_lines_are_quarantined_with_a_reason(pipeline_run):
    truth = json.loads((pipeline_run.truth_dir / "summary.json").read_text())["labels"]
    reasons = {
        "missing_label": "missing field: label",
        "bad_labeled_at": "unparseable timestamp",
        "invalid_json": "invalid JSON",
    }
    expected = {(m["object_key"], m["line_number"], reasons[m["kind"]]) for m in truth["malformed"]}
    with pipeline_run.ops() as ops:
        got = set(
            ops.sql("select object_key, line_number, reason from fct_label_quarantine").fetchall()
        )
        objects, reconciled = ops.sql(
            "select count(*), bool_and(reconciles) from mart_label_ingestion"
        ).fetchone()
    assert got == expected and len(expected) >= 3
    assert objects == truth["objects"] and reconciled


def test_performance_and_fairness_alerts(pipeline_run):
    """performance_below fires on the concept-drift days of the drifted version only;
    fairness_ratio only for the under-served segment; both count their age from the labels."""
    from inferwatch.alerts.evaluate import evaluate
    from inferwatch.alerts.rules import load_rules

    summary = json.loads((pipeline_run.truth_dir / "summary.json").read_text())
    drift, gap = summary["concept_drift"], summary["fairness_gap"]
    rules = load_rules(pipeline_run.settings.alert_rules_path)
    with pipeline_run.serving() as con:
        alerts = evaluate(con, rules, datetime(2025, 5, 15))
    below = [a for a in alerts if a.rule == "performance_below"]
    first = datetime.fromisoformat(drift["start"].replace("Z", "+00:00")).replace(tzinfo=None)
    end = datetime.fromisoformat(drift["end"].replace("Z", "+00:00")).replace(tzinfo=None)
    assert {(a.model, a.model_version) for a in below} == {(drift["model"], drift["model_version"])}
    assert {a.period_start for a in below} == {
        first + timedelta(days=i) for i in range((end - first).days)
    }
    assert all(a.value < a.threshold < a.baseline_value for a in below)
    assert all(a.known_at > a.period_start + timedelta(days=1) for a in below)
    unfair = [a for a in alerts if a.rule == "fairness_ratio"]
    assert unfair and {a.model for a in unfair} == {gap["model"]}
    segments = {s["segment"] for a in unfair for s in a.details["segments"]}
    assert segments == {gap["segment"]}
    assert all(a.value < a.threshold == 0.8 for a in unfair)

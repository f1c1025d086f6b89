"""Input anomalies on the simulated two weeks: the isolation forest's scores in the lake,
the daily mart built from them, and the scoring's determinism (idempotent per day)."""

from __future__ import annotations

import io
import shutil

import pandas as pd
import pytest

from inferwatch.anomaly.forest import EXPECTED_SHARE, fit, read_reference
from inferwatch.anomaly.score import PREFIX, SAMPLE_SIZE, score_days, score_key
from inferwatch.lake import Lake


@pytest.fixture(scope="module")
def scores(pipeline_run) -> pd.DataFrame:
    lake = Lake(pipeline_run.settings.lake_url)
    frames = [pd.read_parquet(io.BytesIO(lake.read_bytes(info.key)))
              for info in lake.list(f"{PREFIX}/")]  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def test_mart_agrees_with_the_scores_in_the_lake(pipeline_run, scores):
    with pipeline_run.serving() as con:
        mart = con.sql("select * from mart_input_anomalies_daily").df()
    expected = (
        scores.groupby(["model", "model_version", "day"])
        .agg(scored=("event_id", "size"), share=("is_anomalous", "mean"),
             all_events=("day_events", "first"))
        .reset_index()
    )  # fmt: skip
    expected["day"] = pd.to_datetime(expected["day"])
    mart["day"] = pd.to_datetime(mart["day"])
    merged = mart.merge(expected, on=["model", "model_version", "day"], validate="one_to_one")
    assert len(merged) == len(mart) == len(expected) > 0
    assert (merged["scored_events"] == merged["scored"]).all()
    assert merged["anomalous_share"].to_numpy() == pytest.approx(merged["share"].to_numpy())
    # a bounded sample: all of a small day, SAMPLE_SIZE of a big one
    assert (merged["day_events"] == merged["all_events"]).all()
    assert (merged["scored_events"] == merged["day_events"].clip(upper=SAMPLE_SIZE)).all()
    assert scores["event_id"].is_unique


def test_threshold_flags_the_expected_share_of_the_reference(pipeline_run):
    lake = Lake(pipeline_run.settings.lake_url)
    reference = read_reference(lake, "fraud_detector", "v3")
    forest = fit(reference, "fraud_detector", "v3")
    share = (forest.score(reference) > forest.threshold).mean()
    assert share == pytest.approx(EXPECTED_SHARE, abs=0.002)


def test_drift_raises_the_anomalous_share(pipeline_run, scores):
    summary = pd.read_json(pipeline_run.truth_dir / "summary.json", typ="series")
    drift = next(i for i in summary["incidents"] if i["kind"] == "feature_drift")
    churn = scores[(scores["model"] == drift["model"]) & (scores["model_version"] == "v2")]
    after = pd.to_datetime(churn["day"]) >= pd.Timestamp(drift["start"][:10])
    before_share = churn.loc[~after, "is_anomalous"].mean()
    after_share = churn.loc[after, "is_anomalous"].mean()
    assert before_share < 0.02 and after_share > 2 * before_share


def test_scoring_a_day_again_gives_the_same_scores(pipeline_run, tmp_path):
    source = Lake(pipeline_run.settings.lake_url)
    copy = tmp_path / "lake"
    shutil.copytree(source.path("reference"), copy / "reference")
    lake = Lake(str(copy))
    day = "2025-05-03"
    summary = score_days(lake, pipeline_run.settings.warehouse_path, [day])
    assert summary["files"] >= 3  # every version with a reference, that day (plus unscored days)
    key = score_key("fraud_detector", "v3", day)
    again = pd.read_parquet(io.BytesIO(lake.read_bytes(key)))
    first = pd.read_parquet(io.BytesIO(source.read_bytes(key)))
    columns = ["event_id", "anomaly_score", "is_anomalous", "score_threshold"]
    pd.testing.assert_frame_equal(again[columns], first[columns])

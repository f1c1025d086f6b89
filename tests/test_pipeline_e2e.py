"""Simulator → `dag.test()` of the pipeline on a local lake → marts equal the simulator's truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def test_pipeline_run_succeeds(pipeline_run):
    assert pipeline_run.state == "success"
    assert pipeline_run.settings.serving_path.exists()
    assert pipeline_run.settings.ops_path.exists()


def _daily_from_facts(con) -> pd.DataFrame:
    return con.sql("""
        select model, model_version, strftime(event_day, '%Y-%m-%d') as day,
               count(*) as requests,
               count(*) filter (where status = 'error') as errors,
               quantile_cont(latency_ms, 0.95) as latency_p95_ms
        from fct_inferences group by all
    """).df()


def _joined(truth: pd.DataFrame, got: pd.DataFrame) -> pd.DataFrame:
    keys = ["model", "model_version", "day"]
    merged = truth.merge(got, on=keys, how="outer", suffixes=("_truth", "_got"), indicator=True)
    missing = merged[merged["_merge"] != "both"]
    assert missing.empty, f"groups only on one side:\n{missing[keys + ['_merge']]}"
    return merged


def test_daily_counts_from_facts_equal_truth(pipeline_run):
    truth = pipeline_run.truth("daily")
    with pipeline_run.serving() as con:
        got = _daily_from_facts(con)
    merged = _joined(truth, got)
    assert len(merged) >= 14 * 3  # two weeks × at least three model versions
    assert (merged["requests_truth"] == merged["requests_got"]).all(), merged[
        merged["requests_truth"] != merged["requests_got"]
    ]
    assert (merged["errors_truth"] == merged["errors_got"]).all()
    assert merged["requests_got"].sum() == truth["requests"].sum()


def test_daily_p95_latency_within_one_percent(pipeline_run):
    truth = pipeline_run.truth("daily")
    with pipeline_run.serving() as con:
        merged = _joined(truth, _daily_from_facts(con))
    relative = (merged["latency_p95_ms_got"] - merged["latency_p95_ms_truth"]).abs() / merged[
        "latency_p95_ms_truth"
    ]
    assert relative.max() <= 0.01, merged.loc[relative.idxmax()]


def test_daily_counts_from_hourly_mart_equal_truth(pipeline_run):
    truth = pipeline_run.truth("daily")
    with pipeline_run.serving() as con:
        got = con.sql("""
            select model, model_version, strftime(hour, '%Y-%m-%d') as day,
                   sum(requests)::bigint as requests, sum(errors)::bigint as errors
            from mart_inference_hourly group by all
        """).df()
    merged = _joined(truth[["model", "model_version", "day", "requests", "errors"]], got)
    assert (merged["requests_truth"] == merged["requests_got"]).all()
    assert (merged["errors_truth"] == merged["errors_got"]).all()


def test_hourly_mart_matches_truth_per_endpoint_and_hour(pipeline_run):
    truth = pipeline_run.truth("hourly")
    with pipeline_run.serving() as con:
        got = con.sql("""
            select model, model_version, endpoint, strftime(hour, '%Y-%m-%d %H:00:00') as hour,
                   requests, errors
            from mart_inference_hourly
        """).df()
    keys = ["model", "model_version", "endpoint", "hour"]
    merged = truth.merge(got, on=keys, how="outer", suffixes=("_truth", "_got"))
    assert merged[["requests_truth", "requests_got"]].notna().all().all()
    assert (merged["requests_truth"] == merged["requests_got"]).all()
    assert (merged["errors_truth"] == merged["errors_got"]).all()


def test_every_malformed_line_is_quarantined_with_a_reason(pipeline_run):
    truth = pipeline_run.truth("malformed")
    assert len(truth) > 0
    with pipeline_run.ops() as con:
        got = con.sql("select object_key, line_number, reason from fct_quarantine").df()
    assert got["reason"].notna().all() and (got["reason"].str.len() > 0).all()
    expected = set(zip(truth["object_key"], truth["line_number"], strict=True))
    actual = set(zip(got["object_key"], got["line_number"], strict=True))
    assert actual == expected


@pytest.mark.parametrize(
    "column,truth_column",
    [
        ("lines_read", "lines_read"),
        ("lines_blank", "lines_blank"),
        ("lines_quarantined", "lines_malformed"),
        ("lines_loaded", "lines_valid"),
    ],
)
def test_every_object_reconciles(pipeline_run, column, truth_column):
    truth = pipeline_run.truth("objects")
    with pipeline_run.ops() as con:
        got = con.sql("select * from mart_ingestion").df()
    assert (
        got["lines_read"] == got["lines_loaded"] + got["lines_quarantined"] + got["lines_blank"]
    ).all()
    assert got["reconciles"].all()
    merged = truth.add_prefix("truth_").merge(
        got, left_on="truth_object_key", right_on="object_key", how="outer", indicator=True
    )
    assert (merged["_merge"] == "both").all()
    assert np.array_equal(merged[column].to_numpy(), merged[f"truth_{truth_column}"].to_numpy())


def test_duplicates_across_objects_are_counted_once(pipeline_run):
    with pipeline_run.ops() as con:
        duplicates = con.sql("select sum(lines_duplicate) from mart_ingestion").fetchone()[0]
    with pipeline_run.serving() as con:
        total, distinct = con.sql(
            "select count(*), count(distinct event_id) from fct_inferences"
        ).fetchone()
    truth = pipeline_run.truth("objects")
    assert total == distinct
    assert duplicates == truth["lines_valid"].sum() - total
    assert duplicates > 0  # the simulator writes events twice on purpose


def test_no_raw_pii_reaches_bronze_facts(pipeline_run):
    with pipeline_run.serving() as con:
        leaked = con.sql("""
            select count(*) from fct_inferences
            where regexp_matches(coalesce(input_features, '') || coalesce(error_message, ''),
                                 '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}')
        """).fetchone()[0]
        hashed = con.sql(
            "select count(*) filter (where regexp_full_match(user_hash, '[0-9a-f]{64}')), "
            "count(user_hash) from fct_inferences"
        ).fetchone()
    assert leaked == 0
    assert hashed[1] > 0 and hashed[0] == hashed[1]

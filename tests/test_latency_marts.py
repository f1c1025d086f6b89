"""Mergeable latency buckets: percentiles for any range within the documented 1 % bound."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import numpy as np
import pytest

from raw_reader import reread

RELATIVE_ERROR = 0.01  # var('latency_relative_error') in dbt_project.yml


@pytest.fixture(scope="module")
def latencies(sim_lake) -> dict[tuple[str, str, date], list[float]]:
    """Latencies per model, version and UTC day, from a plain re-read of the raw files."""
    grouped: dict[tuple[str, str, date], list[float]] = defaultdict(list)
    for event in reread(sim_lake[0]).events.values():
        latency = event["obj"].get("latency_ms")
        if latency is not None:
            grouped[event["name"], event["version"], event["when"].date()].append(float(latency))
    return grouped


def relative(got: float, exact: float) -> float:
    return abs(got - exact) / exact


def test_daily_percentiles_from_buckets_within_bound(pipeline_run, latencies):
    with pipeline_run.serving() as con:
        rows = con.sql(
            "select model, model_version, event_day, events, "
            "latency_p50_ms, latency_p95_ms, latency_p99_ms from mart_latency_daily"
        ).fetchall()
    assert len(rows) == len(latencies)
    worst = 0.0
    for model, version, day, events, *percentiles in rows:
        values = np.asarray(latencies[model, version, day])
        assert events == len(values)
        for q, got in zip((50, 95, 99), percentiles, strict=True):
            # the mart rounds to 0.001 ms; allow that on top of the bucket bound
            error = relative(got, float(np.percentile(values, q)))
            worst = max(worst, error)
            assert error <= RELATIVE_ERROR + 0.0005 / got, (model, version, day, q)
    print(f"largest relative deviation of a daily percentile: {worst:.5f}")


@pytest.mark.parametrize("first,last", [("2025-05-01", "2025-05-15"), ("2025-05-03", "2025-05-05")])
def test_any_range_and_grouping_via_latency_quantile(pipeline_run, latencies, first, last):
    """What a Superset metric does: merge buckets over an arbitrary range, per model."""
    with pipeline_run.serving() as con:
        rows = con.execute(
            """
            select model,
                   latency_quantile(list(struct_pack(bucket := bucket, events := events)), 0.95),
                   latency_quantile(list(struct_pack(bucket := bucket, events := events)), 0.99)
            from mart_latency_buckets_hourly
            where event_day between ? and ?
            group by model
            """,
            [first, last],
        ).fetchall()
    lo, hi = date.fromisoformat(first), date.fromisoformat(last)
    assert len(rows) >= 3
    for model, p95, p99 in rows:
        values = np.concatenate(
            [v for (m, _, d), v in latencies.items() if m == model and lo <= d <= hi]
        )
        assert relative(p95, float(np.percentile(values, 95))) <= RELATIVE_ERROR
        assert relative(p99, float(np.percentile(values, 99))) <= RELATIVE_ERROR


def test_bucket_counts_add_up_to_the_events(pipeline_run, latencies):
    with pipeline_run.serving() as con:
        per_model = dict(
            con.sql(
                "select model, sum(events)::bigint from mart_latency_buckets_hourly group by model"
            ).fetchall()
        )
    expected: dict[str, int] = defaultdict(int)
    for (model, _, _), values in latencies.items():
        expected[model] += len(values)
    assert per_model == dict(expected)

"""Re-runs change nothing; late objects (an earlier day too) are picked up; duplicates count once.

A small hand-written lake, so that every expected figure is plain to see.
"""

from __future__ import annotations

import gzip
import json
import os

import pytest

from conftest import run_pipeline, settings_for
from inferwatch.lake import Lake

ARTICLE_LINE = (
    '{"timestamp": "2025-05-20T14:52:00Z", "model": "customer_churn_v2", "input_features": '
    '{"age": 35, "plan": "premium"}, "prediction": "churn", "confidence": 0.87, "latency_ms": 122}'
)
MARTS = ("fct_inferences", "mart_inference_hourly", "mart_ingestion", "fct_quarantine")


def event(event_id: str, ts: str, *, status: str = "ok", latency: float = 50.0) -> str:
    return json.dumps({
        "event_id": event_id, "timestamp": ts, "model": "fraud_detector", "model_version": "v3",
        "endpoint": "/v1/fraud/score", "latency_ms": latency, "confidence": 0.9, "status": status,
    })  # fmt: skip


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("incremental")
    lake = Lake(str(root / "lake"))
    lake.write_bytes(
        "raw/a/2025/05/20/part-0.jsonl.gz",
        gzip.compress("\n".join([
            ARTICLE_LINE,
            event("dup-1", "2025-05-20T10:00:00Z"),
            event("a-2", "2025-05-20T11:00:00Z", status="error"),
            "{not json",
        ]).encode() + b"\n"),
    )  # fmt: skip
    lake.write_bytes(
        "raw/b/2025/05/21/part-0.jsonl",
        "\r\n".join([
            event("dup-1", "2025-05-20T10:00:00Z"),  # the same event, delivered twice
            event("b-1", "2025-05-21T09:30:00+02:00"),
            "",
        ]).encode(),
    )  # fmt: skip
    settings = settings_for(lake.url, root / "state")
    # One bad line in a handful of a run's lines can reach the gate's quarantine ceiling.
    os.environ["INFERWATCH_THRESHOLDS"] = json.dumps({"quarantine_share_ceiling": 0.5})
    try:
        assert run_pipeline(settings) == "success"
        yield lake, settings
    finally:
        os.environ.pop("INFERWATCH_THRESHOLDS", None)


def checksums(settings) -> dict[str, tuple]:
    import duckdb

    with (
        duckdb.connect(str(settings.serving_path), read_only=True) as serving,
        duckdb.connect(str(settings.ops_path), read_only=True) as ops,
    ):
        out = {}
        for table in MARTS:
            con = ops if table in ("mart_ingestion", "fct_quarantine") else serving
            out[table] = con.sql(
                f"select count(*), sum(hash(t)::hugeint) from {table} as t"
            ).fetchone()
        return out


def fct(settings, sql: str):
    import duckdb

    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        return con.sql(sql).fetchall()


def test_article_line_lands_as_customer_churn_v2(small_lake):
    _, settings = small_lake
    rows = fct(
        settings,
        "select model, model_version, latency_ms, confidence, prediction, "
        "event_ts::varchar from fct_inferences where model = 'customer_churn'",
    )
    assert rows == [("customer_churn", "v2", 122.0, 0.87, "churn", "2025-05-20 14:52:00")]


def test_first_run_counts(small_lake):
    _, settings = small_lake
    assert fct(settings, "select count(*), count(distinct event_id) from fct_inferences") == [
        (4, 4)
    ]
    assert fct(
        settings, "select strftime(event_ts, '%H:%M') from fct_inferences where event_id = 'b-1'"
    ) == [("07:30",)]  # +02:00 stored as UTC


def test_rerun_over_the_same_objects_changes_nothing(small_lake):
    _, settings = small_lake
    before = checksums(settings)
    assert run_pipeline(settings) == "success"
    assert checksums(settings) == before


def test_late_object_for_an_earlier_day_is_picked_up_once(small_lake):
    lake, settings = small_lake
    lake.write_bytes(
        "raw/c/2025/05/19/part-0.jsonl",
        ("\n".join([
            event("c-1", "2025-05-19T23:59:59Z", latency=70.0),
            event("c-2", "2025-05-19T08:00:00Z", status="error"),
            event("a-2", "2025-05-20T11:00:00Z", status="error"),  # already seen in object a
        ]) + "\n").encode(),
    )  # fmt: skip
    assert run_pipeline(settings) == "success"
    assert fct(settings, "select count(*), count(distinct event_id) from fct_inferences") == [
        (6, 6)
    ]
    daily = fct(
        settings,
        """
        select strftime(hour, '%Y-%m-%d'), sum(requests)::int, sum(errors)::int
        from mart_inference_hourly where model = 'fraud_detector' group by 1 order by 1
    """,
    )
    assert daily == [("2025-05-19", 2, 1), ("2025-05-20", 2, 1), ("2025-05-21", 1, 0)]
    import duckdb

    with duckdb.connect(str(settings.ops_path), read_only=True) as ops:
        ingestion = dict(
            ops.sql("select object_key, lines_duplicate from mart_ingestion").fetchall()
        )
    assert ingestion == {
        "raw/a/2025/05/20/part-0.jsonl.gz": 0,
        "raw/b/2025/05/21/part-0.jsonl": 1,
        "raw/c/2025/05/19/part-0.jsonl": 1,
    }


def test_a_failed_gate_keeps_the_last_serving_file_and_says_why(small_lake):
    """A critical suite failing holds serving.duckdb back; ops.duckdb still shows why."""
    import duckdb

    lake, settings = small_lake
    before = checksums(settings)
    served = settings.serving_path.stat().st_ino
    lake.write_bytes("raw/d/2025/05/22/part-0.jsonl", (event("d-1", "2025-05-22T10:00:00Z")
                                                       + "\n{broken\n").encode())  # fmt: skip
    os.environ["INFERWATCH_THRESHOLDS"] = json.dumps({"quarantine_share_ceiling": 0.0})
    try:
        assert run_pipeline(settings) == "failed"
    finally:
        os.environ["INFERWATCH_THRESHOLDS"] = json.dumps({"quarantine_share_ceiling": 0.5})
    assert settings.serving_path.stat().st_ino == served  # not even swapped
    after = checksums(settings)
    assert {t: after[t] for t in ("fct_inferences", "mart_inference_hourly")} == {
        t: before[t] for t in ("fct_inferences", "mart_inference_hourly")
    }
    with duckdb.connect(str(settings.ops_path), read_only=True) as ops:
        outcome, message = ops.sql(
            "select outcome, message from pipeline_runs order by finished_at desc limit 1"
        ).fetchone()
        failed = ops.sql(
            'select suite, "column" from mart_data_quality '
            "where not success and severity = 'critical' and run_id = "
            "(select run_id from pipeline_runs order by finished_at desc limit 1)"
        ).fetchall()
        quarantined = ops.sql(
            "select count(*) from fct_quarantine where object_key like 'raw/d/%'"
        ).fetchone()[0]
    assert outcome == "held_back" and "quarantined_share" in message
    assert failed == [("quarantine", "quarantined_share")]
    assert quarantined == 1  # ops shows the new bad line although serving was held back

    # Once the threshold is sane again, the next run publishes what was held back.
    assert run_pipeline(settings) == "success"
    assert fct(settings, "select count(*) from fct_inferences where event_id = 'd-1'") == [(1,)]

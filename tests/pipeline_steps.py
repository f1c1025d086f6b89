"""A small lake of known objects and the pipeline's steps called as the DAG's tasks call them:
shared by the storage-fault and crash tests (and the crash tests' child process)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime

import duckdb

from inferwatch import pipeline
from inferwatch.lake import Lake

OBJECTS = 6
LINES = 150


def raw_object(n: int) -> bytes:
    events = [
        json.dumps(
            {
                "event_id": f"o{n}-{i}",
                "timestamp": f"2025-05-20T{n:02d}:{i % 60:02d}:{i % 7:02d}Z",
                "model": "fraud_detector",
                "model_version": "v3",
                "endpoint": "/v1/fraud/score",
                "client_id": f"client-{i % 4}",
                "latency_ms": 10.0 + (i * 7) % 90,
                "confidence": 0.5 + (i % 50) / 100,
                "status": "error" if i % 25 == 0 else "ok",
                "prediction": "true" if i % 9 == 0 else "false",
            }
        )  # fmt: skip
        for i in range(LINES)
    ]
    return gzip.compress(("\n".join(events) + "\n").encode())


def key_of(n: int) -> str:
    return f"raw/fraud/2025/05/20/{n:02d}/part-0.jsonl.gz"


def run_steps(
    settings, lake: Lake, run_id: str, announce: Callable[[str], None] = lambda step: None
) -> None:
    """discover → ingest → transform → validate → publish, as the DAG's tasks do; ``announce``
    hears each step's name before it starts."""
    started = datetime.now(UTC).isoformat()
    announce("discover")
    objects = pipeline.discover(lake)
    announce("ingest")
    report = pipeline.ingest(settings, lake, objects, run_id)
    announce("transform")
    pipeline.transform(settings, lake)
    announce("validate")
    validation = pipeline.validate(settings, run_id)
    announce("publish")
    pipeline.publish(settings, run_id, validation, report, started)
    announce("done")


def marts(settings) -> dict[str, tuple]:
    """Order-free fingerprints of what readers see (serving) and what ops reports."""
    with (
        duckdb.connect(str(settings.serving_path), read_only=True) as serving,
        duckdb.connect(str(settings.ops_path), read_only=True) as ops,
    ):
        return {
            "fct_inferences": serving.sql(
                "select count(*), count(distinct event_id), sum(hash(event_id, model, "
                "model_version, event_ts, latency_ms, status, prediction, object_key, "
                "line_number)::hugeint) from fct_inferences"
            ).fetchone(),
            "mart_inference_hourly": serving.sql(
                "select count(*), sum(hash(model, model_version, endpoint, hour, requests, "
                "errors, latency_p95_ms)::hugeint) from mart_inference_hourly"
            ).fetchone(),
            "mart_ingestion": ops.sql(
                "select count(*), sum(hash(object_key, lines_read, lines_loaded, "
                "lines_quarantined, lines_blank)::hugeint) from mart_ingestion"
            ).fetchone(),
        }


def requests_by_version(truth_dir, warehouse_path) -> tuple[dict, dict]:
    """(the simulator's truth, the warehouse's fct_inferences) as {(model, version): requests}:
    what a test of a build over a simulated lake compares."""
    import pandas as pd

    truth = pd.read_csv(truth_dir / "daily.csv")
    expected = truth.groupby(["model", "model_version"])["requests"].sum().to_dict()
    with duckdb.connect(str(warehouse_path), read_only=True) as con:
        rows = con.sql(
            "select model, model_version, count(*) from fct_inferences group by all"
        ).fetchall()
    return expected, {(m, v): n for m, v, n in rows}

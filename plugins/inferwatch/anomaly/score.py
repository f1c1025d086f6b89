"""Score a bounded, deterministic sample of each day's inputs per model version and write the
scores where dbt reads them (lake ``anomaly_scores/<model>/<version>/<day>.parquet``).

A day's file is rewritten whole, so re-scoring a day (late data, a re-run) replaces it. Days
scored: those the run's ingest touched, plus any day of the warehouse that has no file yet
(a crash between scoring and the next build heals on the next run).
"""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import duckdb
import pandas as pd

from inferwatch.anomaly.forest import FittedForest, fit, read_reference
from inferwatch.lake import Lake

log = logging.getLogger(__name__)

PREFIX = "anomaly_scores"
#: Events scored per model version and day: enough to see a few-percent share move (±0.5 %
#: at 1 %), small enough that a day costs well under a second.
SAMPLE_SIZE = 2000


def score_key(model: str, version: str, day: str) -> str:
    return f"{PREFIX}/{model}/{version}/{day}.parquet"


def _day_counts(warehouse: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str, int]]:
    return warehouse.execute(
        "select model, model_version, cast(event_day as varchar), count(*) "
        "from fct_inferences group by all order by all"
    ).fetchall()


def _sample(warehouse, model: str, version: str, day: str, size: int) -> pd.DataFrame:
    """The day's events ordered by a hash of their id: the same sample on every re-run."""
    rows = warehouse.execute(
        "select event_id, input_features from fct_inferences "
        "where model = ? and model_version = ? and event_day = cast(? as date) "
        "order by hash(event_id), event_id limit ?",
        [model, version, day, size],
    ).fetchall()
    features = [json.loads(text) if text else {} for _, text in rows]
    frame = pd.DataFrame.from_records(features, index=range(len(rows)))
    frame.insert(0, "__event_id", [event_id for event_id, _ in rows])
    return frame


def _scores_table(forest: FittedForest, sample: pd.DataFrame, day: str, day_events: int):
    scores = forest.score(sample)
    return pd.DataFrame({
        "model": forest.model,
        "model_version": forest.model_version,
        "day": pd.to_datetime(day).date(),
        "event_id": sample["__event_id"].to_numpy(),
        "anomaly_score": scores,
        "score_threshold": forest.threshold,
        "is_anomalous": scores > forest.threshold,
        "expected_share": forest.expected_share,
        "day_events": day_events,
        "scored_at": datetime.now(UTC).replace(tzinfo=None),
    })  # fmt: skip


def score_days(
    lake: Lake, warehouse_path, touched_days: list[str], sample_size: int = SAMPLE_SIZE
) -> dict:
    """Score every (model, version, day) that was touched or has no scores; returns a summary."""
    existing = {info.key for info in lake.list(f"{PREFIX}/")}
    touched = set(touched_days)
    forests: dict[tuple[str, str], FittedForest | None] = {}
    written: list[str] = []
    with duckdb.connect(str(warehouse_path), read_only=True) as warehouse:
        for model, version, day, events in _day_counts(warehouse):
            key = score_key(model, version, day)
            if day not in touched and key in existing:
                continue
            if (model, version) not in forests:
                reference = read_reference(lake, model, version)
                forests[model, version] = (
                    None if reference is None else fit(reference, model, version)
                )
                if reference is None:
                    log.info("no reference for %s %s: its inputs are not scored", model, version)
            forest = forests[model, version]
            if forest is None:
                continue
            sample = _sample(warehouse, model, version, day, sample_size)
            buffer = io.BytesIO()
            _scores_table(forest, sample, day, events).to_parquet(buffer, index=False)
            lake.write_bytes(key, buffer.getvalue())
            written.append(key)
    log.info("scored inputs: %d model-version-days", len(written))
    return {"files": len(written), "keys": written}

"""Score a bounded, deterministic sample of each day's inputs per model version and write the
scores where dbt reads them (lake ``anomaly_scores/<model>/<version>/<day>.parquet``).

A day's file is rewritten whole, so re-scoring a day (late data, a re-run) replaces it. Days
scored: those the run's ingest touched, plus any day of the warehouse that has no file yet
(a crash between scoring and the next build heals on the next run).

No record stops the step: a model version whose name cannot be a lake folder (bronze written
before the parser checked names) is skipped, and so is an event whose inputs do not load as a
JSON object; both are counted in the summary and logged.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from inferwatch import names
from inferwatch.anomaly import forest as forest_module
from inferwatch.anomaly.forest import FittedForest, fit, read_reference
from inferwatch.lake import Lake, lake_key

log = logging.getLogger(__name__)

PREFIX = "anomaly_scores"
#: Events scored per model version and day: enough to see a few-percent share move (±0.5 %
#: at 1 %), small enough that a day costs well under a second.
SAMPLE_SIZE = 2000


def score_key(model: str, version: str, day: str) -> str:
    """The day's scores file; InvalidName for a model or version that is no valid name."""
    model, version = names.require("model", model), names.require("model_version", version)
    return lake_key(PREFIX, model, version, f"{day}.parquet")


def _day_counts(warehouse: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str, int]]:
    return warehouse.execute(
        "select model, model_version, cast(event_day as varchar), count(*) "
        "from fct_inferences group by all order by all"
    ).fetchall()


def _features(text: str | None) -> dict | None:
    """An event's inputs as a dict; None when they do not load as a JSON object (cut, a list,
    or nested deeper than Python's recursion limit: RecursionError)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


@dataclass
class Sample:
    """A day's sampled events: their inputs (one column per feature), their ids, and the ids
    left out because their inputs would not load."""

    inputs: pd.DataFrame
    event_ids: list[str]
    left_out: list[str]


def _sample(warehouse, model: str, version: str, day: str, size: int) -> Sample:
    """The day's events ordered by a hash of their id: the same sample on every re-run."""
    rows = warehouse.execute(
        "select event_id, input_features from fct_inferences "
        "where model = ? and model_version = ? and event_day = cast(? as date) "
        "order by hash(event_id), event_id limit ?",
        [model, version, day, size],
    ).fetchall()
    loaded = [(event_id, _features(text)) for event_id, text in rows]
    kept = [(event_id, features) for event_id, features in loaded if features is not None]
    # The ids stay out of the frame: a feature may have any valid name, "__event_id" too.
    inputs = pd.DataFrame.from_records([features for _, features in kept], index=range(len(kept)))
    return Sample(inputs, [event_id for event_id, _ in kept],
                  [event_id for event_id, features in loaded if features is None])  # fmt: skip


def _scores_table(forest: FittedForest, sample: Sample, day: str, day_events: int):
    # No event left to score (all left out) still writes the day, empty: it is done.
    scores = forest.score(sample.inputs) if sample.event_ids else np.zeros(0)
    return pd.DataFrame({
        "model": forest.model,
        "model_version": forest.model_version,
        "day": pd.to_datetime(day).date(),
        "event_id": pd.Series(sample.event_ids, dtype=object),
        "anomaly_score": scores,
        "score_threshold": forest.threshold,
        "is_anomalous": scores > forest.threshold,
        "expected_share": forest.expected_share,
        "day_events": day_events,
        "scored_at": datetime.now(UTC).replace(tzinfo=None),
    })  # fmt: skip


def _forest(
    lake: Lake, model: str, version: str, cache_dir: Path | None = None
) -> FittedForest | None:
    """The version's forest; None (logged) when it has no reference or one that cannot be
    read or fitted: that version goes unscored, the others are scored. With ``cache_dir``, a
    forest fitted on the same reference files (key, size, etag/mtime) is reused, not refitted:
    fitting is seconds per version and every run scores."""
    try:
        cached = _cache_path(lake, model, version, cache_dir)
        reused = _read_cache(cached)
        if reused is not None:
            return reused
        reference = read_reference(lake, model, version)
        if reference is None:
            log.info("no reference for %s %s: its inputs are not scored", model, version)
            return None
        fitted = fit(reference, model, version)
        if cached is not None:
            _write_cache(cached, fitted)
        return fitted
    except ValueError as error:  # an unreadable file, columns that do not fit (ArrowInvalid…)
        log.warning("reference of %s %s unusable, its inputs are not scored: %s",
                    model, version, error)  # fmt: skip
        return None


def _cache_path(lake: Lake, model: str, version: str, cache_dir: Path | None) -> Path | None:
    """Where the forest of this version's current reference files is kept (None: no cache, or
    no reference)."""
    if cache_dir is None:
        return None
    import sklearn

    listed = sorted(
        (info.key, info.size, info.version)
        for info in lake.list(lake_key("reference", model, version, folder=True))
    )
    if not listed:
        return None
    what = [listed, sklearn.__version__, forest_module.TREES, forest_module.SEED,
            forest_module.EXPECTED_SHARE]  # fmt: skip
    digest = hashlib.sha256(json.dumps(what).encode()).hexdigest()[:32]
    return cache_dir / f"{digest}.pkl"


def _read_cache(path: Path | None) -> FittedForest | None:
    """The cached forest; None when there is none or it does not load (then it is refitted)."""
    if path is None or not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            fitted = pickle.load(fh)  # our own file, in the owner-only data dir
    except Exception as error:  # a truncated or foreign file: refit and replace it
        log.warning("cached forest %s unusable (%s): refitting", path, error)
        return None
    return fitted if isinstance(fitted, FittedForest) else None


def _write_cache(path: Path, fitted: FittedForest) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        pickle.dump(fitted, fh)
    os.replace(tmp, path)


def score_days(
    lake: Lake, warehouse_path, touched_days: list[str], sample_size: int = SAMPLE_SIZE,
    cache_dir: Path | None = None,
) -> dict:  # fmt: skip
    """Score every (model, version, day) that was touched or has no scores; returns a summary
    (with the model versions skipped for their names and the count of events skipped)."""
    existing = {info.key for info in lake.list(f"{PREFIX}/")}
    touched = set(touched_days)
    forests: dict[tuple[str, str], FittedForest | None] = {}
    written: list[str] = []
    bad_names: set[tuple[str, str]] = set()
    skipped_records = 0
    with duckdb.connect(str(warehouse_path), read_only=True) as warehouse:
        for model, version, day, events in _day_counts(warehouse):
            try:
                key = score_key(model, version, day)
            except names.InvalidName as error:
                if (model, version) not in bad_names:
                    log.warning("not scored (older bronze, refused today): %s", error)
                bad_names.add((model, version))
                continue
            if day not in touched and key in existing:
                continue
            if (model, version) not in forests:
                forests[model, version] = _forest(lake, model, version, cache_dir)
            forest = forests[model, version]
            if forest is None:
                continue
            sample = _sample(warehouse, model, version, day, sample_size)
            left_out = sample.left_out
            if left_out:
                skipped_records += len(left_out)
                log.warning("%s %s %s: %d events whose inputs do not load left out, e.g. %s",
                            model, version, day, len(left_out), left_out[:3])  # fmt: skip
            buffer = io.BytesIO()
            _scores_table(forest, sample, day, events).to_parquet(buffer, index=False)
            lake.write_bytes(key, buffer.getvalue())
            written.append(key)
    log.info("scored inputs: %d model-version-days; skipped: %d model versions for their "
             "names, %d events", len(written), len(bad_names), skipped_records)  # fmt: skip
    return {"files": len(written), "keys": written, "skipped_names": sorted(map(list, bad_names)),
            "skipped_records": skipped_records}  # fmt: skip

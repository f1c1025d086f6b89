"""What a run no longer redoes when its inputs did not change: the isolation forests of the
reference files, and dbt's docs page of the same project and schema."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pandas as pd

from inferwatch.anomaly.score import _cache_path, _forest
from inferwatch.lake import Lake


def write_reference(lake: Lake, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"amount": rng.gamma(2.0, 30.0, rows), "channel": rng.choice(["web", "app"], rows)}
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    lake.write_bytes("reference/fraud_detector/v3/reference.parquet", buffer.getvalue())


def test_a_forest_is_fitted_once_per_reference(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    cache = tmp_path / "forests"
    write_reference(lake, 300, seed=1)
    fitted = _forest(lake, "fraud_detector", "v3", cache)
    (cached,) = cache.glob("*.pkl")
    # Mark the cached forest: the next run must return it as it is, not fit a new one.
    fitted.threshold = 123.0
    cached.write_bytes(pickle.dumps(fitted))
    assert _forest(lake, "fraud_detector", "v3", cache).threshold == 123.0

    write_reference(lake, 400, seed=2)  # a new reference: fitted again, kept beside
    refitted = _forest(lake, "fraud_detector", "v3", cache)
    assert refitted.threshold != 123.0
    assert len(list(cache.glob("*.pkl"))) == 2

    current = _cache_path(lake, "fraud_detector", "v3", cache)
    current.write_bytes(b"not a pickle")  # a damaged file is refitted, never an error
    assert _forest(lake, "fraud_detector", "v3", cache).threshold == refitted.threshold
    assert pickle.loads(current.read_bytes()).threshold == refitted.threshold

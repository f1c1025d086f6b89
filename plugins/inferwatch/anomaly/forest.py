"""An isolation forest per model version, fitted on its training reference (lake
``reference/<model>/<version>/``, Parquet or CSV: one column per input feature).

Numeric features enter as they are; categorical ones one-hot over the reference's categories
(an unseen value is all zeros, itself unusual). The score is the negated ``score_samples``
(higher is more anomalous) and the threshold is the reference's own ``1 − expected_share``
quantile, so inputs like the training data exceed it ``expected_share`` of the time.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from inferwatch.lake import Lake, lake_key

#: Reference columns that are outputs, not inputs.
OUTPUT_COLUMNS = ("prediction", "confidence")
EXPECTED_SHARE = 0.01
TREES = 100
SEED = 0


@dataclass
class FittedForest:
    model: str
    model_version: str
    numeric: list[str]
    categories: dict[str, list[str]]
    forest: IsolationForest
    threshold: float
    expected_share: float
    medians: dict[str, float]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """The feature matrix in the forest's column order (a missing number → the median)."""
        return _encode(frame, self.numeric, self.categories, self.medians)

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return -self.forest.score_samples(self.encode(frame))


def read_reference(lake: Lake, model: str, version: str) -> pd.DataFrame | None:
    """All reference files of one version, concatenated; None when there is none.

    InvalidName when ``model`` or ``version`` cannot be a folder name (``..``, ``a/b``)."""
    frames = []
    for info in lake.list(lake_key("reference", model, version, folder=True)):
        if info.key.endswith(".parquet"):
            frames.append(pd.read_parquet(io.BytesIO(lake.read_bytes(info.key))))
        elif info.key.endswith(".csv"):
            frames.append(pd.read_csv(io.BytesIO(lake.read_bytes(info.key))))
    return pd.concat(frames, ignore_index=True) if frames else None


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _category_text(series: pd.Series) -> pd.Series:
    """Categories compared as text, booleans as JSON spells them (true/false)."""
    return series.map(lambda v: None if v is None or v != v else str(v).lower()
                      if isinstance(v, bool) else str(v))  # fmt: skip


def _encode(
    frame: pd.DataFrame,
    numeric: list[str],
    categories: dict[str, list[str]],
    medians: dict[str, float] | None,
) -> np.ndarray:
    columns = []
    for name in numeric:
        values = pd.to_numeric(frame.get(name, pd.Series(np.nan, index=frame.index)),
                               errors="coerce")  # fmt: skip
        fill = (medians or {}).get(name, 0.0)
        columns.append(values.fillna(fill).to_numpy(dtype=float))
    for name, known in categories.items():
        text = _category_text(frame.get(name, pd.Series(None, index=frame.index, dtype=object)))
        for category in known:
            columns.append((text == category).to_numpy(dtype=float))
    return np.column_stack(columns) if columns else np.zeros((len(frame), 0))


def fit(reference: pd.DataFrame, model: str, version: str,
        expected_share: float = EXPECTED_SHARE) -> FittedForest:  # fmt: skip
    inputs = reference.drop(columns=[c for c in OUTPUT_COLUMNS if c in reference], errors="ignore")
    numeric = [c for c in inputs.columns if _is_numeric(inputs[c])]
    categories = {
        c: sorted(_category_text(inputs[c]).dropna().unique().tolist())
        for c in inputs.columns
        if c not in numeric
    }
    medians = {c: float(inputs[c].median()) for c in numeric}
    matrix = _encode(inputs, numeric, categories, medians)
    forest = IsolationForest(n_estimators=TREES, random_state=SEED).fit(matrix)
    reference_scores = -forest.score_samples(matrix)
    threshold = float(np.quantile(reference_scores, 1 - expected_share))
    return FittedForest(
        model, version, numeric, categories, forest, threshold, expected_share, medians
    )

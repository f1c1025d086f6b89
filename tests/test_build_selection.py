"""The pipeline's dbt build runs only what reads lake inputs whose files changed since the last
build that passed, and each model's column tests as one node.

One small lake (three hours): a first build of two hours, one more hour (no reference change:
the reference models are not run), then a changed reference file (they are, and the marts
that read them equal a rebuild from scratch).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import settings_for
from inferwatch import pipeline, transform
from inferwatch.ingest.manifest import discover
from inferwatch.lake import Lake
from inferwatch.simulate import simulate
from test_incremental_equals_full import assert_same, sortable

LAST_HOUR = "/2025/05/01/02/"
#: The models that read only the reference files (and the registry view, and the seeds).
REFERENCE_ONLY = {"stg_lake__reference", "int_reference_bins", "int_reference_categories_binned"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two of three simulated hours ingested and built (a full build: no state yet)."""
    root = tmp_path_factory.mktemp("selection")
    simulate(str(root / "lake"), truth_dir=root / "truth", start=datetime(2025, 5, 1, tzinfo=UTC),
             end=datetime(2025, 5, 1, 3, tzinfo=UTC), events=1_500, seed=3)  # fmt: skip
    lake = Lake(str(root / "lake"))
    settings = settings_for(lake.url, root / "state")
    first = [o.__dict__ for o in discover(lake) if LAST_HOUR not in o.key]
    pipeline.ingest(settings, lake, first, "first")
    pipeline.transform(settings, lake)
    assert built_nodes(settings) >= {"fct_inferences", "int_reference_bins", "drift_thresholds"}
    return settings, lake


def tables(warehouse) -> dict[str, pd.DataFrame]:
    """The non-empty fct_/mart_ tables, sorted by their non-float columns, without the
    build-time column (as tests/test_incremental_equals_full.py compares them)."""
    out = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        names = con.sql(
            "select table_name from duckdb_tables() "
            "where regexp_matches(table_name, '^(fct|mart)_')"
        ).fetchall()
        for (name,) in names:
            frame = con.sql(f"select * from {name}").df().drop(columns=["source_watermark"],
                                                                errors="ignore")  # fmt: skip
            if frame.empty:
                continue
            keys = [c for c in frame.columns if not pd.api.types.is_float_dtype(frame[c])]
            out[name] = frame.loc[sortable(frame, keys).sort_values(keys).index].reset_index(
                drop=True
            )
    return out


def run_results(settings) -> list[dict]:
    target = transform.dbt_target_path(settings)
    return json.loads((target / "run_results.json").read_text())["results"]


def built_nodes(settings) -> set[str]:
    """The models and seeds the last build ran."""
    return {
        r["unique_id"].split(".")[2]
        for r in run_results(settings)
        if r["unique_id"].split(".")[0] in {"model", "seed"}
    }


def test_an_hour_of_events_does_not_run_the_reference_models(built):
    settings, lake = built
    hour = [o.__dict__ for o in discover(lake)]
    assert hour and all(LAST_HOUR in o["key"] for o in hour)
    pipeline.ingest(settings, lake, hour, "hour")
    pipeline.transform(settings, lake)

    ran = built_nodes(settings)
    assert {"fct_inferences", "mart_inference_hourly", "mart_drift_daily"} <= ran
    assert not ran & (REFERENCE_ONLY | {"stg_lake__registry", "drift_thresholds"})
    # each model's column and grain tests ran as its one model_checks node
    tests = [r["unique_id"].split(".")[2] for r in run_results(settings)
             if r["unique_id"].startswith("test.")]  # fmt: skip
    assert "model_checks_fct_inferences_" in tests
    assert not [name for name in tests if name.startswith(("not_null_", "unique_"))]

    # the project folds every such test the cheap way (no test named one by one)
    manifest = transform.parse(settings, lake)
    assert all(spec.startswith("test_name:") for spec in transform.folded_exclusion(manifest))


def test_a_changed_reference_reruns_its_models_and_equals_a_rebuild(built):
    settings, lake = built
    key = next(k.key for k in lake.list("reference/") if k.key.endswith(".parquet"))
    reference = pq.read_table(io.BytesIO(lake.read_bytes(key)))
    numeric = next(c for c in reference.column_names if pa.types.is_floating(reference[c].type))
    shifted = reference.set_column(
        reference.column_names.index(numeric), numeric,
        [[value * 3 + 1 if value is not None else None
          for value in reference[numeric].to_pylist()]],
    )  # fmt: skip
    buffer = io.BytesIO()
    pq.write_table(shifted, buffer)
    drift_before = tables(settings.warehouse_path)["mart_drift_daily"]
    lake.write_bytes(key, buffer.getvalue())

    pipeline.transform(settings, lake)

    ran = built_nodes(settings)
    assert REFERENCE_ONLY | {"mart_feature_distribution_daily", "mart_drift_daily"} <= ran
    assert "fct_inferences" not in ran  # no new event
    incremental = tables(settings.warehouse_path)
    # the reference's models and marts rebuilt from scratch, from the same upstream tables
    transform.build(settings, lake, full_refresh=True, data_tests=False,
                    select="source:lake.reference_parquet+ source:lake.reference_csv+")  # fmt: skip
    rebuilt = tables(settings.warehouse_path)
    assert set(incremental) == set(rebuilt)
    for name in incremental:
        assert_same(incremental[name], rebuilt[name], name)
    assert not drift_before["psi"].equals(rebuilt["mart_drift_daily"]["psi"])  # it mattered

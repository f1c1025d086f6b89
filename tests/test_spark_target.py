"""The Spark target (dbt-spark, session mode, local PySpark 3.5) builds the same marts as DuckDB
from the same bronze (issue 10; docs/scaling.md).

One build per engine of the core marts and everything upstream (seeds and models; data tests
are left out on both sides to keep the Spark part within a few minutes), over the bronze of one
small simulated lake, each into its own folder. Counts must be equal; figures computed in
floating point may differ by rounding only: Spark's `percentile` is exact like DuckDB's
`quantile_cont` (same order statistics, same interpolation), so percentiles agree to 1e-9
relative; the daily latency percentiles from buckets are rounded to 3 decimals (0.001 ms);
PSI, KS and JS distance are sums of the same shares in the same order, to 1e-9.

Run on its own with `pytest -m spark -s` (it prints both build times).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from conftest import settings_for
from inferwatch import pipeline, transform
from inferwatch.lake import Lake
from inferwatch.simulate import simulate

pytestmark = pytest.mark.spark

SPARK_DBT = Path(transform.SPARK_DBT_DEFAULT)
RELATIVE = 1e-9
#: Four days, the simulator's input drift included (it starts 65 % into any period).
START, END = datetime(2025, 5, 1, tzinfo=UTC), datetime(2025, 5, 5, tzinfo=UTC)
EVENTS = 8_000


def _require_spark() -> None:
    if not SPARK_DBT.exists():
        pytest.skip("no Spark environment: `make spark` installs .venv/spark")
    if shutil.which("java") is None:
        pytest.skip("no Java: `make services` installs openjdk-17-jre-headless")


@dataclasses.dataclass
class Builds:
    duckdb_path: Path
    spark_settings: object
    seconds: dict

    def duck(self, sql: str) -> pd.DataFrame:
        with duckdb.connect(str(self.duckdb_path), read_only=True) as con:
            return con.sql(sql).df()

    def spark(self, table: str, sql: str = "select * from t") -> pd.DataFrame:
        """A Spark-built table, read from its Parquet files (day partitions included)."""
        folder = transform.spark_table_path(self.spark_settings, table)
        with duckdb.connect() as con:
            con.execute("set TimeZone = 'UTC'")
            con.execute(
                f"create view t as select * from read_parquet('{folder}/**/*.parquet', "
                "hive_partitioning = true, union_by_name = true)"
            )
            return con.sql(sql).df()


@pytest.fixture(scope="module")
def builds(tmp_path_factory, request) -> Builds:
    """The same selection built by each engine over one small simulated lake, full refresh.
    Small on purpose: Spark's cost here is per query (planning, code generation, JVM), and the
    comparison needs every mart shape, not volume (the benchmarks give volume)."""
    _require_spark()
    root = tmp_path_factory.mktemp("spark-lake")
    simulate(str(root / "lake"), truth_dir=root / "truth", start=START, end=END,
             events=EVENTS, seed=3)  # fmt: skip
    lake = Lake(str(root / "lake"))
    duck_settings = settings_for(lake.url, root / "duckdb_target")
    pipeline.ingest(duck_settings, lake, pipeline.discover(lake), "spark")
    spark_settings = settings_for(lake.url, root / "spark_target")

    started = time.monotonic()
    selection = " ".join(transform.SPARK_SELECTION)
    duck = transform.build(
        duck_settings, lake, full_refresh=True, select=selection, data_tests=False
    )
    duck_seconds = time.monotonic() - started
    assert duck.success, duck.failures

    started = time.monotonic()
    spark = transform.run_dbt_spark(spark_settings, lake, "build", "--full-refresh",
                                    data_tests=False)  # fmt: skip
    spark_seconds = time.monotonic() - started
    assert spark.success, spark.failures

    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    # node counts differ by the intermediate model that is a table on Spark, a CTE on DuckDB
    message = (
        f"\nSame selection (seeds + models, full refresh) on the same lake: Spark target "
        f"{spark_seconds:.0f} s ({spark.nodes} nodes), DuckDB target {duck_seconds:.0f} s "
        f"({duck.nodes} nodes)"
    )
    if reporter is not None:
        reporter.write_line(message)
    print(message)
    return Builds(
        duckdb_path=duck_settings.warehouse_path,
        spark_settings=spark_settings,
        seconds={"spark": spark_seconds, "duckdb": duck_seconds},
    )


def _joined(duck: pd.DataFrame, spark: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    assert len(duck) == len(spark), (len(duck), len(spark))
    for frame in (duck, spark):
        for key in keys:
            if pd.api.types.is_datetime64_any_dtype(frame[key]):
                frame[key] = pd.to_datetime(frame[key], utc=True).dt.tz_localize(None)
            elif key.endswith("day"):
                frame[key] = pd.to_datetime(frame[key]).dt.normalize()
    merged = duck.merge(spark, on=keys, how="outer", suffixes=("_duck", "_spark"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
    return merged


def _assert_equal(merged: pd.DataFrame, columns: list[str]) -> None:
    for column in columns:
        duck, spark = merged[f"{column}_duck"], merged[f"{column}_spark"]
        same = (duck.astype("object") == spark.astype("object")) | (duck.isna() & spark.isna())
        assert same.all(), merged.loc[~same, [f"{column}_duck", f"{column}_spark"]].head()


def _assert_close(merged: pd.DataFrame, columns: list[str], *, rel=RELATIVE, abs_=1e-9) -> None:
    for column in columns:
        duck = merged[f"{column}_duck"].astype(float)
        spark = merged[f"{column}_spark"].astype(float)
        assert duck.isna().equals(spark.isna()), column
        diff = (duck - spark).abs()
        bound = abs_ + rel * duck.abs()
        assert (diff[duck.notna()] <= bound[duck.notna()]).all(), (column, diff.max())


def test_build_times_are_reported(builds):
    assert builds.seconds["spark"] > 0 and builds.seconds["duckdb"] > 0


def test_fct_inferences_same_events(builds):
    sql = "select model, model_version, event_day, count(*) as n, count(distinct event_id) as ids, "
    sql += "count(*) filter (where status = 'error') as errors from {} group by all"
    duck = builds.duck(sql.format("fct_inferences"))
    spark = builds.spark("fct_inferences", sql.format("t"))
    merged = _joined(duck, spark, ["model", "model_version", "event_day"])
    _assert_equal(merged, ["n", "ids", "errors"])
    assert duck["n"].sum() == duck["ids"].sum() > 0


def test_inference_hourly(builds):
    keys = ["model", "model_version", "endpoint", "hour"]
    duck = builds.duck("select * from mart_inference_hourly")
    merged = _joined(duck, builds.spark("mart_inference_hourly"), keys)
    _assert_equal(merged, ["requests", "errors", "distinct_users"])
    _assert_close(
        merged,
        ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_mean_ms", "error_rate"],
    )


def test_latency_daily_from_buckets(builds):
    keys = ["model", "model_version", "event_day"]
    merged = _joined(
        builds.duck("select * from mart_latency_daily"), builds.spark("mart_latency_daily"), keys
    )
    _assert_equal(merged, ["events"])
    # both round to 0.001 ms; a value on a rounding edge may land one step apart
    _assert_close(merged, ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"],
                  rel=0, abs_=0.0010001)  # fmt: skip
    buckets = ["model", "model_version", "endpoint", "hour", "bucket"]
    merged = _joined(
        builds.duck("select * from mart_latency_buckets_hourly"),
        builds.spark("mart_latency_buckets_hourly"),
        buckets,
    )
    _assert_equal(merged, ["events"])


def test_errors_hourly(builds):
    keys = ["model", "model_version", "endpoint", "hour", "error_type"]
    merged = _joined(
        builds.duck("select * from mart_errors_hourly"), builds.spark("mart_errors_hourly"), keys
    )
    _assert_equal(
        merged,
        ["events", "errors", "retries", "events_with_retries", "fallbacks", "hour_requests"],
    )


def test_client_usage_daily(builds):
    keys = ["client_id", "endpoint", "model", "event_day"]
    merged = _joined(
        builds.duck("select * from mart_client_usage_daily"),
        builds.spark("mart_client_usage_daily"),
        keys,
    )
    _assert_equal(
        merged,
        ["requests", "errors", "distinct_users", "prompt_tokens", "completion_tokens",
         "events_cost_reported", "events_cost_estimated", "cost_source", "top_country",
         "top_country_requests"],
    )  # fmt: skip
    _assert_close(merged, ["latency_mean_ms", "latency_p95_ms", "cost_usd", "error_rate"])


def test_feature_distribution_and_drift(builds):
    keys = ["model", "model_version", "feature", "day", "bin_kind", "bin_index"]
    merged = _joined(
        builds.duck("select * from mart_feature_distribution_daily"),
        builds.spark("mart_feature_distribution_daily"),
        keys,
    )
    _assert_equal(
        merged,
        ["production_count", "production_total", "reference_count", "reference_total",
         "feature_type", "feature_role", "reference_version"],
    )  # fmt: skip
    _assert_close(merged, ["production_share", "reference_share", "bin_lower", "bin_upper"])

    keys = ["model", "model_version", "feature", "day"]
    merged = _joined(
        builds.duck("select * from mart_drift_daily"), builds.spark("mart_drift_daily"), keys
    )
    assert len(merged) > 0
    _assert_equal(merged, ["status", "production_count", "reference_count", "psi_bins",
                           "ks_warning", "js_warning"])  # fmt: skip
    _assert_close(merged, ["psi", "ks", "ks_resolution", "js_distance"], rel=0)


def test_model_lineage(builds):
    keys = ["model", "model_version"]
    merged = _joined(
        builds.duck("select * from mart_model_lineage"), builds.spark("mart_model_lineage"), keys
    )
    _assert_equal(
        merged,
        ["git_commit", "training_data_hash", "lineage_source", "requests", "errors",
         "latest_drift_status", "latest_drifting_features"],
    )  # fmt: skip
    _assert_close(merged, ["latency_p95_ms", "error_rate", "traffic_share"])
    deployed = merged.dropna(subset=["deployed_at_duck"])
    assert len(deployed) > 0
    assert (
        pd.to_datetime(deployed["deployed_at_duck"], utc=True)
        == pd.to_datetime(deployed["deployed_at_spark"], utc=True)
    ).all()

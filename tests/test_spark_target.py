"""The Spark target (dbt-spark, session mode, local PySpark 3.5) builds the same marts as DuckDB
from the same bronze (issue 10; docs/scaling.md).

One build per engine of the marts and everything upstream (seeds and models; data tests are
left out on both sides to keep the Spark part within a few minutes), over the bronze of one
small simulated lake (labels and anomaly scores included), each into its own folder. Counts and
texts must be equal; figures computed in floating point may differ by rounding only: Spark's
`percentile` is exact like DuckDB's `quantile_cont` (same order statistics, same
interpolation), so percentiles agree to 1e-9 relative; the daily latency percentiles from
buckets are rounded to 3 decimals (0.001 ms); PSI, KS and JS distance are sums of the same
shares in the same order, to 1e-9; so are performance, fairness, resource and anomaly figures
(the anomaly z-scores are rounded to 6 decimals: one step apart at most on a rounding edge).

Run on its own with `pytest -m spark -s` (it prints both build times).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from conftest import settings_for
from inferwatch import pipeline, transform
from inferwatch.anomaly.score import score_days
from inferwatch.lake import Lake
from inferwatch.simulate import simulate
from raw_reader import read_lines

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
    #: status of each data test the Spark build ran
    spark_tests: dict

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


#: What a batched line carries per element instead of at the top level.
PER_PREDICTION = ("input_features", "prediction", "confidence")


def _add_batched_object(lake_dir: Path, size: int = 3, batches: int = 40) -> None:
    """Batched requests (README: The log contract): well-formed simulated lines regrouped
    ``size`` at a time into ``batch`` lines (new event ids), so both engines unnest them."""
    eligible = []
    for path in sorted((lake_dir / "raw").rglob("*.jsonl*")):
        for text in read_lines(path):
            try:
                line = json.loads(text)
            except ValueError:
                continue
            confidence = line.get("confidence") if isinstance(line, dict) else None
            if isinstance(line.get("input_features") if isinstance(line, dict) else None, dict) \
                    and isinstance(confidence, float) and 0 <= confidence <= 1:  # fmt: skip
                eligible.append(line)
        if len(eligible) >= size * batches:
            break
    out = []
    for number in range(batches):
        group = eligible[number * size : (number + 1) * size]
        line = {k: v for k, v in group[0].items() if k not in PER_PREDICTION}
        line["event_id"] = f"batched-{number}"
        line.pop("request_id", None)  # ground truth keeps joining the original lines
        line["batch"] = [{k: g[k] for k in PER_PREDICTION if k in g} for g in group]
        out.append(json.dumps(line))
    target = lake_dir / "raw" / "batched" / "part-0.jsonl"
    target.parent.mkdir(parents=True)
    target.write_text("\n".join(out) + "\n")


#: The data test the Spark build runs (the folded column and grain tests of fct_inferences), by
#: its node name: with indirect selection empty, a model selects none of its tests.
SPARK_DATA_TEST = "model_checks_fct_inferences_"


@pytest.fixture(scope="module")
def builds(tmp_path_factory, request) -> Builds:
    """The same selection built by each engine over one small simulated lake, full refresh.
    Small on purpose: Spark's cost here is per query (planning, code generation, JVM), and the
    comparison needs every mart shape, not volume (the benchmarks give volume)."""
    _require_spark()
    root = tmp_path_factory.mktemp("spark-lake")
    simulate(str(root / "lake"), truth_dir=root / "truth", start=START, end=END,
             events=EVENTS, seed=3)  # fmt: skip
    _add_batched_object(root / "lake")
    lake = Lake(str(root / "lake"))
    duck_settings = settings_for(lake.url, root / "duckdb_target")
    ingested = pipeline.ingest(duck_settings, lake, pipeline.discover(lake), "spark")
    assert ingested["labels_loaded"] > 0
    spark_settings = settings_for(lake.url, root / "spark_target")

    started = time.monotonic()
    selection = " ".join(transform.SPARK_SELECTION)
    duck = transform.build(
        duck_settings, lake, full_refresh=True, select=selection, data_tests=False
    )
    duck_seconds = time.monotonic() - started
    assert duck.success, duck.failures
    # The anomaly scores come from a Python step (inferwatch.anomaly) that reads DuckDB's
    # fct_inferences and writes them into the lake, where both engines read the same files;
    # DuckDB then rebuilds the marts that read them, as the pipeline's score step does.
    assert score_days(lake, duck_settings.warehouse_path, ingested["days"])["files"] > 0
    started = time.monotonic()
    rescored = transform.build(duck_settings, lake, select="stg_lake__anomaly_scores+",
                               data_tests=False)  # fmt: skip
    duck_seconds += time.monotonic() - started
    assert rescored.success, rescored.failures

    started = time.monotonic()
    # One data test rides along (only tests selected by name run: indirect selection empty),
    # so the Spark target's `where` handling is exercised in the same JVM.
    spark = transform.run_dbt_spark(
        spark_settings, lake, "build", "--full-refresh", "--indirect-selection", "empty",
        select=(*transform.SPARK_SELECTION, SPARK_DATA_TEST),
    )  # fmt: skip
    spark_seconds = time.monotonic() - started
    assert spark.success, spark.failures

    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    # node counts differ by the intermediate model that is a table on Spark, a CTE on DuckDB
    message = (
        f"\nSame selection (seeds + models, full refresh) on the same lake: Spark target "
        f"{spark_seconds:.0f} s ({spark.nodes} nodes), DuckDB target {duck_seconds:.0f} s "
        f"({duck.nodes} nodes, then {rescored.nodes} again after the anomaly scores)"
    )
    if reporter is not None:
        reporter.write_line(message)
    print(message)
    return Builds(
        duckdb_path=duck_settings.warehouse_path,
        spark_settings=spark_settings,
        seconds={"spark": spark_seconds, "duckdb": duck_seconds},
        spark_tests=_test_statuses(spark_settings),
    )


def _test_statuses(spark_settings) -> dict:
    results = transform.spark_dir(spark_settings) / "dbt" / "target" / "run_results.json"
    return {
        node["unique_id"].split(".")[2]: node["status"]
        for node in json.loads(results.read_text())["results"]
        if node["unique_id"].startswith("test.")
    }


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


def test_data_tests_run_on_spark(builds):
    """`inferwatch spark-build` runs the data tests too: on Spark each reads every row (the
    touched-partitions `where` every test gets is DuckDB's; dbt's default would paste it into
    Spark's SQL as a filter and the test would fail)."""
    assert builds.spark_tests == {"model_checks_fct_inferences_": "pass"}


def test_fct_inferences_same_events(builds):
    sql = "select model, model_version, event_day, count(*) as n, count(distinct event_id) as ids, "
    sql += "count(*) filter (where status = 'error') as errors, "
    sql += "cast(sum(predictions) as bigint) as predictions from {} group by all"
    duck = builds.duck(sql.format("fct_inferences"))
    spark = builds.spark("fct_inferences", sql.format("t"))
    merged = _joined(duck, spark, ["model", "model_version", "event_day"])
    _assert_equal(merged, ["n", "ids", "errors", "predictions"])
    assert duck["n"].sum() == duck["ids"].sum() > 0
    assert duck["predictions"].sum() > duck["n"].sum()  # the batched lines are in


def test_inference_hourly(builds):
    keys = ["model", "model_version", "endpoint", "hour"]
    duck = builds.duck("select * from mart_inference_hourly")
    merged = _joined(duck, builds.spark("mart_inference_hourly"), keys)
    _assert_equal(merged, ["requests", "predictions", "errors", "distinct_users"])
    _assert_close(
        merged,
        ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_mean_ms", "error_rate",
         "confidence_mean"],
    )  # fmt: skip


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
        ["requests", "predictions", "errors", "distinct_users", "prompt_tokens",
         "completion_tokens", "events_cost_reported", "events_cost_estimated", "cost_source",
         "top_country", "top_country_requests"],
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


def _assert_same_times(merged: pd.DataFrame, columns: list[str]) -> None:
    for column in columns:
        duck = pd.to_datetime(merged[f"{column}_duck"], utc=True)
        spark = pd.to_datetime(merged[f"{column}_spark"], utc=True)
        same = (duck == spark) | (duck.isna() & spark.isna())
        assert same.all(), merged.loc[~same, [f"{column}_duck", f"{column}_spark"]].head()


def _compare(builds: Builds, table: str, keys: list[str]) -> pd.DataFrame:
    return _joined(builds.duck(f"select * from {table}"), builds.spark(table), keys)


def test_repeated_inputs_daily(builds):
    """Some simulated inputs repeat within a client-day (few features, rounded values): the
    same canonical texts (keys sorted, values as DuckDB writes JSON), hashes, ranks and counts
    on both engines."""
    merged = _compare(
        builds, "mart_repeated_inputs_daily", ["client_id", "event_day", "repeat_rank"]
    )
    assert len(merged) > 0
    _assert_equal(merged, ["model", "input_hash", "input_features", "repeats",
                           "client_day_requests", "distinct_users"])  # fmt: skip
    _assert_close(merged, ["traffic_share"])
    _assert_same_times(merged, ["first_seen", "last_seen", "source_watermark"])


# ------------------------------------------------------------------ ground truth (issue 11)
def test_labels_joined_to_inferences(builds):
    merged = _compare(builds, "int_labels_joined_to_inferences", ["event_id"])
    assert len(merged) > 0
    _assert_equal(merged, ["model", "model_version", "label", "prediction", "is_correct",
                           "label_object_key", "label_line_number"])  # fmt: skip
    # seconds counted as DuckDB's date_diff counts them (boundaries crossed)
    _assert_close(merged, ["label_delay_hours", "label_value", "prediction_value"])
    _assert_same_times(merged, ["event_ts", "labeled_at", "label_ingested_at"])


def test_model_performance_daily(builds):
    merged = _compare(builds, "mart_model_performance_daily", ["model", "model_version", "day"])
    assert len(merged) > 0 and merged["labelled_predictions_duck"].sum() > 0
    assert merged["accuracy_duck"].notna().any()
    _assert_equal(
        merged,
        ["task", "predictions", "labelled_predictions", "classes", "calibration_rows",
         "regression_rows", "min_labels", "concept_drift_status"],
    )  # fmt: skip
    _assert_close(
        merged,
        ["label_coverage", "label_delay_hours_mean", "accuracy", "precision_macro",
         "recall_macro", "f1_macro", "ece", "mae", "rmse", "training_accuracy", "shortfall",
         "shortfall_z"],
    )  # fmt: skip
    _assert_same_times(merged, ["newest_labeled_at", "source_watermark"])

    keys = ["model", "model_version", "day", "class_label"]
    merged = _compare(builds, "mart_model_performance_class_daily", keys)
    assert len(merged) > 0
    _assert_equal(merged, ["true_positives", "predicted", "support", "labelled_predictions"])
    _assert_close(merged, ["precision", "recall", "f1"])


def test_fairness_daily(builds):
    keys = ["model", "model_version", "day", "segment_feature", "segment"]
    merged = _compare(builds, "mart_fairness_daily", keys)
    assert len(merged) > 0 and merged["labelled_predictions_duck"].sum() > 0
    _assert_equal(
        merged,
        ["predictions", "positive_predictions", "labelled_predictions", "correct_predictions",
         "actual_positives", "true_positives", "positive_class", "has_enough_labels",
         "has_enough_predictions", "below_floor"],
    )  # fmt: skip
    _assert_close(
        merged,
        ["prediction_rate", "label_coverage", "accuracy", "recall", "best_accuracy",
         "accuracy_ratio", "recall_ratio", "prediction_rate_ratio"],
    )  # fmt: skip


def test_label_ingestion_and_quarantine(builds):
    merged = _compare(builds, "mart_label_ingestion", ["object_key"])
    assert len(merged) > 0 and merged["labels_matched_duck"].sum() > 0
    _assert_equal(
        merged,
        ["object_size", "lines_read", "lines_loaded", "lines_quarantined", "lines_blank",
         "reconciles", "labels_matched", "labels_unmatched", "status", "batch_id"],
    )  # fmt: skip
    _assert_quarantine_equal(builds, "fct_label_quarantine")


# --------------------------------------------------------------------------- operations
def _assert_quarantine_equal(builds, table: str) -> None:
    """Both quarantine facts (log lines, label lines) share their columns."""
    merged = _compare(builds, table, ["object_key", "line_number"])
    assert len(merged) > 0
    _assert_equal(merged, ["reason", "raw_line", "raw_sha256", "batch_id"])


def test_ingestion_and_quarantine(builds):
    merged = _compare(builds, "mart_ingestion", ["object_key"])
    assert len(merged) > 0
    _assert_equal(
        merged,
        ["object_size", "lines_read", "lines_loaded", "lines_quarantined", "lines_blank",
         "lines_merged", "lines_duplicate", "reconciles", "truncated", "raw_present",
         "replayed", "status", "status_reason", "batch_id"],
    )  # fmt: skip
    assert (merged["status_duck"] != "loaded").any()  # a truncated object, quarantined lines
    _assert_quarantine_equal(builds, "fct_quarantine")


def test_failed_predictions(builds):
    merged = _compare(builds, "fct_failed_predictions", ["event_id"])
    assert len(merged) > 0
    _assert_equal(
        merged,
        ["request_id", "model", "model_version", "endpoint", "client_id", "user_hash",
         "error_type", "error_message", "retry_count", "fallback", "object_key",
         "line_number"],
    )  # fmt: skip
    _assert_close(merged, ["latency_ms"])
    _assert_same_times(merged, ["event_ts", "source_watermark"])


def test_resource_usage_hourly(builds):
    merged = _compare(builds, "mart_resource_usage_hourly", ["model", "model_version", "hour"])
    assert len(merged) > 0 and merged["events_reporting_cpu_duck"].sum() > 0
    _assert_equal(
        merged, ["requests", "events_reporting", "events_reporting_cpu", "events_reporting_gpu"]
    )
    _assert_close(
        merged,
        ["cpu_pct_avg", "cpu_pct_max", "memory_mb_avg", "memory_mb_max", "gpu_util_pct_avg",
         "gpu_util_pct_max", "gpu_memory_mb_avg", "gpu_memory_mb_max"],
    )  # fmt: skip


# ---------------------------------------------------------------------------- anomalies
def test_anomalies_hourly(builds):
    merged = _compare(builds, "mart_anomalies_hourly", ["model", "model_version", "hour", "metric"])
    assert len(merged) > 0 and set(merged["metric"]) == {
        "requests", "error_rate", "confidence_mean", "latency_p95_ms"
    }  # fmt: skip
    assert (merged["baseline_kind_duck"] != "none").any()
    _assert_equal(
        merged,
        ["sample_size", "is_latest_hour", "primary_kind", "primary_points", "fallback_points",
         "baseline_kind"],
    )  # fmt: skip
    _assert_close(
        merged,
        ["metric_value", "history_days", "primary_mean", "primary_spread", "fallback_median",
         "fallback_spread"],
    )  # fmt: skip
    # rounded to 6 decimals from figures equal to 1e-9: one rounding step apart at most
    _assert_close(merged, ["primary_z", "fallback_z", "z_score"], rel=0, abs_=1.0001e-6)


def test_input_anomalies_daily(builds):
    merged = _compare(builds, "mart_input_anomalies_daily", ["model", "model_version", "day"])
    assert len(merged) > 0 and merged["scored_events_duck"].sum() > 0
    _assert_equal(merged, ["scored_events", "day_events", "anomalous_events"])
    _assert_close(
        merged,
        ["anomaly_score_mean", "score_threshold", "expected_share", "anomalous_share",
         "anomalous_share_ratio"],
    )  # fmt: skip

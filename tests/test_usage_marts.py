"""Usage marts (errors, failed predictions, lineage, client usage, resources, repeated inputs)
against a plain reading of the simulator's raw events.

Every expected figure is computed here with pandas/NumPy over `raw_reader.reread()`, never
from the warehouse. Counts must match exactly, sums and means to 1e-9 relative, percentiles
with NumPy's linear interpolation (what `quantile_cont` does). The plain reader sees raw user
ids and raw input features, the marts keyed hashes and scrubbed features: users are compared
by count, inputs by a plain model of the scrub (see `_input_key`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raw_reader import reread

RTOL = 1e-9
TOP_N = 10  # var('repeated_inputs_top_n') default
MIN_REPEATS = 2  # var('repeated_inputs_min_repeats') default
SEED_PRICES = Path(__file__).parents[1] / "dbt_project" / "seeds" / "model_prices.csv"
#: The simulator's PII input features (simulate.py docstring): the scrub drops a feature
#: named like PII (`email`) and redacts PII-looking values (a phone, an e-mail address).
PII_DROPPED = {"email"}
PII_REDACTED = {"merchant_contact", "reply_to"}
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


# ---------------------------------------------------------------- the plain reading
def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _input_key(features: dict) -> str:
    """An input as the marts see it after the scrub: PII-named keys gone, PII values masked."""
    kept = {
        key: ("[redacted]" if key in PII_REDACTED else value)
        for key, value in features.items()
        if key not in PII_DROPPED
    }
    return json.dumps(kept, sort_keys=True)


def _mart_input_key(canonical: str) -> str:
    """The same key from a mart's canonical input text (`[redacted:<kind>]` values masked)."""
    features = json.loads(canonical)
    return json.dumps(
        {k: ("[redacted]" if k in PII_REDACTED and str(v).startswith("[redacted") else v)
         for k, v in features.items()},
        sort_keys=True,
    )  # fmt: skip


def _row(event: dict) -> dict:
    obj = event["obj"]
    when = pd.Timestamp(event["when"]).tz_convert("UTC").tz_localize(None)
    error = obj.get("error")
    if event["status"] != "error":
        error_type = "none"
    elif isinstance(error, dict):
        error_type = error.get("type") or "unspecified"
    elif isinstance(error, str) and re.fullmatch(r"[A-Za-z_]+", error):
        error_type = error
    else:
        error_type = "unspecified"
    message = error.get("message") if isinstance(error, dict) else error
    usage, resources = _dict(obj.get("usage")), _dict(obj.get("resources"))
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    features = obj.get("input_features")
    return {
        "event_id": obj.get("event_id"),
        "request_id": obj.get("request_id"),
        "model": event["name"],
        "model_version": event["version"],
        "endpoint": obj.get("endpoint") or "unknown",
        "client_id": obj.get("client_id") or "unknown",
        "user_id": obj.get("user_id"),
        "event_ts": when,
        "hour": when.floor("h"),
        "event_day": when.normalize(),
        "status": event["status"],
        "error_type": error_type,
        "error_message": message,
        "retry_count": obj.get("retry_count"),
        "fallback": obj.get("fallback"),
        "latency_ms": _number(obj.get("latency_ms")),
        "country": _dict(obj.get("geo")).get("country"),
        "has_resources": isinstance(obj.get("resources"), dict),
        "cpu_pct": _number(resources.get("cpu_pct")),
        "memory_mb": _number(resources.get("memory_mb")),
        "gpu_util_pct": _number(resources.get("gpu_util_pct")),
        "gpu_memory_mb": _number(resources.get("gpu_memory_mb")),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": _number(usage.get("cost_usd")),
        "input_key": _input_key(features) if isinstance(features, dict) else None,
    }


@pytest.fixture(scope="module")
def raw_events(sim_lake) -> pd.DataFrame:
    frame = pd.DataFrame([_row(e) for e in reread(sim_lake[0]).events.values()])
    return frame.astype({"prompt_tokens": "Float64", "completion_tokens": "Float64"})


@pytest.fixture(scope="module")
def serving(pipeline_run):
    assert pipeline_run.state == "success"
    with pipeline_run.serving() as con:
        yield con


# ---------------------------------------------------------------- comparison helpers
def _matched(expected: pd.DataFrame, got: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Both sides joined on the grain; fails if either has a group the other lacks."""
    assert not expected.empty and not got.empty
    assert not got.duplicated(keys).any(), "the mart repeats a grain key"
    merged = expected.merge(got, on=keys, how="outer", suffixes=("", "_got"), indicator=True)
    lonely = merged[merged["_merge"] != "both"]
    assert lonely.empty, f"groups on one side only:\n{lonely[[*keys, '_merge']].head(20)}"
    return merged


def _same_counts(merged: pd.DataFrame, columns: list[str]) -> None:
    for column in columns:
        want = merged[column].fillna(-1).astype("int64")
        got = merged[f"{column}_got"].fillna(-1).astype("int64")
        bad = merged[want != got]
        assert bad.empty, f"{column} differs:\n{bad.head(10).T}"


def _close(merged: pd.DataFrame, columns: list[str], rtol: float = RTOL) -> float:
    """Assert the float columns agree to `rtol` (nulls on both sides agree); return the worst."""
    worst = 0.0
    for column in columns:
        want = merged[column].astype("float64").to_numpy()
        got = merged[f"{column}_got"].astype("float64").to_numpy()
        assert (np.isnan(want) == np.isnan(got)).all(), f"{column}: null on one side only"
        both = ~np.isnan(want)
        deviation = np.abs(got[both] - want[both]) / np.maximum(np.abs(want[both]), 1e-300)
        deviation[want[both] == got[both]] = 0.0
        if deviation.size:
            worst = max(worst, float(deviation.max()))
            assert deviation.max() <= rtol, f"{column}: relative deviation {deviation.max():.3g}"
    print(f"largest relative deviation in {columns}: {worst:.3g}")
    return worst


def _p95(values: pd.Series) -> float:
    values = values.dropna().to_numpy(dtype="float64")
    return float(np.percentile(values, 95, method="linear")) if values.size else np.nan


# ---------------------------------------------------------------- errors
def test_errors_hourly_matches_raw_events(raw_events, serving):
    keys = ["model", "model_version", "endpoint", "hour", "error_type"]
    ev = raw_events.assign(
        is_error=raw_events["status"] == "error",
        retried=raw_events["retry_count"].fillna(0) > 0,
        reported=raw_events["retry_count"].notna(),
        fell_back=raw_events["fallback"].eq(True),
    )
    expected = (
        ev.groupby(keys)
        .agg(
            events=("event_ts", "size"),
            errors=("is_error", "sum"),
            retries=("retry_count", "sum"),
            events_with_retries=("retried", "sum"),
            events_reporting_retries=("reported", "sum"),
            fallbacks=("fell_back", "sum"),
        )
        .reset_index()
    )
    hour_totals = ev.groupby(keys[:4]).size().rename("hour_requests").reset_index()
    expected = expected.merge(hour_totals, on=keys[:4])
    expected["error_rate"] = expected["errors"] / expected["hour_requests"]
    got = serving.sql("select * from mart_errors_hourly").df()
    merged = _matched(expected, got, keys)
    counts = ["events", "errors", "retries", "events_with_retries", "events_reporting_retries",
              "fallbacks", "hour_requests"]  # fmt: skip
    _same_counts(merged, counts)
    _close(merged, ["error_rate"])
    # The simulator fails requests as invalid_input, timeout and model_error, with fallbacks.
    assert set(got["error_type"]) == {"none", "invalid_input", "timeout", "model_error"}
    assert got["fallbacks"].sum() > 0 and got["events_with_retries"].sum() > 0
    assert got["errors"].sum() == (raw_events["status"] == "error").sum()
    # The simulator's error burst: fraud_detector fails ~30 % of requests 13:00-16:00 on 05-12.
    fraud = got[got["model"] == "fraud_detector"].groupby("hour")[["errors", "events"]].sum()
    rate = fraud["errors"] / fraud["events"]
    burst = (rate.index >= "2025-05-12 13:00") & (rate.index < "2025-05-12 16:00")
    assert rate[burst].min() > 0.2 and rate[~burst].max() < 0.1


def test_failed_predictions_log_is_every_error_event(raw_events, serving):
    failed = raw_events[raw_events["status"] == "error"]
    got = serving.sql("select * from fct_failed_predictions").df()
    assert len(got) == len(failed)
    # Every simulated line without event_id has a unique request_id: join on that.
    merged = _matched(failed, got, ["request_id"])
    for column in ("model", "model_version", "endpoint", "client_id", "error_type"):
        assert (merged[column] == merged[f"{column}_got"]).all(), column
    _same_counts(merged, ["retry_count"])
    fallback_want = merged["fallback"].map({True: 1, False: 0})
    fallback_got = merged["fallback_got"].map({True: 1, False: 0})
    assert fallback_want.fillna(-1).eq(fallback_got.fillna(-1)).all()
    shift = (merged["event_ts_got"] - merged["event_ts"]).abs().max()
    print(f"largest event_ts difference: {shift}")
    assert shift <= pd.Timedelta(milliseconds=1)
    _close(merged, ["latency_ms"])
    # Messages: unchanged, except e-mail addresses, which the log must not show.
    scrubbed = merged["error_message"].map(lambda m: EMAIL.sub("[redacted:email]", m))
    assert (scrubbed == merged["error_message_got"]).all()
    assert merged["error_message"].str.contains("@").any()  # the comparison covered PII
    assert not got["error_message"].str.contains("@").any()
    with_id = merged["event_id"].notna()
    assert (merged.loc[with_id, "event_id"] == merged.loc[with_id, "event_id_got"]).all()


# ---------------------------------------------------------------- lineage
def test_model_lineage_matches_registry_and_raw_events(raw_events, serving, sim_lake):
    registry = {}
    for path in sorted((sim_lake[0] / "registry").glob("*/*.json")):
        entry = json.loads(path.read_text())
        registry[entry["model"], entry["version"]] = entry
    ev = raw_events.assign(is_error=raw_events["status"] == "error")
    grouped = ev.groupby(["model", "model_version"])
    expected = grouped.agg(
        first_seen=("event_ts", "min"),
        last_seen=("event_ts", "max"),
        requests=("event_ts", "size"),
        errors=("is_error", "sum"),
    ).reset_index()
    expected["latency_p95_ms"] = [_p95(g["latency_ms"]) for _, g in grouped]
    expected["error_rate"] = expected["errors"] / expected["requests"]
    model_total = expected.groupby("model")["requests"].transform("sum")
    expected["traffic_share"] = expected["requests"] / model_total

    got = serving.sql(
        "select *, training_metrics::varchar as metrics_text, params::varchar as params_text"
        " from mart_model_lineage"
    ).df()
    assert set(zip(got["model"], got["model_version"], strict=True)) == set(registry)
    merged = _matched(expected, got, ["model", "model_version"])
    _same_counts(merged, ["requests", "errors"])
    _close(merged, ["error_rate", "traffic_share", "latency_p95_ms"])
    for column in ("first_seen", "last_seen"):
        assert (merged[f"{column}_got"] - merged[column]).abs().max() <= pd.Timedelta("1ms")
    # Lineage straight from the registry documents.
    for row in merged.itertuples():
        entry = registry[row.model, row.model_version]
        assert row.lineage_source == "registry"
        assert row.git_commit == entry["git_commit"]
        assert row.training_data_hash == entry["training_data_hash"]
        deployed = pd.Timestamp(entry["deployed_at"]).tz_convert("UTC").tz_localize(None)
        assert row.deployed_at == deployed
        assert json.loads(row.metrics_text) == entry["training_metrics"]
        assert json.loads(row.params_text) == entry["params"]
        assert row.embedded_git_commits == 1
    # Drift: the worst feature status of the version's latest day in mart_drift_daily. The
    # simulator drifts customer_churn's inputs from 2025-05-10 to the end of the period.
    drift = serving.sql("select * from mart_drift_daily").df()
    latest = drift[
        drift["day"] == drift.groupby(["model", "model_version"])["day"].transform("max")
    ]
    severity = latest["status"].map({"stable": 1, "warning": 2, "drift": 3})
    worst = latest.assign(severity=severity).groupby(["model", "model_version"])["severity"].max()
    for row in merged.itertuples():
        want = {1: "stable", 2: "warning", 3: "drift"}[worst[row.model, row.model_version]]
        assert row.latest_drift_status == want
        assert row.latest_drift_day == pd.Timestamp("2025-05-14")
    churn = merged[merged["model"] == "customer_churn"]
    assert (churn["latest_drift_status"] == "drift").all()
    assert churn["latest_drifting_features"].str.contains("monthly_charges").all()
    # The canary: customer_churn v1 and v2 share the model's traffic.
    assert churn["traffic_share_got"].sum() == pytest.approx(1.0)
    assert churn["traffic_share_got"].between(0.05, 0.95).all()


# ---------------------------------------------------------------- client usage
def test_client_usage_daily_matches_raw_events(raw_events, serving):
    keys = ["client_id", "endpoint", "model", "event_day"]
    prices = pd.read_csv(SEED_PRICES).set_index("model")
    ev = raw_events.assign(is_error=raw_events["status"] == "error")
    has_tokens = ev["prompt_tokens"].notna() | ev["completion_tokens"].notna()
    priced = ev["model"].isin(prices.index) & has_tokens & ev["cost_usd"].isna()
    prompt_k = ev["prompt_tokens"].fillna(0).astype(float) / 1000
    completion_k = ev["completion_tokens"].fillna(0).astype(float) / 1000
    prompt_price = ev["model"].map(prices["prompt_usd_per_1k_tokens"]).astype(float)
    completion_price = ev["model"].map(prices["completion_usd_per_1k_tokens"]).astype(float)
    ev["estimated"] = (prompt_k * prompt_price + completion_k * completion_price).where(priced)
    ev["has_tokens"] = has_tokens
    grouped = ev.groupby(keys)
    expected = grouped.agg(
        requests=("event_ts", "size"),
        errors=("is_error", "sum"),
        distinct_users=("user_id", "nunique"),
        latency_mean_ms=("latency_ms", "mean"),
        prompt_tokens=("prompt_tokens", lambda s: s.sum() if s.notna().any() else np.nan),
        completion_tokens=("completion_tokens", lambda s: s.sum() if s.notna().any() else np.nan),
        events_with_tokens=("has_tokens", "sum"),
        events_cost_reported=("cost_usd", "count"),
        events_cost_estimated=("estimated", "count"),
        cost_reported_usd=("cost_usd", lambda s: s.sum() if s.notna().any() else np.nan),
        cost_estimated_usd=("estimated", lambda s: s.sum() if s.notna().any() else np.nan),
    ).reset_index()
    expected["latency_p95_ms"] = [_p95(g["latency_ms"]) for _, g in grouped]
    countries = ev.dropna(subset=["country"]).groupby([*keys, "country"]).size()
    top = (
        countries.rename("n").reset_index()
        .sort_values([*keys, "n", "country"], ascending=[True] * 4 + [False, True])
        .drop_duplicates(keys)
        .rename(columns={"country": "top_country", "n": "top_country_requests"})
    )  # fmt: skip
    expected = expected.merge(top, on=keys, how="left")
    costs = expected[["cost_reported_usd", "cost_estimated_usd"]]
    expected["cost_usd"] = costs.sum(axis=1).where(costs.notna().any(axis=1))
    got = serving.sql("select * from mart_client_usage_daily").df()
    merged = _matched(expected, got, keys)
    _same_counts(merged, ["requests", "errors", "distinct_users", "prompt_tokens",
                          "completion_tokens", "events_with_tokens", "events_cost_reported",
                          "events_cost_estimated", "top_country_requests"])  # fmt: skip
    _close(merged, ["latency_mean_ms", "latency_p95_ms", "cost_reported_usd",
                    "cost_estimated_usd", "cost_usd"])  # fmt: skip
    assert (merged["top_country"].fillna("") == merged["top_country_got"].fillna("")).all()
    llm = merged["model"] == "support_llm"
    assert (merged.loc[llm, "cost_source"] == "reported").all()
    assert (merged.loc[~llm, "cost_source"] == "none").all()
    assert merged.loc[llm, "prompt_tokens_got"].gt(0).all()
    # The seed prices the simulated LLM as its producer does (cost_usd is rounded to 1e-6).
    llm_events = ev[ev["model"] == "support_llm"]
    llm_price = prices.loc["support_llm"]
    at_list_price = (
        llm_events["prompt_tokens"].astype(float) / 1000 * llm_price["prompt_usd_per_1k_tokens"]
        + llm_events["completion_tokens"].astype(float)
        / 1000
        * llm_price["completion_usd_per_1k_tokens"]
    )
    assert (at_list_price - llm_events["cost_usd"]).abs().max() <= 0.5e-6 + 1e-12


# ---------------------------------------------------------------- resources
def test_resource_usage_hourly_matches_raw_events(raw_events, serving):
    keys = ["model", "model_version", "hour"]
    metrics = ["cpu_pct", "memory_mb", "gpu_util_pct", "gpu_memory_mb"]
    grouped = raw_events.groupby(keys)
    expected = grouped.agg(
        requests=("event_ts", "size"),
        events_reporting=("has_resources", "sum"),
        events_reporting_cpu=("cpu_pct", "count"),
        events_reporting_gpu=("gpu_util_pct", "count"),
        **{f"{m}_avg": (m, "mean") for m in metrics},
        **{f"{m}_max": (m, "max") for m in metrics},
    ).reset_index()
    got = serving.sql("select * from mart_resource_usage_hourly").df()
    merged = _matched(expected, got, keys)
    _same_counts(merged, ["requests", "events_reporting", "events_reporting_cpu",
                          "events_reporting_gpu"])  # fmt: skip
    _close(merged, [f"{m}_{a}" for m in metrics for a in ("avg", "max")])
    # Only the LLM reports a GPU; about a fifth of all events report resources.
    gpu_models = set(got.loc[got["events_reporting_gpu"] > 0, "model"])
    assert gpu_models == {"support_llm"}
    assert 0.1 < got["events_reporting"].sum() / got["requests"].sum() < 0.3


# ---------------------------------------------------------------- repeated inputs
def test_repeated_inputs_daily_matches_raw_events(raw_events, serving):
    client_day = ["client_id", "event_day"]
    with_input = raw_events.dropna(subset=["input_key"])
    repeats = (
        with_input.groupby([*client_day, "model", "input_key"])
        .agg(repeats=("event_ts", "size"), distinct_users=("user_id", "nunique"))
        .reset_index()
    )
    repeats = repeats[repeats["repeats"] >= MIN_REPEATS]
    traffic = raw_events.groupby(client_day).size().rename("client_day_requests_want")
    got = serving.sql("select * from mart_repeated_inputs_daily").df()
    assert len(got) > 0
    # The top N's counts per client-day (a multiset: ties may pick different inputs).
    want_top = {
        key: sorted(group["repeats"], reverse=True)[:TOP_N]
        for key, group in repeats.groupby(client_day)
    }
    got_top = {
        key: sorted(group["repeats"], reverse=True) for key, group in got.groupby(client_day)
    }
    assert got_top.keys() == want_top.keys()
    for key, counts in want_top.items():
        assert got_top[key] == counts, key
    # Each row: its input's count, users and share as the plain reading has them.
    got = got.rename(columns={"traffic_share": "traffic_share_got"})
    got["input_key"] = got["input_features"].map(_mart_input_key)
    merged = got.merge(repeats, on=[*client_day, "model", "input_key"], how="left",
                       suffixes=("_got", ""), validate="one_to_one")  # fmt: skip
    assert merged["repeats"].notna().all(), merged[merged["repeats"].isna()].head()
    _same_counts(merged, ["repeats", "distinct_users"])
    merged = merged.merge(traffic.reset_index(), on=client_day, how="left")
    assert (merged["client_day_requests"] == merged["client_day_requests_want"]).all()
    merged["traffic_share"] = merged["repeats"] / merged["client_day_requests_want"]
    _close(merged, ["traffic_share"])
    assert (got.groupby(client_day)["repeat_rank"].max() <= TOP_N).all()

"""Chart rollups (issue 20): pre-merged marts equal an independent computation from the
events, and the charts pointed at them return what they returned from the old sources."""

from __future__ import annotations

import copy
import json
from itertools import product

import numpy as np
import pandas as pd
import pytest

ALPHA = 0.01  # var('latency_relative_error') in dbt_project.yml
GAMMA = (1 + ALPHA) / (1 - ALPHA)
QUANTILES = {"latency_p50_ms": 0.50, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}
SCOPE = ["model", "model_version", "endpoint"]

LATENCY_CHART = "541229ce-986f-4041-8f36-7f858b827683"  # inference_overview/latency_percentiles
BUCKETS_DATASET = "d98cb8b1-8680-5bfb-b568-b1e1089950db"  # mart_latency_buckets_hourly
INFERENCE_DATASET = "25c7c04e-049e-4c04-b701-2c3a0ea7355f"  # mart_inference_hourly
EVENTS_DATASET = "f50f8290-d77c-5fcf-8ce7-adac66893a4e"  # fct_inferences
COUNTRY_CHART = "7b520ab2-0506-59a3-bafb-8784fe047293"  # clients_usage/country_map


def bucket_values(latency_ms: np.ndarray) -> np.ndarray:
    """The value of each latency's log-spaced bucket (macros/latency_buckets.sql), in NumPy."""
    with np.errstate(divide="ignore", invalid="ignore"):
        bucket = np.ceil(np.log(latency_ms) / np.log(GAMMA))
        value = 2 * np.power(GAMMA, bucket) / (GAMMA + 1)
    return np.where(latency_ms <= 0.001, 0.0, value)


@pytest.fixture(scope="module")
def events(pipeline_run) -> pd.DataFrame:
    """Every event with a latency: its scope, hour, day and bucket value."""
    with pipeline_run.serving() as con:
        frame = con.execute(
            "select model, model_version, coalesce(endpoint, 'unknown') as endpoint, "
            "endpoint as raw_endpoint, client_id, geo_country, "
            "date_trunc('hour', event_ts) as hour, event_day, latency_ms, status, predictions "
            "from main.fct_inferences"
        ).df()
    frame["value"] = bucket_values(frame["latency_ms"].to_numpy())
    return frame


def expected_percentiles(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group: events with a latency and quantile_cont (NumPy's linear) of bucket values."""
    timed = frame[frame["latency_ms"].notna()]
    grouped = timed.groupby(keys, dropna=False)["value"]
    out = grouped.size().rename("events").to_frame()
    for column, q in QUANTILES.items():
        out[column] = grouped.quantile(q, interpolation="linear")
    return out


def test_latency_rollup_equals_numpy_for_every_scope(pipeline_run, events):
    with pipeline_run.serving() as con:
        rollup = con.execute(
            "select hour, model, model_version, endpoint, rollup_level, events, "
            "latency_p50_ms, latency_p95_ms, latency_p99_ms, latency_buckets "
            "from main.mart_latency_rollup_hourly"
        ).df()
    checked = 0
    for kept in product([True, False], repeat=3):
        scope = [column for column, keep in zip(SCOPE, kept, strict=True) if keep]
        level = 3 - len(scope)
        # the rolled-up columns are null on the row (= all of them)
        rows = rollup[(rollup[SCOPE].notna() == list(kept)).all(axis=1)]
        assert (rows["rollup_level"] == level).all(), kept
        got = rows.set_index(["hour", *scope]).sort_index()
        want = expected_percentiles(events, ["hour", *scope]).sort_index()
        assert got.index.equals(want.index), kept
        assert (got["events"].to_numpy() == want["events"].to_numpy()).all(), kept
        for column in QUANTILES:
            np.testing.assert_allclose(got[column], want[column], rtol=1e-12, err_msg=column)
        # the finest rows carry their buckets for a merge; the rolled-up rows none
        if level == 0:
            assert all(sum(b["events"] for b in lst) == n for lst, n in
                       zip(got["latency_buckets"], got["events"], strict=True))  # fmt: skip
        else:
            assert got["latency_buckets"].isna().all()
        checked += len(got)
    assert checked == len(rollup)


def test_latency_rollup_equals_latency_quantile_bit_for_bit(pipeline_run):
    """The figures the charts drew from the buckets mart, unchanged (not merely close)."""
    select = ", ".join(
        f"latency_quantile(list(struct_pack(bucket := bucket, events := events)), {q}) as {c}"
        for c, q in QUANTILES.items()
    )
    with pipeline_run.serving() as con:
        differing = con.execute(
            f"""
            with old as (
                select hour, model, model_version, endpoint, {select}
                from main.mart_latency_buckets_hourly group by all
                union all
                select hour, null, null, null, {select}
                from main.mart_latency_buckets_hourly group by all
            )
            select count(*), count(new.hour)
            from old left join main.mart_latency_rollup_hourly as new
                on old.hour = new.hour
                and old.model is not distinct from new.model
                and old.model_version is not distinct from new.model_version
                and old.endpoint is not distinct from new.endpoint
                and new.rollup_level = case when old.model is null then 3 else 0 end
                and old.latency_p50_ms = new.latency_p50_ms
                and old.latency_p95_ms = new.latency_p95_ms
                and old.latency_p99_ms = new.latency_p99_ms
            """
        ).fetchone()
    rows, matched = differing
    assert rows > 0 and matched == rows


def test_model_daily_equals_the_events(pipeline_run, events):
    with pipeline_run.serving() as con:
        daily = con.execute(
            "select model, model_version, event_day, requests, predictions, errors, error_rate, "
            "latency_events, latency_p50_ms, latency_p95_ms, latency_p99_ms "
            "from main.mart_model_daily"
        ).df()
    keys = ["model", "model_version", "event_day"]
    daily["event_day"] = pd.to_datetime(daily["event_day"])
    frame = events.assign(event_day=pd.to_datetime(events["event_day"]))
    got = daily.set_index(keys).sort_index()
    grouped = frame.groupby(keys)
    want = pd.DataFrame({
        "requests": grouped.size(),
        "predictions": grouped["predictions"].sum(),
        "errors": grouped["status"].apply(lambda s: int((s == "error").sum())),
    }).sort_index()  # fmt: skip
    assert got.index.equals(want.index)
    for column in ("requests", "predictions", "errors"):
        assert (got[column].to_numpy() == want[column].to_numpy()).all(), column
    np.testing.assert_allclose(got["error_rate"], want["errors"] / want["requests"], rtol=1e-12)
    percentiles = expected_percentiles(frame, keys).reindex(got.index)
    assert (got["latency_events"].to_numpy() == percentiles["events"].fillna(0).to_numpy()).all()
    for column in QUANTILES:
        np.testing.assert_allclose(got[column], percentiles[column], rtol=1e-12, err_msg=column)


def test_country_rollup_equals_the_events(pipeline_run, events):
    """Requests per hour and scope, nulls kept as they are in the events."""
    keys = ["hour", "model", "model_version", "endpoint", "client_id", "geo_country"]
    with pipeline_run.serving() as con:
        rollup = con.execute(
            f"select {', '.join(keys)}, event_day, requests from main.mart_country_requests_hourly"
        ).df()
    frame = events.drop(columns="endpoint").rename(columns={"raw_endpoint": "endpoint"})
    assert frame["geo_country"].isna().any()  # the test lake has events without a country
    labels = keys[1:]  # null as one label on both sides (pandas and DuckDB spell it apart)
    frame[labels] = frame[labels].fillna("<null>")
    rollup[labels] = rollup[labels].fillna("<null>")
    want = frame.groupby(keys).size().rename("requests").sort_index()
    got = rollup.set_index(keys)["requests"].sort_index()
    assert got.index.equals(want.index)
    assert (got.to_numpy() == want.to_numpy()).all()
    days = pd.to_datetime(rollup["event_day"]) == rollup["hour"].dt.normalize()
    assert days.all()


# ---------- the charts, through Superset's chart-data API
def _saved_query_context(client, chart_id: int) -> dict:
    chart = client.request("GET", f"/api/v1/chart/{chart_id}")["result"]
    context = json.loads(chart["query_context"])
    form = context.get("form_data") or {}
    ds = form.get("datasource") or chart.get("datasource") or ""
    if not (context.get("datasource") or {}).get("id") and "__" in str(ds):
        context["datasource"] = {"id": int(ds.split("__")[0]), "type": ds.split("__")[1]}
    context["result_format"], context["result_type"] = "json", "full"
    return context


def _post(client, context: dict) -> list[dict]:
    (result,) = client.request("POST", "/api/v1/chart/data", json=context)["result"]
    assert result.get("status") in (None, "success"), result.get("error")
    return result["data"]


def _on_dataset(context: dict, dataset_id: int, time_column: str) -> dict:
    """The same chart query on another dataset whose time column has another name."""
    old = copy.deepcopy(context)
    old["datasource"] = {"id": dataset_id, "type": "table"}
    return json.loads(json.dumps(old).replace('"event_day"', f'"{time_column}"'))


def _as_points(rows: list[dict], time_key: str) -> dict:
    return {
        (row[time_key], key): value
        for row in rows
        for key, value in row.items()
        if key != time_key and value is not None
    }


def _with_filter(context: dict, filters: list[dict], grain: str | None = None) -> dict:
    changed = copy.deepcopy(context)
    for query in changed["queries"]:
        query["filters"] = query["filters"] + filters
        if grain:
            query["extras"]["time_grain_sqla"] = grain
            for column in query["columns"]:
                if isinstance(column, dict) and column.get("timeGrain"):
                    column["timeGrain"] = grain
    return changed


@pytest.fixture(scope="module")
def scope_values(pipeline_run) -> dict:
    """Distinct values of each scope column, and one (model, endpoint) pair with traffic."""
    with pipeline_run.serving() as con:
        values = {
            column: [v for (v,) in con.execute(
                f"select distinct {column} from main.mart_inference_hourly order by 1"
            ).fetchall()]
            for column in SCOPE
        }  # fmt: skip
        values["pair"] = con.execute(
            "select model, endpoint from main.mart_inference_hourly order by all limit 1"
        ).fetchone()
    return values


def test_latency_chart_same_figures_as_from_the_buckets(superset_synced, scope_values):
    """Unfiltered, one value per filter (a pre-computed row), several values and a daily
    grain (a merge of the finest rows): each equal to the same query on the buckets mart."""
    client = superset_synced.client()
    ids = superset_synced.ids
    new = _saved_query_context(client, ids["chart"][LATENCY_CHART])
    model, other = scope_values["model"][:2]
    pair_model, pair_endpoint = scope_values["pair"]
    cases = [
        ([], None),
        ([{"col": "model", "op": "IN", "val": [model]}], None),
        ([{"col": "model", "op": "IN", "val": [pair_model]},
          {"col": "endpoint", "op": "IN", "val": [pair_endpoint]}], None),
        ([{"col": "model_version", "op": "IN", "val": scope_values["model_version"][:1]}], None),
        ([{"col": "model", "op": "IN", "val": [model, other]}], None),
        ([{"col": "model", "op": "NOT IN", "val": [model]}], None),
        ([], "P1D"),
    ]  # fmt: skip
    for filters, grain in cases:
        context = _with_filter(new, filters, grain)
        old = _on_dataset(context, ids["dataset"][BUCKETS_DATASET], "hour")
        got, want = _post(client, context), _post(client, old)
        assert want, (filters, grain)
        assert _as_points(got, "hour") == _as_points(want, "hour"), (filters, grain)


@pytest.mark.parametrize(
    "chart,old_dataset",
    [
        ("5edbaa71-5eb2-5217-8859-e55b2024e100", BUCKETS_DATASET),  # Latency p95 by version
        ("c72a9cf8-fc25-5260-9436-e8520558234e", INFERENCE_DATASET),  # Error rate by version
        ("1f336202-730b-511a-8b85-12ddf1e3d2e4", INFERENCE_DATASET),  # Traffic by version
    ],
)
def test_lineage_charts_same_figures_as_before(superset_synced, chart, old_dataset):
    client = superset_synced.client()
    ids = superset_synced.ids
    new = _saved_query_context(client, ids["chart"][chart])
    old = _on_dataset(new, ids["dataset"][old_dataset], "hour")
    got, want = _post(client, new), _post(client, old)
    assert want
    got_points, want_points = _as_points(got, "event_day"), _as_points(want, "hour")
    assert got_points.keys() == want_points.keys()
    for key, value in want_points.items():
        assert got_points[key] == pytest.approx(value, rel=1e-12), key


def test_country_chart_same_figures_as_from_the_events(superset_synced, pipeline_run):
    """The country map on its rollup returns what it counted on fct_inferences: unfiltered,
    and under each filter of its dashboard (client, model, endpoint, time range)."""
    client = superset_synced.client()
    ids = superset_synced.ids
    new = _saved_query_context(client, ids["chart"][COUNTRY_CHART])
    with pipeline_run.serving() as con:
        model, endpoint, client_id, first_day, last_day = con.execute(
            "select model, endpoint, client_id, min(event_day) over (), max(event_day) over () "
            "from main.fct_inferences where endpoint is not null and client_id is not null "
            "limit 1"
        ).fetchone()
    middle = first_day + (last_day - first_day) / 2
    totals: list[int] = []
    cases = [
        [],
        [{"col": "client_id", "op": "IN", "val": [client_id]}],
        [{"col": "model", "op": "IN", "val": [model]},
         {"col": "endpoint", "op": "IN", "val": [endpoint]}],
        f"{first_day} : {middle}",
    ]  # fmt: skip
    for filters in cases:
        if isinstance(filters, str):  # the dashboard's time range, on the chart's time column
            context = copy.deepcopy(new)
            for query in context["queries"]:
                for where in query["filters"]:
                    if where["op"] == "TEMPORAL_RANGE":
                        where["val"] = filters
        else:
            context = _with_filter(new, filters)
        old = _on_dataset(context, ids["dataset"][EVENTS_DATASET], "event_day")
        got, want = _post(client, context), _post(client, old)
        assert want, filters
        as_counts = {row["geo_country"]: row["count_requests"] for row in want}
        assert {row["geo_country"]: row["count_requests"] for row in got} == as_counts, filters
        totals.append(sum(as_counts.values()))
    assert all(total < totals[0] for total in totals[1:])  # each filter did select fewer


# ---------- the bin charts of Inputs and outputs
FEATURE_DATASET = "f0b727b3-d990-5ba9-a179-462faebbf356"  # mart_feature_distribution_daily
BIN_CHARTS = [
    "7edad4d9-68fc-5e2f-8591-b277ba56707d",  # Input feature vs training reference
    "920e68a9-92eb-51bb-838f-b98cf847c33d",  # Confidence histogram vs reference
]
BIN_COLUMNS = (
    "model, model_version, feature, day, bin_kind, bin_index, bin_label, feature_role, "
    "production_count, reference_share"
)


def test_feature_bins_equal_the_marts_psi_and_category_rows(pipeline_run):
    with pipeline_run.serving() as con:
        kinds = dict(con.execute(
            "select bin_kind, count(*) from main.mart_feature_distribution_daily group by 1"
        ).fetchall())  # fmt: skip
        rows, missing, extra = con.execute(
            f"""
            with want as (
                select {BIN_COLUMNS} from main.mart_feature_distribution_daily
                where bin_kind in ('psi', 'category')
            ),
            got as (select {BIN_COLUMNS} from main.mart_feature_bins_daily)
            select (select count(*) from got),
                (select count(*) from (select * from want except all select * from got)),
                (select count(*) from (select * from got except all select * from want))
            """
        ).fetchone()
    assert kinds["ks"] > 0  # the rows left out exist
    assert rows == kinds["psi"] + kinds["category"]
    assert (missing, extra) == (0, 0)


@pytest.mark.parametrize("chart", BIN_CHARTS)
def test_bin_charts_same_figures_as_from_the_mart(superset_synced, pipeline_run, chart):
    """Each bin chart on the rollup returns what it computed on mart_feature_distribution_daily:
    unfiltered and under the dashboard's filters (model, version, feature, time range)."""
    client = superset_synced.client()
    ids = superset_synced.ids
    new = _saved_query_context(client, ids["chart"][chart])
    with pipeline_run.serving() as con:
        model, version, feature, first_day, last_day = con.execute(
            "select model, model_version, feature, min(day) over (), max(day) over () "
            "from main.mart_feature_distribution_daily "
            "where feature_role = 'input' and bin_kind = 'psi' order by all limit 1"
        ).fetchone()
    middle = first_day + (last_day - first_day) / 2
    # a chart that shows one feature keeps it; the others get one input feature
    saved = [f["val"] for f in new["queries"][0]["filters"] if f["col"] == "feature"]
    cases = [
        [],
        [{"col": "model", "op": "IN", "val": [model]}],
        [{"col": "model_version", "op": "IN", "val": [version]}],
        [{"col": "feature", "op": "IN", "val": saved or [feature]}],
        f"{first_day} : {middle}",
    ]
    for filters in cases:
        if isinstance(filters, str):
            context = copy.deepcopy(new)
            for query in context["queries"]:
                for where in query["filters"]:
                    if where["op"] == "TEMPORAL_RANGE":
                        where["val"] = filters
        else:
            context = _with_filter(new, filters)
        old = copy.deepcopy(context)
        old["datasource"] = {"id": ids["dataset"][FEATURE_DATASET], "type": "table"}
        got, want = _post(client, context), _post(client, old)
        want_points = _as_points(want, "bin")
        assert want_points, filters
        got_points = _as_points(got, "bin")
        assert got_points.keys() == want_points.keys(), filters
        for key, value in want_points.items():
            assert got_points[key] == pytest.approx(value, rel=1e-12), (filters, key)

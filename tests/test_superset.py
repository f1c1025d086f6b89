"""Dashboards as code: the bundle, and a real Superset importing it and answering from the mart."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import shutil
import socket
import zipfile
from collections import defaultdict

import duckdb
import pytest
import yaml

from inferwatch.publish import publish_serving
from inferwatch.serve import superset_sync
from inferwatch.serve.superset_sync import SupersetClient, load_assets, refresh, sync

DASHBOARD_UUID = "3cc9a05d-5eab-4bfc-a189-df930cbcf526"
TOTAL_REQUESTS_UUID = "e042055a-07bc-4cd0-8fad-ee9e0d894189"
REQUESTS_BY_MODEL_UUID = "2c71e7f2-3c4f-4891-b472-7fb37afe3432"
DATASET_UUID = "25c7c04e-049e-4c04-b701-2c3a0ea7355f"
LATENCY_DATASET_UUID = "d98cb8b1-8680-5bfb-b568-b1e1089950db"
LATENCY_CHART_UUID = "541229ce-986f-4041-8f36-7f858b827683"


def _assets_by_folder() -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = defaultdict(list)
    for name, config in load_assets().items():
        found[name.split("/", 1)[0]].append(config)
    return found


# ---------- the bundle, without a server
def test_assets_are_linked_by_uuid_and_rendered_for_import(tmp_path):
    assets = load_assets()
    by_folder = _assets_by_folder()
    databases = by_folder["databases"]
    datasets = by_folder["datasets"]
    dashboards = by_folder["dashboards"]
    charts = by_folder["charts"]
    assert "Inference overview" in {d["dashboard_title"] for d in dashboards}
    assert {dataset["database_uuid"] for dataset in datasets} == {d["uuid"] for d in databases}
    used = {chart["dataset_uuid"] for chart in charts}
    assert used <= {d["uuid"] for d in datasets}
    # read by no chart since the rollups (issue 20): kept for Explore on any slice
    unused = {d["table_name"] for d in datasets if d["uuid"] not in used}
    assert unused == {"mart_latency_buckets_hourly", "fct_inferences"}
    in_position = {
        item["meta"]["uuid"]
        for dashboard in dashboards
        for item in dashboard["position"].values()
        if isinstance(item, dict) and item.get("type") == "CHART"
    }
    assert in_position == {chart["uuid"] for chart in charts}
    all_uuids = [config["uuid"] for config in assets.values()]
    assert len(all_uuids) == len(set(all_uuids))

    serving = tmp_path / "serving.duckdb"
    links = {"${COMMIT_URL_TEMPLATE}": "https://git/{git_commit}?a='b'"}
    rendered = superset_sync.render_assets(assets, serving, links=links)
    uris = {
        rendered[name]["database_name"]: rendered[name]["sqlalchemy_uri"]
        for name in rendered
        if name.startswith("databases/")
    }
    assert uris == {
        "InferWatch serving": f"duckdb:///{serving}?access_mode=read_only",
        "inferwatch_ops": f"duckdb:///{tmp_path / 'ops.duckdb'}?access_mode=read_only",
        "InferWatch audit": f"duckdb:///{tmp_path / 'audit.duckdb'}?access_mode=read_only",
    }
    lineage = rendered["datasets/inferwatch_serving/mart_model_lineage.yaml"]
    (link,) = [c["expression"] for c in lineage["columns"] if c["column_name"] == "commit_link"]
    assert "'https://git/{git_commit}?a=''b'''" in link  # quoted for SQL
    for name, config in rendered.items():
        if name.startswith("charts/"):
            query_context = json.loads(config["query_context"])
            assert query_context["form_data"] == config["params"], name
            assert query_context["queries"], name

    bundle = zipfile.ZipFile(
        io.BytesIO(superset_sync.build_bundle(rendered, "Slice", ["databases", "datasets"]))
    )
    names = bundle.namelist()
    root = superset_sync.BUNDLE_ROOT
    assert yaml.safe_load(bundle.read(f"{root}/metadata.yaml"))["type"] == "Slice"
    assert {name.split("/")[1] for name in names} == {"metadata.yaml", "databases", "datasets"}


def test_refresh_without_a_reachable_superset_warns_and_returns_false(tmp_path, caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    settings = dataclasses.replace(
        superset_sync.Settings.from_env({"INFERWATCH_DATA_DIR": str(tmp_path)}),
        superset_url=f"http://127.0.0.1:{port}",
    )
    with caplog.at_level(logging.WARNING, logger=superset_sync.__name__):
        assert refresh(settings, password="unused") is False
    assert "not reachable" in caplog.text


# ---------- against a real Superset
@pytest.fixture(scope="module")
def synced(superset_synced, superset_instance):
    """The assets synced twice into the session's Superset; both results and a client."""
    settings = superset_synced.settings
    second = sync(
        settings, username=superset_instance.username, password=superset_instance.password
    )
    client = SupersetClient(
        superset_instance.url, superset_instance.username, superset_instance.password
    )
    return settings, superset_synced.ids, second, client


def _count(client: SupersetClient, resource: str, column: str, value: str) -> int:
    query = f"(filters:!((col:{column},opr:eq,value:'{value}')),page_size:100)"
    return client.request("GET", f"/api/v1/{resource}/?q={query}")["count"]


def _chart_data(client: SupersetClient, chart_id: int) -> dict:
    """The saved query_context run by Superset (what CSV export and reports run too)."""
    (result,) = client.request("GET", f"/api/v1/chart/{chart_id}/data/")["result"]
    assert result["status"] == "success", result.get("error")
    return result


@pytest.mark.superset
def test_sync_creates_the_dashboard_and_its_charts_by_uuid(synced):
    _, first, _, client = synced
    by_folder = _assets_by_folder()
    assert set(first["dashboard"]) == {d["uuid"] for d in by_folder["dashboards"]}
    assert set(first["chart"]) == {chart["uuid"] for chart in by_folder["charts"]}
    assert {DATASET_UUID, LATENCY_DATASET_UUID} <= set(first["dataset"])

    dashboard_id = first["dashboard"][DASHBOARD_UUID]
    dashboard = client.request("GET", f"/api/v1/dashboard/{dashboard_id}")["result"]
    assert dashboard["dashboard_title"] == "Inference overview"
    on_dashboard = client.request("GET", f"/api/v1/dashboard/{dashboard_id}/charts")["result"]
    (overview,) = [d for d in by_folder["dashboards"] if d["uuid"] == DASHBOARD_UUID]
    overview_charts = {
        item["meta"]["uuid"]
        for item in overview["position"].values()
        if isinstance(item, dict) and item.get("type") == "CHART"
    }
    assert {chart["id"] for chart in on_dashboard} == {first["chart"][u] for u in overview_charts}
    filters = json.loads(dashboard["json_metadata"])["native_filter_configuration"]
    dataset_id = first["dataset"][DATASET_UUID]
    targets = [target for f in filters for target in f["targets"] if "column" in target]
    assert targets and all(target["datasetId"] == dataset_id for target in targets)


@pytest.mark.superset
def test_second_sync_updates_in_place_without_duplicates(synced):
    _, first, second, client = synced
    assert second == first
    by_folder = _assets_by_folder()
    for database in by_folder["databases"]:
        assert _count(client, "database", "database_name", database["database_name"]) == 1
    for dataset in by_folder["datasets"]:
        assert _count(client, "dataset", "table_name", dataset["table_name"]) == 1
    for dashboard in by_folder["dashboards"]:
        assert _count(client, "dashboard", "dashboard_title", dashboard["dashboard_title"]) == 1
    for chart in by_folder["charts"]:
        assert _count(client, "chart", "slice_name", chart["slice_name"]) == 1


@pytest.mark.superset
def test_total_requests_chart_equals_the_mart(synced):
    settings, first, _, client = synced
    result = _chart_data(client, first["chart"][TOTAL_REQUESTS_UUID])
    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        (expected,) = con.execute("select sum(requests) from main.mart_inference_hourly").fetchone()
    assert expected > 0
    assert result["data"] == [{"sum_requests": expected}]


@pytest.mark.superset
def test_requests_by_model_chart_equals_the_mart(synced):
    settings, first, _, client = synced
    result = _chart_data(client, first["chart"][REQUESTS_BY_MODEL_UUID])
    # pivoted: one row per hour, one column per "model, version" series
    per_series: dict[str, float] = defaultdict(float)
    for row in result["data"]:
        for label, value in row.items():
            if label != "hour" and value is not None:
                per_series[label] += value
    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        rows = con.execute(
            "select model, model_version, sum(requests) from main.mart_inference_hourly "
            "group by all"
        ).fetchall()
        hours = con.execute(
            "select count(distinct hour) from main.mart_inference_hourly"
        ).fetchone()
    assert per_series == {f"{model}, {version}": total for model, version, total in rows}
    per_model: dict[str, float] = defaultdict(float)
    for model, _, total in rows:
        per_model[model] += total
    assert len(per_model) > 1
    for model, total in per_model.items():
        labels = [label for label in per_series if label.startswith(f"{model}, ")]
        assert sum(per_series[label] for label in labels) == total
    assert result["rowcount"] == hours[0]


@pytest.mark.superset
def test_latency_chart_merges_buckets_within_one_percent_of_exact(synced):
    """The p95 Superset draws per hour comes from the buckets, not averaged percentiles."""
    settings, first, _, client = synced
    result = _chart_data(client, first["chart"][LATENCY_CHART_UUID])
    assert result["rowcount"] > 24 * 14 - 5
    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        exact = dict(
            con.execute(
                "select epoch_ms(date_trunc('hour', event_ts)), quantile_cont(latency_ms, 0.95) "
                "from main.fct_inferences group by 1"
            ).fetchall()
        )
    worst = 0.0
    for row in result["data"]:
        worst = max(worst, abs(row["latency_p95_ms"] - exact[row["hour"]]) / exact[row["hour"]])
    assert worst <= 0.01


def _imports_logged(client: SupersetClient) -> int:
    """Import API calls in Superset's action log (what each ``*RestApi.import_`` logs)."""
    query = "(filters:!((col:action,opr:ct,value:import_)),page_size:1)"
    return client.request("GET", f"/api/v1/log/?q={query}")["count"]


def _total_requests(serving_path) -> float:
    with duckdb.connect(str(serving_path), read_only=True) as con:
        return con.execute("select sum(requests) from main.mart_inference_hourly").fetchone()[0]


@pytest.mark.superset
def test_refresh_shows_a_column_the_mart_gained(synced, superset_instance, tmp_path):
    """Later builds published in another data dir: one with new figures only (the refresh
    imports nothing, the chart shows them), then one whose mart gained a column (re-synced)."""
    settings, first, _, client = synced
    dataset_id = first["dataset"][DATASET_UUID]
    chart_id = first["chart"][TOTAL_REQUESTS_UUID]
    later = dataclasses.replace(settings, data_dir=tmp_path)
    later.warehouse_path.parent.mkdir(parents=True)
    for name in ("warehouse_path", "ops_path", "secrets_path"):  # secrets: the same demo users
        shutil.copy(getattr(settings, name), getattr(later, name))
    publish_serving(later)
    try:
        assert refresh(later, password=superset_instance.password) is True  # first: in full
        imported = _imports_logged(client)
        assert imported > 0

        # the next build: more requests in the last hour, nothing else new (rebuilt rows carry
        # a newer watermark, as a build's do: what publishing looks for)
        with duckdb.connect(str(later.warehouse_path)) as con:
            con.execute(
                "update main.mart_inference_hourly set requests = requests + 1000, "
                "source_watermark = source_watermark + interval 1 hour "
                "where hour = (select max(hour) from main.mart_inference_hourly)"
            )
        publish_serving(later)
        assert refresh(later, password=superset_instance.password) is True
        assert _imports_logged(client) == imported  # nothing re-imported
        expected = _total_requests(later.serving_path)
        assert expected > _total_requests(settings.serving_path)
        assert _chart_data(client, chart_id)["data"] == [{"sum_requests": expected}]

        # a build with one more column: re-synced, the dataset shows it
        with duckdb.connect(str(later.warehouse_path)) as con:
            con.execute(
                "alter table main.mart_inference_hourly add column fallbacks bigint default 0"
            )
        publish_serving(later)  # the served views are rebuilt over the grown table's files
        assert refresh(later, password=superset_instance.password) is True
        assert _imports_logged(client) > imported
        columns = client.request("GET", f"/api/v1/dataset/{dataset_id}")["result"]["columns"]
        assert "fallbacks" in {column["column_name"] for column in columns}
        total = _chart_data(client, chart_id)["data"]
        assert total == [{"sum_requests": _total_requests(later.serving_path)}]
    finally:  # point Superset back at the session's serving file
        sync(settings, password=superset_instance.password)


def test_the_sync_digest_follows_assets_and_served_columns(tmp_path):
    """What decides a re-sync: the same inputs give the same digest, new rows too; a served
    mart's new column, or a changed asset, another."""
    settings = superset_sync.Settings.from_env({"INFERWATCH_DATA_DIR": str(tmp_path / "data")})
    settings.serving_path.parent.mkdir(parents=True)
    serving = str(settings.serving_path)
    with duckdb.connect(serving) as con:
        con.execute("create table mart_inference_hourly (hour timestamp, requests bigint)")
    assets = tmp_path / "superset"
    shutil.copytree(superset_sync.SUPERSET_ASSETS_DIR, assets)
    digest = superset_sync.sync_digest(settings, assets)
    assert superset_sync.sync_digest(settings, assets) == digest

    with duckdb.connect(serving) as con:  # a new build: new figures, the same columns
        con.execute("insert into mart_inference_hourly values ('2025-06-01 12:00', 42)")
    assert superset_sync.sync_digest(settings, assets) == digest

    with duckdb.connect(serving) as con:
        con.execute("alter table mart_inference_hourly add column fallbacks bigint default 0")
    grown = superset_sync.sync_digest(settings, assets)
    assert grown != digest

    (chart,) = [path for path in (assets / "charts").rglob("*.yaml")
                if yaml.safe_load(path.read_text())["uuid"] == TOTAL_REQUESTS_UUID]  # fmt: skip
    config = yaml.safe_load(chart.read_text())
    chart.write_text(yaml.safe_dump({**config, "slice_name": "Requests, all models"}))
    assert superset_sync.sync_digest(settings, assets) not in (digest, grown)

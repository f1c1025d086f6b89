"""The six dashboards against a real Superset: every chart answers, figures match the marts,
roles keep stakeholders and analysts where they belong, and the sync is idempotent."""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections import defaultdict

import pytest
import requests
import yaml

from inferwatch.config import SUPERSET_ASSETS_DIR
from inferwatch.serve.superset_access import ADMIN_ONLY_DASHBOARD_SLUGS
from inferwatch.serve.superset_sync import load_assets, sync

pytestmark = pytest.mark.superset

DASHBOARD_FILES = (
    "inference_overview", "inputs_outputs", "errors", "clients_usage", "models_lineage",
    "data_quality", "fairness",
)  # fmt: skip
#: Admin-only dashboards (the audit trail, tests/test_governance.py): no filters, no roles.
ADMIN_ONLY_FILES = ("audit",)
TOTAL_REQUESTS = "e042055a-07bc-4cd0-8fad-ee9e0d894189"
ERROR_RATE_TOTAL = "charts/inference_overview/error_rate_total.yaml"
TOP_ENDPOINTS = "97c69dfd-af01-4a87-8b97-658248531d37"


def _uuid(name: str) -> str:
    return load_assets()[name]["uuid"]


def _shared_dashboard_ids(superset_synced) -> set[int]:
    """Every synced dashboard but the admin-only ones (tests/test_governance.py checks those)."""
    admin_only = {
        c["uuid"]
        for name, c in load_assets().items()
        if name.startswith("dashboards/") and c["slug"] in ADMIN_ONLY_DASHBOARD_SLUGS
    }
    return {i for u, i in superset_synced.ids["dashboard"].items() if u not in admin_only}


def _chart_data(client, chart_id: int) -> dict:
    (result,) = client.request("GET", f"/api/v1/chart/{chart_id}/data/")["result"]
    assert result["status"] == "success", result.get("error")
    return result


# ---------- the assets themselves
def test_six_dashboards_each_chart_with_params_and_a_query_context():
    assets = load_assets()
    dashboards = {name: c for name, c in assets.items() if name.startswith("dashboards/")}
    assert sorted(dashboards) == sorted(
        f"dashboards/{d}.yaml" for d in DASHBOARD_FILES + ADMIN_ONLY_FILES
    )
    charts = {c["uuid"]: c for name, c in assets.items() if name.startswith("charts/")}
    datasets = {c["uuid"]: c for name, c in assets.items() if name.startswith("datasets/")}
    databases = {c["uuid"] for name, c in assets.items() if name.startswith("databases/")}
    assert len(databases) == 3
    on_dashboards = set()
    for name, dashboard in dashboards.items():
        items = [i for i in dashboard["position"].values() if isinstance(i, dict)]
        uuids = [i["meta"]["uuid"] for i in items if i.get("type") == "CHART"]
        assert set(uuids) <= set(charts), name
        on_dashboards |= set(uuids)
        if dashboard["slug"] in ADMIN_ONLY_DASHBOARD_SLUGS:
            continue
        assert len(uuids) >= 4, name
        filters = dashboard["metadata"]["native_filter_configuration"]
        kinds = {f["filterType"] for f in filters}
        assert {"filter_time", "filter_select"} <= kinds, name
        assert "Model" in {f["name"] for f in filters}, name
        for target in (t for f in filters for t in f["targets"] if t):
            assert target["datasetUuid"] in datasets, name
    assert on_dashboards == set(charts)  # no chart outside a dashboard (it would not import)
    for chart in charts.values():
        assert chart["dataset_uuid"] in datasets, chart["slice_name"]
        assert chart["params"]["viz_type"] == chart["viz_type"]
        assert chart["query_context"]["queries"], chart["slice_name"]
    assert {d["database_uuid"] for d in datasets.values()} == databases


def test_latency_percentiles_come_from_the_mergeable_buckets():
    assets = load_assets()
    for name, dataset in assets.items():
        if not name.startswith("datasets/"):
            continue
        for metric in dataset["metrics"]:
            if "p95" in metric["metric_name"] and dataset["table_name"] != "mart_latency_daily":
                assert "latency_quantile(" in metric["expression"], (name, metric["metric_name"])


# ---------- against the session's Superset
def test_every_saved_query_context_returns_data(superset_synced, capsys):
    """What chart-data, CSV export and reports run: no chart errors; timings per dashboard."""
    client = superset_synced.client()
    assets = load_assets()
    per_dashboard: dict[str, list[float]] = defaultdict(list)
    for name, chart in assets.items():
        if not name.startswith("charts/"):
            continue
        chart_id = superset_synced.ids["chart"][chart["uuid"]]
        started = time.monotonic()
        _chart_data(client, chart_id)
        per_dashboard[name.split("/")[1]].append(time.monotonic() - started)
    with capsys.disabled():
        for dashboard, seconds in sorted(per_dashboard.items()):
            seconds = sorted(seconds)
            p95 = seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))]
            print(
                f"\n  {dashboard}: {len(seconds)} charts, chart-data median "
                f"{statistics.median(seconds):.2f} s, p95 {p95:.2f} s, max {seconds[-1]:.2f} s",
                end="",
            )


def test_overview_figures_match_the_marts(superset_synced, pipeline_run):
    client = superset_synced.client()
    charts = superset_synced.ids["chart"]
    with pipeline_run.serving() as con:
        requests_, errors = con.execute(
            "select sum(requests), sum(errors) from main.mart_inference_hourly"
        ).fetchone()
        by_endpoint = dict(
            con.execute(
                "select endpoint, count(*) from main.fct_inferences group by endpoint"
            ).fetchall()
        )
    assert requests_ == sum(by_endpoint.values()) > 0
    assert _chart_data(client, charts[TOTAL_REQUESTS])["data"] == [{"sum_requests": requests_}]
    (row,) = _chart_data(client, charts[_uuid(ERROR_RATE_TOTAL)])["data"]
    assert row["overall_error_rate"] == pytest.approx(errors / requests_)
    rows = _chart_data(client, charts[TOP_ENDPOINTS])["data"]
    assert {r["endpoint"]: r["sum_requests"] for r in rows} == by_endpoint


def test_data_quality_dashboard_reads_ops(superset_synced, pipeline_run):
    client = superset_synced.client()
    charts = superset_synced.ids["chart"]
    with pipeline_run.ops() as con:
        expected = dict(
            con.execute("select reason, count(*) from fct_quarantine group by 1").fetchall()
        )
        runs = con.execute("select count(*) from pipeline_runs").fetchone()[0]
    rows = _chart_data(client, charts[_uuid("charts/data_quality/quarantine_reasons.yaml")])["data"]
    assert {r["reason"]: r["quarantined"] for r in rows} == expected
    assert _chart_data(client, charts[_uuid("charts/data_quality/runs.yaml")])["rowcount"] == runs


def test_model_coverage_chart_lists_every_version_in_traffic(superset_synced, pipeline_run):
    """Data quality's coverage table (serving.duckdb) shows each model version of the marts
    with its reference and registry status (tests/test_onboarding.py: the warnings)."""
    client = superset_synced.client()
    chart_id = superset_synced.ids["chart"][_uuid("charts/data_quality/model_coverage.yaml")]
    rows = _chart_data(client, chart_id)["data"]
    with pipeline_run.serving() as con:
        versions = set(
            con.execute("select distinct model, model_version from fct_inferences").fetchall()
        )
    assert {(r["model"], r["model_version"]) for r in rows} == versions
    assert all((r["status"] == "ok") == (r["warning"] is None) for r in rows)


def _status(session: requests.Session, url: str, method: str = "GET", **kwargs) -> int:
    return session.request(method, url, timeout=60, **kwargs).status_code


def _sql(client, database_id: int, sql: str) -> requests.Response:
    return client.http.post(
        f"{client.url}/api/v1/sqllab/execute/",
        json={"database_id": database_id, "sql": sql, "runAsync": False, "schema": "main"},
        timeout=60,
    )


def _database_ids(superset_synced) -> tuple[int, int]:
    assets = load_assets()
    ids = superset_synced.ids["database"]
    return (
        ids[assets["databases/inferwatch_serving.yaml"]["uuid"]],
        ids[assets["databases/inferwatch_ops.yaml"]["uuid"]],
    )


def test_anonymous_gets_nothing(superset_synced):
    url = superset_synced.instance.url
    anonymous = requests.Session()
    dashboard_id = next(iter(superset_synced.ids["dashboard"].values()))
    chart_id = superset_synced.ids["chart"][TOTAL_REQUESTS]
    for path in (
        "/api/v1/dashboard/",
        f"/api/v1/dashboard/{dashboard_id}",
        f"/api/v1/chart/{chart_id}/data/",
        "/api/v1/dataset/",
        "/api/v1/database/",
    ):
        assert _status(anonymous, f"{url}{path}") == 401, path
    page = anonymous.get(f"{url}/superset/dashboard/{dashboard_id}/", timeout=60)
    assert "/login" in page.url  # redirected to the login form, no dashboard


def test_stakeholder_reads_dashboards_and_nothing_else(superset_synced):
    client = superset_synced.client("stakeholder")
    serving_id, ops_id = _database_ids(superset_synced)
    dashboards = client.request("GET", "/api/v1/dashboard/?q=(page_size:100)")["result"]
    assert {d["id"] for d in dashboards} == _shared_dashboard_ids(superset_synced)
    assert _status(client.http, f"{client.url}/api/v1/dataset/") == 403
    assert _status(client.http, f"{client.url}/api/v1/database/") == 403
    dataset_id = next(iter(superset_synced.ids["dataset"].values()))
    assert _status(client.http, f"{client.url}/api/v1/dataset/{dataset_id}") == 403
    for database_id in (serving_id, ops_id):
        assert _sql(client, database_id, "select 1").status_code in (401, 403)
    # a saved chart's data outside a dashboard: no datasource access
    chart_id = superset_synced.ids["chart"][TOTAL_REQUESTS]
    assert _status(client.http, f"{client.url}/api/v1/chart/{chart_id}/data/") in (403, 404)


def test_analyst_queries_the_marts_but_not_ops(superset_synced, pipeline_run):
    client = superset_synced.client("analyst")
    serving_id, ops_id = _database_ids(superset_synced)
    response = _sql(client, serving_id, "select sum(requests) as n from mart_inference_hourly")
    assert response.status_code == 200, response.text[:500]
    with pipeline_run.serving() as con:
        (expected,) = con.execute("select sum(requests) from main.mart_inference_hourly").fetchone()
    assert response.json()["data"] == [{"n": expected}]
    refused = _sql(client, ops_id, "select count(*) from mart_data_quality")
    # Superset hides a database the role may not access: "database ... was not found"
    assert refused.status_code != 200, refused.text[:500]
    assert "not found" in refused.text or refused.status_code in (401, 403), refused.text[:500]
    databases = client.request("GET", "/api/v1/database/?q=(page_size:100)")["result"]
    assert {d["id"] for d in databases} == {serving_id}
    dashboards = client.request("GET", "/api/v1/dashboard/?q=(page_size:100)")["result"]
    assert {d["id"] for d in dashboards} == _shared_dashboard_ids(superset_synced)
    # Explore: the analyst runs a saved chart's query directly
    chart_id = superset_synced.ids["chart"][TOTAL_REQUESTS]
    assert _chart_data(client, chart_id)["data"] == [{"sum_requests": expected}]


# ---------- idempotent sync
def _snapshot(superset_synced) -> dict:
    client = superset_synced.client()
    ids = superset_synced.ids
    snap: dict = {}
    for uuid, chart_id in ids["chart"].items():
        chart = client.request("GET", f"/api/v1/chart/{chart_id}")["result"]
        snap[f"chart {uuid}"] = {
            k: chart.get(k) for k in ("slice_name", "params", "query_context", "viz_type")
        }
    for uuid, dataset_id in ids["dataset"].items():
        dataset = client.request("GET", f"/api/v1/dataset/{dataset_id}")["result"]
        snap[f"dataset {uuid}"] = {
            "sql": dataset["sql"],
            "columns": sorted(
                (c["column_name"], c["expression"] or "", c["type"] or "")
                for c in dataset["columns"]
            ),
            "metrics": sorted((m["metric_name"], m["expression"]) for m in dataset["metrics"]),
        }
    for uuid, dashboard_id in ids["dashboard"].items():
        dashboard = client.request("GET", f"/api/v1/dashboard/{dashboard_id}")["result"]
        snap[f"dashboard {uuid}"] = {
            "json_metadata": json.loads(dashboard["json_metadata"]),
            "position": json.loads(dashboard["position_json"]),
            "roles": sorted(r["id"] for r in dashboard["roles"]),
        }
    for name, role_id in ids["role"].items():
        rows = client.request("GET", f"/api/v1/security/roles/{role_id}/permissions/")["result"]
        snap[f"role {name}"] = sorted(row["id"] for row in rows)
    snap["counts"] = {
        resource: client.request("GET", f"/api/v1/{resource}/?q=(page_size:1)")["count"]
        for resource in ("chart", "dataset", "dashboard", "database")
    }
    return snap


def test_resync_changes_nothing(superset_synced):
    before = _snapshot(superset_synced)
    again = sync(
        superset_synced.settings,
        username=superset_synced.instance.username,
        password=superset_synced.instance.password,
    )
    assert again == superset_synced.ids
    after = _snapshot(superset_synced)
    assert after == before


def test_editing_a_chart_yaml_and_resyncing_updates_that_chart(superset_synced, tmp_path):
    assets_dir = tmp_path / "superset"
    shutil.copytree(SUPERSET_ASSETS_DIR, assets_dir)
    chart_file = assets_dir / "charts" / "errors" / "top_error_types.yaml"
    chart = yaml.safe_load(chart_file.read_text())
    chart["slice_name"] = "Top error types (edited)"
    chart["params"]["row_limit"] = 7
    chart["query_context"]["queries"][0]["row_limit"] = 7
    chart_file.write_text(yaml.safe_dump(chart, sort_keys=False))
    client = superset_synced.client()
    chart_id = superset_synced.ids["chart"][chart["uuid"]]
    others_before = {
        uuid: client.request("GET", f"/api/v1/chart/{cid}")["result"]["slice_name"]
        for uuid, cid in superset_synced.ids["chart"].items()
        if uuid != chart["uuid"]
    }
    kwargs = {
        "username": superset_synced.instance.username,
        "password": superset_synced.instance.password,
    }
    try:
        ids = sync(superset_synced.settings, assets_dir=assets_dir, **kwargs)
        assert ids["chart"][chart["uuid"]] == chart_id
        saved = client.request("GET", f"/api/v1/chart/{chart_id}")["result"]
        assert saved["slice_name"] == "Top error types (edited)"
        assert json.loads(saved["params"])["row_limit"] == 7
        assert json.loads(saved["query_context"])["queries"][0]["row_limit"] == 7
        others_after = {
            uuid: client.request("GET", f"/api/v1/chart/{cid}")["result"]["slice_name"]
            for uuid, cid in superset_synced.ids["chart"].items()
            if uuid != chart["uuid"]
        }
        assert others_after == others_before
    finally:
        sync(superset_synced.settings, **kwargs)
    restored = client.request("GET", f"/api/v1/chart/{chart_id}")["result"]
    assert restored["slice_name"] == "Top error types"


def test_dbt_exposures_list_every_mart_each_dashboard_reads():
    """dbt_project/models/exposures.yml: one exposure per dashboard, naming each dbt model its
    charts read (ops tables written by the validation step are not dbt models)."""
    exposures = yaml.safe_load(
        (SUPERSET_ASSETS_DIR.parent / "dbt_project" / "models" / "exposures.yml").read_text()
    )["exposures"]
    declared = {e["name"]: {ref[5:-2] for ref in e["depends_on"]} for e in exposures}
    assets = load_assets()
    datasets = {c["uuid"]: c for n, c in assets.items() if n.startswith("datasets/")}
    charts = {c["uuid"]: c for n, c in assets.items() if n.startswith("charts/")}
    read: dict[str, set[str]] = {}
    for name, dashboard in assets.items():
        if name.startswith("dashboards/") and dashboard["slug"] not in ADMIN_ONLY_DASHBOARD_SLUGS:
            tables = read.setdefault(name.split("/")[1].removesuffix(".yaml"), set())
            for item in dashboard["position"].values():
                if isinstance(item, dict) and item.get("type") == "CHART":
                    dataset = datasets[charts[item["meta"]["uuid"]]["dataset_uuid"]]
                    if not dataset["sql"] and dataset["table_name"].startswith(("mart_", "fct_")):
                        tables.add(dataset["table_name"])
    tables_not_dbt = {"mart_data_quality"}
    assert declared == {dash: tables - tables_not_dbt for dash, tables in read.items()}

"""The scaled-out metadata databases, natively: Airflow and Superset on PostgreSQL.

A PostgreSQL server from Debian's package is started for this module (127.0.0.1, a free port,
a generated password, stopped by pid). `inferwatch run` runs the pipeline DAG with Airflow's
metadata in it, and a second Superset keeps its metadata there, imports the dashboards and
answers a chart from the published marts. The figures are compared with the simulator's
truth and with DuckDB, and the metadata rows are read back from PostgreSQL itself.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import psycopg2
import pytest

from conftest import free_port, settings_for
from inferwatch.serve import postgres_server, superset_server
from inferwatch.serve.superset_sync import SupersetClient, sync

pytestmark = pytest.mark.postgres

START, END = datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 3, tzinfo=UTC)
EVENTS = 12_000
TOTAL_REQUESTS_UUID = "e042055a-07bc-4cd0-8fad-ee9e0d894189"  # superset/charts/inference_overview


@pytest.fixture(scope="module")
def postgres():
    # Not under pytest's tmp folders: as root the server runs as `postgres`, which must be
    # able to reach its data folder (pytest's are 0700 root).
    root = Path(tempfile.mkdtemp(prefix="inferwatch-pg-"))
    os.chmod(root, 0o755)
    data_dir = root / "data"
    password = postgres_server.init(data_dir)
    server = postgres_server.start(data_dir, free_port(), password)
    try:
        yield server
    finally:
        postgres_server.stop(server)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def run_on_postgres(postgres, tmp_path_factory):
    """`inferwatch run` in a subprocess whose Airflow keeps its metadata in PostgreSQL."""
    from inferwatch.simulate import simulate

    root = tmp_path_factory.mktemp("pg_run")
    lake, truth = root / "lake", root / "truth"
    simulate(str(lake), truth_dir=truth, start=START, end=END, events=EVENTS, seed=11)
    airflow_url = postgres.create_database("airflow")
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(root / "airflow"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=airflow_url,
        INFERWATCH_LAKE_URL=str(lake),
        INFERWATCH_DATA_DIR=str(root / "state"),
    )
    result = subprocess.run(
        [str(Path(sys.executable).with_name("inferwatch")), "run"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    settings = settings_for(str(lake), root / "state")
    return settings, truth, result


def _pg_rows(server: postgres_server.PostgresServer, database: str, sql: str) -> list[tuple]:
    conn = psycopg2.connect(
        host="127.0.0.1", port=server.port, user=postgres_server.SUPERUSER,
        password=server.password, dbname=database,
    )  # fmt: skip
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def test_server_listens_on_loopback_only(postgres):
    (listen,) = _pg_rows(postgres, "postgres", "show listen_addresses")[0]
    assert listen == "127.0.0.1"


def test_pipeline_runs_with_airflow_metadata_in_postgres(postgres, run_on_postgres):
    settings, truth, result = run_on_postgres
    assert "inferwatch_pipeline: success" in result.stdout
    runs = _pg_rows(
        postgres, "airflow", "select state from dag_run where dag_id = 'inferwatch_pipeline'"
    )
    assert runs == [("success",)]
    states = _pg_rows(
        postgres, "airflow",
        "select task_id, state from task_instance where dag_id = 'inferwatch_pipeline'",
    )  # fmt: skip
    assert {"discover", "ingest", "transform", "validate", "publish"} <= {t for t, _ in states}
    assert {state for _, state in states} <= {"success", "skipped"}, states

    import pandas as pd

    daily = pd.read_csv(truth / "daily.csv")
    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        (requests,) = con.execute("select count(*) from main.fct_inferences").fetchone()
    assert requests == daily["requests"].sum() > 0


@pytest.mark.superset
def test_superset_keeps_its_metadata_in_postgres_and_serves_the_marts(
    postgres, run_on_postgres, tmp_path_factory
):
    settings, _, _ = run_on_postgres
    if not (superset_server.superset_venv() / "bin" / "gunicorn").exists():
        pytest.fail(f"no Superset environment at {superset_server.superset_venv()}: make setup")
    metadata_url = postgres.create_database("superset")
    home = tmp_path_factory.mktemp("superset_pg_home")
    password = secrets.token_urlsafe(18)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SUPERSET_METADATA_URI", metadata_url)
        superset_server.prepare(home, admin_password=password, secret_key=secrets.token_urlsafe(48))
        port = free_port()
        superset_server.start(home, port=port, host="127.0.0.1")
        try:
            url = f"http://127.0.0.1:{port}"
            synced = dataclasses.replace(settings, superset_url=url)
            ids = sync(synced, username=superset_server.ADMIN_USERNAME, password=password)
            client = SupersetClient(url, superset_server.ADMIN_USERNAME, password)
            chart_id = ids["chart"][TOTAL_REQUESTS_UUID]
            (result,) = client.request("GET", f"/api/v1/chart/{chart_id}/data/")["result"]
        finally:
            superset_server.stop(home)

    assert result["status"] == "success", result.get("error")
    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        (expected,) = con.execute("select sum(requests) from main.mart_inference_hourly").fetchone()
    assert result["data"] == [{"sum_requests": expected}]
    # The dashboards, charts and users Superset just served are rows in PostgreSQL.
    dashboards = _pg_rows(postgres, "superset", "select uuid::text from dashboards")
    assert {row[0] for row in dashboards} >= set(map(str, ids["dashboard"]))
    (charts,) = _pg_rows(postgres, "superset", "select count(*) from slices")[0]
    assert charts == len(ids["chart"])
    assert not (home / "superset.db").exists()

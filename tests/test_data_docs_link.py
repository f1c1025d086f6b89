"""GX Data Docs and dbt's docs from the Airflow UI: the plugin loads from the plugins folder,
Airflow's own API server application serves the Data Docs folder and dbt's docs site behind
Airflow's login, and the validate and transform tasks link to them (extra links and task docs).

Airflow's API server application runs in-process (what `airflow api-server` serves, without its
~30 s start-up); the DAG and a run of it are real rows in the session's metadata DB.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from inferwatch.config import PROJECT_ROOT, Settings
from inferwatch.serve import data_docs

DAG_ID = "inferwatch_pipeline"
PREFIX = "/inferwatch-data-docs"
DBT_PREFIX = "/inferwatch-dbt-docs"
PLUGIN_FILE = PROJECT_ROOT / "plugins" / "inferwatch_data_docs.py"

# A small Data Docs site laid out as Great Expectations writes one.
INDEX_HTML = """<!doctype html><html><head>
<link rel="stylesheet" href="static/styles/data_docs_default_styles.css"></head>
<body><h1>Data Docs</h1><a href="validations/contract/run-1/20250520T010000Z/abc.html">contract</a>
</body></html>"""
VALIDATION_HTML = "<html><body><h1>contract: run-1</h1><p>Success</p></body></html>"
STYLES_CSS = "body { font-family: sans-serif; }"


@pytest.fixture(scope="module")
def plugins_manager():
    from airflow import plugins_manager

    plugins_manager.ensure_plugins_loaded()
    return plugins_manager


@pytest.fixture(scope="module")
def api(plugins_manager):
    from airflow.api_fastapi.app import create_app

    base_url = os.environ["AIRFLOW__API__BASE_URL"]
    with TestClient(create_app("core"), base_url=base_url, follow_redirects=False) as client:
        yield client


def _token(role: str | None) -> dict[str, str]:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    user = SimpleAuthManagerUser(username=f"datadocs-{role}", role=role)
    return {"Authorization": f"Bearer {get_auth_manager().generate_jwt(user)}"}


@pytest.fixture(scope="module")
def admin(api) -> dict[str, str]:
    return _token("admin")


@pytest.fixture(scope="module")
def dag_run(api, admin):
    """The pipeline DAG parsed and synced to the metadata DB, and a run of it made through the
    REST API (nothing executes it: no scheduler runs in the tests). Deleted afterwards."""
    from airflow.utils.cli import get_bagged_dag

    get_bagged_dag(None, DAG_ID)  # parse the DAGs folder and sync it to the DB, as the CLI does
    run_id = f"data-docs-link-{uuid.uuid4().hex[:8]}"
    made = api.post(
        f"/api/v2/dags/{DAG_ID}/dagRuns",
        json={"dag_run_id": run_id, "logical_date": None},
        headers=admin,
    )
    assert made.status_code == 200, made.text
    yield run_id
    api.delete(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", headers=admin)


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("INFERWATCH_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def write_data_docs(docs_dir: Path) -> None:
    files = {
        "index.html": INDEX_HTML,
        "validations/contract/run-1/20250520T010000Z/abc.html": VALIDATION_HTML,
        "static/styles/data_docs_default_styles.css": STYLES_CSS,
    }
    for relative, text in files.items():
        (docs_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (docs_dir / relative).write_text(text)


# ------------------------------------------------------------------ the plugin loads


def test_plugin_loads_from_the_plugins_folder(plugins_manager):
    assert plugins_manager.get_import_errors() == {}
    info = {plugin["name"]: plugin for plugin in plugins_manager.get_plugin_info()}
    ours = info["inferwatch_data_docs"]
    assert ours["fastapi_apps"] == [
        {
            "app": "fastapi.applications.FastAPI",
            "url_prefix": PREFIX,
            "name": "InferWatch Data Docs",
        },
        {
            "app": "fastapi.applications.FastAPI",
            "url_prefix": DBT_PREFIX,
            "name": "InferWatch dbt Docs",
        },
    ]
    assert ours["global_operator_extra_links"] == [
        "<inferwatch_data_docs.DataDocsLink object>",
        "<inferwatch_data_docs.DbtDocsLink object>",
    ]
    assert [link.name for link in plugins_manager.get_global_operator_extra_links()] == [
        "Data Docs",
        "dbt Docs",
    ]
    plugin_module = sys.modules["inferwatch_data_docs"]
    assert Path(plugin_module.__file__).resolve() == PLUGIN_FILE
    # .airflowignore kept the package out of the walk: no file of plugins/inferwatch/ became a
    # top-level module (config.py as `config`, …); it is only imported as `inferwatch.*`.
    package_dir = PROJECT_ROOT / "plugins" / "inferwatch"
    walked = [
        name
        for name, module in list(sys.modules.items())
        if getattr(module, "__file__", None)
        and Path(module.__file__).resolve().is_relative_to(package_dir)
        and not name.startswith("inferwatch")
    ]
    assert walked == []


# ------------------------------------------------------------------ the link


def test_validate_task_links_to_the_data_docs(api, admin, dag_run):
    base_url = os.environ["AIRFLOW__API__BASE_URL"]  # http://127.0.0.1:<port>
    expected = data_docs.data_docs_url(base_url)
    assert expected == f"{base_url}/inferwatch-data-docs/index.html"
    links = api.get(
        f"/api/v2/dags/{DAG_ID}/dagRuns/{dag_run}/taskInstances/validate/links", headers=admin
    )
    assert links.status_code == 200, links.text
    assert links.json()["extra_links"] == {"Data Docs": expected, "dbt Docs": None}
    dbt_expected = f"{base_url}/inferwatch-dbt-docs/index.html"
    transform = api.get(
        f"/api/v2/dags/{DAG_ID}/dagRuns/{dag_run}/taskInstances/transform/links", headers=admin
    )
    assert transform.json()["extra_links"] == {"Data Docs": None, "dbt Docs": dbt_expected}
    # Every other task shows the buttons disabled: the link is "" (the API reports null).
    for task_id in ("discover", "ingest", "publish", "refresh_superset"):
        other = api.get(
            f"/api/v2/dags/{DAG_ID}/dagRuns/{dag_run}/taskInstances/{task_id}/links", headers=admin
        )
        assert other.json()["extra_links"] == {"Data Docs": None, "dbt Docs": None}, task_id


def test_link_is_empty_for_other_tasks_and_dags(plugins_manager):
    from airflow.models.taskinstancekey import TaskInstanceKey

    data_docs_link, dbt_docs_link = plugins_manager.get_global_operator_extra_links()
    base_url = os.environ["AIRFLOW__API__BASE_URL"]

    def url(link, dag_id: str, task_id: str) -> str:
        return link.get_link(None, ti_key=TaskInstanceKey(dag_id, task_id, "manual__1"))

    assert url(data_docs_link, DAG_ID, "validate") == f"{base_url}{PREFIX}/index.html"
    assert url(data_docs_link, DAG_ID, "publish") == ""
    assert url(data_docs_link, "some_other_dag", "validate") == ""
    assert url(dbt_docs_link, DAG_ID, "transform") == f"{base_url}{DBT_PREFIX}/index.html"
    assert url(dbt_docs_link, DAG_ID, "validate") == ""
    assert url(dbt_docs_link, "some_other_dag", "transform") == ""
    assert data_docs.data_docs_url("https://airflow.example.com/airflow/") == (
        "https://airflow.example.com/airflow/inferwatch-data-docs/index.html"
    )
    assert data_docs.DBT_DOCS.url("https://airflow.example.com/airflow/") == (
        "https://airflow.example.com/airflow/inferwatch-dbt-docs/index.html"
    )


def test_validate_task_docs_link_to_the_data_docs(api, admin, dag_run):
    task = api.get(f"/api/v2/dags/{DAG_ID}/tasks/validate", headers=admin)
    assert task.status_code == 200, task.text
    # Relative to the UI's <base href> ([api] base_url), so right behind a path prefix too.
    assert "[Data Docs](inferwatch-data-docs/)" in task.json()["doc_md"]
    transform = api.get(f"/api/v2/dags/{DAG_ID}/tasks/transform", headers=admin)
    assert "[dbt Docs](inferwatch-dbt-docs/)" in transform.json()["doc_md"]


# ------------------------------------------------------------------ serving


def test_serves_the_data_docs_once_validation_wrote_them(api, admin, data_dir):
    docs_dir = Settings.from_env().data_docs_dir
    assert docs_dir == data_dir / "data_docs" and not docs_dir.exists()

    for path in (f"{PREFIX}/index.html", f"{PREFIX}/"):
        before = api.get(path, headers=admin)
        assert before.status_code == 404
        assert before.headers["content-type"].startswith("text/html")
        assert "No validation has run yet" in before.text
        assert str(docs_dir) in before.text and DAG_ID in before.text

    # The folder appears after the API server started: no restart needed.
    write_data_docs(docs_dir)
    (data_dir / "secrets.env").write_text("INFERWATCH_USER_HASH_KEY=not-for-the-browser\n")

    index = api.get(f"{PREFIX}/index.html", headers=admin)
    assert index.status_code == 200
    assert index.text == INDEX_HTML
    assert index.headers["cache-control"] == "no-cache"  # a new run shows at once
    assert api.get(f"{PREFIX}/", headers=admin).text == INDEX_HTML
    # The site's relative links resolve under the prefix.
    page = api.get(f"{PREFIX}/validations/contract/run-1/20250520T010000Z/abc.html", headers=admin)
    assert page.status_code == 200 and page.text == VALIDATION_HTML
    css = api.get(f"{PREFIX}/static/styles/data_docs_default_styles.css", headers=admin)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    # Revalidation is cheap: unchanged pages answer 304.
    etag = index.headers["etag"]
    again = api.get(f"{PREFIX}/index.html", headers={**admin, "If-None-Match": etag})
    assert again.status_code == 304

    missing = api.get(f"{PREFIX}/validations/nope.html", headers=admin)
    assert missing.status_code == 404 and "not part of the current Data Docs" in missing.text
    # Nothing outside the Data Docs folder is reachable.
    for escape in ("%2e%2e/secrets.env", "..%2fsecrets.env", "%2e%2e%2f%2e%2e%2fetc%2fpasswd"):
        outside = api.get(f"{PREFIX}/{escape}", headers=admin)
        assert outside.status_code == 404, escape
        assert "not-for-the-browser" not in outside.text


def test_data_docs_need_an_airflow_login(api, data_dir):
    write_data_docs(Settings.from_env().data_docs_dir)
    url = f"{PREFIX}/index.html"

    anonymous = api.get(url)  # a browser without Airflow's session cookie: off to log in
    assert anonymous.status_code == 307
    location = anonymous.headers["location"]
    assert location.startswith("/auth/login?next=")
    assert "inferwatch-data-docs%2Findex.html" in location
    assert "Data Docs" not in anonymous.text

    assert api.get(url, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 403
    # A valid user without the right to read the pipeline's task instances.
    assert api.get(url, headers=_token(None)).status_code == 403
    # The UI's own session cookie is enough (what a click on the extra link sends).
    api.cookies.set("_token", _token("viewer")["Authorization"].removeprefix("Bearer "))
    try:
        assert api.get(url).text == INDEX_HTML
    finally:
        api.cookies.clear()


# ------------------------------------------------------------------ dbt's docs


def test_dbt_docs_not_there_before_a_transform(api, admin, data_dir):
    page = api.get(f"{DBT_PREFIX}/index.html", headers=admin)
    assert page.status_code == 404
    assert "No transform has run yet" in page.text
    assert str(data_dir / "dbt_docs") in page.text and "transform" in page.text
    assert api.get(f"{DBT_PREFIX}/index.html").status_code == 307  # behind Airflow's login


def test_dbt_docs_of_the_pipeline_run_are_served(api, admin, pipeline_run, monkeypatch):
    """The DAG's transform task wrote dbt's docs site (one page, manifest and catalog inside)
    into the data dir; the plugin serves that file."""
    monkeypatch.setenv("INFERWATCH_DATA_DIR", str(pipeline_run.settings.data_dir))
    index = pipeline_run.settings.dbt_docs_dir / "index.html"
    assert index.is_file()

    page = api.get(f"{DBT_PREFIX}/index.html", headers=admin)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-cache"
    assert page.content == index.read_bytes()
    # --static: the manifest and the catalog (columns read from the built warehouse) are inside.
    assert "model.inferwatch.fct_inferences" in page.text
    with pipeline_run.warehouse() as con:
        columns = [row[0] for row in con.sql("describe fct_inferences").fetchall()]
    assert all(f'"{column}"' in page.text for column in columns)
    assert api.get(f"{DBT_PREFIX}/", headers=admin).content == page.content

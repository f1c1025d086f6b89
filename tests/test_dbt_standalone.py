"""dbt as a dbt user runs it: `dbt parse`, `dbt build`, `dbt docs generate` in `dbt_project/`
with no InferWatch variable set (dbt_project/README.md). The defaults put everything under the
checkout's `data/`: here a copy of the project in tmp_path stands in for the checkout, so its
`data/` is tmp_path's and the repository's own `data/` is never touched.

dbt runs in this process (dbtRunner, as `dbt` on the command line does, from the project's
folder), with every INFERWATCH_* and DBT_* variable removed from the environment. The build and
the docs cover fct_inferences and what it reads (staging over every bronze source, the lake
macros): the whole project builds in every pipeline test, with the variables set; what only a
hand run meets is the defaults, and a static check below finds any variable without one.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from inferwatch import pipeline
from inferwatch.config import DBT_PROJECT_DIR, Settings
from inferwatch.lake import Lake
from inferwatch.simulate import simulate
from pipeline_steps import requests_by_version


def _dbt(*args: str):
    """`dbt ARGS` in the current folder; the warehouse file is released afterwards."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.cli.main import dbtRunner

    try:
        return dbtRunner().invoke(list(args))
    finally:
        DuckDBConnectionManager.close_all_connections()


@pytest.fixture
def checkout(tmp_path, monkeypatch) -> Path:
    """A checkout's layout (dbt_project/ beside data/) in tmp_path, dbt's folder as the cwd and
    no InferWatch or dbt variable in the environment."""
    root = tmp_path / "checkout"
    shutil.copytree(
        DBT_PROJECT_DIR, root / "dbt_project", ignore=shutil.ignore_patterns("target", "logs")
    )
    for key in list(os.environ):
        if key.startswith(("INFERWATCH_", "DBT_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(root / "dbt_project")
    return root


def test_dbt_parse_build_and_docs_with_no_variable_set(checkout):
    data = checkout / "data"  # the documented default: the checkout's data/
    assert not data.exists()

    parsed = _dbt("parse")
    assert parsed.success, parsed.exception
    # The profile's default warehouse path: data/warehouse/warehouse.duckdb, and the default
    # lake, data/lake, in every source.
    manifest = parsed.result
    sources = [s for s in manifest.sources.values() if s.package_name == "inferwatch"]
    locations = [s.meta["external_location"] for s in sources if "external_location" in s.meta]
    assert len(locations) == 11
    assert {s.meta["bronze_root"] for s in sources} == {"../data/lake"}

    # No bronze yet: the build stops at once and says what to run first.
    empty = _dbt("build")
    assert not empty.success
    message = str(empty.exception)
    assert "No bronze data under ../data/lake" in message
    assert "inferwatch run" in message
    assert (data / "warehouse" / "warehouse.duckdb").is_file()  # its folder was created

    # What `inferwatch run` would have ingested: a small simulated lake at the default place.
    settings = Settings.from_env(
        {"INFERWATCH_DATA_DIR": str(data), "INFERWATCH_USER_HASH_KEY": "x"}
    )
    assert settings.lake_url == str(data / "lake")
    simulate(
        settings.lake_url, truth_dir=checkout / "truth", events=400, seed=3,
        start=datetime(2025, 5, 1, tzinfo=UTC), end=datetime(2025, 5, 1, 6, tzinfo=UTC),
    )  # fmt: skip
    lake = Lake(settings.lake_url)
    pipeline.ingest(settings, lake, pipeline.discover(lake), "dbt-standalone")

    built = _dbt("build", "--select", "+fct_inferences", "--exclude-resource-type", "unit_test")
    assert built.success, [str(r.message) for r in built.result if r.status != "success"]
    expected, built_counts = requests_by_version(
        checkout / "truth", data / "warehouse" / "warehouse.duckdb"
    )
    assert built_counts == expected

    docs = _dbt("docs", "generate", "--select", "+fct_inferences")
    assert docs.success, docs.exception
    catalog = docs.result
    assert "model.inferwatch.fct_inferences" in catalog.nodes
    assert (checkout / "dbt_project" / "target" / "index.html").is_file()


def test_every_environment_variable_of_the_project_has_a_default():
    """dbt stops on `env_var('X')` when X is unset: every call in the project names a default."""
    calls = []
    for path in sorted(DBT_PROJECT_DIR.rglob("*")):
        if path.suffix in {".yml", ".sql"} and "target" not in path.parts:
            for call in re.findall(r"env_var\(\s*'[^']*'\s*(,?)", path.read_text()):
                calls.append((path.name, call))
    assert len(calls) >= 20
    assert [name for name, comma in calls if not comma] == []

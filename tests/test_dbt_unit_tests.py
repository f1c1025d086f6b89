"""The dbt unit tests (SQL logic on fixed inputs, in the models' YAML) run here, once: pipeline
builds leave them out (inferwatch.transform.PRODUCTION_BUILD)."""

from __future__ import annotations

import shutil

import yaml

from conftest import settings_for
from inferwatch.config import DBT_PROJECT_DIR
from inferwatch.lake import Lake
from inferwatch.transform import run_dbt


def _declared_unit_tests() -> list[tuple[str, str]]:
    """(model, name) of every unit test in the models' YAML (names are unique per model)."""
    return [
        (test["model"], test["name"])
        for path in (DBT_PROJECT_DIR / "models").rglob("*.yml")
        for test in (yaml.safe_load(path.read_text()) or {}).get("unit_tests") or []
    ]


def test_every_dbt_unit_test_passes(pipeline_run, tmp_path):
    # Unit tests need the relations their models read to exist (their columns are looked up):
    # a copy of the session's warehouse, so the shared one stays untouched.
    settings = settings_for(pipeline_run.settings.lake_url, tmp_path / "state")
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(pipeline_run.settings.warehouse_path, settings.warehouse_path)

    outcome = run_dbt(settings, Lake(settings.lake_url), "test", "--select", "test_type:unit")

    assert outcome.failures == []
    assert outcome.success
    declared = _declared_unit_tests()
    assert len(declared) >= 12
    hooks = len(yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["on-run-start"])
    assert outcome.nodes == len(declared) + hooks  # every unit test ran (hooks are nodes too)

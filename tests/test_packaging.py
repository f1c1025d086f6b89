"""`pip install .` gives a working `inferwatch` outside the checkout (README: Install).

The wheel is built from a copy of the sources (the checkout stays clean), installed into a fresh
virtual environment with its declared dependencies, resolved under the pipeline's lock file as
constraints (uv; offline from uv's cache, which `make setup` filled, when that works). Then, from
a folder outside the checkout and with no InferWatch variable set: `inferwatch --help`,
`inferwatch simulate` on a small lake, and the pipeline's ingest and transform steps (what the
DAG's tasks call; the whole DAG once, `inferwatch run`, takes minutes more: README, Install).
The marts must count what the simulator wrote, and nothing may be written inside the installed
package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inferwatch.config import PROJECT_ROOT
from pipeline_steps import requests_by_version

#: What the wheel is built from (pyproject.toml, setup.py and MANIFEST.in say what goes in).
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "plugins", "dbt_project",
           "expectations", "dags", "superset")  # fmt: skip
LOCK = PROJECT_ROOT / "requirements" / "pipeline.lock.txt"

# The pipeline's steps as the DAG's tasks call them, from the installed package: discover and
# ingest, then what the transform step runs (dbt build, dbt docs generate), the build narrowed to
# fct_inferences and its upstream (the whole project builds in every pipeline test; here what
# matters is where the project, its profile and its artifacts are found).
STEPS = """
import json
from inferwatch import pipeline, transform
from inferwatch.config import DBT_PROJECT_DIR
from inferwatch.orchestrate import current_lake, current_settings

settings = current_settings()
lake = current_lake(settings)
ingested = pipeline.ingest(settings, lake, pipeline.discover(lake), "packaging-test")
built = transform.build(settings, lake, select="+fct_inferences")
docs = transform.generate_docs(settings, lake)
print(json.dumps({"project": str(DBT_PROJECT_DIR), "data_dir": str(settings.data_dir),
                  "ingested": ingested["objects"], "built": built.success, "docs": str(docs)}))
"""


def _uv() -> str:
    uv = PROJECT_ROOT / ".venv" / "uv" / "bin" / "uv"
    found = str(uv) if uv.exists() else shutil.which("uv")
    if not found:
        pytest.skip("uv is not installed (make setup installs it into .venv/uv)")
    return found


def _run(args: list, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _uv_offline_first(uv: str, args: list, env: dict) -> None:
    """uv from its cache; from the registry only if something is not cached."""
    proc = subprocess.run([uv, *args[:1], "--offline", *args[1:]], env=env, capture_output=True)
    if proc.returncode != 0:
        _run([uv, *args], env=env)


#: What the test session (conftest.py) sets and a user's shell has not.
NOT_A_USERS = ("INFERWATCH_", "DBT_", "AIRFLOW", "PYTHON", "VIRTUAL_ENV")


def _clean_env(uv: str, home: Path, venv: Path) -> dict[str, str]:
    """A user's shell: the new environment's bin first, no InferWatch, dbt or Airflow variable,
    an empty home (uv keeps its cache)."""
    cache = _run([uv, "cache", "dir"]).stdout.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith(NOT_A_USERS)}
    env.update(HOME=str(home), PATH=f"{venv / 'bin'}:/usr/bin:/bin", UV_PYTHON_DOWNLOADS="never",
               UV_CACHE_DIR=cache)  # fmt: skip
    return env


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    uv = _uv()
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        path = PROJECT_ROOT / name
        if path.is_dir():
            ignore = shutil.ignore_patterns("target", "logs", "__pycache__", "*.egg-info")
            shutil.copytree(path, source / name, ignore=ignore)
        elif path.exists():
            shutil.copy2(path, source / name)
    home, venv, user = tmp_path / "home", tmp_path / "venv", tmp_path / "elsewhere"
    for folder in (home, user):
        folder.mkdir()
    env = _clean_env(uv, home, venv)

    _uv_offline_first(uv, ["build", "--wheel", "-o", tmp_path / "dist", source], env)
    (wheel,) = (tmp_path / "dist").glob("inferwatch-*.whl")
    _run([uv, "venv", "-q", "-p", sys.executable, venv], env=env)
    _uv_offline_first(uv, ["pip", "install", "-q", "-p", venv / "bin" / "python",
                           "-c", LOCK, wheel], env)  # fmt: skip

    helped = _run([venv / "bin" / "inferwatch", "--help"], cwd=user, env=env)
    assert "simulate" in helped.stdout and "run" in helped.stdout
    _run([venv / "bin" / "inferwatch", "simulate", "--events", "400", "--seed", "5",
          "--start", "2025-05-01T00:00:00", "--end", "2025-05-01T06:00:00"],
         cwd=user, env=env)  # fmt: skip
    steps = _run([venv / "bin" / "python", "-c", STEPS], cwd=user, env=env)
    outcome = json.loads(steps.stdout.strip().splitlines()[-1])

    # The project came from the installed package; the state went to ./data of the user's folder.
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    bundle = site_packages / "inferwatch" / "bundled"
    assert Path(outcome["project"]) == bundle / "dbt_project"
    data = user / "data"
    assert Path(outcome["data_dir"]) == data
    assert outcome["ingested"] > 0 and outcome["built"]
    assert outcome["docs"] == str(data / "dbt_docs" / "index.html")
    assert (data / "dbt" / "target" / "manifest.json").is_file()
    for name in ("dags/inferwatch_pipeline.py", "expectations/contract.json",
                 "superset/superset_config.py", "plugins/inferwatch_data_docs.py"):  # fmt: skip
        assert (bundle / name).is_file(), name
    # Nothing written into the package: no dbt target/ or logs/, no file newer than the install.
    installed_at = (site_packages / "inferwatch" / "config.py").stat().st_mtime
    written = [p for p in bundle.rglob("*") if p.stat().st_mtime > installed_at + 1]
    assert written == [] and not (bundle / "dbt_project" / "target").exists()

    # The marts count what the simulator wrote (its truth, computed as it generated the logs).
    expected, built_counts = requests_by_version(
        data / "truth", data / "warehouse" / "warehouse.duckdb"
    )
    assert built_counts == expected

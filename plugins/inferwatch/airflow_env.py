"""The Airflow configuration InferWatch runs with, as environment variables.

Used by `inferwatch run` (in-process), by the demo's Airflow services and by the tests, so all
three see the same DAGs folder, plugins folder and metadata database. Nothing here imports
Airflow: the variables must be set before Airflow is first imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from inferwatch.config import AIRFLOW_PLUGINS_DIR, DAGS_DIR, Settings
from inferwatch.filemodes import restrict_umask, secure_tree


def airflow_home(settings: Settings) -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or settings.data_dir / "airflow")


def airflow_environment(settings: Settings, home: Path | None = None, port: int = 8080) -> dict:
    home = home or airflow_home(settings)
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        # The plugins folder holds the Data Docs plugin and an .airflowignore that hides the
        # inferwatch package from Airflow's plugin walk; the package is imported as installed.
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(AIRFLOW_PLUGINS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # LocalExecutor pre-forks one worker per slot (~136 MB each): keep it small here.
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__WEBSERVER__EXPOSE_CONFIG": "False",
        "INFERWATCH_DATA_DIR": str(settings.data_dir),
        "INFERWATCH_LAKE_URL": settings.lake_url,
    }


def apply(settings: Settings, home: Path | None = None) -> dict:
    """Set the variables in this process (keeping values the user already set for Airflow);
    return the variables in effect. The process gets the owner-only umask first: what Airflow
    writes (metadata DB, generated passwords, task logs) is for this user alone."""
    secure_tree(settings.data_dir)
    env = airflow_environment(settings, home)
    for key, value in env.items():
        if key.startswith("AIRFLOW") and key in os.environ and key != "AIRFLOW_HOME":
            env[key] = os.environ[key]  # e.g. a PostgreSQL metadata DB: migrate that one
            continue
        os.environ[key] = value
    return env


def ensure_metadata_db(env: dict) -> None:
    """Migrate Airflow's metadata DB on first use (~6 s); later calls are a file check. The
    Airflow home (the metadata DB, the simple auth manager's passwords) is owner-only."""
    home = Path(env["AIRFLOW_HOME"])
    secure_tree(home)
    marker = home / ".inferwatch-migrated"
    if marker.exists():
        return
    airflow_bin = Path(sys.executable).with_name("airflow")
    subprocess.run(
        [str(airflow_bin), "db", "migrate"],
        env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL, umask=restrict_umask(),
    )  # fmt: skip
    marker.write_text("ok\n")

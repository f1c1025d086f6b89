"""`inferwatch run`: the pipeline DAG, once, in this process (``dag.test()``), no scheduler."""

from __future__ import annotations

import logging
from pathlib import Path

from inferwatch import airflow_env
from inferwatch.config import DAGS_DIR, Settings

log = logging.getLogger(__name__)

DAG_ID = "inferwatch_pipeline"


class DagImportError(RuntimeError):
    pass


def load_dag(dag_id: str = DAG_ID):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    if bag.import_errors:
        raise DagImportError("; ".join(f"{k}: {v}" for k, v in bag.import_errors.items()))
    dag = bag.get_dag(dag_id)
    if dag is None:
        raise DagImportError(f"no DAG {dag_id} in {DAGS_DIR}")
    return dag


def run_once(settings: Settings, home: Path | None = None) -> str:
    """Prepare Airflow's metadata DB on first use, run the DAG once, return the run's state."""
    env = airflow_env.apply(settings, home)
    airflow_env.ensure_metadata_db(env)
    dag = load_dag()
    log.info("running %s over %s (state in %s)", DAG_ID, settings.lake_url, settings.data_dir)
    dag_run = dag.test()
    state = str(getattr(dag_run, "state", "unknown"))
    log.info("%s finished: %s", DAG_ID, state)
    return state

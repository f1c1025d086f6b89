"""Shared, expensive things, made once per session: one simulated lake, one pipeline run,
one S3 API server, one Superset.

Airflow reads its configuration when first imported, so its environment (a temporary
AIRFLOW_HOME with a SQLite metadata DB, our DAGs folder) is set here, before any test module
imports Airflow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from inferwatch import airflow_env
from inferwatch.config import Settings

pytest_plugins = ["fixtures_superset"]

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="inferwatch-test-airflow-"))
os.environ["INFERWATCH_USER_HASH_KEY"] = secrets.token_hex(16)  # tests make their own key
for _key, _value in airflow_env.airflow_environment(Settings.from_env(), home=AIRFLOW_HOME).items():
    os.environ[_key] = _value

SIM_START = datetime(2025, 5, 1, tzinfo=UTC)
SIM_END = datetime(2025, 5, 15, tzinfo=UTC)
SIM_EVENTS = 150_000


@dataclass
class PipelineRun:
    settings: Settings
    truth_dir: Path
    state: str

    def warehouse(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.settings.warehouse_path), read_only=True)

    def serving(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.settings.serving_path), read_only=True)

    def ops(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.settings.ops_path), read_only=True)

    def truth(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.truth_dir / f"{name}.csv")


def settings_for(lake_url: str, data_dir: Path) -> Settings:
    return Settings.from_env({**os.environ, "INFERWATCH_LAKE_URL": lake_url,
                              "INFERWATCH_DATA_DIR": str(data_dir)})  # fmt: skip


class _Tee:
    """A text stream writing to two others (the console and a log file)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        # a handler Airflow made during the run may keep this stream after the file is closed
        for stream in self.streams:
            if not stream.closed:
                stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            if not stream.closed:
                stream.flush()


@contextlib.contextmanager
def _task_log_file(path: Path):
    """Keep what the tasks log in ``path`` too: dag.test() writes no task log files, and the
    governance test searches the task logs for PII. Airflow's structlog loggers write to the
    current sys.stdout (not cached under pytest); stdlib records reach the root handler."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        try:
            with (
                contextlib.redirect_stdout(_Tee(sys.stdout, handle)),
                contextlib.redirect_stderr(_Tee(sys.stderr, handle)),
            ):
                yield
        finally:
            logging.getLogger().removeHandler(handler)


def run_pipeline(settings: Settings) -> str:
    """One `dag.test()` of inferwatch_pipeline, exactly what `inferwatch run` does; its task
    logs are also kept under ``AIRFLOW_HOME/logs/dag_test/``."""
    from inferwatch.runner import run_once

    log_file = AIRFLOW_HOME / "logs" / "dag_test" / f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}.log"
    with _task_log_file(log_file):
        return run_once(settings, home=AIRFLOW_HOME)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: Test modules that use the session's Superset (``superset_synced`` or ``superset_instance``).
SUPERSET_MODULES = frozenset(
    f"tests/{path.name}"
    for path in Path(__file__).parent.glob("test_*.py")
    if re.search(r"\bsuperset_(synced|instance)\b", path.read_text())
)


#: Scopes that take minutes whatever their number of tests (a second Superset, Spark, pipeline
#: runs killed and rerun, dbt builds in sequence), longest first, from ``--durations`` of a
#: full ``make test``. xdist starts the scopes with the most tests first, so these (one to a
#: few tests each) would start last, and one of them alone would make the suite's tail.
START_FIRST = (
    "superset",
    "tests/test_crash_safety.py",
    "tests/test_spark_target.py",
    "tests/test_postgres_metadata.py",
    "tests/test_incremental.py",
    "tests/test_s3_faults.py",
    "tests/test_gate.py",
    "tests/test_incremental_equals_full.py",
    "tests/test_integrity.py",
    "tests/test_drift.py",
    "tests/test_s3_lake.py",
    "tests/test_hostile_input.py",
    "tests/test_hour_grain.py",
    "tests/test_production_inputs.py",
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """For ``make test`` (pytest-xdist): each module runs whole on one worker, so its module
    fixtures are built once, and the modules that use the session's Superset share a worker,
    so one Superset starts. The long scopes start first (``START_FIRST``), so the suite ends
    on short ones. (xdist's ``--dist loadgroup`` would say this with marks, but it renames
    node ids through an attribute pytest 9 no longer has.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "superset" if module in SUPERSET_MODULES else module

        def _assign_work_unit(self, node) -> None:
            first = next((scope for scope in START_FIRST if scope in self.workqueue), None)
            if first is not None:
                self.workqueue.move_to_end(first, last=False)
            super()._assign_work_unit(node)

    return ModuleScheduling(config, log)


@pytest.fixture(scope="session", autouse=True)
def airflow_metadata_db() -> Path:
    """Migrate the session's Airflow metadata DB once (DagBag and dag.test() need it)."""
    airflow_env.ensure_metadata_db(dict(os.environ))
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def sim_lake(tmp_path_factory) -> tuple[Path, Path]:
    """Two weeks of simulated logs in a local lake, and the simulator's truth."""
    from inferwatch.simulate import simulate

    root = tmp_path_factory.mktemp("sim")
    lake, truth = root / "lake", root / "truth"
    simulate(str(lake), truth_dir=truth, start=SIM_START, end=SIM_END, events=SIM_EVENTS, seed=7)
    return lake, truth


@pytest.fixture(scope="session")
def pipeline_run(sim_lake, tmp_path_factory) -> PipelineRun:
    """The pipeline DAG run once over the simulated local lake."""
    lake, truth = sim_lake
    settings = settings_for(str(lake), tmp_path_factory.mktemp("state"))
    state = run_pipeline(settings)
    return PipelineRun(settings=settings, truth_dir=truth, state=state)


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API server (moto's) on 127.0.0.1, for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()

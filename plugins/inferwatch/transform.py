"""Run the dbt project in-process against the warehouse file (dbt-duckdb by default)."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from inferwatch.config import DBT_PROJECT_DIR, Settings
from inferwatch.lake import Lake

log = logging.getLogger(__name__)


class TransformError(RuntimeError):
    pass


@dataclass
class BuildResult:
    success: bool
    nodes: int
    failures: list[str]

    def as_dict(self) -> dict:
        return {"success": self.success, "nodes": self.nodes, "failures": self.failures}


def dbt_environment(settings: Settings, lake: Lake) -> dict[str, str]:
    """What profiles.yml and the sources read: warehouse path, bronze root, S3 secret."""
    env = {
        "INFERWATCH_WAREHOUSE_PATH": str(settings.warehouse_path),
        "INFERWATCH_BRONZE_ROOT": lake.full_url(""),
        "INFERWATCH_DUCKDB_THREADS": str(settings.duckdb_threads),
        "INFERWATCH_DUCKDB_MEMORY_LIMIT": settings.duckdb_memory_limit,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    if not lake.is_local:
        env.update(duckdb_s3_environment(lake.storage_options))
    return env


def duckdb_s3_environment(storage_options: dict) -> dict[str, str]:
    """Map fsspec/s3fs options onto the variables profiles.yml turns into a DuckDB S3 secret."""
    client = storage_options.get("client_kwargs") or {}
    endpoint_url = client.get("endpoint_url") or storage_options.get("endpoint_url") or ""
    env = {
        "INFERWATCH_S3_KEY_ID": storage_options.get("key") or "",
        "INFERWATCH_S3_SECRET": storage_options.get("secret") or "",
        "INFERWATCH_S3_REGION": client.get("region_name") or "us-east-1",
    }
    if endpoint_url:
        parsed = urlparse(endpoint_url)
        env.update(
            INFERWATCH_S3_ENDPOINT=parsed.netloc,
            INFERWATCH_S3_USE_SSL="true" if parsed.scheme == "https" else "false",
            # S3-compatible servers (MinIO, moto) serve buckets by path, not by host name.
            INFERWATCH_S3_URL_STYLE="path",
        )
    return env


def install_httpfs() -> None:
    """Install DuckDB's httpfs from its PyPI package: `INSTALL httpfs` would need the internet."""
    import duckdb
    import duckdb_extension_httpfs  # noqa: F401  (the package ships the extension file)

    package_dir = Path(duckdb_extension_httpfs.__file__).parent
    candidates = sorted(package_dir.rglob("httpfs.duckdb_extension*"))
    if not candidates:
        raise TransformError(f"no httpfs extension file under {package_dir}")
    with duckdb.connect() as con:
        con.execute(f"INSTALL '{candidates[0]}'")


@contextmanager
def _environment(extra: dict[str, str]):
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def dbt_args(settings: Settings, command: str, *extra: str) -> list[str]:
    return [
        command,
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(settings.data_dir / "dbt" / "target"),
        "--log-path", str(settings.data_dir / "dbt" / "logs"),
        *extra,
    ]  # fmt: skip


def run_dbt(settings: Settings, lake: Lake, command: str = "build", *extra: str) -> BuildResult:
    """Invoke dbt in this process and release the warehouse file afterwards."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.cli.main import dbtRunner

    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    if not lake.is_local:
        install_httpfs()
    target = ["--target", "duckdb" if lake.is_local else "duckdb_s3"]
    args = dbt_args(settings, command, *target, *extra)
    log.info("dbt %s", " ".join(args))
    with _environment(dbt_environment(settings, lake)):
        try:
            result = dbtRunner().invoke(args)
        finally:
            # dbt-duckdb keeps the file open after an in-process run (STACK_NOTES).
            DuckDBConnectionManager.close_all_connections()
    if result.exception is not None:
        raise TransformError(f"dbt {command} crashed: {result.exception}") from result.exception
    failures: list[str] = []
    nodes = 0
    for node_result in result.result or []:
        nodes += 1
        status = str(getattr(node_result, "status", ""))
        if status in {"error", "fail", "runtime error"}:
            failures.append(f"{node_result.node.name}: {status}: {node_result.message}")
    return BuildResult(success=bool(result.success), nodes=nodes, failures=failures)


#: dbt unit tests check SQL logic on fixed inputs, so they belong to CI, not to every run
#: (dbt's own advice); tests/test_dbt_unit_tests.py runs them.
PRODUCTION_BUILD = ("--exclude-resource-type", "unit_test")


def build(
    settings: Settings, lake: Lake, *, full_refresh: bool = False, select: str | None = None
) -> BuildResult:
    """``dbt build`` (models and their data tests, ``select``ed or all); raises with the failed
    nodes named."""
    extra = ["--full-refresh"] if full_refresh else []
    if select:
        extra += ["--select", select]
    outcome = run_dbt(settings, lake, "build", *PRODUCTION_BUILD, *extra)
    if not outcome.success:
        raise TransformError("dbt build failed: " + "; ".join(outcome.failures))
    log.info("dbt build: %d nodes ok", outcome.nodes)
    return outcome

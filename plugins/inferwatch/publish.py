"""Publish the warehouse to the files Superset reads, atomically (README: publishing).

A DuckDB file has one writer or many readers, never both, so nothing is written
in place: each published file is built under a temporary name, checkpointed, closed and then
``os.replace``-d over the served one. Readers answer from the old file until the swap and from
the new one right after.

``serving.duckdb`` is a small catalog: views over immutable Parquet files of the marts and
facts (a small table in one file, a large one by month, day or hour), of which a publish writes
only those whose content may have changed (``inferwatch.serving_catalog``), and the
warehouse's macros. ``ops.duckdb`` holds small tables and is a copy.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa

from inferwatch import serving_catalog
from inferwatch.config import Settings

log = logging.getLogger(__name__)

#: What explains the pipeline; replaced after every run, whatever the gate decided.
OPS_TABLES = (
    "mart_ingestion", "mart_ingestion_by_model", "fct_quarantine", "mart_label_ingestion",
    "fct_label_quarantine",
)  # fmt: skip
#: One row per expectation per run (README: mart_data_quality), as the validation step
#: returns them; ``model``/``model_version`` are null for checks of a whole table, ``details``
#: holds example failing rows or both histograms of a KL check, as JSON.
DATA_QUALITY_COLUMNS = (
    "run_id varchar", "suite varchar", "model varchar", "model_version varchar",
    "severity varchar", "expectation varchar", '"column" varchar', "success boolean",
    "observed_value varchar", "threshold varchar", "details json", "validated_at timestamp",
)  # fmt: skip
#: The alert log (inferwatch.alerts): one row per alert the rules raised, with how it was
#: delivered. Kept as immutable Parquet files under ``INFERWATCH_DATA_DIR/alerts/log``.
ALERT_LOG_COLUMNS = (
    "alert_id varchar", "dedupe_key varchar", "rule varchar", "severity varchar",
    "model varchar", "model_version varchar", "metric varchar", "period_start timestamp",
    "period_grain varchar", "value double", "threshold double", "baseline_kind varchar",
    "baseline_value double", "baseline_spread double", "z_score double", "message varchar",
    "dashboard_url varchar", "details varchar", "status varchar", "channels varchar",
    "run_id varchar", "evaluated_at timestamp",
)  # fmt: skip
#: Everything else named like a fact or mart is what the dashboards read, replaced only by a
#: build that passed the gate: a new mart is published without touching this module.
SERVING_PREFIXES = ("fct_", "mart_")


def _swap_in(settings: Settings, target: Path, fill) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with duckdb.connect(str(tmp), config=_duckdb_config(settings)) as con:
            con.execute("set enable_progress_bar = false")  # no bars in task logs
            fill(con)
            con.execute("checkpoint")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)


def _duckdb_config(settings: Settings) -> dict:
    """What every connection publishing opens gets: bounded memory whatever the history
    (DuckDB spills past the limit), and no row order to keep while streaming to Parquet."""
    return {
        "memory_limit": settings.duckdb_memory_limit,
        "threads": settings.duckdb_threads,
        "preserve_insertion_order": False,
    }


def _copy_tables(con: duckdb.DuckDBPyConnection, warehouse: Path, wanted) -> None:
    """Copy the warehouse tables for which ``wanted(name)`` is true into ``con``'s file."""
    con.execute(f"attach '{warehouse}' as warehouse (read_only)")
    present = con.execute(
        "select table_name from information_schema.tables "
        "where table_catalog = 'warehouse' and table_schema = 'main' and table_type = 'BASE TABLE'"
    ).fetchall()
    for (table,) in present:
        if wanted(table):
            con.execute(f"create table main.{table} as select * from warehouse.main.{table}")
    _copy_macros(con)
    con.execute("detach warehouse")


def _copy_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Recreate the warehouse's SQL macros (e.g. latency_quantile) beside the tables, so that
    Superset metrics call the very functions the dbt models use."""
    macros = con.execute(
        "select function_name, parameters, macro_definition from duckdb_functions() "
        "where database_name = 'warehouse' and schema_name = 'main' and function_type = 'macro'"
    ).fetchall()
    # A macro whose body calls another (latency_quantile → latency_bucket_value) can only be
    # created after it: create what binds, retry the rest until a pass makes no progress.
    pending = list(macros)
    while pending:
        failed = []
        for name, parameters, definition in pending:
            try:
                con.execute(
                    f"create or replace macro main.{name}({', '.join(parameters)}) as {definition}"
                )
            except duckdb.CatalogException:
                failed.append((name, parameters, definition))
        if len(failed) == len(pending):
            names = [name for name, *_ in failed]
            raise RuntimeError(f"cannot recreate warehouse macros {names} in the published file")
        pending = failed


def is_serving_table(name: str) -> bool:
    return name.startswith(SERVING_PREFIXES) and name not in OPS_TABLES


def publish_serving(settings: Settings) -> Path:
    """Swap in a new serving.duckdb: views over the dashboards' marts from the candidate build,
    whose partitions are written only where they changed since the served catalog."""
    built: dict[str, list] = {}

    def fill(con: duckdb.DuckDBPyConnection) -> None:
        built["previous"] = serving_catalog.read_files(con, settings.serving_path)
        con.execute(f"attach '{settings.warehouse_path}' as warehouse (read_only)")
        present = con.execute(
            "select table_name from information_schema.tables where table_catalog = "
            "'warehouse' and table_schema = 'main' and table_type = 'BASE TABLE' order by 1"
        ).fetchall()
        tables = [table for (table,) in present if is_serving_table(table)]
        built["files"] = serving_catalog.build(
            con, settings.data_dir, tables, built["previous"],
            file_rows=settings.publish_file_rows, rewrite_all=settings.publish_rewrite_all,
            build_id=_build_id(settings),
        )  # fmt: skip
        _copy_macros(con)
        con.execute("detach warehouse")

    _swap_in(settings, settings.serving_path, fill)
    # After the swap, never before: a publish that dies earlier leaves the served files whole.
    deleted = serving_catalog.delete_unreferenced(
        settings.data_dir, built["files"], built["previous"].files
    )
    log.info("published %s (%d old files deleted)", settings.serving_path, deleted)
    return settings.serving_path


def _build_id(settings: Settings) -> str:
    """The id the pipeline writes beside the warehouse before each build (pipeline.new_build):
    a new one tells publishing that a build ran since its last publish."""
    try:
        return settings.warehouse_path.with_name("build-id").read_text().strip()
    except FileNotFoundError:
        return ""


def record_run(settings: Settings, run_id: str, record: dict) -> Path:
    """Keep one JSON per run (outcome, validation rows): the append-only history ops shows."""
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    path = run_record_path(settings, run_id)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, default=str, indent=1))
    os.replace(tmp, path)
    return path


def run_record_path(settings: Settings, run_id: str) -> Path:
    """Where ``record_run`` keeps a run's record (the alert step reads its ingest report)."""
    return settings.runs_dir / f"{_safe(run_id)}.json"


def publish_ops(settings: Settings) -> Path:
    """Swap in a new ops.duckdb: ingestion, quarantine, validation results and run history."""

    def fill(con: duckdb.DuckDBPyConnection) -> None:
        if settings.warehouse_path.exists():
            _copy_tables(con, settings.warehouse_path, OPS_TABLES.__contains__)
        runs = sorted(settings.runs_dir.glob("*.json")) if settings.runs_dir.exists() else []
        records = [json.loads(p.read_text()) for p in runs]
        con.execute("""
            create table pipeline_runs (
                run_id varchar, started_at timestamp, finished_at timestamp, outcome varchar,
                gate_passed boolean, message varchar, objects bigint, lines_read bigint,
                lines_loaded bigint, lines_quarantined bigint, days varchar
            )
        """)
        con.execute(f"create table mart_data_quality ({', '.join(DATA_QUALITY_COLUMNS)})")
        names = [column.split()[0].strip('"') for column in DATA_QUALITY_COLUMNS]
        for rec in records:
            ingest = rec.get("ingest") or {}
            con.execute(
                "insert into pipeline_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    rec.get("run_id"), rec.get("started_at"), rec.get("finished_at"),
                    rec.get("outcome"), rec.get("gate_passed"), rec.get("message"),
                    ingest.get("objects"), ingest.get("lines_read"), ingest.get("lines_loaded"),
                    ingest.get("lines_quarantined"), ",".join(ingest.get("days") or []),
                ],
            )  # fmt: skip
        # One bulk insert: an hourly schedule accumulates tens of thousands of result rows.
        results = pa.Table.from_pylist(
            [
                {name: _as_text(row.get(name)) for name in names}
                for rec in records
                for row in rec.get("validation") or []
            ],
            schema=pa.schema([(name, pa.string()) for name in names]),
        )
        con.register("validation_results", results)
        # Run records written before details were clipped as JSON may hold cut JSON: kept as
        # a JSON string rather than failing every later publish.
        con.execute(
            "insert into mart_data_quality by name select * replace (case when "
            "json_valid(details) then details else to_json(details) end as details) "
            "from validation_results"
        )
        con.unregister("validation_results")
        _copy_alert_log(con, settings.data_dir / "alerts" / "log")

    _swap_in(settings, settings.ops_path, fill)
    log.info("published %s", settings.ops_path)
    return settings.ops_path


def _copy_alert_log(con: duckdb.DuckDBPyConnection, log_dir: Path) -> None:
    """The alert log as table ``alerts`` (empty, with its columns, before the first alert)."""
    con.execute(f"create table alerts ({', '.join(ALERT_LOG_COLUMNS)})")
    if any(log_dir.glob("*.parquet")):
        pattern = str(log_dir / "*.parquet").replace("'", "''")
        con.execute(f"insert into alerts by name select * from read_parquet('{pattern}', "
                    "union_by_name = true)")  # fmt: skip


def _as_text(value) -> str | None:
    # Run files are JSON: booleans stay readable to DuckDB's cast, the rest is already text.
    if value is None or isinstance(value, str):
        return value
    return str(value).lower() if isinstance(value, bool) else str(value)


def _safe(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)

"""The alert log: immutable Parquet files under ``INFERWATCH_DATA_DIR/alerts/log`` (one per run
that raised something new), published into ``ops.duckdb`` as table ``alerts``.

It is also the dedupe: an alert whose ``dedupe_key`` (rule, model, version, period) is already
logged is not logged or sent again, except after a failed delivery (retried next run).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from inferwatch.config import Settings
from inferwatch.publish import ALERT_LOG_COLUMNS

COLUMNS = [column.split()[0] for column in ALERT_LOG_COLUMNS]
#: Statuses that count as done: the alert is not raised again for the same period.
FINAL_STATUSES = ("sent", "logged", "suppressed_old")


def log_dir(settings: Settings) -> Path:
    return settings.data_dir / "alerts" / "log"


def read_log(settings: Settings) -> list[dict]:
    """Every logged alert, oldest first."""
    directory = log_dir(settings)
    if not any(directory.glob("*.parquet")):
        return []
    pattern = str(directory / "*.parquet").replace("'", "''")
    with duckdb.connect() as con:
        cursor = con.execute(
            f"select * from read_parquet('{pattern}', union_by_name = true) order by evaluated_at"
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def done_keys(settings: Settings) -> set[str]:
    return {row["dedupe_key"] for row in read_log(settings) if row["status"] in FINAL_STATUSES}


def append(settings: Settings, rows: list[dict]) -> Path | None:
    """Write one new immutable file (atomically: a temp name, then a rename)."""
    if not rows:
        return None
    directory = log_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    records = [
        {name: (json.dumps(row.get(name), default=str) if name == "details"
                else row.get(name)) for name in COLUMNS}
        for row in rows
    ]  # fmt: skip
    table = pa.Table.from_pylist(records, schema=_schema())
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = directory / f".{name}.tmp"
    pq.write_table(table, tmp)
    tmp.replace(directory / name)
    return directory / name


def _schema() -> pa.Schema:
    types = {"varchar": pa.string(), "double": pa.float64(), "timestamp": pa.timestamp("us")}
    return pa.schema([(c.split()[0], types[c.split()[1]]) for c in ALERT_LOG_COLUMNS])

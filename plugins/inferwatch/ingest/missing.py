"""Raw objects that the manifest knows but the lake no longer lists: kept, and reported.

A deleted raw object keeps its history (its bronze rows stay current, its marts stay as they
were); it is not re-ingested and it is not an error. Discovery records which ingested objects
are gone in one small Parquet file, ``bronze/lake_state/missing.parquet``, that mart_ingestion
turns into a status. Retention, when it removes raw objects itself, appends its own record
(``expired-<id>.parquet``) so that mart_ingestion can tell a deliberate expiry from a loss.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from inferwatch.lake import Lake

log = logging.getLogger(__name__)

LAKE_STATE_PREFIX = "bronze/lake_state"
MISSING_KEY = f"{LAKE_STATE_PREFIX}/missing.parquet"
MISSING_FROM_LAKE = "missing_from_lake"
EXPIRED_BY_RETENTION = "expired_by_retention"
#: How many missing keys are named in the log before only the count is.
LOGGED_KEYS = 20

STATE_SCHEMA = pa.schema(
    [("object_key", pa.string()), ("cause", pa.string()), ("noticed_at", pa.timestamp("us"))]
)


def _read(lake: Lake, key: str) -> pa.Table:
    try:
        return pq.read_table(io.BytesIO(lake.read_bytes(key)), schema=STATE_SCHEMA)
    except FileNotFoundError:
        return STATE_SCHEMA.empty_table()


def _write(lake: Lake, key: str, rows: list[dict]) -> None:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=STATE_SCHEMA), sink)
    lake.write_bytes(key, sink.getvalue())


def record_missing(lake: Lake, ingested: Iterable[str], listed: set[str]) -> list[str]:
    """Rewrite the missing-object record from this listing; return the missing keys.

    ``noticed_at`` keeps the first time an object was seen missing. The file is only rewritten
    when the set changes, and removed when nothing is missing (an object can come back).
    """
    missing = sorted(set(ingested) - listed)
    before = {row["object_key"]: row["noticed_at"] for row in _read(lake, MISSING_KEY).to_pylist()}
    if set(before) == set(missing):
        return missing
    now = datetime.now(UTC).replace(tzinfo=None)
    if missing:
        _write(lake, MISSING_KEY, [
            {"object_key": key, "cause": MISSING_FROM_LAKE, "noticed_at": before.get(key, now)}
            for key in missing
        ])  # fmt: skip
    else:
        lake.remove(MISSING_KEY)
    for key in missing[:LOGGED_KEYS]:
        if key not in before:
            log.warning("%s: ingested earlier, now gone from the lake; its rows are kept", key)
    if len(missing) > LOGGED_KEYS:
        log.warning("%d ingested raw objects are gone from the lake in all", len(missing))
    return missing


def record_expired(lake: Lake, keys: list[str], record_id: str) -> None:
    """Note raw objects that retention deleted on purpose (an append-only record per run)."""
    if keys:
        now = datetime.now(UTC).replace(tzinfo=None)
        _write(lake, f"{LAKE_STATE_PREFIX}/expired-{record_id}.parquet", [
            {"object_key": key, "cause": EXPIRED_BY_RETENTION, "noticed_at": now} for key in keys
        ])  # fmt: skip

"""The hash-chained, append-only audit table and its verification.

Each row carries ``seq`` (1, 2, 3 … with no gap), ``prev_hash`` (the previous row's
``row_hash``; 64 zeros for the first) and ``row_hash`` = SHA-256 of ``prev_hash`` and the row's
canonical JSON. Editing a row breaks its own hash; deleting one breaks the ``seq`` run and the
next row's ``prev_hash``; deleting the last rows is caught by the head (seq and hash of the
last row) kept beside the watermarks. The chain proves integrity against edits made without
re-hashing everything after; copy the head elsewhere (it is logged at every append) to also
resist a rewrite of the whole chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

GENESIS = "0" * 64
TABLE = "mart_audit_log"
#: The columns a source fills (the ledger adds seq, recorded_at and the hashes).
EVENT_COLUMNS = (
    "source", "source_id", "event_ts", "actor", "action", "object_type", "object_id", "details",
)  # fmt: skip
HASHED_COLUMNS = ("seq", *EVENT_COLUMNS, "recorded_at")

DDL = f"""
create table if not exists {TABLE} (
    seq bigint primary key,
    source varchar not null,
    source_id varchar not null,
    event_ts timestamp,
    actor varchar,
    action varchar not null,
    object_type varchar,
    object_id varchar,
    details varchar,
    recorded_at timestamp not null,
    prev_hash varchar not null,
    row_hash varchar not null
);
create table if not exists audit_watermark (
    source varchar primary key,
    watermark varchar not null,
    updated_at timestamp not null
);
create table if not exists audit_head (
    head_seq bigint not null,
    head_hash varchar not null,
    updated_at timestamp not null
);
"""


def _canonical(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds")
    return str(value)


def row_hash(prev_hash: str, row: dict) -> str:
    payload = json.dumps([_canonical(row.get(c)) for c in HASHED_COLUMNS], ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{payload}".encode()).hexdigest()


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute(DDL)
    return con


def create_empty(path: Path) -> None:
    """A file holding an empty ``mart_audit_log`` (what Superset opens before the first audit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.empty.tmp")
    tmp.unlink(missing_ok=True)
    with duckdb.connect(str(tmp)) as con:
        con.execute(DDL)
        con.execute("drop table audit_watermark; drop table audit_head; checkpoint")
    tmp.replace(path)


def watermarks(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("select source, watermark from audit_watermark").fetchall())


def head(con: duckdb.DuckDBPyConnection) -> tuple[int, str]:
    found = con.execute(f"select seq, row_hash from {TABLE} order by seq desc limit 1").fetchone()
    return (found[0], found[1]) if found else (0, GENESIS)


def append(
    con: duckdb.DuckDBPyConnection, events: Iterable[dict], new_watermarks: dict[str, str]
) -> int:
    """Chain and insert ``events`` (in order) and move the watermarks, in one transaction."""
    events = list(events)
    now = datetime.now(UTC).replace(tzinfo=None)
    con.execute("begin transaction")
    try:
        seq, prev = head(con)
        rows = []
        for event in events:
            seq += 1
            row = {c: event.get(c) for c in EVENT_COLUMNS}
            row["event_ts"] = _naive_utc(row["event_ts"])
            row.update(seq=seq, recorded_at=now)
            row["prev_hash"] = prev
            row["row_hash"] = prev = row_hash(prev, row)
            rows.append(row)
        if rows:
            columns = [*HASHED_COLUMNS, "prev_hash", "row_hash"]
            con.executemany(
                f"insert into {TABLE} ({', '.join(columns)}) values "
                f"({', '.join('?' for _ in columns)})",
                [[row[c] for c in columns] for row in rows],
            )
        for source, mark in new_watermarks.items():
            con.execute(
                "insert or replace into audit_watermark values (?, ?, ?)", [source, mark, now]
            )
        con.execute("delete from audit_head")
        con.execute("insert into audit_head values (?, ?, ?)", [seq, prev, now])
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return len(rows)


def _naive_utc(value):
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


@dataclass(frozen=True)
class Verification:
    ok: bool
    rows: int
    bad_seq: int | None = None
    reason: str = ""
    head_hash: str = GENESIS

    def message(self) -> str:
        if self.ok:
            return f"audit chain OK: {self.rows} rows, head {self.head_hash}"
        return f"audit chain BROKEN at row seq={self.bad_seq}: {self.reason}"


def verify(con: duckdb.DuckDBPyConnection) -> Verification:
    """Walk the chain in ``seq`` order; name the first row that does not hold."""
    cursor = con.execute(
        f"select {', '.join(HASHED_COLUMNS)}, prev_hash, row_hash from {TABLE} order by seq"
    )
    names = [d[0] for d in cursor.description]
    prev, expected, count = GENESIS, 1, 0
    while batch := cursor.fetchmany(10_000):
        for values in batch:
            row = dict(zip(names, values, strict=True))
            seq = row["seq"]
            if seq != expected:
                missing = (
                    f"row {expected}" if seq == expected + 1 else f"rows {expected}..{seq - 1}"
                )
                return Verification(False, count, seq, f"seq gap: {missing} deleted", prev)
            if row["prev_hash"] != prev:
                return Verification(False, count, seq, "prev_hash does not match row before", prev)
            if row_hash(prev, row) != row["row_hash"]:
                return Verification(False, count, seq, "row edited: its hash does not match", prev)
            prev, expected, count = row["row_hash"], expected + 1, count + 1
    has_head = con.execute(
        "select count(*) from duckdb_tables() where table_name = 'audit_head'"
    ).fetchone()[0]
    stored = (
        con.execute("select head_seq, head_hash from audit_head").fetchone() if has_head else None
    )
    if stored and (stored[0], stored[1]) != (count, prev):
        if stored[0] > count:
            reason = f"last rows deleted: the head says {stored[0]} rows, the table has {count}"
            return Verification(False, count, count + 1, reason, prev)
        return Verification(False, count, stored[0], "head hash does not match the chain", prev)
    return Verification(True, count, head_hash=prev)

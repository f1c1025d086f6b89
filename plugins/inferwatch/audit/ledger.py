"""The hash-chained, append-only audit table: keyed, anchored outside its file, verified
before every append.

Each row carries ``seq`` (1, 2, 3 … with no gap), ``prev_hash`` (the previous row's
``row_hash``; 64 zeros for the first) and ``row_hash`` = HMAC-SHA256 under the audit key of
``prev_hash`` and the row's canonical JSON. Editing a row breaks its own hash; deleting one
breaks the ``seq`` run and the next row's ``prev_hash``; deleting the last rows is caught by the
head (seq and hash of the last row) kept beside the watermarks. Without the key, nobody who can
write the file can re-hash the chain after an edit.

The file alone cannot prove it was not rewritten by someone who also has the key, nor that its
last rows were not cut together with its stored head: after each append the head is also
*anchored* — written once, never overwritten, where the writer of the file cannot rewrite it
(``audit/heads/<seq>-<hash>.json`` in the lake; and the task log). Every anchored head must still
be in the chain, at its seq, with its hash.

A ledger written before the chain was keyed keeps its rows and their SHA-256 hashes: its first
append after the upgrade verifies them as they are, then keys every row from the next seq on
(``audit_keying``), starting with one saying so.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import duckdb

log = logging.getLogger(__name__)

GENESIS = "0" * 64
TABLE = "mart_audit_log"
#: The columns a source fills (the ledger adds seq, recorded_at and the hashes).
EVENT_COLUMNS = (
    "source", "source_id", "event_ts", "actor", "action", "object_type", "object_id", "details",
)  # fmt: skip
HASHED_COLUMNS = ("seq", *EVENT_COLUMNS, "recorded_at")
#: The action of the row that starts the keyed part of a ledger written unkeyed.
REANCHOR_ACTION = "audit chain keyed and re-anchored"

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
create table if not exists audit_keying (
    keyed_from bigint not null,
    mac varchar not null,
    keyed_at timestamp not null
);
"""


class Anchors(Protocol):
    """Where heads are anchored: append-only storage the ledger's writer cannot rewrite."""

    def heads(self) -> dict[int, set[str]]:
        """Every anchored head: seq → the hashes anchored for it (one, unless forged)."""

    def write(self, seq: int, head_hash: str) -> str:
        """Anchor a head (once: an existing anchor is never overwritten); returns where."""

    def record_incident(self, verification: Verification) -> str:
        """Keep a broken verification where the ledger's writer cannot erase it."""


@dataclass(frozen=True)
class Verification:
    ok: bool
    rows: int
    bad_seq: int | None = None
    reason: str = ""
    head_hash: str = GENESIS
    #: The first keyed row (None: the ledger was never keyed).
    keyed_from: int | None = None
    #: The highest seq whose head is anchored outside the file (0: none).
    anchored_seq: int = 0

    def message(self) -> str:
        if not self.ok:
            where = f" at row seq={self.bad_seq}" if self.bad_seq is not None else ""
            return f"audit chain BROKEN{where}: {self.reason}"
        keyed = f"keyed from seq {self.keyed_from}" if self.keyed_from else "not keyed yet (legacy)"
        anchored = f"anchored up to seq {self.anchored_seq}" if self.anchored_seq else "no anchor"
        return f"audit chain OK: {self.rows} rows, head {self.head_hash}; {keyed}; {anchored}"


class ChainBroken(RuntimeError):
    """The chain failed verification: nothing was appended."""

    def __init__(self, verification: Verification):
        super().__init__(verification.message())
        self.verification = verification


def _canonical(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds")
    return str(value)


def row_hash(prev_hash: str, row: dict, key: bytes | None = None) -> str:
    """HMAC-SHA256 under ``key``; plain SHA-256 for the rows of a chain written unkeyed."""
    payload = json.dumps([_canonical(row.get(c)) for c in HASHED_COLUMNS], ensure_ascii=False)
    message = f"{prev_hash}\n{payload}".encode()
    if key is None:
        return hashlib.sha256(message).hexdigest()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def keying_mac(key: bytes, keyed_from: int) -> str:
    """Binds where keying starts to the key: moving it (to pass re-hashed rows off as legacy
    ones) needs the key."""
    return hmac.new(key, f"audit chain keyed from seq {keyed_from}".encode(), "sha256").hexdigest()


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


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    query = "select count(*) from duckdb_tables() where table_name = ? and database_name = " \
            "current_database()"  # fmt: skip
    return con.execute(query, [name]).fetchone()[0] > 0


def keying(con: duckdb.DuckDBPyConnection) -> tuple[int, str] | None:
    """``(keyed_from, mac)``, or None for a ledger never keyed."""
    if not _has_table(con, "audit_keying"):
        return None
    found = con.execute("select keyed_from, mac from audit_keying order by 1").fetchall()
    if not found:
        return None
    return found[0] if len(found) == 1 else (found[0][0], "")  # several: none can be trusted


def append(
    con: duckdb.DuckDBPyConnection,
    events: Iterable[dict],
    new_watermarks: dict[str, str],
    *,
    key: bytes | None = None,
    anchors: Anchors | None = None,
) -> int:
    """Verify the chain, then chain and insert ``events`` (in order) and move the watermarks, in
    one transaction; then anchor the new head. A broken chain raises :class:`ChainBroken`
    (recorded with the anchors) and appends nothing.

    ``key`` and ``anchors`` default to those of the data dir the ledger file is in (the audit
    key of its secrets, the heads in its lake): callers that hold the ledger lock need nothing
    else.
    """
    if key is None or anchors is None:
        key, anchors = _context_of(con, key, anchors)
    events = list(events)
    now = datetime.now(UTC).replace(tzinfo=None)
    con.execute("begin transaction")
    try:
        check = verify(con, key, anchors.heads())
        if not check.ok:
            raise ChainBroken(check)
        seq, prev = head(con)
        if keying(con) is None:  # a new ledger, or one written before the chain was keyed
            con.execute("insert into audit_keying values (?, ?, ?)",
                        [seq + 1, keying_mac(key, seq + 1), now])  # fmt: skip
            if seq:
                events = [_reanchor_event(seq, prev), *events]
        rows = []
        for event in events:
            seq += 1
            row = {c: event.get(c) for c in EVENT_COLUMNS}
            row["event_ts"] = _naive_utc(row["event_ts"])
            row.update(seq=seq, recorded_at=now)
            row["prev_hash"] = prev
            row["row_hash"] = prev = row_hash(prev, row, key)
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
    except ChainBroken as broken:
        con.execute("rollback")
        where = anchors.record_incident(broken.verification)
        log.error("audit: %s; nothing appended (recorded as %s)", broken, where)
        raise
    except BaseException:
        con.execute("rollback")
        raise
    _anchor(anchors, seq, prev)
    return len(rows)


def _anchor(anchors: Anchors, seq: int, head_hash: str) -> None:
    if not seq:
        return
    # The task log is the second copy: it lives in Airflow, not beside the ledger.
    try:
        where = anchors.write(seq, head_hash)
    except Exception as error:  # noqa: BLE001 - the rows are committed; the next append anchors
        log.error("audit: head seq=%d hash=%s NOT anchored: %s", seq, head_hash, error)
        return
    log.info("audit: head seq=%d hash=%s anchored at %s", seq, head_hash, where)


def _reanchor_event(seq: int, head_hash: str) -> dict:
    return {
        "source": "inferwatch",
        "source_id": f"audit-keyed-{seq}",
        "event_ts": datetime.now(UTC),
        "actor": "inferwatch audit",
        "action": REANCHOR_ACTION,
        "object_type": "audit chain",
        "object_id": f"seq {seq + 1}",
        "details": json.dumps(
            {"unkeyed_rows": seq, "unkeyed_head_hash": head_hash, "keyed_from": seq + 1}
        ),  # fmt: skip
    }


def _context_of(con: duckdb.DuckDBPyConnection, key, anchors) -> tuple[bytes, Anchors]:
    """The key and anchors of the data dir the ledger file ``con`` has open is in."""
    from inferwatch.audit import collect

    (path,) = con.execute(
        "select path from duckdb_databases() where database_name = current_database()"
    ).fetchone()
    settings = collect.settings_of_ledger(Path(path))
    return key or collect.audit_key(settings), anchors or collect.anchors_for(settings)


def _naive_utc(value):
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def verify(
    con: duckdb.DuckDBPyConnection,
    key: bytes | None = None,
    anchored: dict[int, set[str]] | None = None,
) -> Verification:
    """Walk the chain in ``seq`` order; name the first row that does not hold. Keyed rows need
    ``key``; every head in ``anchored`` must be in the chain, at its seq, with its hash."""
    keyed = keying(con)
    anchored = anchored or {}
    if keyed is not None:
        start, mac = keyed
        if key is None:
            reason = "no audit key to check the keyed rows (INFERWATCH_AUDIT_KEY or secrets.env)"
            return Verification(False, 0, None, reason, keyed_from=start)
        if not hmac.compare_digest(mac, keying_mac(key, start)):
            return Verification(False, 0, None, "the keying record was altered or forged")
    elif anchored:
        reason = "the keying record is gone but heads were anchored for this chain"
        return Verification(False, 0, None, reason)
    start = keyed[0] if keyed else None
    walked = _walk(con, key, start, set(anchored))
    if not walked.ok:
        return walked
    count, prev, at = walked.rows, walked.head_hash, walked.at_anchors
    stored = (
        con.execute("select head_seq, head_hash from audit_head").fetchone()
        if _has_table(con, "audit_head")
        else None
    )
    if stored and (stored[0], stored[1]) != (count, prev):
        if stored[0] > count:
            reason = f"last rows deleted: the head says {stored[0]} rows, the table has {count}"
            return Verification(False, count, count + 1, reason, prev, start)
        return Verification(False, count, stored[0], "head hash does not match the chain", prev)
    for seq in sorted(anchored):
        if seq > count:
            reason = f"rows deleted: a head was anchored at seq={seq}, the table has {count} rows"
            return Verification(False, count, count + 1, reason, prev, start)
        if anchored[seq] != {at[seq]}:
            reason = "the chain was rewritten: this row's hash is not the head anchored for it"
            return Verification(False, count, seq, reason, prev, start)
    return Verification(True, count, head_hash=prev, keyed_from=start,
                        anchored_seq=max(anchored, default=0))  # fmt: skip


@dataclass(frozen=True)
class _Walk(Verification):
    at_anchors: dict[int, str] | None = None


def _walk(con, key: bytes | None, keyed_from: int | None, anchored: set[int]) -> _Walk:
    cursor = con.execute(
        f"select {', '.join(HASHED_COLUMNS)}, prev_hash, row_hash from {TABLE} order by seq"
    )
    names = [d[0] for d in cursor.description]
    prev, expected, count, at = GENESIS, 1, 0, {}
    while batch := cursor.fetchmany(10_000):
        for values in batch:
            row = dict(zip(names, values, strict=True))
            seq = row["seq"]
            if seq != expected:
                missing = (
                    f"row {expected}" if seq == expected + 1 else f"rows {expected}..{seq - 1}"
                )
                return _Walk(False, count, seq, f"seq gap: {missing} deleted", prev)
            if row["prev_hash"] != prev:
                return _Walk(False, count, seq, "prev_hash does not match row before", prev)
            row_key = key if keyed_from is not None and seq >= keyed_from else None
            if not hmac.compare_digest(row_hash(prev, row, row_key), row["row_hash"]):
                reason = "row edited (or re-hashed without the key): its hash does not match"
                return _Walk(False, count, seq, reason, prev)
            if seq in anchored:
                at[seq] = row["row_hash"]
            prev, expected, count = row["row_hash"], expected + 1, count + 1
    return _Walk(True, count, head_hash=prev, at_anchors=at)

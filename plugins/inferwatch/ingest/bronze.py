"""Raw objects → bronze Parquet, quarantine Parquet and manifest rows, chunk by chunk.

Objects are processed in chunks of bounded *inflated* size (what parsing holds in memory; gzip
inflates several times): fetched and inflated in threads (both release the GIL) a few objects
ahead, parsed together in one DuckDB statement under ``Settings.duckdb_memory_limit``, and
written as one immutable file set per chunk: ``bronze/events/batch=<id>/<chunk>.parquet``,
``quarantine/batch=<id>/<chunk>.parquet``, then ``bronze/manifest/batch=<id>/<chunk>.parquet``
last, which is what commits the chunk.

Ground-truth label objects (``labels/``, docs/labels.md) go the same way through the label
contract's parser, into ``bronze/labels/{rows,quarantine,manifest}/batch=<id>/<chunk>.parquet``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from inferwatch.adapters import ProducerMap
from inferwatch.adapters.apply import prepare_lines, settle
from inferwatch.config import Settings
from inferwatch.ingest.lines import Decoded, decompress, lines_table
from inferwatch.ingest.manifest import (
    EVENTS_PREFIX,
    LABEL_MANIFEST_PREFIX,
    LABEL_QUARANTINE_PREFIX,
    LABEL_ROWS_PREFIX,
    MANIFEST_PREFIX,
    MANIFEST_SCHEMA,
    QUARANTINE_PREFIX,
    is_label_key,
)
from inferwatch.ingest.parse import parse, parse_labels
from inferwatch.ingest.pii import hash_user_id, sql_literal
from inferwatch.lake import Lake, ObjectInfo
from inferwatch.names import sql_valid_model

log = logging.getLogger(__name__)

#: Inflated bytes per chunk (ingest; a quarantine replay counts raw bytes): large enough to
#: amortise DuckDB's per-statement cost, small enough to keep memory bounded (the inflated text,
#: its Arrow view and the parsed rows all live during parsing). An object larger than this is
#: a chunk of its own.
CHUNK_BYTES = int(os.environ.get("INFERWATCH_INGEST_CHUNK_BYTES", 128 << 20))
#: Objects fetched and inflated ahead of the one being chunked.
FETCH_AHEAD = 4

EVENT_COLUMNS = """
    event_id, request_id, model, model_version, endpoint, client_id, user_hash,
    event_ts, status, error_type, error_message, retry_count, fallback,
    latency_ms, confidence, prediction, input_features, geo_country, geo_region,
    resources, model_metadata, usage, schema_version, extra,
    object_key, line_number, batch_id, ingested_at
"""
LABEL_COLUMNS = """
    event_id, request_id, model, model_version, label, labeled_at, label_source, comment,
    schema_version, extra, object_key, line_number, batch_id, ingested_at
"""


@dataclass(frozen=True)
class Target:
    """Where one kind of lake object lands: its row columns and bronze prefixes."""

    rows_prefix: str
    quarantine_prefix: str
    manifest_prefix: str
    columns: str
    order_by: str


EVENTS = Target(EVENTS_PREFIX, QUARANTINE_PREFIX, MANIFEST_PREFIX, EVENT_COLUMNS, "event_ts")
LABELS = Target(
    LABEL_ROWS_PREFIX, LABEL_QUARANTINE_PREFIX, LABEL_MANIFEST_PREFIX, LABEL_COLUMNS, "labeled_at"
)


@dataclass
class IngestReport:
    batch_id: str
    objects: int = 0
    lines_read: int = 0
    lines_loaded: int = 0
    lines_quarantined: int = 0
    lines_blank: int = 0
    lines_merged: int = 0
    truncated_objects: list[str] = field(default_factory=list)
    days: set[str] = field(default_factory=set)
    seconds: float = 0.0
    #: Ground-truth label objects (counted apart: the figures above are the inference log's).
    label_objects: int = 0
    labels_loaded: int = 0
    labels_quarantined: int = 0

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out["days"] = sorted(self.days)
        return out


def chunks(objects: list[ObjectInfo], limit: int = CHUNK_BYTES) -> Iterator[list[ObjectInfo]]:
    current: list[ObjectInfo] = []
    size = 0
    for obj in objects:
        if current and size + obj.size > limit:
            yield current
            current, size = [], 0
        current.append(obj)
        size += obj.size
    if current:
        yield current


def fetched_chunks(
    lake: Lake, objects: list[ObjectInfo], pool: ThreadPoolExecutor, limit: int = CHUNK_BYTES
) -> Iterator[tuple[list[ObjectInfo], list[Decoded]]]:
    """Objects with their inflated lines, in chunks of at most ``limit`` inflated bytes.

    Fetches run a few objects ahead in ``pool``; objects deleted since they were listed are
    left out. The chunks depend only on the objects and their contents, so a re-run rewrites
    the same chunk files.
    """
    ahead: deque[tuple[ObjectInfo, Future]] = deque()
    todo = iter(objects)
    chunk: list[ObjectInfo] = []
    decoded: list[Decoded] = []
    size = 0
    while True:
        while len(ahead) < FETCH_AHEAD and (obj := next(todo, None)) is not None:
            ahead.append((obj, pool.submit(_fetch, lake, obj)))
        if not ahead:
            break
        obj, future = ahead.popleft()
        item = future.result()
        if item is None:
            continue
        if chunk and size + len(item.text) > limit:
            yield chunk, decoded
            chunk, decoded, size = [], [], 0
        chunk.append(obj)
        decoded.append(item)
        size += len(item.text)
    if chunk:
        yield chunk, decoded


def ingest(
    lake: Lake,
    objects: list[ObjectInfo],
    *,
    batch_id: str,
    user_hash_key: bytes,
    work_dir: Path,
    threads: int = 2,
    progress: Callable[[str], None] | None = None,
    producers: ProducerMap | None = None,
    memory_limit: str | None = None,
) -> IngestReport:
    """Ingest ``objects`` into bronze; safe to repeat (a re-run rewrites the same chunk files).

    ``producers`` routes lake prefixes to adapters (docs/producers.md); by default it is read
    from ``INFERWATCH_PRODUCERS``, and without it every object is contract v1.
    ``memory_limit`` caps each chunk's DuckDB connection (default: ``Settings``).
    """
    if producers is None or memory_limit is None:
        settings = Settings.from_env()
        producers = producers if producers is not None else ProducerMap.load(settings.producers)
        memory_limit = memory_limit or settings.duckdb_memory_limit
    started = time.monotonic()
    report = IngestReport(batch_id=batch_id)
    ingested_at = datetime.now(UTC).replace(tzinfo=None)
    logs = [o for o in objects if not is_label_key(o.key)]
    labels = [o for o in objects if is_label_key(o.key)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        planned = (
            (target, chunk)
            for target, group in ((EVENTS, logs), (LABELS, labels))
            for chunk in fetched_chunks(lake, group, pool)
        )
        for number, (target, (chunk, decoded)) in enumerate(planned):
            _ingest_chunk(
                lake, chunk, decoded, report,
                chunk_name=f"{number:05d}", ingested_at=ingested_at,
                user_hash_key=user_hash_key, work_dir=work_dir, threads=threads,
                producers=producers, target=target, memory_limit=memory_limit,
            )  # fmt: skip
            if progress:
                progress(
                    f"chunk {number + 1}: {report.objects}/{len(logs)} objects, "
                    f"{report.lines_loaded} events, {report.lines_quarantined} quarantined"
                )
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _fetch(lake: Lake, obj: ObjectInfo) -> Decoded | None:
    """The object's lines; None when it was deleted after it was listed (a producer's cleanup
    racing the run): it never reaches the manifest, and the next listing no longer has it."""
    try:
        return decompress(obj.key, lake.read_bytes(obj.key))
    except FileNotFoundError:
        log.warning("%s: deleted after it was listed; skipped", obj.key)
        return None


def _ingest_chunk(
    lake: Lake,
    chunk: list[ObjectInfo],
    decoded: list[Decoded],
    report: IngestReport,
    *,
    chunk_name: str,
    ingested_at: datetime,
    user_hash_key: bytes,
    work_dir: Path,
    threads: int,
    producers: ProducerMap | None = None,
    target: Target = EVENTS,
    memory_limit: str | None = None,
) -> None:
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp, duckdb.connect() as con:
        con.execute(f"set threads = {int(threads)}")
        if memory_limit:
            con.execute(f"set memory_limit = {sql_literal(memory_limit)}")
            # Spilling goes to the chunk's own temporary folder, removed with it.
            con.execute(f"set temp_directory = {sql_literal(str(Path(tmp) / 'spill'))}")
        if target is LABELS:
            con.register("raw_lines", lines_table(decoded))
            parse_labels(con, "raw_lines")
            hashes = ""
        else:
            parse_lines(
                con, lines_table(decoded), [d.key for d in decoded], producers, user_hash_key
            )
            hashes = "left join user_hashes using (user_id)"
        con.execute("create temp table batch_info as select ? as batch_id, ? as ingested_at",
                    [report.batch_id, ingested_at])  # fmt: skip

        events = Path(tmp) / "events.parquet"
        con.execute(f"""
            copy (
                select {target.columns}
                from parsed
                cross join batch_info
                {hashes}
                where not is_blank and reason is null and not is_merged
                order by {target.order_by}
            ) to '{events}' (format parquet, compression zstd)
        """)
        quarantine = Path(tmp) / "quarantine.parquet"
        con.execute(f"""
            copy (
                select object_key, line_number, reason, raw_line, raw_sha256, batch_id, ingested_at,
                       {sql_valid_model()} as model
                from parsed cross join batch_info
                where reason is not null
                order by object_key, line_number
            ) to '{quarantine}' (format parquet, compression zstd)
        """)
        stats = con.execute("""
            select object_key,
                   count(*) as lines_read,
                   count(*) filter (not is_blank and reason is null and not is_merged)
                       as lines_loaded,
                   count(*) filter (reason is not null) as lines_quarantined,
                   count(*) filter (is_blank) as lines_blank,
                   count(*) filter (is_merged) as lines_merged
            from parsed group by object_key
        """).fetchall()
        days = (
            []
            if target is LABELS
            else con.execute(
                "select distinct strftime(event_ts, '%Y-%m-%d') from parsed "
                "where not is_blank and reason is null and not is_merged"
            ).fetchall()
        )

        rows = _manifest_rows(chunk, decoded, stats, report.batch_id, chunk_name, ingested_at)
        manifest = Path(tmp) / "manifest.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), manifest)

        # Order matters: the manifest commits the chunk, so it lands last.
        part = f"batch={report.batch_id}/{chunk_name}.parquet"
        lake.move_in(str(events), f"{target.rows_prefix}/{part}")
        lake.move_in(str(quarantine), f"{target.quarantine_prefix}/{part}")
        lake.move_in(str(manifest), f"{target.manifest_prefix}/{part}")

    if target is LABELS:
        report.label_objects += len(rows)
        report.labels_loaded += sum(row["lines_loaded"] for row in rows)
        report.labels_quarantined += sum(row["lines_quarantined"] for row in rows)
        return
    for row in rows:
        report.objects += 1
        report.lines_read += row["lines_read"]
        report.lines_loaded += row["lines_loaded"]
        report.lines_quarantined += row["lines_quarantined"]
        report.lines_blank += row["lines_blank"]
        report.lines_merged += row["lines_merged"]
        if row["truncated"]:
            report.truncated_objects.append(row["object_key"])
            log.warning(
                "%s: gzip stream is cut or corrupt; kept the lines before the cut",
                row["object_key"],
            )
    report.days.update(day for (day,) in days)


def parse_lines(
    con: duckdb.DuckDBPyConnection,
    raw_lines: pa.Table,
    keys: list[str],
    producers: ProducerMap | None,
    user_hash_key: bytes,
) -> None:
    """Numbered raw lines → the temp table ``parsed`` (+ ``user_hashes``); ingest and replay
    share it so that a replayed line is judged exactly as a new one would be."""
    con.register("raw_lines", raw_lines)
    # Other producers' records become contract lines first (one parse path for all).
    adapted = prepare_lines(con, keys, producers)
    parse(con)
    settle(con, adapted)
    _register_user_hashes(con, user_hash_key)


def _register_user_hashes(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """HMAC each distinct user id once (far fewer than events), then join it back in SQL."""
    distinct = [
        u
        for (u,) in con.execute(
            "select distinct user_id from parsed where user_id is not null"
        ).fetchall()
    ]
    table = pa.table(
        {"user_id": distinct, "user_hash": [hash_user_id(u, key) for u in distinct]},
        schema=pa.schema([("user_id", pa.string()), ("user_hash", pa.string())]),
    )
    con.register("user_hashes", table)


def _manifest_rows(
    chunk: list[ObjectInfo],
    decoded: list[Decoded],
    stats: list[tuple],
    batch_id: str,
    chunk_name: str,
    ingested_at: datetime,
) -> list[dict]:
    """One manifest row per object of the chunk (an object with no lines still gets one)."""
    by_key = {row[0]: row for row in stats}
    rows = []
    for obj, dec in zip(chunk, decoded, strict=True):
        _, read, loaded, quarantined, blank, merged = by_key.get(obj.key, (obj.key, 0, 0, 0, 0, 0))
        rows.append(
            {
                "object_key": obj.key,
                "object_size": obj.size,
                "object_version": obj.version,
                "batch_id": batch_id,
                "chunk": chunk_name,
                "lines_read": read,
                "lines_loaded": loaded,
                "lines_quarantined": quarantined,
                "lines_blank": blank,
                "lines_merged": merged,
                "truncated": dec.truncated,
                "ingested_at": ingested_at,
                "base_batch_id": None,
            }
        )
    return rows

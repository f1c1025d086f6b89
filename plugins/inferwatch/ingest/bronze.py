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
from inferwatch.config import IngestLimits, Settings
from inferwatch.ingest.lines import INFLATED_BYTES, OBJECT_BYTES, Decoded, decompress, lines_table
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
from inferwatch.ingest.phases import Phases
from inferwatch.ingest.pii import hash_user_id, sql_literal, sql_scrub_line
from inferwatch.lake import Lake, ObjectInfo
from inferwatch.names import sql_valid_model

log = logging.getLogger(__name__)

#: Inflated bytes per chunk (ingest; a quarantine replay counts raw bytes): large enough to
#: amortise DuckDB's per-statement cost, small enough to keep memory bounded (the inflated text,
#: its Arrow view and the parsed rows all live during parsing). An object larger than this is
#: a chunk of its own.
CHUNK_BYTES = int(os.environ.get("INFERWATCH_INGEST_CHUNK_BYTES", 128 << 20))
#: zstd level of the bronze and quarantine files ingest writes, read at each chunk: level 1
#: writes with less CPU than DuckDB's default (3), its share of ingest fell in the profile of
#: benchmarks/README.md ("Ingest at 10M"). Readers do not care which level wrote a file.
ZSTD_LEVEL_ENV = "INFERWATCH_INGEST_ZSTD_LEVEL"


def _parquet_options() -> str:
    level = int(os.environ.get(ZSTD_LEVEL_ENV) or 1)
    if not 1 <= level <= 22:
        raise ValueError(f"{ZSTD_LEVEL_ENV} must be 1..22, not {level}")
    return f"format parquet, compression zstd, compression_level {level}"


#: Objects fetched and inflated ahead of the one being chunked.
FETCH_AHEAD = 4

EVENT_COLUMNS = """
    event_id, request_id, model, model_version, endpoint, client_id, user_hash,
    event_ts, status, error_type, error_message, retry_count, fallback,
    latency_ms, confidence, prediction, input_features, geo_country, geo_region,
    resources, model_metadata, usage, schema_version, extra, predictions, batch_elements,
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


# object_key and line_number after the timestamp: the rows come out in one order every time
EVENTS = Target(
    EVENTS_PREFIX, QUARANTINE_PREFIX, MANIFEST_PREFIX, EVENT_COLUMNS,
    "event_ts, object_key, line_number",
)  # fmt: skip
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
    #: Objects (logs and labels) a size cap stopped: key → ``limit_exceeded``.
    objects_too_large: dict[str, str] = field(default_factory=dict)
    days: set[str] = field(default_factory=set)
    seconds: float = 0.0
    #: Ground-truth label objects (counted apart: the figures above are the inference log's).
    label_objects: int = 0
    labels_loaded: int = 0
    labels_quarantined: int = 0
    #: Limits (README: Limits) that this run ran into, one entry per limit: what it is, how
    #: many objects or lines it stopped and a few examples (the alert step turns it into an
    #: ``ingest_limits`` alert).
    limits_tripped: list[dict] = field(default_factory=list)
    #: Wall seconds per step of ingest, summed over chunks (ingest/phases.py): what bounds it.
    phase_seconds: dict[str, float] = field(default_factory=dict)

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
    lake: Lake,
    objects: list[ObjectInfo],
    pool: ThreadPoolExecutor,
    limit: int = CHUNK_BYTES,
    caps: IngestLimits | None = None,
    phases: Phases | None = None,
) -> Iterator[tuple[list[ObjectInfo], list[Decoded]]]:
    """Objects with their inflated lines, in chunks of at most ``limit`` inflated bytes.

    Fetches run a few objects ahead in ``pool``; objects deleted since they were listed are
    left out. An object stored larger than ``caps.max_object_bytes`` is not fetched, and
    inflation stops at ``caps.max_inflated_bytes`` (``Decoded.limit_exceeded``), so no object
    holds more than the caps in memory. The chunks depend only on the objects, their contents
    and the caps, so a re-run rewrites the same chunk files.
    """
    caps = caps or IngestLimits()
    phases = phases or Phases()
    ahead: deque[tuple[ObjectInfo, Future]] = deque()
    todo = iter(objects)
    chunk: list[ObjectInfo] = []
    decoded: list[Decoded] = []
    size = 0
    while True:
        while len(ahead) < FETCH_AHEAD and (obj := next(todo, None)) is not None:
            ahead.append((obj, pool.submit(_fetch, lake, obj, caps, phases)))
        if not ahead:
            break
        obj, future = ahead.popleft()
        # what the chunk waits for its objects: fetch and inflate run ahead in the pool
        with phases("wait for fetch + inflate"):
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
    limits: IngestLimits | None = None,
) -> IngestReport:
    """Ingest ``objects`` into bronze; safe to repeat (a re-run rewrites the same chunk files).

    ``producers`` routes lake prefixes to adapters (docs/producers.md); by default it is read
    from ``INFERWATCH_PRODUCERS``, and without it every object is contract v1.
    ``memory_limit`` caps each chunk's DuckDB connection, ``limits`` the size of each object
    and the names of a run (README: Limits); both default to ``Settings``.
    """
    if producers is None or memory_limit is None or limits is None:
        settings = Settings.from_env()
        producers = producers if producers is not None else ProducerMap.load(settings.producers)
        memory_limit = memory_limit or settings.duckdb_memory_limit
        limits = limits or settings.limits
    guard = CardinalityGuard(limits.max_models_per_run, limits.max_features_per_model)
    started = time.monotonic()
    report = IngestReport(batch_id=batch_id)
    phases = Phases()
    ingested_at = datetime.now(UTC).replace(tzinfo=None)
    logs = [o for o in objects if not is_label_key(o.key)]
    labels = [o for o in objects if is_label_key(o.key)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        planned = (
            (target, chunk)
            for target, group in ((EVENTS, logs), (LABELS, labels))
            for chunk in fetched_chunks(lake, group, pool, caps=limits, phases=phases)
        )
        for number, (target, (chunk, decoded)) in enumerate(planned):
            _ingest_chunk(
                lake, chunk, decoded, report,
                chunk_name=f"{number:05d}", ingested_at=ingested_at,
                user_hash_key=user_hash_key, work_dir=work_dir, threads=threads,
                producers=producers, target=target, memory_limit=memory_limit, guard=guard,
                max_batch=limits.max_batch, phases=phases,
            )  # fmt: skip
            if progress:
                progress(
                    f"chunk {number + 1}: {report.objects}/{len(logs)} objects, "
                    f"{report.lines_loaded} events, {report.lines_quarantined} quarantined"
                )
    report.limits_tripped = _tripped(report, limits, guard)
    report.seconds = round(time.monotonic() - started, 3)
    report.phase_seconds = phases.rounded()
    if report.phase_seconds:
        log.info("ingest steps (s): %s", ", ".join(
            f"{name} {seconds:.1f}" for name, seconds in report.phase_seconds.items()))  # fmt: skip
    return report


def _fetch(
    lake: Lake, obj: ObjectInfo, caps: IngestLimits, phases: Phases | None = None
) -> Decoded | None:
    """The object's lines; None when it was deleted after it was listed (a producer's cleanup
    racing the run): it never reaches the manifest, and the next listing no longer has it.

    An object stored larger than the cap is not read (nor is one that grew past it since it
    was listed), and inflation stops at the inflated cap.
    """
    if obj.size > caps.max_object_bytes:
        return Decoded(obj.key, b"", False, limit_exceeded=OBJECT_BYTES)
    try:
        data = lake.read_bytes(obj.key)
    except FileNotFoundError:
        log.warning("%s: deleted after it was listed; skipped", obj.key)
        return None
    if len(data) > caps.max_object_bytes:
        return Decoded(obj.key, b"", False, limit_exceeded=OBJECT_BYTES)
    with (phases or Phases())("inflate (fetch pool, overlaps the chunks)"):
        return decompress(obj.key, data, caps.max_inflated_bytes)


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
    guard: CardinalityGuard | None = None,
    max_batch: int | None = None,
    phases: Phases | None = None,
) -> None:
    phases = phases or Phases()
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp, duckdb.connect() as con:
        con.execute(f"set threads = {int(threads)}")
        # Kept in order, DuckDB holds row groups per incoming batch until the statement ends;
        # every file written below orders its own rows.
        con.execute("set preserve_insertion_order = false")
        if memory_limit:
            con.execute(f"set memory_limit = {sql_literal(memory_limit)}")
            # Spilling goes to the chunk's own temporary folder, removed with it.
            con.execute(f"set temp_directory = {sql_literal(str(Path(tmp) / 'spill'))}")
        with phases("split lines"):
            raw_lines = lines_table(decoded)
        if target is LABELS:
            con.register("raw_lines", raw_lines)
            with phases("parse labels"):
                parse_labels(con, "raw_lines")
            hashes = ""
        else:
            parse_lines(
                con, raw_lines, [d.key for d in decoded], producers, user_hash_key,
                guard=guard, max_batch=max_batch, phases=phases,
            )  # fmt: skip
            hashes = "left join user_hashes using (user_id)"
        con.execute("create temp table batch_info as select ? as batch_id, ? as ingested_at",
                    [report.batch_id, ingested_at])  # fmt: skip

        events, quarantine = Path(tmp) / "events.parquet", Path(tmp) / "quarantine.parquet"
        with phases("write bronze rows (sorted, zstd)"):
            _write_rows(con, target, hashes, events)
        with phases("write quarantine"):
            _write_quarantine(con, quarantine)
        with phases("count lines per object"):
            stats, days = _chunk_stats(con, target)

        rows = _manifest_rows(chunk, decoded, stats, report.batch_id, chunk_name, ingested_at)
        manifest = Path(tmp) / "manifest.parquet"
        with phases("write manifest, move files into the lake"):
            pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), manifest)
            # Order matters: the manifest commits the chunk, so it lands last.
            part = f"batch={report.batch_id}/{chunk_name}.parquet"
            lake.move_in(str(events), f"{target.rows_prefix}/{part}")
            lake.move_in(str(quarantine), f"{target.quarantine_prefix}/{part}")
            lake.move_in(str(manifest), f"{target.manifest_prefix}/{part}")

    for row in rows:
        if row["limit_exceeded"]:
            report.objects_too_large[row["object_key"]] = row["limit_exceeded"]
            log.warning("%s: %s", row["object_key"], _LIMIT_TEXT[row["limit_exceeded"]])
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


def _write_rows(con: duckdb.DuckDBPyConnection, target: Target, hashes: str, path: Path) -> None:
    con.execute(f"""
        copy (
            select {target.columns}
            from parsed
            cross join batch_info
            {hashes}
            where not is_blank and reason is null and not is_merged
            order by {target.order_by}
        ) to '{path}' ({_parquet_options()})
    """)


def _write_quarantine(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    con.execute(f"""
        copy (
            select object_key, line_number, reason, raw_line, raw_sha256, batch_id, ingested_at,
                   {sql_valid_model()} as model
            from parsed cross join batch_info
            where reason is not null
            order by object_key, line_number
        ) to '{path}' ({_parquet_options()})
    """)


def _chunk_stats(con: duckdb.DuckDBPyConnection, target: Target) -> tuple[list[tuple], list]:
    """Line counts per object (the manifest's) and the days of the loaded events."""
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
    return stats, days


def parse_lines(
    con: duckdb.DuckDBPyConnection,
    raw_lines: pa.Table,
    keys: list[str],
    producers: ProducerMap | None,
    user_hash_key: bytes,
    guard: CardinalityGuard | None = None,
    max_batch: int | None = None,
    phases: Phases | None = None,
) -> None:
    """Numbered raw lines → the temp table ``parsed`` (+ ``user_hashes``); ingest and replay
    share it so that a replayed line is judged exactly as a new one would be. ``guard``
    quarantines the lines over a run's cardinality limits (before ``settle``, so a request an
    adapter folded into a refused event shares its fate); ``max_batch`` caps the predictions of
    a batched line (default: ``INFERWATCH_MAX_BATCH``); ``phases`` times each step."""
    phases = phases or Phases()
    con.register("raw_lines", raw_lines)
    # Other producers' records become contract lines first (one parse path for all).
    with phases("adapt other producers' records"):
        adapted = prepare_lines(con, keys, producers)
    parse(con, max_batch=max_batch, phases=phases)
    with phases("cardinality caps, adapters' merges"):
        if guard is not None:
            guard.apply(con)
        settle(con, adapted)
    with phases("hash user ids"):
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
                "limit_exceeded": dec.limit_exceeded,
                "inflated_bytes": dec.inflated_bytes,
                "ingested_at": ingested_at,
                "base_batch_id": None,
            }
        )
    return rows


# ---------------------------------------------------------------- limits of a run
_LIMIT_TEXT = {
    OBJECT_BYTES: "stored size over INFERWATCH_MAX_OBJECT_BYTES; not read",
    INFLATED_BYTES: "inflated past INFERWATCH_MAX_INFLATED_BYTES; the lines after the cap "
    "were not read",
}
_ACCEPTED = "reason is null and not is_blank"


@dataclass
class CardinalityGuard:
    """Distinct model names, and distinct feature names per model, that one run accepts.

    Names are admitted in the order the run first meets them (object key, line number; the
    names of one line in name order) until a cap is full; a line naming a model beyond it, or
    bringing a feature name beyond its model's cap, is quarantined. A million junk names cost
    a million quarantine rows, not a million validation definitions, drift series and alerts.
    """

    max_models: int
    max_features: int
    models: set[str] = field(default_factory=set)
    features: dict[str, set[str]] = field(default_factory=dict)
    #: reason → quarantined lines, and a few of the names refused
    lines: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def models_reason(self) -> str:
        return f"too many distinct models in one run (over {self.max_models})"

    @property
    def features_reason(self) -> str:
        over = f"(over {self.max_features})"
        return f"too many distinct feature names for one model in one run {over}"

    def apply(self, con: duckdb.DuckDBPyConnection) -> None:
        """Quarantine the accepted lines of ``parsed`` that go over a cap."""
        self._models(con)
        self._features(con)

    def _models(self, con: duckdb.DuckDBPyConnection) -> None:
        admitted = pa.table({"model": pa.array(sorted(self.models), pa.string())})
        con.register("admitted_models", admitted)
        room = self.max_models - len(self.models)
        con.execute(f"""
            create or replace temp table new_models as
            select model, row_number() over (order by min({_FIRST_SEEN})) as rank
            from parsed anti join admitted_models using (model)
            where {_ACCEPTED}
            group by model
        """)
        self.models.update(m for (m,) in con.execute(
            "select model from new_models where rank <= ?", [room]
        ).fetchall())  # fmt: skip
        con.execute(f"""
            create or replace temp table refused_lines as
            select object_key, line_number, model
            from parsed semi join (select model from new_models where rank > {room}) using (model)
            where {_ACCEPTED}
        """)
        self._refuse(con, self.models_reason)

    def _features(self, con: duckdb.DuckDBPyConnection) -> None:
        admitted = [(m, f) for m, names in self.features.items() for f in names]
        con.register("admitted_features", pa.table({
            "model": pa.array([m for m, _ in admitted], pa.string()),
            "feature": pa.array([f for _, f in admitted], pa.string()),
        }))  # fmt: skip
        cap = int(self.max_features)
        # Feature names new to the run, numbered per model after those it already has.
        con.execute(f"""
            create or replace temp table new_features as
            with firsts as (
                select model, feature, min({_FIRST_SEEN}) as first
                from ({_line_features()})
                group by model, feature
            ),
            used as (select model, count(*) as used from admitted_features group by model)
            select model, feature,
                   row_number() over (partition by model order by first, feature)
                       + coalesce(used, 0) as rank
            from (select * from firsts anti join admitted_features using (model, feature))
            left join used using (model)
        """)
        self._admit_features(con, cap)
        if con.execute(f"select count(*) from new_features where rank > {cap}").fetchone()[0]:
            con.execute(f"""
                create or replace temp table refused_lines as
                select distinct object_key, line_number, model
                from ({_line_features()})
                semi join (select * from new_features where rank > {cap}) using (model, feature)
            """)
            self._refuse(con, self.features_reason)

    def _admit_features(self, con: duckdb.DuckDBPyConnection, cap: int) -> None:
        for model, feature in con.execute(
            f"select model, feature from new_features where rank <= {cap}"
        ).fetchall():
            self.features.setdefault(model, set()).add(feature)

    def _refuse(self, con: duckdb.DuckDBPyConnection, reason: str) -> None:
        """Quarantine the lines of ``refused_lines`` with ``reason``, keeping their scrubbed
        text and its hash as the parser does for any quarantined line."""
        count = con.execute("select count(*) from refused_lines").fetchone()[0]
        if not count:
            return
        txt = "rtrim(try(decode(l.line)), chr(13) || chr(10))"
        con.execute(f"""
            update parsed
            set reason = {sql_literal(reason)},
                raw_line = {sql_scrub_line(f"coalesce({txt}, '')")},
                raw_sha256 = sha256({txt})
            from lines as l, refused_lines as r
            where parsed.object_key = r.object_key and parsed.line_number = r.line_number
              and l.object_key::VARCHAR = r.object_key and l.line_number = r.line_number
        """)
        self.lines[reason] = self.lines.get(reason, 0) + count
        names = self.examples.setdefault(reason, [])
        names += [m for (m,) in con.execute(
            "select distinct model from refused_lines order by model limit 5"
        ).fetchall() if m not in names][: 5 - len(names)]  # fmt: skip


#: The position where a run first meets a name: object key, then line number.
_FIRST_SEEN = "{'k': object_key, 'n': line_number}"


def _line_features() -> str:
    """One row per accepted line and ``input_features`` name (a batched line's names are
    those of its elements' input_features)."""
    return f"""
        select object_key, line_number, model, unnest(json_keys(input_features)) as feature
        from parsed
        where {_ACCEPTED} and starts_with(input_features, '{{')
        union all
        select object_key, line_number, model, unnest(json_keys(element.input_features))
        from (
            select object_key, line_number, model, unnest(batch_elements) as element
            from parsed
            where {_ACCEPTED} and batch_elements is not null
        )
        where starts_with(element.input_features, '{{')
    """


def _tripped(report: IngestReport, limits: IngestLimits, guard: CardinalityGuard) -> list[dict]:
    """The limits this run ran into, for the run record and the ``ingest_limits`` alert."""
    tripped = []
    for code, name in ((OBJECT_BYTES, "max_object_bytes"), (INFLATED_BYTES, "max_inflated_bytes")):
        keys = sorted(k for k, limit in report.objects_too_large.items() if limit == code)
        if keys:
            tripped.append(_trip(name, getattr(limits, name), f"{len(keys)} objects: "
                                 f"{_LIMIT_TEXT[code]}", keys, objects=len(keys)))  # fmt: skip
    for name, reason in (("max_models_per_run", guard.models_reason),
                         ("max_features_per_model", guard.features_reason)):  # fmt: skip
        if guard.lines.get(reason):
            lines = guard.lines[reason]
            tripped.append(_trip(name, getattr(limits, name), f"{lines} lines quarantined: "
                                 f"{reason}", guard.examples[reason], lines=lines))  # fmt: skip
    for trip in tripped:
        log.warning("ingest limit %s: %s", trip["limit"], trip["message"])
    return tripped


def _trip(name: str, cap: int, message: str, examples: list[str], **counts: int) -> dict:
    return {
        "limit": name, "setting": f"INFERWATCH_{name.upper()}", "cap": cap,
        "objects": counts.get("objects", 0), "lines": counts.get("lines", 0),
        "examples": examples[:5], "message": message,
    }  # fmt: skip

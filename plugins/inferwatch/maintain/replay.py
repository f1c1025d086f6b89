"""Replay quarantined lines after a fix (an adapter, a contract change): exactly once.

Quarantined text is PII-scrubbed, so it is not what gets replayed: the raw object is (raw/ is
immutable). For each object still in the lake in the version the manifest knows, the lines
that are quarantined now are read again from it by line number and judged by the current
parser and adapters, exactly as a new line would be (``bronze.parse_lines``). A replay is one
new batch ``R`` based on the object's ingest batch ``B``:

- ``bronze/events/batch=R/``: the events of the lines that now load (only those: lines already
  loaded are never re-read, so nothing is duplicated);
- ``quarantine/batch=R/``: a new judgement of every replayed line whose outcome changed (reason
  null once it loaded; the newest judgement per line wins in stg_quarantine);
- ``bronze/manifest/batch=R/``, last, as the commit: the object's row with its counts moved from
  quarantined to loaded (read = loaded + quarantined + blank + merged still holds) and
  ``base_batch_id = B``, so that stg_bronze__object_batches counts B's rows and R's together.

A crash before the manifest file leaves rows of a batch no manifest names: never read. A second
replay finds only still-quarantined lines, judges them as before and writes nothing.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from inferwatch.adapters import ProducerMap
from inferwatch.config import IngestLimits, Settings
from inferwatch.ingest.bronze import EVENT_COLUMNS, CardinalityGuard, chunks, parse_lines
from inferwatch.ingest.lines import bounded_batches, decompress, lines_table
from inferwatch.ingest.manifest import (
    EVENTS_PREFIX,
    MANIFEST_PREFIX,
    MANIFEST_SCHEMA,
    QUARANTINE_PREFIX,
    RAW_PREFIX,
    current_rows,
    live_batches,
    read_manifest,
)
from inferwatch.lake import Lake, ObjectInfo
from inferwatch.names import sql_valid_model

log = logging.getLogger(__name__)

QUARANTINE_READ_SCHEMA = pa.schema(
    [
        ("object_key", pa.string()),
        ("line_number", pa.int64()),
        ("reason", pa.string()),
        ("batch_id", pa.string()),
        ("ingested_at", pa.timestamp("us")),
    ]
)


@dataclass
class ReplayReport:
    batch_id: str
    objects_considered: int = 0
    lines_replayed: int = 0
    lines_loaded: int = 0
    lines_merged: int = 0
    lines_still_quarantined: int = 0
    objects_changed: list[str] = field(default_factory=list)
    #: object_key → why it could not be replayed (raw object gone or rewritten since)
    skipped: dict[str, str] = field(default_factory=dict)
    days: set[str] = field(default_factory=set)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out["days"] = sorted(self.days)
        return out


def read_quarantine(lake: Lake) -> pa.Table:
    """Every quarantine row ever written (object, line, reason, batch), without the text."""
    files = [o.key for o in lake.list(QUARANTINE_PREFIX) if o.key.endswith(".parquet")]
    if not files:
        return QUARANTINE_READ_SCHEMA.empty_table()
    dataset = pads.dataset(
        [lake.path(k) for k in files], schema=QUARANTINE_READ_SCHEMA, format="parquet",
        filesystem=lake.fs,
    )  # fmt: skip
    return dataset.to_table()


def pending_lines(
    manifest: pa.Table, quarantine: pa.Table, *, reason: str | None, object_prefix: str | None
) -> pa.Table:
    """(object_key, line_number, reason) of the lines quarantined now, as stg_quarantine sees
    them: live batches only, newest judgement per line, reason not null; filtered by prefix."""
    live = pa.Table.from_pylist(
        [{"object_key": k, "batch_id": b} for k, b in sorted(live_batches(manifest))],
        schema=pa.schema([("object_key", pa.string()), ("batch_id", pa.string())]),
    )
    with duckdb.connect() as con:
        con.register("quarantine", quarantine)
        con.register("live", live)
        return con.execute(
            """
            with judged as (
                select q.object_key, q.line_number, q.reason,
                       row_number() over (partition by q.object_key, q.line_number
                                          order by q.ingested_at desc) as judgement_rank
                from quarantine as q
                inner join live using (object_key, batch_id)
            )
            select object_key, line_number, reason from judged
            where judgement_rank = 1 and reason is not null
              and ($reason is null or starts_with(reason, $reason))
              and ($prefix is null or starts_with(object_key, $prefix))
            order by object_key, line_number
            """,
            {"reason": reason, "prefix": object_prefix},
        ).to_arrow_table()


def replay(
    lake: Lake,
    *,
    batch_id: str,
    user_hash_key: bytes,
    work_dir: Path,
    reason: str | None = None,
    object_prefix: str | None = None,
    producers: ProducerMap | None = None,
    threads: int = 2,
    limits: IngestLimits | None = None,
) -> ReplayReport:
    """Re-judge the quarantined lines (optionally: whose reason starts with ``reason``, of
    objects whose key starts with ``object_prefix``) and commit the ones whose outcome changed.

    The ingest's limits hold here too (``limits``, default ``Settings``): objects inflate up
    to the same cap, and the replayed lines pass the same cardinality guard."""
    if producers is None or limits is None:
        settings = Settings.from_env()
        producers = producers if producers is not None else ProducerMap.load(settings.producers)
        limits = limits or settings.limits
    guard = CardinalityGuard(limits.max_models_per_run, limits.max_features_per_model)
    started = time.monotonic()
    report = ReplayReport(batch_id=batch_id)
    manifest = read_manifest(lake)
    pending = pending_lines(
        manifest, read_quarantine(lake), reason=reason, object_prefix=object_prefix
    )
    by_object = set(pending["object_key"].to_pylist())
    report.objects_considered = len(by_object)
    if not by_object:
        log.info("replay: no quarantined line matches")
        return report

    current = current_rows(manifest)
    listed = {o.key: o for o in lake.list(RAW_PREFIX) if o.key in by_object}
    replayable: list[ObjectInfo] = []
    for key in sorted(by_object):
        row, obj = current[key], listed.get(key)
        if obj is None:
            report.skipped[key] = "raw object gone from the lake"
        elif (obj.size, obj.version) != (row["object_size"], row["object_version"]):
            report.skipped[key] = "raw object rewritten since ingest; the next run re-ingests it"
        else:
            replayable.append(obj)
    for key, why in report.skipped.items():
        log.warning("replay: %s skipped: %s", key, why)

    ingested_at = datetime.now(UTC).replace(tzinfo=None)
    for number, chunk in enumerate(chunks(replayable)):
        _replay_chunk(
            lake, chunk, pending, current, report, chunk_name=f"{number:05d}",
            ingested_at=ingested_at, user_hash_key=user_hash_key, work_dir=work_dir,
            threads=threads, producers=producers, limits=limits, guard=guard,
        )  # fmt: skip
    report.seconds = round(time.monotonic() - started, 3)
    log.info(
        "replay %s: %d lines of %d objects re-judged: %d now loaded, %d merged, %d still "
        "quarantined; %d objects changed, %d skipped",
        batch_id, report.lines_replayed, len(replayable), report.lines_loaded,
        report.lines_merged, report.lines_still_quarantined, len(report.objects_changed),
        len(report.skipped),
    )  # fmt: skip
    return report


def _replay_chunk(
    lake: Lake,
    chunk: list[ObjectInfo],
    pending: pa.Table,
    current: dict[str, dict],
    report: ReplayReport,
    *,
    chunk_name: str,
    ingested_at: datetime,
    user_hash_key: bytes,
    work_dir: Path,
    threads: int,
    producers: ProducerMap,
    limits: IngestLimits,
    guard: CardinalityGuard,
) -> None:
    decoded = [decompress(o.key, lake.read_bytes(o.key), limits.max_inflated_bytes) for o in chunk]
    keys = [o.key for o in chunk]
    previous = pending.filter(pc.is_in(pending["object_key"], pa.array(keys)))
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp, duckdb.connect() as con:
        con.execute(f"set threads = {int(threads)}")
        con.register("everything", lines_table(decoded))
        con.register("previous", previous)
        # Only the quarantined line numbers: lines already loaded are never judged twice.
        selected = con.execute("""
            select everything.* from everything
            semi join previous
                on everything.object_key::varchar = previous.object_key
                    and everything.line_number = previous.line_number
        """).to_arrow_table()
        # DuckDB's result comes in 2,048-row batches whatever the lines' length: bound them
        parse_lines(con, bounded_batches(selected), keys, producers, user_hash_key, guard=guard,
                    max_batch=limits.max_batch)  # fmt: skip
        con.execute("create temp table batch_info as select ? as batch_id, ? as ingested_at",
                    [report.batch_id, ingested_at])  # fmt: skip
        con.execute("""
            create temp table outcome as
            select parsed.*,
                   case when parsed.is_merged then 'merged' when parsed.is_blank then 'blank'
                        when parsed.reason is null then 'loaded' else 'quarantined' end
                       as outcome,
                   previous.reason as previous_reason
            from parsed join previous using (object_key, line_number)
        """)
        stats = con.execute("""
            select object_key,
                   count(*) as replayed,
                   count(*) filter (outcome = 'loaded') as loaded,
                   count(*) filter (outcome = 'merged') as merged,
                   count(*) filter (outcome = 'blank') as blank,
                   count(*) filter (outcome = 'quarantined') as quarantined,
                   count(*) filter (outcome <> 'quarantined' or reason <> previous_reason)
                       as changed
            from outcome group by object_key order by object_key
        """).fetchall()
        changed = {key for key, *_, n in stats if n}
        for _key, replayed, loaded, merged, _, still, _ in stats:
            report.lines_replayed += replayed
            report.lines_loaded += loaded
            report.lines_merged += merged
            report.lines_still_quarantined += still
        if not changed:
            return
        report.days.update(day for (day,) in con.execute(
            "select distinct strftime(event_ts, '%Y-%m-%d') from outcome where outcome = 'loaded'"
        ).fetchall())  # fmt: skip

        events = Path(tmp) / "events.parquet"
        con.execute(f"""
            copy (
                select {EVENT_COLUMNS}
                from outcome cross join batch_info left join user_hashes using (user_id)
                where outcome = 'loaded' order by event_ts
            ) to '{events}' (format parquet, compression zstd)
        """)
        quarantine = Path(tmp) / "quarantine.parquet"
        con.execute(f"""
            copy (
                select object_key, line_number, reason, raw_line, raw_sha256, batch_id, ingested_at,
                       {sql_valid_model()} as model
                from outcome cross join batch_info
                where outcome <> 'quarantined' or reason <> previous_reason
                order by object_key, line_number
            ) to '{quarantine}' (format parquet, compression zstd)
        """)
        rows = []
        for key, _, loaded, merged, blank, _, n_changed in stats:
            if not n_changed:
                continue
            row = dict(current[key])
            moved = loaded + merged + blank
            row.update(
                batch_id=report.batch_id,
                chunk=chunk_name,
                base_batch_id=row["base_batch_id"] or row["batch_id"],
                lines_loaded=row["lines_loaded"] + loaded,
                lines_merged=(row["lines_merged"] or 0) + merged,
                lines_blank=row["lines_blank"] + blank,
                lines_quarantined=row["lines_quarantined"] - moved,
                ingested_at=ingested_at,
            )
            rows.append(row)
            report.objects_changed.append(key)
        manifest = Path(tmp) / "manifest.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), manifest)

        # Order matters: the manifest row commits the replay, so it lands last.
        part = f"batch={report.batch_id}/{chunk_name}.parquet"
        lake.move_in(str(events), f"{EVENTS_PREFIX}/{part}")
        lake.move_in(str(quarantine), f"{QUARANTINE_PREFIX}/{part}")
        lake.move_in(str(manifest), f"{MANIFEST_PREFIX}/{part}")

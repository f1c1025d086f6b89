"""Bronze compaction: many small per-batch Parquet files → one file per partition.

Every ingest (and replay) writes one small file set per chunk under ``batch=<id>/``; an hourly
schedule makes thousands a year, and every dbt build opens them all. Compaction rewrites them,
row for row, into partitions readers can skip and retention can drop whole:

- ``bronze/events/day=YYYY-MM-DD/`` by the event's UTC day,
- ``quarantine/month=YYYY-MM/`` and ``bronze/manifest/month=YYYY-MM/`` by ``ingested_at``.

Rows keep every column, ``batch_id`` and ``ingested_at`` included, and nothing is dropped: the
staging models join rows to the manifest by ``(object_key, batch_id)``, never by file path, so
per-object replacement (a rewritten object, a replay) works the same after compaction and no
mart figure changes. A partition file that is still small is merged again with new rows of its
partition; one over ``INFERWATCH_COMPACT_SMALL_BYTES`` is left alone. The swap is journalled
(``maintain.journal``) and runs under the pipeline lock.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from inferwatch.ingest.manifest import EVENTS_PREFIX, MANIFEST_PREFIX, QUARANTINE_PREFIX
from inferwatch.lake import Lake
from inferwatch.maintain import journal

log = logging.getLogger(__name__)

#: Partition files at least this big are final: new rows of their partition get a new file.
SMALL_BYTES = int(os.environ.get("INFERWATCH_COMPACT_SMALL_BYTES", 64 << 20))


@dataclass(frozen=True)
class Dataset:
    prefix: str
    partition: str  # directory name, e.g. "day"
    expression: str  # SQL giving the partition value of a row
    order: str  # row order inside a compacted file (helps Parquet min/max skipping)


DATASETS = (
    Dataset(EVENTS_PREFIX, "day", "strftime(event_ts, '%Y-%m-%d')", "event_ts"),
    Dataset(
        QUARANTINE_PREFIX, "month", "strftime(ingested_at, '%Y-%m')", "object_key, line_number"
    ),
    Dataset(MANIFEST_PREFIX, "month", "strftime(ingested_at, '%Y-%m')", "ingested_at, object_key"),
)


@dataclass
class CompactReport:
    compaction_id: str
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    #: prefix → {"inputs": n, "outputs": [keys]}
    datasets: dict[str, dict] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def partition_of(key: str, dataset: Dataset) -> str | None:
    """The partition value a compacted file's key names (None for a batch file)."""
    match = re.search(rf"/{dataset.partition}=([^/]+)/[^/]+\.parquet$", key)
    return match.group(1) if match else None


def compact(lake: Lake, *, compaction_id: str, work_dir: Path) -> CompactReport:
    journal.recover(lake)
    report = CompactReport(compaction_id=compaction_id)
    work_dir.mkdir(parents=True, exist_ok=True)
    for dataset in DATASETS:
        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            _compact_dataset(lake, dataset, report, Path(tmp))
    log.info(
        "compaction %s: %d files → %d, %d rows rewritten",
        compaction_id, report.files_before, report.files_after, report.rows,
    )  # fmt: skip
    return report


def _local(lake: Lake, key: str, tmp: Path) -> str:
    """A path DuckDB can read without the lake's credentials (object stores: a local copy)."""
    if lake.is_local:
        return lake.path(key)
    target = tmp / "in" / key.replace("/", "__")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(lake.read_bytes(key))
    return str(target)


def _compact_dataset(lake: Lake, dataset: Dataset, report: CompactReport, tmp: Path) -> None:
    files = [o for o in lake.list(dataset.prefix) if o.key.endswith(".parquet")]
    batch_files = [o.key for o in files if partition_of(o.key, dataset) is None]
    if not batch_files:
        return
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        paths = {key: _local(lake, key, tmp) for key in batch_files}
        source = _read(paths.values())
        partitions = sorted(
            value
            for (value,) in con.execute(
                f"select distinct {dataset.expression} from {source} where {dataset.expression} "
                "is not null"
            ).fetchall()
        )
        # Small files of the same partitions are merged in again (late data, earlier runs).
        joining = [
            o.key
            for o in files
            if partition_of(o.key, dataset) in partitions and o.size < SMALL_BYTES
        ]
        paths.update({key: _local(lake, key, tmp) for key in joining})
        inputs = batch_files + joining
        source = _read(paths[key] for key in inputs)
        before = con.execute(f"select count(*) from {source}").fetchone()[0]
        unpartitioned = con.execute(
            f"select count(*) from {source} where {dataset.expression} is null"
        ).fetchone()[0]
        if unpartitioned:  # never drop a row: such a dataset is left as it is
            log.error("%s: %d rows have no partition value; not compacted", dataset.prefix,
                      unpartitioned)  # fmt: skip
            return
        outputs: dict[str, Path] = {}
        for value in partitions:
            local = tmp / f"{dataset.partition}={value}.parquet"
            con.execute(
                f"copy (select * from {source} where {dataset.expression} = ? "
                f"order by {dataset.order}) to '{local}' (format parquet, compression zstd)",
                [value],
            )
            key = posixpath.join(
                dataset.prefix,
                f"{dataset.partition}={value}",
                f"part-{report.compaction_id}.parquet",
            )
            outputs[key] = local
        if not outputs and not {o.key for o in files} - set(inputs):
            # Only empty files: keep one, with the schema (a glob matching nothing fails dbt).
            local = tmp / "empty.parquet"
            con.execute(f"copy (select * from {source} limit 0) to '{local}' (format parquet)")
            key = posixpath.join(
                dataset.prefix, f"{dataset.partition}=empty", f"part-{report.compaction_id}.parquet"
            )
            outputs[key] = local
        after = sum(
            con.execute(f"select count(*) from read_parquet('{p}')").fetchone()[0]
            for p in outputs.values()
        )
    if after != before:  # cannot happen short of a bug; then nothing is swapped
        raise RuntimeError(f"{dataset.prefix}: {before} rows read but {after} written")
    plan = journal.begin(lake, f"compact-{report.compaction_id}-{dataset.partition}-"
                         f"{dataset.prefix.replace('/', '_')}", list(outputs), inputs)  # fmt: skip
    for key, local in outputs.items():
        lake.move_in(str(local), key)
    journal.finish(lake, plan, inputs)
    report.files_before += len(inputs)
    report.files_after += len(outputs)
    report.rows += before
    report.datasets[dataset.prefix] = {"inputs": len(inputs), "outputs": sorted(outputs)}


def _read(paths) -> str:
    listed = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    return f"read_parquet([{listed}], union_by_name = true)"

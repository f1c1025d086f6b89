"""The manifest: which raw objects were ingested, in which version, with what line counts.

It is a set of small Parquet files under ``bronze/manifest/``, one per ingested chunk, each
written only after that chunk's bronze and quarantine files are in place: an object is in the
manifest only once its rows are safely in bronze, so a crashed run is simply redone.
The newest row per ``object_key`` is the object's current version.
"""

from __future__ import annotations

import logging
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from inferwatch.config import IngestLimits
from inferwatch.ingest.lines import INFLATED_BYTES, OBJECT_BYTES
from inferwatch.ingest.missing import record_missing
from inferwatch.lake import Lake, ObjectInfo, is_raw_log

log = logging.getLogger(__name__)

RAW_PREFIX = "raw"
MANIFEST_PREFIX = "bronze/manifest"
EVENTS_PREFIX = "bronze/events"
QUARANTINE_PREFIX = "quarantine"
#: Ground-truth labels (docs/labels.md): producers write ``labels/``; ingest keeps the same
#: three file sets for them, apart from the inference log's so neither changes the other.
LABELS_PREFIX = "labels"
LABEL_ROWS_PREFIX = "bronze/labels/rows"
LABEL_MANIFEST_PREFIX = "bronze/labels/manifest"
LABEL_QUARANTINE_PREFIX = "bronze/labels/quarantine"


def is_label_key(key: str) -> bool:
    """Whether an object key is a ground-truth label object (under ``labels/``)."""
    return key.startswith(LABELS_PREFIX + "/")


MANIFEST_SCHEMA = pa.schema(
    [
        ("object_key", pa.string()),
        ("object_size", pa.int64()),
        ("object_version", pa.string()),
        ("batch_id", pa.string()),
        ("chunk", pa.string()),
        ("lines_read", pa.int64()),
        ("lines_loaded", pa.int64()),
        ("lines_quarantined", pa.int64()),
        ("lines_blank", pa.int64()),
        # Records folded into another line's event by an adapter (a KServe/Seldon request
        # joined to its response): read = loaded + quarantined + blank + merged.
        ("lines_merged", pa.int64()),
        ("truncated", pa.bool_()),
        ("ingested_at", pa.timestamp("us")),
        # Set by a quarantine replay (inferwatch.maintain.replay): the ingest batch whose rows
        # this row extends. Null for an ingest. An object's current rows are those of its
        # newest ingest batch plus the replays based on it.
        ("base_batch_id", pa.string()),
        # A size cap stopped the read (README: Limits): ``object_bytes`` (stored size over
        # INFERWATCH_MAX_OBJECT_BYTES: nothing read) or ``inflated_bytes`` (inflated past
        # INFERWATCH_MAX_INFLATED_BYTES: the lines before the cap are counted and loaded, the
        # rest never read). Null otherwise, and in manifests written before the caps.
        ("limit_exceeded", pa.string()),
        # Bytes inflated (stored bytes of an uncompressed object) up to any cut or cap.
        ("inflated_bytes", pa.int64()),
    ]
)


def read_manifest(lake: Lake, prefix: str = MANIFEST_PREFIX) -> pa.Table:
    """Every manifest row ever written (all versions of every object); ``prefix`` picks the
    inference log's manifest (default) or the labels' (``LABEL_MANIFEST_PREFIX``)."""
    files = [o.key for o in lake.list(prefix) if o.key.endswith(".parquet")]
    if not files:
        return MANIFEST_SCHEMA.empty_table()
    dataset = pads.dataset(
        [lake.path(k) for k in files], schema=MANIFEST_SCHEMA, format="parquet", filesystem=lake.fs
    )
    return dataset.to_table()


def current_versions(manifest: pa.Table) -> dict[str, tuple[int, str]]:
    """object_key → (size, version) of the newest ingestion of each object."""
    rows = sorted(
        zip(
            manifest["ingested_at"].to_pylist(),
            manifest["object_key"].to_pylist(),
            manifest["object_size"].to_pylist(),
            manifest["object_version"].to_pylist(),
            strict=True,
        )
    )
    return {key: (size, version) for _, key, size, version in rows}


def discover(lake: Lake, limits: IngestLimits | None = None) -> list[ObjectInfo]:
    """Raw objects that are new or were rewritten since they were ingested, or that a size cap
    stopped and the caps now in force would let further (``limits``, default from the
    environment), then label objects (``labels/``, :func:`discover_labels`) likewise.

    Ingested raw objects that are no longer listed are recorded (``ingest.missing``), not an error.
    """
    limits = limits or IngestLimits.from_env(dict(os.environ))
    manifest = read_manifest(lake)
    seen = current_versions(manifest)
    retry = stopped_by_caps(manifest, limits)
    listed = [obj for obj in lake.list(RAW_PREFIX) if is_raw_log(obj.key)]
    new = [obj for obj in listed
           if seen.get(obj.key) != (obj.size, obj.version) or retry(obj)]  # fmt: skip
    missing = record_missing(lake, seen, {obj.key for obj in listed})
    log.info(
        "discovered %d new or changed raw objects (%d already ingested, %d gone from the lake)",
        len(new), len(seen), len(missing),
    )  # fmt: skip
    return new + discover_labels(lake, limits)


def discover_labels(lake: Lake, limits: IngestLimits | None = None) -> list[ObjectInfo]:
    """Label objects (``labels/``) that are new or were rewritten since they were ingested
    (or that the caps stopped and would now let further, as for :func:`discover`)."""
    manifest = read_manifest(lake, LABEL_MANIFEST_PREFIX)
    seen = current_versions(manifest)
    retry = stopped_by_caps(manifest, limits or IngestLimits.from_env(dict(os.environ)))
    listed = [obj for obj in lake.list(LABELS_PREFIX) if is_raw_log(obj.key)]
    new = [obj for obj in listed
           if seen.get(obj.key) != (obj.size, obj.version) or retry(obj)]  # fmt: skip
    if listed:
        log.info("discovered %d new or changed label objects (%d already ingested)",
                 len(new), len(seen))  # fmt: skip
    return new


def stopped_by_caps(manifest: pa.Table, limits: IngestLimits):
    """A test of a listed object: did a size cap stop its current version's read, and would
    the caps now in force read more of it (a raised cap re-reads the object whole)?"""
    stopped = manifest.filter(pc.is_valid(manifest["limit_exceeded"]))
    if not len(stopped):
        return lambda obj: False
    keys = pc.is_in(manifest["object_key"], stopped["object_key"].unique())
    current = current_rows(manifest.filter(keys))

    def retry(obj: ObjectInfo) -> bool:
        row = current.get(obj.key)
        if row is None or (row["object_size"], row["object_version"]) != (obj.size, obj.version):
            return False
        if row["limit_exceeded"] == OBJECT_BYTES:
            return obj.size <= limits.max_object_bytes
        if row["limit_exceeded"] == INFLATED_BYTES:
            return (row["inflated_bytes"] or 0) < limits.max_inflated_bytes
        return False

    return retry


def current_rows(manifest: pa.Table) -> dict[str, dict]:
    """object_key → its newest manifest row (an ingest, or a replay that updated its counts)."""
    rows = sorted(manifest.to_pylist(), key=lambda r: (r["ingested_at"], r["batch_id"]))
    return {row["object_key"]: row for row in rows}


def live_batches(manifest: pa.Table) -> set[tuple[str, str]]:
    """(object_key, batch_id) pairs whose bronze rows are current (stg_bronze__object_batches):
    the newest ingest batch of each object and the replays based on it."""
    current = {
        key: row["base_batch_id"] or row["batch_id"] for key, row in current_rows(manifest).items()
    }
    return {
        (row["object_key"], row["batch_id"])
        for row in manifest.to_pylist()
        if current.get(row["object_key"]) == (row["base_batch_id"] or row["batch_id"])
    }

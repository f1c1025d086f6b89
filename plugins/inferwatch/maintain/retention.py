"""Retention: delete what is older than the policy, and say what went.

The policy (days; unset keeps forever, the default for all three):

- ``INFERWATCH_RETENTION_BRONZE_DAYS``: bronze events whose UTC event day is older.
- ``INFERWATCH_RETENTION_QUARANTINE_DAYS``: quarantine rows of a month that ended longer ago.
- ``INFERWATCH_RETENTION_RAW_DAYS``: raw objects ingested longer ago, only when
  ``INFERWATCH_RETENTION_RAW_ENABLED=true`` too. The lake layout says InferWatch never changes
  raw/: raw is the producers' record and the only source a quarantine replay can re-read, so
  deleting it is an explicit opt-in, and even then only for objects that are in the manifest in
  the version listed now (fully ingested) and have no line in quarantine. Each deletion is
  recorded (``ingest.missing``), so mart_ingestion shows ``raw_expired``, not a loss.

Bronze and quarantine are dropped as whole compacted partitions (``day=`` and ``month=``
files; retention compacts first, so no file mixes old and new rows). The manifest is never
trimmed: it is what keeps an expired object from being ingested again. Marts already built
keep their figures for expired days until a full ``inferwatch rebuild``, which rebuilds from
what bronze still holds.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from inferwatch.ingest.manifest import RAW_PREFIX, current_rows, read_manifest
from inferwatch.ingest.missing import record_expired
from inferwatch.lake import Lake
from inferwatch.maintain.compact import DATASETS, compact, partition_of

log = logging.getLogger(__name__)


def _days(env: dict, name: str) -> int | None:
    value = (env.get(name) or "").strip()
    return int(value) if value else None


@dataclass(frozen=True)
class RetentionPolicy:
    bronze_days: int | None = None
    quarantine_days: int | None = None
    raw_days: int | None = None
    raw_enabled: bool = False

    @classmethod
    def from_env(cls, env: dict | None = None) -> RetentionPolicy:
        env = dict(os.environ if env is None else env)
        return cls(
            bronze_days=_days(env, "INFERWATCH_RETENTION_BRONZE_DAYS"),
            quarantine_days=_days(env, "INFERWATCH_RETENTION_QUARANTINE_DAYS"),
            raw_days=_days(env, "INFERWATCH_RETENTION_RAW_DAYS"),
            raw_enabled=(env.get("INFERWATCH_RETENTION_RAW_ENABLED") or "").lower()
            in ("1", "true", "yes"),
        )


@dataclass
class RetentionReport:
    dry_run: bool
    policy: dict
    #: what was (or, in a dry run, would be) deleted: key → size in bytes
    bronze: dict[str, int] = field(default_factory=dict)
    quarantine: dict[str, int] = field(default_factory=dict)
    raw: dict[str, int] = field(default_factory=dict)
    #: raw objects old enough but kept, with why
    raw_kept: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _partition_day(value: str, monthly: bool) -> date | None:
    """The last day a partition covers (None for names that are no dates)."""
    try:
        if monthly:
            first = datetime.strptime(value, "%Y-%m").date()
            return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        return None


def apply_retention(
    lake: Lake,
    policy: RetentionPolicy,
    *,
    run_id: str,
    work_dir: Path,
    dry_run: bool = True,
    today: date | None = None,
) -> RetentionReport:
    today = today or datetime.now(UTC).date()
    report = RetentionReport(dry_run=dry_run, policy=dict(policy.__dict__))
    if not dry_run and (policy.bronze_days is not None or policy.quarantine_days is not None):
        compact(lake, compaction_id=f"retention-{run_id}", work_dir=work_dir)
    for dataset, days, target in (
        (DATASETS[0], policy.bronze_days, report.bronze),
        (DATASETS[1], policy.quarantine_days, report.quarantine),
    ):
        if days is None:
            continue
        cutoff = today - timedelta(days=days)
        for obj in lake.list(dataset.prefix):
            value = partition_of(obj.key, dataset)
            last = _partition_day(value, dataset.partition == "month") if value else None
            if last is not None and last < cutoff:
                target[obj.key] = obj.size
    if policy.raw_days is not None:
        _raw(lake, policy, today - timedelta(days=policy.raw_days), report)
    if not dry_run:
        for key in [*report.bronze, *report.quarantine, *report.raw]:
            lake.remove(key)
        record_expired(lake, sorted(report.raw), run_id)
    log.info(
        "retention%s: %d bronze files, %d quarantine files, %d raw objects %s",
        " (dry run)" if dry_run else "", len(report.bronze), len(report.quarantine),
        len(report.raw), "would go" if dry_run else "deleted",
    )  # fmt: skip
    return report


def _raw(lake: Lake, policy: RetentionPolicy, cutoff: date, report: RetentionReport) -> None:
    if not policy.raw_enabled:
        log.info("raw retention is set but not enabled (INFERWATCH_RETENTION_RAW_ENABLED)")
        return
    manifest = read_manifest(lake)
    current = current_rows(manifest)
    # When the object's current version was first ingested (a replay keeps that ingest's age).
    first_ingest = {
        row["batch_id"]: row["ingested_at"]
        for row in manifest.to_pylist()
        if not row["base_batch_id"]
    }
    for obj in lake.list(RAW_PREFIX):
        row = current.get(obj.key)
        if row is None:
            continue  # never ingested: never deleted
        ingested = first_ingest.get(row["base_batch_id"] or row["batch_id"], row["ingested_at"])
        if ingested.date() >= cutoff:
            continue
        if (obj.size, obj.version) != (row["object_size"], row["object_version"]):
            report.raw_kept[obj.key] = "changed since ingest (the next run ingests it)"
        elif row["lines_quarantined"]:
            report.raw_kept[obj.key] = "has quarantined lines (replay needs the raw object)"
        else:
            report.raw[obj.key] = obj.size

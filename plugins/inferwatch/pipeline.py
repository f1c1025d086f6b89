"""The pipeline's steps as plain functions: what each Airflow task (and `inferwatch run`) calls.

discover → ingest → transform → validate → publish → refresh Superset. Every step works on
"whatever is not done yet" (manifest, incremental watermarks), so any step can be re-run after
a crash with no duplicate and no gap. Each step holds the pipeline lock while it writes, so a
scheduled run and `inferwatch run` never write at the same time.

validate and publish are separate tasks, so the lock cannot span both: validate records a
fingerprint of the warehouse it checked, and publish refuses a warehouse whose fingerprint
changed since (a rebuild or another run's transform in between), serving nothing unvalidated.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from inferwatch.config import Settings
from inferwatch.filemodes import secure_tree
from inferwatch.lake import Lake, ObjectInfo

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 3600


class GateFailed(RuntimeError):
    """A critical validation suite failed: serving.duckdb was not replaced."""


class WarehouseChanged(GateFailed):
    """The warehouse changed between validate and publish: serving.duckdb was not replaced."""


@contextmanager
def pipeline_lock(
    settings: Settings, holder: str, timeout_s: float = LOCK_TIMEOUT_S
) -> Iterator[None]:
    """An exclusive lock on ``INFERWATCH_DATA_DIR/pipeline.lock``.

    flock is released by the kernel when the holder dies, so a killed task never leaves a
    stale lock behind. Every step takes it first, so it is also where the data dir is made
    owner-only (inferwatch.filemodes).
    """
    secure_tree(settings.data_dir)
    with open(settings.lock_path, "a+") as fh:

        def say_who_holds_it() -> None:
            fh.seek(0)
            log.info("waiting for the pipeline lock (held by: %s)", fh.read().strip())

        if not _flock_within(fh, timeout_s, poll_s=1.0, on_wait=say_who_holds_it):
            raise TimeoutError(f"pipeline lock {settings.lock_path} busy")
        fh.seek(0)
        fh.truncate()
        fh.write(f"{holder} pid={os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _flock_within(
    fh: IO, timeout_s: float, poll_s: float, on_wait: Callable[[], None] | None = None
) -> bool:
    """Take an exclusive flock on ``fh``, polling; False if ``timeout_s`` passed first.

    ``on_wait`` runs once, when the lock is first found busy (to say who holds it).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
                on_wait = None
            if time.monotonic() > deadline:
                return False
            time.sleep(poll_s)


#: How long a publish waits for the scheduled reports being taken to finish (one is ~15-30 s).
PUBLISH_LOCK_TIMEOUT_S = 600


def publish_lock_path(settings: Settings) -> Path:
    """The lock Superset's report worker holds *shared* while it takes a report."""
    return settings.data_dir / "publish.lock"


@contextmanager
def publish_lock(
    settings: Settings, holder: str, timeout_s: float = PUBLISH_LOCK_TIMEOUT_S
) -> Iterator[None]:
    """An exclusive lock on ``publish.lock`` around what changes what Superset reads: the swap
    of the published files and the Superset refresh.

    Superset's report worker takes the same lock shared for each report execution
    (superset/superset_config.py), so a report is never taken while a build is swapped in or
    the datasets are re-synced: it waits, then shows the new build. A report hung beyond
    ``timeout_s`` does not hold publishing back: the swap goes ahead (it is atomic anyway)
    with a warning.
    """
    path = publish_lock_path(settings)
    secure_tree(settings.data_dir)
    with open(path, "a+") as fh:
        locked = _flock_within(fh, timeout_s, poll_s=0.5)
        if not locked:
            log.warning(
                "reports still hold %s after %.0f s: %s goes ahead", path, timeout_s, holder
            )
        try:
            yield
        finally:
            if locked:
                fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_user_hash_key(settings: Settings) -> bytes:
    """The HMAC key for user ids: configured, or generated once into the owner-only secrets file."""
    if settings.user_hash_key:
        return settings.user_hash_key.encode()
    from inferwatch.secrets import ensure_secrets

    return ensure_secrets(settings.secrets_path)["INFERWATCH_USER_HASH_KEY"].encode()


# ---------------------------------------------------------------- the validated warehouse
def _build_id_path(settings: Settings) -> Path:
    return settings.warehouse_path.with_name("build-id")


def new_build(settings: Settings) -> None:
    """Mark the warehouse as being rebuilt (under the pipeline lock, before dbt writes): any
    validation of the previous build no longer holds."""
    path = _build_id_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".build-id.{uuid.uuid4().hex}.tmp")
    tmp.write_text(uuid.uuid4().hex + "\n")
    os.replace(tmp, path)


def warehouse_fingerprint(settings: Settings) -> str | None:
    """What identifies the warehouse's content as validated: the build id transform writes, and
    the size and modification time of the DuckDB file and its WAL (any writer, dbt or another,
    changes them). None when there is no warehouse."""
    if not settings.warehouse_path.exists():
        return None
    try:
        build = _build_id_path(settings).read_text().strip()
    except FileNotFoundError:
        build = ""
    files = []
    for path in (settings.warehouse_path, Path(f"{settings.warehouse_path}.wal")):
        try:
            info = path.stat()
            files.append([info.st_size, info.st_mtime_ns])
        except FileNotFoundError:
            files.append(None)
    return hashlib.sha256(json.dumps([build, files]).encode()).hexdigest()


# ---------------------------------------------------------------- steps
def check_config(settings: Settings) -> list[str]:
    """The configuration checks (inferwatch.check) before anything is read or written.

    Warnings are logged and returned; errors raise ConfigError, one line per problem naming
    the setting to fix. Superset and SMTP only warn here: a run goes on without them.
    """
    from inferwatch.check import ConfigError, errors, run_checks

    problems = run_checks(settings, servers_required=False)
    for problem in problems:
        log.warning("configuration: %s", problem.line())
    if errors(problems):
        raise ConfigError(problems)
    return [problem.line() for problem in problems]


def discover(lake: Lake) -> list[dict]:
    from inferwatch.ingest.manifest import discover as discover_objects

    return [obj.__dict__ for obj in discover_objects(lake)]


def ingest(settings: Settings, lake: Lake, objects: list[dict], run_id: str) -> dict:
    from inferwatch.ingest.bronze import ingest as ingest_objects

    infos = [ObjectInfo(**o) for o in objects]
    if not infos:
        log.info("nothing new in %s", lake.url)
        return {"objects": 0, "days": []}
    key = ensure_user_hash_key(settings)
    batch_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + _short(run_id)
    with pipeline_lock(settings, f"ingest {run_id}"):
        report = ingest_objects(
            lake, infos, batch_id=batch_id, user_hash_key=key,
            work_dir=settings.data_dir / "tmp", threads=settings.duckdb_threads,
            progress=log.info, memory_limit=settings.duckdb_memory_limit,
        )  # fmt: skip
    log.info(
        "ingested %d objects: %d lines read, %d loaded, %d quarantined, %d blank in %.1fs",
        report.objects, report.lines_read, report.lines_loaded, report.lines_quarantined,
        report.lines_blank, report.seconds,
    )  # fmt: skip
    if report.label_objects:
        log.info("ingested %d label objects: %d labels loaded, %d quarantined",
                 report.label_objects, report.labels_loaded, report.labels_quarantined)  # fmt: skip
    return report.as_dict()


def transform(settings: Settings, lake: Lake, *, full_refresh: bool = False) -> dict:
    from inferwatch.ingest.manifest import MANIFEST_PREFIX
    from inferwatch.transform import build

    if not any(True for _ in lake.list(MANIFEST_PREFIX)):
        log.info("bronze is empty: nothing to build")
        return {"skipped": True}
    with pipeline_lock(settings, "dbt build"):
        # A compaction or retention killed mid-swap is finished or undone before dbt reads.
        from inferwatch.maintain.journal import recover

        recover(lake)
        new_build(settings)
        outcome = build(settings, lake, full_refresh=full_refresh).as_dict()
        return {**outcome, "dbt_docs": _dbt_docs(settings, lake)}


def _dbt_docs(settings: Settings, lake: Lake) -> str:
    """dbt's docs site of this build (served beside the Data Docs); a failure to write it is
    logged, never a failed build."""
    from inferwatch.transform import generate_docs

    try:
        return str(generate_docs(settings, lake))
    except Exception:
        log.warning("dbt docs generate failed; the build stands", exc_info=True)
        return ""


def replay_quarantine(
    settings: Settings,
    lake: Lake,
    run_id: str,
    *,
    reason: str | None = None,
    object_prefix: str | None = None,
) -> dict:
    """Re-judge quarantined lines from their raw objects (inferwatch.maintain.replay); the next
    transform rebuilds the days whose events this adds."""
    from inferwatch.maintain.replay import replay

    key = ensure_user_hash_key(settings)
    batch_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-replay-" + _short(run_id)
    with pipeline_lock(settings, f"replay {run_id}"):
        report = replay(
            lake, batch_id=batch_id, user_hash_key=key, work_dir=settings.data_dir / "tmp",
            reason=reason, object_prefix=object_prefix, threads=settings.duckdb_threads,
        )  # fmt: skip
    return report.as_dict()


def compact(settings: Settings, lake: Lake, run_id: str) -> dict:
    """Merge bronze's small per-batch files into per-day/per-month partitions (no figure moves)."""
    from inferwatch.maintain.compact import compact as compact_bronze

    compaction_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + _short(run_id)
    with pipeline_lock(settings, f"compact {run_id}"):
        return compact_bronze(
            lake, compaction_id=compaction_id, work_dir=settings.data_dir / "tmp"
        ).as_dict()


def retention(settings: Settings, lake: Lake, run_id: str, policy, *, dry_run: bool) -> dict:
    """Delete bronze, quarantine (and, if enabled, raw) older than ``policy``; report it."""
    from inferwatch.maintain.retention import apply_retention

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + _short(run_id)
    with pipeline_lock(settings, f"retention {run_id}"):
        return apply_retention(
            lake, policy, run_id=stamp, work_dir=settings.data_dir / "tmp",
            dry_run=dry_run,
        ).as_dict()  # fmt: skip


def validate(settings: Settings, run_id: str) -> dict:
    """The checkpoint on the warehouse, with the fingerprint of what it checked (publish
    compares it)."""
    if not settings.warehouse_path.exists():
        return {"skipped": True, "passed_gate": True, "results": [], "failed_critical": [],
                "fingerprint": None}  # fmt: skip
    # Imported only now: Great Expectations takes ~8 s to import, for nothing on an empty lake.
    from inferwatch.validate import validate as run_checkpoint

    with pipeline_lock(settings, f"validate {run_id}"):
        fingerprint = warehouse_fingerprint(settings)
        outcome = run_checkpoint(
            settings.warehouse_path, run_id=run_id, data_docs_dir=settings.data_docs_dir,
            thresholds=settings.validation_thresholds or None,
            policy_path=settings.validation_policy_path, duckdb_config=settings.duckdb_config,
            gate_dir=settings.gate_dir,
        )  # fmt: skip
    log.info("validation: %s", outcome.summary())
    return {
        "passed_gate": outcome.passed_gate,
        "results": outcome.results,
        "failed_critical": outcome.failed_critical,
        "summary": outcome.summary(),
        "data_docs_index": str(outcome.data_docs_index or ""),
        "fingerprint": fingerprint,
    }


def publish(
    settings: Settings, run_id: str, validation: dict, ingest_report: dict, started_at: str
) -> dict:
    """ops.duckdb always; serving.duckdb only when the gate passed on this very warehouse.
    Raises GateFailed otherwise (WarehouseChanged when it changed since validation)."""
    from inferwatch.publish import publish_ops, publish_serving, record_run

    passed = bool(validation.get("passed_gate"))
    message = validation.get("summary") or ""
    changed = None
    with pipeline_lock(settings, f"publish {run_id}"), publish_lock(settings, f"publish {run_id}"):
        if passed:
            changed = _changed_since_validation(settings, validation)
        if changed:
            log.error("%s", changed)
            passed, message = False, changed
        if passed and settings.warehouse_path.exists():
            publish_serving(settings)
        record_run(
            settings,
            run_id,
            {
                "run_id": run_id,
                "started_at": started_at,
                "finished_at": datetime.now(UTC).replace(tzinfo=None).isoformat(),
                "outcome": "published" if passed else "held_back",
                "gate_passed": passed,
                "message": message,
                "ingest": ingest_report,
                "validation": validation.get("results") or [],
            },
        )
        publish_ops(settings)
    if changed:
        raise WarehouseChanged(changed)
    if not passed:
        failed = ", ".join(validation.get("failed_critical") or []) or message
        raise GateFailed(f"validation gate failed; serving.duckdb left as it was. Failed: {failed}")
    return {"serving": str(settings.serving_path), "ops": str(settings.ops_path)}


def _changed_since_validation(settings: Settings, validation: dict) -> str | None:
    """Why the warehouse is not the one validated, or None when it is."""
    current = warehouse_fingerprint(settings)
    validated = validation.get("fingerprint")
    if current is None or current == validated:
        return None
    return (
        f"the warehouse changed since it was validated (fingerprint {str(validated)[:12]} → "
        f"{current[:12]}: a rebuild or another run wrote it in between); serving.duckdb left "
        "as it was, the next run validates and publishes the new build"
    )


def refresh_superset(settings: Settings) -> bool:
    from inferwatch.serve.superset_sync import refresh

    with publish_lock(settings, "refresh superset"):  # no report during the re-sync
        return refresh(settings)


def score_anomalies(settings: Settings, lake: Lake, ingest_report: dict) -> dict:
    """Isolation-forest scores of a sample of each touched day's inputs, then the anomaly mart."""
    if not settings.warehouse_path.exists():
        return {"skipped": True, "files": 0}
    # Imported only now: scikit-learn takes seconds to import, for nothing on an empty lake.
    from inferwatch.anomaly.score import score_days
    from inferwatch.transform import build

    with pipeline_lock(settings, "score anomalies"):
        summary = score_days(
            lake, settings.warehouse_path, ingest_report.get("days") or [],
            cache_dir=settings.data_dir / "anomaly" / "forests",
        )  # fmt: skip
        if summary["files"]:
            new_build(settings)
            build(settings, lake, select="stg_lake__anomaly_scores+")  # the anomaly marts
    # What the scorer had to leave out (names refused at the door before an older bronze was
    # checked, inputs it cannot load) is part of the step's result, not only of its log.
    return {
        "files": summary["files"],
        "skipped_names": summary.get("skipped_names", 0),
        "skipped_records": summary.get("skipped_records", 0),
    }


def alert(settings: Settings, run_id: str) -> dict:
    """Evaluate the alert rules on the published marts, deliver what is new, log it in ops.

    The alert log goes into ``ops.duckdb`` without the publish lock: that swap is one atomic
    rename that changes no served build a report could see half of (the pipeline lock keeps
    other ops writers out), while the publish lock is held by ``refresh_superset``, which runs
    beside this step: waiting for it made each scheduled run as long as a Superset re-sync."""
    from inferwatch.alerts.step import evaluate_and_deliver
    from inferwatch.publish import publish_ops

    with pipeline_lock(settings, f"alert {run_id}"):
        outcome = evaluate_and_deliver(settings, run_id)
        if outcome["new"]:
            publish_ops(settings)  # the alert log is part of ops.duckdb
    return outcome


def audit(settings: Settings) -> dict:
    """Append the new audit events (Superset, Airflow, run outcomes) to the hash-chained
    ``mart_audit_log`` and publish ``audit.duckdb`` (see :mod:`inferwatch.audit`)."""
    from inferwatch.audit.collect import collect

    return collect(settings)


def _short(run_id: str) -> str:
    return "".join(c for c in run_id if c.isalnum())[-12:] or "run"

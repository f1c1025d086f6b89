"""The pipeline's steps as plain functions: what each Airflow task (and `inferwatch run`) calls.

discover → ingest → transform → validate → publish → refresh Superset. Every step works on
"whatever is not done yet" (manifest, incremental watermarks), so any step can be re-run after
a crash with no duplicate and no gap. Each step holds the pipeline lock while it writes, so a
scheduled run and `inferwatch run` never write at the same time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from inferwatch.config import Settings
from inferwatch.lake import Lake, ObjectInfo

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 3600


class GateFailed(RuntimeError):
    """A critical validation suite failed: serving.duckdb was not replaced."""


@contextmanager
def pipeline_lock(
    settings: Settings, holder: str, timeout_s: float = LOCK_TIMEOUT_S
) -> Iterator[None]:
    """An exclusive lock on ``INFERWATCH_DATA_DIR/pipeline.lock``.

    flock is released by the kernel when the holder dies, so a killed task never leaves a
    stale lock behind.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.lock_path, "a+") as fh:
        deadline = time.monotonic() + timeout_s
        waited = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    fh.seek(0)
                    log.info("waiting for the pipeline lock (held by: %s)", fh.read().strip())
                    waited = True
                if time.monotonic() > deadline:
                    raise TimeoutError(f"pipeline lock {settings.lock_path} busy") from None
                time.sleep(1)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{holder} pid={os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_user_hash_key(settings: Settings) -> bytes:
    """The HMAC key for user ids: configured, or generated once into the owner-only secrets file."""
    if settings.user_hash_key:
        return settings.user_hash_key.encode()
    from inferwatch.secrets import ensure_secrets

    return ensure_secrets(settings.secrets_path)["INFERWATCH_USER_HASH_KEY"].encode()


# ---------------------------------------------------------------- steps


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
            progress=log.info,
        )  # fmt: skip
    log.info(
        "ingested %d objects: %d lines read, %d loaded, %d quarantined, %d blank in %.1fs",
        report.objects, report.lines_read, report.lines_loaded, report.lines_quarantined,
        report.lines_blank, report.seconds,
    )  # fmt: skip
    return report.as_dict()


def transform(settings: Settings, lake: Lake, *, full_refresh: bool = False) -> dict:
    from inferwatch.ingest.manifest import MANIFEST_PREFIX
    from inferwatch.transform import build

    if not any(True for _ in lake.list(MANIFEST_PREFIX)):
        log.info("bronze is empty: nothing to build")
        return {"skipped": True}
    with pipeline_lock(settings, "dbt build"):
        return build(settings, lake, full_refresh=full_refresh).as_dict()


def validate(settings: Settings, run_id: str) -> dict:
    from inferwatch.validate import validate as run_checkpoint

    if not settings.warehouse_path.exists():
        return {"skipped": True, "passed_gate": True, "results": [], "failed_critical": []}
    with pipeline_lock(settings, f"validate {run_id}"):
        outcome = run_checkpoint(
            settings.warehouse_path, run_id=run_id, data_docs_dir=settings.data_docs_dir,
            thresholds=settings.validation_thresholds or None,
            policy_path=settings.validation_policy_path,
        )  # fmt: skip
    log.info("validation: %s", outcome.summary())
    return {
        "passed_gate": outcome.passed_gate,
        "results": outcome.results,
        "failed_critical": outcome.failed_critical,
        "summary": outcome.summary(),
        "data_docs_index": str(outcome.data_docs_index or ""),
    }


def publish(
    settings: Settings, run_id: str, validation: dict, ingest_report: dict, started_at: str
) -> dict:
    """ops.duckdb always; serving.duckdb only when the gate passed. Raises GateFailed otherwise."""
    from inferwatch.publish import publish_ops, publish_serving, record_run

    passed = bool(validation.get("passed_gate"))
    message = validation.get("summary") or ""
    with pipeline_lock(settings, f"publish {run_id}"):
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
    if not passed:
        failed = ", ".join(validation.get("failed_critical") or []) or message
        raise GateFailed(f"validation gate failed; serving.duckdb left as it was. Failed: {failed}")
    return {"serving": str(settings.serving_path), "ops": str(settings.ops_path)}


def refresh_superset(settings: Settings) -> bool:
    from inferwatch.serve.superset_sync import refresh

    return refresh(settings)


def _short(run_id: str) -> str:
    return "".join(c for c in run_id if c.isalnum())[-12:] or "run"

"""The tail of a scheduled run (issue 20): what runs beside the Superset refresh after publish.

``alert`` and ``refresh_superset`` both follow ``publish``. A refresh holds the publish lock
while it re-syncs Superset (no report is taken meanwhile); the alert step must not queue behind
it to put its log into ``ops.duckdb``, or every run lasts as long as the re-sync twice over.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

import duckdb

from inferwatch import pipeline
from inferwatch.config import Settings
from inferwatch.publish import record_run


def _settings(tmp_path) -> Settings:
    return Settings.from_env({**os.environ, "INFERWATCH_DATA_DIR": str(tmp_path / "data"),
                              "INFERWATCH_LAKE_URL": str(tmp_path / "lake")})  # fmt: skip


def test_alert_logs_into_ops_while_a_superset_refresh_holds_the_publish_lock(tmp_path):
    settings = _settings(tmp_path)
    # a run whose ingest ran into a limit: one new ingest_limits alert for the alert step
    tripped = {"limit": "max_models_per_run", "setting": "INFERWATCH_MAX_MODELS_PER_RUN",
               "cap": 3, "lines": 7, "objects": 0,
               "message": "too many distinct models"}  # fmt: skip
    record_run(settings, "run-1", {"run_id": "run-1", "outcome": "published",
                                   "started_at": datetime.now(UTC).isoformat(),
                                   "ingest": {"limits_tripped": [tripped]}})  # fmt: skip
    holding, alerted = threading.Event(), threading.Event()
    released_before_alert: list[bool] = []

    def refresh_superset() -> None:  # what the refresh task does with the lock, minus Superset
        with pipeline.publish_lock(settings, "refresh superset"):
            holding.set()
            # held until the alert step is done, or long enough to show it waited for the lock
            alerted.wait(timeout=20)
            released_before_alert.append(not alerted.is_set())

    holder = threading.Thread(target=refresh_superset)
    holder.start()
    assert holding.wait(timeout=30)
    try:
        outcome = pipeline.alert(settings, "run-1")
        alerted.set()
    finally:
        alerted.set()
        holder.join()
    assert outcome["new"] == 1
    assert released_before_alert == [False]  # the alert step did not wait for the re-sync
    with duckdb.connect(str(settings.ops_path), read_only=True) as con:
        rules = [rule for (rule,) in con.execute("select rule from alerts").fetchall()]
    assert rules == ["ingest_limits"]

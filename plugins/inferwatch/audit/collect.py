"""Append what is new in every audit source to the ledger, then publish ``audit.duckdb``.

The ledger (``INFERWATCH_DATA_DIR/audit/ledger.duckdb``) is written in place, only here, under
its own lock; Superset never opens it. What Superset reads is ``INFERWATCH_DATA_DIR/audit.duckdb``,
a copy swapped in atomically after each append (the same way as serving.duckdb), behind the
``InferWatch audit`` database that only Admin may query.

A source that cannot be read (Superset down, no admin password, no Airflow database) is
skipped with a warning and keeps its watermark: its events are collected by the next run.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inferwatch.audit import ledger, sources
from inferwatch.config import Settings

log = logging.getLogger(__name__)

AIRFLOW_DB_ENV = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"


def ledger_path(settings: Settings) -> Path:
    return settings.data_dir / "audit" / "ledger.duckdb"


def published_path(settings: Settings) -> Path:
    return settings.data_dir / "audit.duckdb"


@contextmanager
def _ledger_lock(settings: Settings) -> Iterator[None]:
    path = ledger_path(settings).with_name("ledger.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # appends are short: wait
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _superset_client(settings: Settings):
    import requests

    from inferwatch.serve.superset_sync import SupersetClient, admin_password

    password = admin_password(settings)
    if not password:
        log.warning("audit: no Superset admin password configured; Superset sources skipped")
        return None
    try:
        if requests.get(f"{settings.superset_url}/health", timeout=5).status_code != 200:
            raise requests.RequestException("unhealthy")
        return SupersetClient(settings.superset_url, "admin", password)
    except Exception as error:  # noqa: BLE001 - a missing source must not stop the others
        log.warning("audit: Superset at %s not readable (%s)", settings.superset_url, error)
        return None


def collect(
    settings: Settings,
    *,
    superset_client=None,
    airflow_conn: str | None = None,
    use_superset: bool = True,
) -> dict:
    """Append every source's new events; return ``{source: rows appended}`` plus ``skipped``.

    ``superset_client`` defaults to an admin login at ``settings.superset_url``;
    ``airflow_conn`` to this process's Airflow metadata database.
    """
    airflow_conn = airflow_conn or os.environ.get(AIRFLOW_DB_ENV)
    if use_superset and superset_client is None:
        superset_client = _superset_client(settings)
    readers = {"pipeline": lambda wm: sources.pipeline_runs(settings.runs_dir, wm)}
    if airflow_conn:
        readers["airflow_log"] = lambda wm: sources.airflow_log(airflow_conn, wm)
        readers["airflow_dag_run"] = lambda wm: sources.airflow_dag_runs(airflow_conn, wm)
    if superset_client is not None:
        readers["superset_log"] = lambda wm: sources.superset_log(superset_client, wm)
        readers["superset_query"] = lambda wm: sources.superset_queries(superset_client, wm)
    result: dict = {"skipped": []}
    with _ledger_lock(settings):
        with ledger.connect(ledger_path(settings)) as con:
            marks = ledger.watermarks(con)
            events, new_marks = [], {}
            for name, read in readers.items():
                try:
                    found, mark = read(marks.get(name))
                except Exception as error:  # noqa: BLE001 - see the module docstring
                    log.warning("audit: source %s skipped: %s", name, error)
                    result["skipped"].append(name)
                    continue
                found = list({event["source_id"]: event for event in found}.values())
                events.extend(found)
                result[name] = len(found)
                if mark is not None:
                    new_marks[name] = mark
            ledger.append(con, events, new_marks)
            seq, head = ledger.head(con)
        log.info("audit: appended %s; head seq=%d hash=%s", result, seq, head)
        publish(settings)
    result["head_seq"], result["head_hash"] = seq, head
    return result


def publish(settings: Settings) -> Path:
    """Swap in ``audit.duckdb``: a read-only copy of the ledger for Superset."""
    from inferwatch.publish import _swap_in

    source = ledger_path(settings)

    def fill(con) -> None:
        con.execute(f"attach '{source}' as ledger (read_only)")
        con.execute(f"create table {ledger.TABLE} as select * from ledger.{ledger.TABLE}")
        con.execute("detach ledger")

    _swap_in(settings, published_path(settings), fill)
    return published_path(settings)


def verify(path: Path) -> ledger.Verification:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        return ledger.verify(con)

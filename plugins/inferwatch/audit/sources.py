"""Read audit events from their sources, each after its own watermark.

A source returns ``(events, new_watermark)``; an event is a dict of ``ledger.EVENT_COLUMNS``,
oldest first. Free text (SQL, request details) goes through the PII policy's patterns before it
is kept: an analyst's pasted e-mail address must not live on in the audit trail.

- ``pipeline``: the run records the publish step writes (``INFERWATCH_DATA_DIR/runs``): run id,
  outcome (published / held_back), gate, counts. Watermark: the last ``finished_at``.
- ``airflow_log``: Airflow's event log (table ``log`` of its metadata database: triggers,
  clears, pauses, CLI and UI actions, task state changes). Watermark: the last ``id``.
- ``airflow_dag_run``: every finished DAG run's final state, who or what triggered it.
  Watermark: the last ``end_date``.
- ``superset_log``: Superset's action log (``GET /api/v1/log/``: dashboards and charts opened,
  chart data, API calls, by user). Watermark: the last log id.
- ``superset_query``: SQL Lab queries (``GET /api/v1/query/``: who ran which SQL on which
  database). Watermark: the last query id.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inferwatch.ingest.pii import scrub_text

if TYPE_CHECKING:
    from inferwatch.serve.superset_sync import SupersetClient

log = logging.getLogger(__name__)

Events = list[dict[str, Any]]
#: Superset's log API pages newest first; look this far behind the watermark's time for rows
#: committed late (ids are allocated before the commit).
SUPERSET_PAGE = 100


def _text(value: Any, limit: int = 4000) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return scrub_text(text)[:limit]


def _ts(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        stamp = value
    else:
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    return stamp


# ---------- the pipeline's own run records
def pipeline_runs(runs_dir: Path, watermark: str | None) -> tuple[Events, str | None]:
    records = []
    for path in sorted(runs_dir.glob("*.json")) if runs_dir.exists() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("unreadable run record %s", path)
            continue
        finished = str(record.get("finished_at") or "")
        if finished and (watermark is None or finished > watermark):
            records.append((finished, record))
    records.sort(key=lambda pair: pair[0])
    events = []
    for finished, record in records:
        ingest = record.get("ingest") or {}
        events.append({
            "source": "pipeline",
            "source_id": f"{record.get('run_id')}@{finished}",
            "event_ts": _ts(finished),
            "actor": "inferwatch pipeline",
            "action": f"run {record.get('outcome')}",
            "object_type": "pipeline_run",
            "object_id": record.get("run_id"),
            "details": _text({
                "gate_passed": record.get("gate_passed"),
                "message": record.get("message"),
                "objects": ingest.get("objects"),
                "lines_read": ingest.get("lines_read"),
                "lines_quarantined": ingest.get("lines_quarantined"),
            }),
        })  # fmt: skip
    return events, (records[-1][0] if records else watermark)


# ---------- Airflow's metadata database
def _airflow_engine(sql_alchemy_conn: str):
    import sqlalchemy

    return sqlalchemy.create_engine(sql_alchemy_conn, poolclass=sqlalchemy.pool.NullPool)


def airflow_log(sql_alchemy_conn: str, watermark: str | None) -> tuple[Events, str | None]:
    import sqlalchemy

    last = int(watermark or 0)
    query = sqlalchemy.text(
        "select id, dttm, dag_id, task_id, run_id, event, owner, owner_display_name, extra "
        "from log where id > :last order by id"
    )
    engine = _airflow_engine(sql_alchemy_conn)
    try:
        with engine.connect() as con:
            rows = con.execute(query, {"last": last}).mappings().all()
    finally:
        engine.dispose()
    events = []
    for row in rows:
        target = ".".join(str(p) for p in (row["dag_id"], row["task_id"]) if p)
        events.append({
            "source": "airflow_log",
            "source_id": str(row["id"]),
            "event_ts": _ts(row["dttm"]),
            "actor": row["owner"] or row["owner_display_name"],
            "action": row["event"],
            "object_type": "task" if row["task_id"] else ("dag" if row["dag_id"] else None),
            "object_id": target or None,
            "details": _text({"run_id": row["run_id"], "extra": row["extra"]}),
        })  # fmt: skip
    return events, str(rows[-1]["id"]) if rows else watermark


def airflow_dag_runs(sql_alchemy_conn: str, watermark: str | None) -> tuple[Events, str | None]:
    import sqlalchemy

    query = sqlalchemy.text(
        "select id, dag_id, run_id, state, run_type, triggered_by, triggering_user_name, "
        "start_date, end_date from dag_run "
        "where end_date is not null and state in ('success', 'failed') "
        + ("and end_date > :last " if watermark else "")
        + "order by end_date, id"
    )
    engine = _airflow_engine(sql_alchemy_conn)
    try:
        with engine.connect() as con:
            params = {"last": _ts(watermark)} if watermark else {}
            rows = con.execute(query, params).mappings().all()
    finally:
        engine.dispose()
    events = []
    for row in rows:
        events.append({
            "source": "airflow_dag_run",
            "source_id": f"{row['id']}@{_ts(row['end_date']).isoformat()}",
            "event_ts": _ts(row["end_date"]),
            "actor": row["triggering_user_name"] or row["triggered_by"],
            "action": f"dag run {row['state']}",
            "object_type": "dag",
            "object_id": f"{row['dag_id']}/{row['run_id']}",
            "details": _text({
                "run_type": row["run_type"], "triggered_by": row["triggered_by"],
                "start_date": str(row["start_date"]),
            }),
        })  # fmt: skip
    new = _ts(rows[-1]["end_date"]).isoformat(timespec="microseconds") if rows else watermark
    return events, new


# ---------- Superset's REST API
def _pages(client: SupersetClient, resource: str, columns: str, order: str, stop) -> list:
    """``(id, row)`` pairs, newest first, until ``stop(id, row)`` says the rest is old.

    Rows logged while paging (our own requests are logged too) shift the pages: a row can come
    twice, so the result is de-duplicated by id."""
    out, page = [], 0
    while True:
        query = (
            f"(columns:!({columns}),order_column:{order},order_direction:desc,"
            f"page:{page},page_size:{SUPERSET_PAGE})"
        )
        body = client.request("GET", f"/api/v1/{resource}/?q={query}")
        rows = body.get("result") or []
        ids = body.get("ids") or [row.get("id") for row in rows]
        fresh = [(i, row) for i, row in zip(ids, rows, strict=True) if not stop(i, row)]
        out.extend(fresh)
        if len(rows) < SUPERSET_PAGE or len(fresh) < len(rows):
            return list({int(i): (i, row) for i, row in out}.values())
        page += 1


def superset_log(client: SupersetClient, watermark: str | None) -> tuple[Events, str | None]:
    last = int(watermark or 0)
    columns = "user.username,user_id,action,dttm,json,slice_id,dashboard_id,duration_ms,referrer"
    found = _pages(client, "log", columns, "dttm", lambda i, _: int(i) <= last)
    found.sort(key=lambda pair: int(pair[0]))
    events = []
    for log_id, row in found:
        user = (row.get("user") or {}).get("username") or (
            f"user_id:{row['user_id']}" if row.get("user_id") else "anonymous"
        )
        if row.get("dashboard_id"):
            object_type, object_id = "dashboard", str(row["dashboard_id"])
        elif row.get("slice_id"):
            object_type, object_id = "chart", str(row["slice_id"])
        else:
            object_type, object_id = None, None
        events.append({
            "source": "superset_log",
            "source_id": str(log_id),
            "event_ts": _ts(row.get("dttm")),
            "actor": user,
            "action": row.get("action") or "unknown",
            "object_type": object_type,
            "object_id": object_id,
            "details": _text({"json": row.get("json"), "referrer": row.get("referrer"),
                              "duration_ms": row.get("duration_ms")}),
        })  # fmt: skip
    return events, str(found[-1][0]) if found else watermark


def _usernames(client: SupersetClient) -> dict[int, str]:
    from inferwatch.serve.superset_access import fetch_all

    users = fetch_all(client, "security/users", ",columns:!(id,username)")
    return {row["id"]: row["username"] for row in users}


def superset_queries(client: SupersetClient, watermark: str | None) -> tuple[Events, str | None]:
    last = int(watermark or 0)
    columns = (
        "id,changed_on,start_time,sql,status,rows,user.first_name,user.last_name,user.id,"
        "database.database_name,schema"
    )
    found = _pages(client, "query", columns, "changed_on", lambda i, _: int(i) <= last)
    found.sort(key=lambda pair: int(pair[0]))
    usernames = _usernames(client) if found else {}
    events = []
    for query_id, row in found:
        user = row.get("user") or {}
        database = (row.get("database") or {}).get("database_name")
        events.append({
            "source": "superset_query",
            "source_id": str(query_id),
            "event_ts": _ts(row.get("changed_on")),
            "actor": usernames.get(user.get("id")) or f"user_id:{user.get('id')}",
            "action": "sql_lab query",
            "object_type": "database",
            "object_id": database,
            "details": _text({"sql": row.get("sql"), "status": row.get("status"),
                              "rows": row.get("rows"), "schema": row.get("schema")}),
        })  # fmt: skip
    return events, str(found[-1][0]) if found else watermark

"""Append what is new in every audit source to the ledger, then publish ``audit.duckdb``.

The ledger (``INFERWATCH_DATA_DIR/audit/ledger.duckdb``) is written in place, only here, under
its own lock; Superset never opens it. What Superset reads is ``INFERWATCH_DATA_DIR/audit.duckdb``,
a copy swapped in atomically after each append (the same way as serving.duckdb), behind the
``InferWatch audit`` database that only Admin may query.

A source that cannot be read (Superset down, no admin password, no Airflow database) is
skipped with a warning and keeps its watermark: its events are collected by the next run.

Every append verifies the whole chain first, under the audit key (``INFERWATCH_AUDIT_KEY``, else
generated into ``secrets.env``), against the heads anchored in the lake under
``audit/heads/<key id>/`` (:class:`LakeAnchors`); a broken chain fails the append, which is
recorded under ``audit/incidents/<key id>/``. Other code that records an audit event calls
:func:`record`.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import logging
import os
import re
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from inferwatch.audit import ledger, sources
from inferwatch.config import Settings, read_secrets
from inferwatch.filemodes import secure_tree
from inferwatch.lake import Lake

log = logging.getLogger(__name__)

AIRFLOW_DB_ENV = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"


def ledger_path(settings: Settings) -> Path:
    return settings.data_dir / "audit" / "ledger.duckdb"


def published_path(settings: Settings) -> Path:
    return settings.data_dir / "audit.duckdb"


def settings_of_ledger(path: Path) -> Settings:
    """The settings of the data dir a ledger file is in (``<data dir>/audit/ledger.duckdb``)."""
    path = Path(path).resolve()
    data_dir = path.parent.parent if path.parent.name == "audit" else path.parent
    return Settings.from_env({**os.environ, "INFERWATCH_DATA_DIR": str(data_dir)})


def audit_key(settings: Settings, *, create: bool = True) -> bytes | None:
    """The HMAC key of the chain: configured, else from the owner-only secrets file (generated
    there under its lock when ``create``)."""
    if settings.audit_key:
        return settings.audit_key.encode()
    if create:
        from inferwatch.secrets import ensure_secrets

        return ensure_secrets(settings.secrets_path)["INFERWATCH_AUDIT_KEY"].encode()
    found = read_secrets(settings.secrets_path).get("INFERWATCH_AUDIT_KEY")
    return found.encode() if found else None


class LakeAnchors:
    """Heads anchored as lake objects ``audit/heads/<key id>/<seq>-<hash>.json``, each written
    once and never overwritten (with S3 Object Lock or a lake user without delete on
    ``audit/``, not even by the pipeline). The key id (from the audit key, so a ledger's writer
    cannot point its verification elsewhere) keeps ledgers that share a lake apart."""

    NAME = re.compile(r"^(\d{12})-([0-9a-f]{64})\.json$")

    def __init__(self, lake: Lake, key: bytes):
        self.lake = lake
        self.key_id = hmac.new(key, b"inferwatch audit anchors", "sha256").hexdigest()[:16]
        self.heads_prefix = f"audit/heads/{self.key_id}"
        self.incidents_prefix = f"audit/incidents/{self.key_id}"

    def heads(self) -> dict[int, set[str]]:
        found: dict[int, set[str]] = {}
        for obj in self.lake.list(self.heads_prefix):
            match = self.NAME.match(obj.key.rsplit("/", 1)[-1])
            if match:
                found.setdefault(int(match[1]), set()).add(match[2])
        return found

    def write(self, seq: int, head_hash: str) -> str:
        key = f"{self.heads_prefix}/{seq:012d}-{head_hash}.json"
        if not self.lake.exists(key):  # written once: never replaced
            self.lake.write_bytes(key, self._json(seq=seq, head_hash=head_hash))
        return self.lake.full_url(key)

    def record_incident(self, verification: ledger.Verification) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        key = f"{self.incidents_prefix}/{stamp}-{socket.gethostname()}.json"
        self.lake.write_bytes(key, self._json(verification=verification.message(),
                                              bad_seq=verification.bad_seq))  # fmt: skip
        return self.lake.full_url(key)

    @staticmethod
    def _json(**fields) -> bytes:
        fields.update(at=datetime.now(UTC).isoformat(), host=socket.gethostname())
        return json.dumps(fields).encode()


def anchors_for(
    settings: Settings, lake: Lake | None = None, key: bytes | None = None
) -> LakeAnchors:
    if lake is None:
        # an s3:// lake needs the credentials of its Airflow connection, as in a run
        from inferwatch.orchestrate import current_lake

        lake = current_lake(settings)
    return LakeAnchors(lake, key or audit_key(settings))


@contextmanager
def _ledger_lock(settings: Settings) -> Iterator[None]:
    secure_tree(settings.data_dir)
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
    lake: Lake | None = None,
) -> dict:
    """Append every source's new events; return ``{source: rows appended}`` plus ``skipped``.

    ``superset_client`` defaults to an admin login at ``settings.superset_url``;
    ``airflow_conn`` to this process's Airflow metadata database; ``lake`` (where heads are
    anchored) to the settings' lake. Raises :class:`ledger.ChainBroken` when the chain does not
    verify (nothing is appended).
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
    anchors = anchors_for(settings, lake)
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
            ledger.append(con, events, new_marks, key=audit_key(settings), anchors=anchors)
            seq, head = ledger.head(con)
        log.info("audit: appended %s; head seq=%d hash=%s", result, seq, head)
        publish(settings)
    result["head_seq"], result["head_hash"] = seq, head
    return result


def record(settings: Settings, events: Iterable[dict], *, lake: Lake | None = None) -> int:
    """Append ``events`` (dicts of ``ledger.EVENT_COLUMNS``; ``source_id`` unique within the
    ``source``) to the chain now, e.g. an operator's action, and publish ``audit.duckdb``."""
    anchors = anchors_for(settings, lake)
    with _ledger_lock(settings):
        with ledger.connect(ledger_path(settings)) as con:
            appended = ledger.append(con, events, {}, key=audit_key(settings), anchors=anchors)
        publish(settings)
    return appended


def publish(settings: Settings) -> Path:
    """Swap in ``audit.duckdb``: a read-only copy of the ledger for Superset."""
    from inferwatch.publish import _swap_in

    source = ledger_path(settings)

    def fill(con) -> None:
        con.execute(f"attach '{source}' as ledger (read_only)")
        con.execute(f"create table {ledger.TABLE} as select * from ledger.{ledger.TABLE}")
        # where keying starts, so that the copy verifies too (`inferwatch audit verify --file`)
        con.execute("create table audit_keying as select * from ledger.audit_keying")
        con.execute("detach ledger")

    _swap_in(settings, published_path(settings), fill)
    return published_path(settings)


def verify(
    path: Path, settings: Settings | None = None, *, lake: Lake | None = None
) -> ledger.Verification:
    """Verify the ledger (or a copy) at ``path`` with the audit key of ``settings`` (default: of
    the data dir ``path`` is in) and against the heads anchored in its lake."""
    import duckdb

    settings = settings or settings_of_ledger(path)
    key = audit_key(settings, create=False)
    anchored = anchors_for(settings, lake, key).heads() if key else {}
    with duckdb.connect(str(path), read_only=True) as con:
        return ledger.verify(con, key, anchored)

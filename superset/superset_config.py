"""Superset configuration for InferWatch, loaded through ``SUPERSET_CONFIG_PATH``.

Everything secret or machine-specific comes from the environment.
``plugins/inferwatch/serve/superset_server.py`` sets it when it runs Superset (gunicorn) and the
Alerts & Reports processes (Redis, Celery worker and beat: ``serve/report_workers.py``).

Environment:
- ``SUPERSET_SECRET_KEY`` (required): signs sessions and encrypts stored connection secrets.
- ``SUPERSET_HOME``: Superset's state folder (metadata DB, caches, log). Default ``~/.superset``.
- ``SUPERSET_METADATA_URI``: SQLAlchemy URI of the metadata DB. Default: SQLite in the home.
- ``SUPERSET_GUEST_TOKEN_SECRET``: signs embedded-dashboard guest tokens. Default: derived
  from the secret key.
- ``SUPERSET_LOG_LEVEL``: default ``INFO``.
- ``SUPERSET_REDIS_URL``: the Celery broker of Alerts & Reports (db 0; results in db 1). Unset:
  no Celery and the ``ALERT_REPORTS`` feature off.
- ``SUPERSET_WEBDRIVER_BASEURL``: where the worker's Chromium reaches this Superset (gunicorn);
  ``SUPERSET_PUBLIC_URL``: the address the e-mails link to (default: the same).
- ``INFERWATCH_SMTP_HOST`` / ``_PORT`` / ``_FROM`` (127.0.0.1 / 25 / inferwatch@localhost),
  ``INFERWATCH_SMTP_STARTTLS``, ``INFERWATCH_SMTP_SSL`` (default off), ``INFERWATCH_SMTP_USER``
  / ``INFERWATCH_SMTP_PASSWORD`` (default: no login).
- ``INFERWATCH_PUBLISH_LOCK``: the pipeline's publish lock file; every report execution holds
  it *shared*, the pipeline's publish and Superset refresh hold it *exclusive*, so a report
  never runs while a build is being swapped in (superset/README.md: reports and publishing).
- ``CHROMEDRIVER`` (default ``/usr/bin/chromedriver``): Debian's ``chromium-driver``.
- ``INFERWATCH_SUPERSET_DUCKDB_READ_DIRS``: folders (``os.pathsep``-separated) every DuckDB
  connection may read besides the ``published/`` folder beside its file (default: none);
  ``INFERWATCH_SUPERSET_DUCKDB_STATEMENTS``: the DuckDB statement types SQL Lab and charts may
  run (default ``SELECT``). README.md: Governance.
- ``INFERWATCH_SUPERSET_DUCKDB_POOL`` (default ``1``): keep one DuckDB instance per published
  file version (``0``: a new one per query); ``INFERWATCH_SUPERSET_DUCKDB_MEMORY_LIMIT``
  (default ``1GB``): the memory limit of each kept instance. README.md: Chart speed.
"""

import fcntl
import functools
import hashlib
import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta

from celery.schedules import crontab
from celery.signals import task_postrun, task_prerun
from sqlalchemy import event
from sqlalchemy.engine import Engine

SUPERSET_HOME = os.path.abspath(
    os.environ.get("SUPERSET_HOME") or os.path.expanduser("~/.superset")
)

# ---------- secrets and metadata DB
SECRET_KEY = os.environ.get("SUPERSET_SECRET_KEY", "")
if len(SECRET_KEY) < 32:
    raise RuntimeError(
        "SUPERSET_SECRET_KEY must be set to a random string of at least 32 characters "
        "(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
    )

SQLALCHEMY_DATABASE_URI = os.environ.get("SUPERSET_METADATA_URI") or (
    f"sqlite:///{os.path.join(SUPERSET_HOME, 'superset.db')}?check_same_thread=false"
)

# ---------- features
FEATURE_FLAGS = {
    # Native filters and cross-filters are always on in Superset 6; these are the flags the
    # imported dashboards and their embedding rely on.
    "EMBEDDED_SUPERSET": True,
    "DASHBOARD_RBAC": True,  # Stakeholder role: dashboards only, per dashboard
    "ENABLE_TEMPLATE_PROCESSING": False,
    "ALLOW_ADHOC_SUBQUERY": False,
    "THUMBNAILS": False,  # needs Celery workers; the cache below is ready for it
    # Scheduled dashboard e-mails (Celery worker + beat, Chromium): on when Redis is configured
    "ALERT_REPORTS": bool(os.environ.get("SUPERSET_REDIS_URL")),
}
GUEST_TOKEN_JWT_SECRET = (
    os.environ.get("SUPERSET_GUEST_TOKEN_SECRET")
    or hashlib.sha256(("inferwatch-guest-token:" + SECRET_KEY).encode()).hexdigest()
)

# The DuckDB files InferWatch publishes are opened read-only through duckdb-engine; DuckDB is
# not on Superset's blocklist (SQLite and shillelagh are), so the safety check stays on.
PREVENT_UNSAFE_DB_CONNECTIONS = True

# ---------- security (Superset's defaults, spelled out)
WTF_CSRF_ENABLED = True
WTF_CSRF_TIME_LIMIT = int(timedelta(weeks=1).total_seconds())
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# One process per worker keeps its own counters; no Redis is needed for a local Superset.
RATELIMIT_STORAGE_URI = "memory://"

# ---------- DuckDB: analysts see marts, not the machine (README.md: Governance)
# Superset's DuckDB connections would otherwise read (read_text, read_csv, glob, ATTACH) and
# write (COPY ... TO) any file this process can, secrets.env included. Two layers:
# 1. every DuckDB connection is confined, as it opens, to the ``published/`` folder beside its
#    file (the Parquet partitions serving.duckdb's views read) and locked there;
# 2. SQL Lab and charts run SELECT statements only: DuckDB still writes inside an allowed
#    folder (COPY ... TO, EXPORT DATABASE, a writable ATTACH), and nothing may write there.
#: Folders every DuckDB connection may also read (os.pathsep-separated), e.g. the original
#: data dir's ``published/`` while a copied data dir has not been published yet.
DUCKDB_EXTRA_READ_DIRS = [
    path
    for path in os.environ.get("INFERWATCH_SUPERSET_DUCKDB_READ_DIRS", "").split(os.pathsep)
    if path.strip()
]
#: DuckDB statement types (duckdb.StatementType names) Superset may run on a DuckDB database.
DUCKDB_STATEMENTS = frozenset(
    kind.strip().upper()
    for kind in (os.environ.get("INFERWATCH_SUPERSET_DUCKDB_STATEMENTS") or "SELECT").split(",")
    if kind.strip()
)
_PUBLISHED_DIR = "published"  # inferwatch.serving_catalog.PUBLISHED_DIR


def _duckdb_read_dirs(database_path: str | None) -> list[str]:
    beside = [os.path.join(os.path.dirname(database_path), _PUBLISHED_DIR)] if database_path else []
    # The trailing separator makes each a folder: "/data/published" would also allow
    # "/data/published-old".
    return [os.path.join(os.path.abspath(path), "") for path in beside + DUCKDB_EXTRA_READ_DIRS]


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_CONFINING = threading.Lock()


@event.listens_for(Engine, "connect")
def _confine_duckdb(dbapi_connection, _connection_record) -> None:
    """Run on every new DBAPI connection of every engine (metadata DB included): DuckDB ones
    get ``allowed_directories``, then no external access, then a locked configuration — in
    that order, as statements (in duckdb-engine's ``config`` DuckDB refuses to set allowed
    directories once external access is off)."""
    if type(dbapi_connection).__module__.split(".")[0] != "duckdb_engine":
        return
    con = dbapi_connection
    # The same file opened twice in this process shares one DuckDB instance (and its global
    # settings): a second connection finds it already confined and locked. Charts load in
    # parallel threads, so the check and the three settings happen under one lock: two
    # threads that both saw it unlocked made the second fail on a locked configuration.
    with _CONFINING:
        if not con.execute("select current_setting('lock_configuration')").fetchone()[0]:
            (path,) = con.execute(
                "select path from duckdb_databases() where database_name = current_database()"
            ).fetchone()
            dirs = ", ".join(_sql_literal(d) for d in _duckdb_read_dirs(path))
            con.execute(f"set allowed_directories = [{dirs}]")
            con.execute("set enable_external_access = false")
            con.execute("set lock_configuration = true")
    if con.execute("select current_setting('enable_external_access')").fetchone()[0]:
        con.close()
        raise RuntimeError("a DuckDB instance was locked with external access on: refused")


# ---------- DuckDB: one kept instance per served file, per version of it (issue 20)
# Without a pool every chart query opens the file anew (Superset's NullPool): a new DuckDB
# instance loads the catalog and, on the first query, binds the views and reads the footer of
# every Parquet partition they list — more than most chart queries cost. Here each served file
# opened read-only keeps one instance (an in-memory instance with the file attached), and every
# query gets a new connection to it. The instance is keyed on the file's identity (device,
# inode, size, modification time): a publish swaps a new file in with os.replace, so the next
# query sees another identity and gets a new instance on the new file; queries already running
# finish on the old one, which closes when its last connection does. Opening the path directly
# cannot do this: DuckDB shares one instance per path and process, so a connection opened after
# a swap while another still reads the old file would be handed the old file.
#: INFERWATCH_SUPERSET_DUCKDB_POOL=0 opens every query's file anew (the behaviour before).
DUCKDB_POOL = os.environ.get("INFERWATCH_SUPERSET_DUCKDB_POOL", "1").strip().lower() not in (
    "0", "false", "no", "off",
)  # fmt: skip
#: Memory of each kept instance (DuckDB's memory_limit; it spills beyond): per served file and
#: Superset process.
DUCKDB_MEMORY_LIMIT = os.environ.get("INFERWATCH_SUPERSET_DUCKDB_MEMORY_LIMIT") or "1GB"


def _file_identity(path: str) -> tuple[int, int, int, int]:
    status = os.stat(path)
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


class _ServedFiles:
    """The kept instance of each served file's current version; ``connect`` hands out a new
    DuckDB connection to it (thread-safe: one lock around the identity check)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # path -> (identity, instance name, keeper connection holding the instance open)
        self._kept: dict[str, tuple[tuple, str, object]] = {}

    def connect(self, path: str):
        import duckdb
        from duckdb_engine import ConnectionWrapper

        identity = _file_identity(path)
        with self._lock:
            kept = self._kept.get(path)
            if kept is None or kept[0] != identity:
                if kept is not None:
                    kept[2].close()  # running queries keep the old instance until they end
                kept = self._kept[path] = (identity, *self._open(duckdb, path, identity))
            # While the keeper is open, this name is that instance (DuckDB's instance cache).
            con = duckdb.connect(kept[1])
        con.execute(f"use {_catalog(path)}")
        return ConnectionWrapper(con)

    @staticmethod
    def _open(duckdb, path: str, identity: tuple) -> tuple[str, object]:
        # The identity was read before the file is attached, so the instance holds that version
        # or a newer one, never an older one.
        digest = hashlib.sha256(repr((path, identity)).encode()).hexdigest()[:24]
        name = f":memory:inferwatch_{digest}"
        keeper = duckdb.connect(name)
        try:
            # named as DuckDB names a file it opens (its stem), so SQL Lab lists the same catalog
            keeper.execute(f"attach {_sql_literal(path)} as {_catalog(path)} (read_only)")
            keeper.execute(f"use {_catalog(path)}")
            keeper.execute("detach memory")  # the catalogs Superset lists: the file's only
            keeper.execute(f"set memory_limit = {_sql_literal(DUCKDB_MEMORY_LIMIT)}")
            # Partitions are immutable (a publish writes new files), so footers stay valid.
            keeper.execute("set parquet_metadata_cache = true")
        except Exception:
            keeper.close()
            raise
        return name, keeper


def _catalog(path: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    return '"' + stem.replace('"', '""') + '"'


_SERVED_FILES = _ServedFiles()


def DB_CONNECTION_MUTATOR(url, params, username, security_manager, source):  # noqa: N802, ARG001
    """Superset calls this for every engine it creates: a read-only DuckDB file (the served
    serving, ops and audit files) gets its connections from the kept instance (above)."""
    if (
        DUCKDB_POOL
        and url.drivername == "duckdb"
        and url.database
        and url.query.get("access_mode") == "read_only"
        and os.path.isfile(url.database)
    ):
        params["creator"] = functools.partial(_SERVED_FILES.connect, url.database)
    return url, params


class DuckDBStatementRefused(Exception):
    """A statement Superset must not run on a DuckDB database (see DUCKDB_STATEMENTS)."""


_duckdb_parser = None
_duckdb_parser_lock = threading.Lock()


def _duckdb_statement_types(sql: str) -> list[str]:
    """The statement types DuckDB's own parser sees in ``sql`` (what DuckDB would run)."""
    global _duckdb_parser
    import duckdb

    with _duckdb_parser_lock:  # one in-memory connection parses (a new one costs ~30 ms)
        if _duckdb_parser is None:
            _duckdb_parser = duckdb.connect(":memory:")
        return [statement.type.name for statement in _duckdb_parser.extract_statements(sql)]


def SQL_QUERY_MUTATOR(sql: str, **kwargs) -> str:  # noqa: N802 (Superset's name)
    """Superset calls this before SQL Lab runs a statement and before a chart's query
    (MUTATE_AFTER_SPLIT stays False). Alert queries are not passed here
    (MUTATE_ALERT_QUERY), but run on a confined connection all the same."""
    database = kwargs.get("database")
    if getattr(database, "backend", None) == "duckdb":
        refused = sorted(set(_duckdb_statement_types(sql)) - DUCKDB_STATEMENTS)
        if refused:
            raise DuckDBStatementRefused(
                f"{', '.join(refused)} refused: Superset runs "
                f"{', '.join(sorted(DUCKDB_STATEMENTS))} statements only on InferWatch's DuckDB "
                "databases (INFERWATCH_SUPERSET_DUCKDB_STATEMENTS)"
            )
    return sql


# ---------- caches: no Redis
_CACHE_DIR = os.path.join(SUPERSET_HOME, "cache")


def _file_cache(name: str, timeout: timedelta) -> dict:
    return {
        "CACHE_TYPE": "FileSystemCache",
        "CACHE_DIR": os.path.join(_CACHE_DIR, name),
        "CACHE_DEFAULT_TIMEOUT": int(timeout.total_seconds()),
        "CACHE_THRESHOLD": 2000,
        "CACHE_KEY_PREFIX": f"inferwatch_{name}_",
    }


# Metadata (table lists, schemas): shared by the gunicorn workers through the filesystem.
CACHE_CONFIG = _file_cache("superset", timedelta(minutes=5))
# Query results are NOT cached: serving.duckdb is swapped under Superset after each pipeline
# run and a cache key cannot see the swap, so any cache would show the previous build.
# DuckDB answers the marts in milliseconds.
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
THUMBNAIL_CACHE_CONFIG = _file_cache("thumbnails", timedelta(days=7))
# Filter state and explore form state stay in the metadata DB (Superset's default).

# ---------- logging: console (gunicorn's log file) at INFO, no per-query debug noise
LOG_LEVEL = getattr(logging, os.environ.get("SUPERSET_LOG_LEVEL", "INFO").upper(), logging.INFO)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ENABLE_TIME_ROTATE = False
SUPERSET_WEBSERVER_TIMEOUT = 60


# ---------- Alerts & Reports: Celery on Redis, Chromium through Selenium, SMTP
REDIS_URL = os.environ.get("SUPERSET_REDIS_URL", "")
# How long one beat tick's scheduling window is: beat fires every minute (below).
ALERT_REPORTS_CRON_WINDOW_SIZE = 59
ALERT_REPORTS_NOTIFICATION_DRY_RUN = False
EMAIL_REPORTS_SUBJECT_PREFIX = "[InferWatch]"  # Superset adds the space


class CeleryConfig:  # Superset's defaults, on Redis, with one scheduler tick a minute
    broker_url = REDIS_URL
    result_backend = REDIS_URL.rsplit("/", 1)[0] + "/1" if REDIS_URL else None
    broker_connection_retry_on_startup = True
    imports = (
        "superset.sql_lab",
        "superset.tasks.scheduler",
        "superset.tasks.thumbnails",
        "superset.tasks.cache",
    )
    worker_prefetch_multiplier = 1
    task_acks_late = False
    beat_schedule = {
        "reports.scheduler": {
            "task": "reports.scheduler",
            "schedule": crontab(minute="*", hour="*"),
            # Superset reads the tick's time back from its expiry (CELERY_BEAT_SCHEDULER_EXPIRES)
            "options": {"expires": int(timedelta(weeks=1).total_seconds())},
        },
        "reports.prune_log": {
            "task": "reports.prune_log",
            "schedule": crontab(minute=0, hour=0),
        },
    }


CELERY_CONFIG = CeleryConfig if REDIS_URL else None

WEBDRIVER_TYPE = "chrome"
WEBDRIVER_OPTION_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]
WEBDRIVER_CONFIGURATION = {
    "options": {"capabilities": {}, "preferences": {}},
    "service": {
        "executable_path": os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"),
        "log_output": os.devnull,
        "service_args": [],
        "port": 0,
        "env": {},
    },
}
WEBDRIVER_WINDOW = {"dashboard": (1600, 2000), "slice": (1600, 1200), "pixel_density": 1}
WEBDRIVER_BASEURL = os.environ.get("SUPERSET_WEBDRIVER_BASEURL", "http://127.0.0.1:8088/")
WEBDRIVER_BASEURL_USER_FRIENDLY = os.environ.get("SUPERSET_PUBLIC_URL") or WEBDRIVER_BASEURL
SCREENSHOT_LOCATE_WAIT = 30
SCREENSHOT_LOAD_WAIT = 120

SMTP_HOST = os.environ.get("INFERWATCH_SMTP_HOST") or "127.0.0.1"
SMTP_PORT = int(os.environ.get("INFERWATCH_SMTP_PORT") or 25)
SMTP_MAIL_FROM = os.environ.get("INFERWATCH_SMTP_FROM") or "inferwatch@localhost"
SMTP_STARTTLS = os.environ.get("INFERWATCH_SMTP_STARTTLS", "").lower() in ("1", "true", "yes")
SMTP_SSL = os.environ.get("INFERWATCH_SMTP_SSL", "").lower() in ("1", "true", "yes")
SMTP_USER = os.environ.get("INFERWATCH_SMTP_USER") or None
SMTP_PASSWORD = os.environ.get("INFERWATCH_SMTP_PASSWORD") or None


# ---------- SQLite metadata: report executions pass their schedule time as an ISO string
# (Celery's eta), which SQLAlchemy's SQLite DateTime refuses ("SQLite DateTime type only
# accepts Python datetime and date objects as input", apache/superset#13698, still in 6.1).
# PostgreSQL accepts it; for SQLite the bind coerces ISO strings to naive UTC datetimes.
def _coerce_iso_datetimes() -> None:
    from sqlalchemy.dialects.sqlite.base import DATETIME

    if getattr(DATETIME.bind_processor, "_inferwatch", False):
        return
    original = DATETIME.bind_processor

    def bind_processor(self, dialect):
        process = original(self, dialect)

        def coerce(value):
            if isinstance(value, str):
                value = datetime.fromisoformat(value)
                if value.tzinfo is not None:
                    value = value.astimezone(UTC).replace(tzinfo=None)
            return process(value)

        return coerce

    bind_processor._inferwatch = True
    DATETIME.bind_processor = bind_processor


if SQLALCHEMY_DATABASE_URI.startswith("sqlite"):
    _coerce_iso_datetimes()


# ---------- reports never race a publish (superset/README.md: reports and publishing)
PUBLISH_LOCK = os.environ.get("INFERWATCH_PUBLISH_LOCK", "")
#: A report waits at most this long for a publish to end, then runs anyway (the swap itself is
#: atomic; the lock only keeps one e-mail to one build and out of a Superset refresh).
PUBLISH_LOCK_WAIT_S = int(os.environ.get("INFERWATCH_PUBLISH_LOCK_WAIT_S") or 1800)
_gate_log = logging.getLogger("inferwatch.report_gate")
_held: dict = {}


@task_prerun.connect(weak=False)
def _hold_publish_lock_shared(task_id=None, task=None, args=None, **_):
    if not PUBLISH_LOCK or getattr(task, "name", "") != "reports.execute":
        return
    what = f"report schedule {(args or ['?'])[0]} (task {task_id})"
    handle = open(PUBLISH_LOCK, "a+")  # noqa: SIM115 (closed in _release_publish_lock)
    deadline = time.monotonic() + PUBLISH_LOCK_WAIT_S
    waited = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not waited:
                _gate_log.info("%s waits for the publish lock %s", what, PUBLISH_LOCK)
                waited = True
            if time.monotonic() > deadline:
                _gate_log.error("publish lock held over %s s: %s runs", PUBLISH_LOCK_WAIT_S, what)
                handle.close()
                return
            time.sleep(0.5)
    _gate_log.info("%s holds the publish lock (shared)", what)
    _held[task_id] = (handle, what)


@task_postrun.connect(weak=False)
def _release_publish_lock(task_id=None, **_):
    handle, what = _held.pop(task_id, (None, None))
    if handle is not None:
        handle.close()  # closing the file releases the flock
        _gate_log.info("%s released the publish lock", what)

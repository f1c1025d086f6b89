"""Superset configuration for InferWatch, loaded through ``SUPERSET_CONFIG_PATH``.

Everything secret or machine-specific comes from the environment; nothing here needs Redis,
Celery or a browser. ``plugins/inferwatch/serve/superset_server.py`` sets the environment
when it runs Superset for InferWatch.

Environment:
- ``SUPERSET_SECRET_KEY`` (required): signs sessions and encrypts stored connection secrets.
- ``SUPERSET_HOME``: Superset's state folder (metadata DB, caches, log). Default ``~/.superset``.
- ``SUPERSET_METADATA_URI``: SQLAlchemy URI of the metadata DB. Default: SQLite in the home.
- ``SUPERSET_GUEST_TOKEN_SECRET``: signs embedded-dashboard guest tokens. Default: derived
  from the secret key.
- ``SUPERSET_LOG_LEVEL``: default ``INFO``.
"""

import hashlib
import logging
import os
from datetime import timedelta

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

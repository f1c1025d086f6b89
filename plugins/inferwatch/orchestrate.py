"""The thin Airflow layer: settings and the lake as an Airflow task sees them.

Only this module (and ``dags/``) imports Airflow; everything it calls runs without it.
"""

from __future__ import annotations

import dataclasses
import os

from inferwatch.config import Settings
from inferwatch.lake import Lake


def lake_storage_options(settings: Settings) -> dict:
    """fsspec options for the lake; for ``s3://`` from the Airflow connection of the lake.

    The connection carries ``login``/``password`` (access key and secret) and, in its extra,
    ``endpoint_url`` and ``region_name`` for S3-compatible stores (MinIO, moto, Ceph …).
    """
    if not settings.lake_url.startswith(("s3://", "s3a://")):
        return {}
    conn = lake_connection(settings.lake_conn_id)
    extra = conn.extra_dejson or {}
    client_kwargs = {k: extra[k] for k in ("endpoint_url", "region_name") if extra.get(k)}
    options: dict = {"client_kwargs": client_kwargs}
    if conn.login:
        options.update(key=conn.login, secret=conn.password)
    return options


def lake_connection(conn_id: str):
    """Airflow connection ``conn_id`` as a task sees it (environment, secrets backends,
    metadata DB). Outside a task (`inferwatch check`, `rebuild`, …) Airflow's task SDK reads
    only the environment and secrets backends, so the metadata DB, where `airflow connections
    add` puts it, is read here in a session of our own that ends with the lookup: Airflow's
    secrets lookup leaves a read transaction open on the metadata DB (on SQLite a shared lock
    held for the life of the process, which a writer in another process then waits on)."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as not_found:  # noqa: BLE001 - "not found" has several types
        try:
            conn = _metadata_db_connection(conn_id)
        except Exception:  # noqa: BLE001 - no metadata DB here (a worker): the first answer
            raise not_found from None
        if conn is None:
            raise not_found from None
        return conn


def _metadata_db_connection(conn_id: str):
    """The connection row from Airflow's metadata DB, detached, or None."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        conn = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        if conn is not None:
            session.expunge(conn)  # readable after the session commits and closes
    # The pooled SQLite connection keeps its shared lock after the session ends: close it.
    session.get_bind().dispose()
    return conn


#: Airflow connection whose password is the HMAC key for user ids (when the environment gives
#: none): the key then lives in Airflow's connection store, never in a file of this checkout.
USER_HASH_CONN_ENV = "INFERWATCH_USER_HASH_CONN_ID"
USER_HASH_CONN_ID = "inferwatch_user_hash"


def user_hash_key_from_connection(conn_id: str) -> str | None:
    """The password of Airflow connection ``conn_id``, or None when it does not exist."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - "not found" has several types across Airflow versions
        return None
    return conn.password or None


def current_settings() -> Settings:
    """Settings from the environment; the user-hash key, when the environment gives none, from
    the Airflow connection ``inferwatch_user_hash`` before the generated secrets file."""
    settings = Settings.from_env()
    if not os.environ.get("INFERWATCH_USER_HASH_KEY"):
        key = user_hash_key_from_connection(os.environ.get(USER_HASH_CONN_ENV) or USER_HASH_CONN_ID)
        if key:
            settings = dataclasses.replace(settings, user_hash_key=key)
    return settings


def current_lake(settings: Settings) -> Lake:
    return Lake(settings.lake_url, lake_storage_options(settings))

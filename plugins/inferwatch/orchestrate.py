"""The thin Airflow layer: settings and the lake as an Airflow task sees them.

Only this module (and ``dags/``) imports Airflow; everything it calls runs without it.
"""

from __future__ import annotations

from inferwatch.config import Settings
from inferwatch.lake import Lake


def lake_storage_options(settings: Settings) -> dict:
    """fsspec options for the lake; for ``s3://`` from the Airflow connection of the lake.

    The connection carries ``login``/``password`` (access key and secret) and, in its extra,
    ``endpoint_url`` and ``region_name`` for S3-compatible stores (MinIO, moto, Ceph …).
    """
    if not settings.lake_url.startswith(("s3://", "s3a://")):
        return {}
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(settings.lake_conn_id)
    extra = conn.extra_dejson or {}
    client_kwargs = {k: extra[k] for k in ("endpoint_url", "region_name") if extra.get(k)}
    options: dict = {"client_kwargs": client_kwargs}
    if conn.login:
        options.update(key=conn.login, secret=conn.password)
    return options


def current_settings() -> Settings:
    return Settings.from_env()


def current_lake(settings: Settings) -> Lake:
    return Lake(settings.lake_url, lake_storage_options(settings))

"""Pytest plugin: a real Superset for the session, prepared in a temp home, stopped by pid.

Loaded by the main conftest (``pytest_plugins = ["fixtures_superset"]``). Needs the Superset
environment (``.venv/superset`` or ``INFERWATCH_SUPERSET_VENV``); skips without it. Costs
~25 s to prepare the metadata DB and ~20 s to start gunicorn, once per session;
``superset_synced`` then imports superset/ over the session's pipeline run (~20 s), report
schedules included (inactive: the session configures no recipients). The report workers
(Redis, Celery worker and beat) are started only by tests/test_superset_reports.py.
"""

from __future__ import annotations

import dataclasses
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from inferwatch.config import Settings
from inferwatch.serve import superset_server
from inferwatch.serve.superset_access import demo_logins
from inferwatch.serve.superset_sync import SupersetClient, sync


@dataclass(frozen=True)
class SupersetInstance:
    url: str
    username: str
    password: str
    home: Path
    pid: int


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def superset_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SupersetInstance]:
    if not (superset_server.superset_venv() / "bin" / "gunicorn").exists():
        pytest.skip(f"no Superset environment at {superset_server.superset_venv()}")
    home = tmp_path_factory.mktemp("superset_home")
    password = secrets.token_urlsafe(18)
    superset_server.prepare(home, admin_password=password, secret_key=secrets.token_urlsafe(48))
    port = _free_port()
    # gunicorn only: the report workers (Redis, Celery worker and beat) cost ~700 MB and ~30 s,
    # so tests/test_superset_reports.py starts them itself (superset_server.start_reports)
    pid = superset_server.start(home, port=port, host="127.0.0.1", reports=False)
    try:
        yield SupersetInstance(
            url=f"http://127.0.0.1:{port}",
            username=superset_server.ADMIN_USERNAME,
            password=password,
            home=home,
            pid=pid,
        )
    finally:
        superset_server.stop(home)


@dataclass(frozen=True)
class SyncedSuperset:
    """The session's Superset with superset/ synced over the session's pipeline run."""

    instance: SupersetInstance
    settings: Settings
    ids: dict  # sync()'s result: {resource: {uuid: id}}, role, user

    def client(self, username: str | None = None) -> SupersetClient:
        """A REST client logged in as ``username`` (admin by default; demo users by name)."""
        if username is None:
            return SupersetClient(self.instance.url, self.instance.username, self.instance.password)
        _, password = demo_logins(self.settings.secrets_path)[username]
        return SupersetClient(self.instance.url, username, password)


@pytest.fixture(scope="session")
def superset_synced(pipeline_run, superset_instance) -> SyncedSuperset:
    settings = dataclasses.replace(pipeline_run.settings, superset_url=superset_instance.url)
    ids = sync(settings, username=superset_instance.username, password=superset_instance.password)
    return SyncedSuperset(instance=superset_instance, settings=settings, ids=ids)

"""Pytest plugin: a real Superset for the session, prepared in a temp home, stopped by pid.

Loaded by the main conftest (``pytest_plugins = ["fixtures_superset"]``). Needs the Superset
environment (``.venv/superset`` or ``INFERWATCH_SUPERSET_VENV``); skips without it. Costs
~25 s to prepare the metadata DB and ~20 s to start gunicorn, once per session.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from inferwatch.serve import superset_server


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
    pid = superset_server.start(home, port=port, host="127.0.0.1")
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

"""Superset's DuckDB connections (issue 20): a kept instance per served file, never the old file
after a publish. Runs superset/superset_config.py in the Superset environment, with the
SQLAlchemy engine Superset creates per query (NullPool, the database's URL)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import duckdb
import pytest

from inferwatch.config import PROJECT_ROOT
from inferwatch.serve import superset_server

# What Database._get_sqla_engine does for each query: the mutator from the config, then
# create_engine with NullPool. One connection stays open across a publish (a running query).
SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import superset_config as config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

served, next_version = sys.argv[2], sys.argv[3]

def engine():
    url, params = make_url(f"duckdb:///{served}?access_mode=read_only"), {"poolclass": NullPool}
    mutator = getattr(config, "DB_CONNECTION_MUTATOR", None)
    if mutator:
        url, params = mutator(url, params, None, None, None)
    return create_engine(url, **params)

def build(connection):
    return connection.execute(text("select build from main.served_build")).scalar()

seen = {}
with engine().connect() as running:
    seen["before"] = build(running)
    with engine().connect() as second:
        seen["second"] = build(second)
    os.replace(next_version, served)  # a publish
    with engine().connect() as after:
        seen["after_publish"] = build(after)
    seen["running"] = build(running)
with engine().connect() as later:
    seen["later"] = build(later)
    try:
        later.execute(text("select * from read_text('/etc/hostname')")).fetchall()
        seen["outside_read"] = "allowed"
    except Exception as error:
        seen["outside_read"] = type(error).__name__ + ": " + str(error)[:80]
print(json.dumps(seen))
"""


def _served_file(path, build: int) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute(f"create table main.served_build as select {build} as build")


def test_a_query_after_a_publish_reads_the_new_file(tmp_path):
    python = superset_server.superset_venv() / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Superset environment at {superset_server.superset_venv()}")
    served, next_version = tmp_path / "serving.duckdb", tmp_path / ".serving.next"
    _served_file(served, 1)
    _served_file(next_version, 2)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        "SUPERSET_SECRET_KEY": secrets.token_urlsafe(48),
        "SUPERSET_HOME": str(tmp_path / "home"),
    }
    env.pop("SUPERSET_REDIS_URL", None)
    env.pop("INFERWATCH_SUPERSET_DUCKDB_POOL", None)
    done = subprocess.run(
        [str(python), "-c", SCRIPT, str(PROJECT_ROOT / "superset"), str(served), str(next_version)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["before"] == seen["second"] == 1
    # a query that starts after the swap reads the new file, even while one still reads the old
    assert seen["after_publish"] == 2, seen
    assert seen["running"] == 1  # a running query finishes on the file it started on
    assert seen["later"] == 2
    assert "Permission Error: Cannot access file" in seen["outside_read"], seen  # still confined

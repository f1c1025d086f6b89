"""Analysts see marts, not the machine (issue 18): every DuckDB connection Superset opens reads
only the published folder beside its file, and Superset runs only SELECT statements on it.

Each probe below names a file outside the published folder (the secrets file, the lake,
``/etc/passwd``, ops.duckdb) or a write inside it, and must be refused — through SQL Lab as the
Analyst (the session's Superset), and on a connection that ``superset/superset_config.py``
confines, without Superset's statement guard in front (the Superset environment's own
SQLAlchemy and duckdb-engine, in a subprocess) — while a mart still answers what the published
serving.duckdb says when read directly.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from inferwatch.config import SUPERSET_ASSETS_DIR
from inferwatch.serve import superset_server
from inferwatch.serve.superset_sync import load_assets

#: DuckDB's refusal of a path outside ``allowed_directories`` (or of an extension).
DUCKDB_PERMISSION = "Permission Error"
#: DuckDB's refusal of a setting once ``lock_configuration`` is on.
DUCKDB_LOCKED = "the configuration has been locked"
#: superset_config.py's refusal of a statement that is not a SELECT.
GUARD = "SELECT statements only"
MART = "mart_inference_hourly"


@dataclass(frozen=True)
class Probe:
    sql: str
    #: What DuckDB itself answers on a confined connection; None: not run without the guard
    #: (a write inside the published folder, which only the guard refuses).
    duckdb_error: str | None
    #: The file the probe would create, which must not exist afterwards.
    writes: Path | None = None
    #: Also sent through SQL Lab (each costs ~1 s there); the rest vary a case SQL Lab covers.
    sqllab: bool = True

    @property
    def is_select(self) -> bool:
        return self.sql.lower().startswith("select")


def _lit(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _probes(settings) -> list[Probe]:
    data, ops, secrets_env = settings.data_dir, settings.ops_path, settings.secrets_path
    lake = Path(settings.lake_url)
    lake_object = next(p for p in sorted(lake.rglob("*")) if p.is_file())
    published = data / "published"
    extension = data / "evil.duckdb_extension"
    return [
        Probe(f"select * from read_text({_lit(secrets_env)})", DUCKDB_PERMISSION),
        Probe(f"select * from read_csv({_lit(secrets_env)})", DUCKDB_PERMISSION),
        Probe(
            f"select * from read_text({_lit(published / '..' / 'secrets.env')})", DUCKDB_PERMISSION
        ),
        Probe("select * from read_text('/etc/passwd')", DUCKDB_PERMISSION),
        Probe(
            "select * from read_csv('/etc/passwd', sep = ':', header = false)",
            DUCKDB_PERMISSION,
            sqllab=False,
        ),
        Probe(f"select * from glob({_lit(lake / '**')})", DUCKDB_PERMISSION),
        Probe(f"select * from glob({_lit(data / '*')})", DUCKDB_PERMISSION, sqllab=False),
        Probe(f"select * from read_text({_lit(lake_object)})", DUCKDB_PERMISSION),
        Probe(f"select * from read_blob({_lit(ops)})", DUCKDB_PERMISSION),
        Probe(f"attach {_lit(ops)} as ops_file (read_only)", DUCKDB_PERMISSION),
        Probe(f"attach {_lit(secrets_env)} as secrets_file", DUCKDB_PERMISSION, sqllab=False),
        Probe(
            f"copy (select 1 as x) to {_lit(data / 'exfil.csv')}",
            DUCKDB_PERMISSION,
            data / "exfil.csv",
        ),
        Probe(
            f"copy (select * from read_text({_lit(secrets_env)})) to {_lit(lake / 'exfil.csv')}",
            DUCKDB_PERMISSION,
            lake / "exfil.csv",
        ),
        Probe(f"install {_lit(extension)}", DUCKDB_PERMISSION),
        Probe(f"load {_lit(extension)}", DUCKDB_PERMISSION),
        Probe("set enable_external_access = true", DUCKDB_LOCKED),
        Probe("set allowed_directories = ['/']", DUCKDB_LOCKED, sqllab=False),
        Probe("reset allowed_directories", DUCKDB_LOCKED),
        Probe("set lock_configuration = false", DUCKDB_LOCKED, sqllab=False),
        # Writes inside the published folder: DuckDB allows them there, the guard does not.
        Probe(
            f"copy (select 1 as x) to {_lit(published / 'exfil.csv')}",
            None,
            published / "exfil.csv",
        ),
        Probe(
            f"attach {_lit(published / 'evil.duckdb')} as evil (read_only false)",
            None,
            published / "evil.duckdb",
        ),
    ]


def _files(*roots: Path) -> set[Path]:
    return {p for root in roots for p in root.rglob("*")}


def _sql(client, database_id: int, sql: str) -> tuple[bool, str]:
    response = client.http.post(
        f"{client.url}/api/v1/sqllab/execute/",
        json={"database_id": database_id, "sql": sql, "runAsync": False, "schema": "main"},
        timeout=60,
    )
    body = response.json() if response.content else {}
    return response.status_code == 200 and body.get("status") == "success", response.text


def _database_id(superset_synced, asset: str) -> int:
    return superset_synced.ids["database"][load_assets()[f"databases/{asset}.yaml"]["uuid"]]


def _mart_rows(pipeline_run) -> int:
    with pipeline_run.serving() as con:
        return con.execute(f"select count(*) from main.{MART}").fetchone()[0]


def test_analyst_sql_lab_reads_the_marts_and_no_file_of_the_machine(superset_synced, pipeline_run):
    settings = superset_synced.settings
    analyst = superset_synced.client("analyst")
    serving = _database_id(superset_synced, "inferwatch_serving")
    roots = (settings.data_dir, Path(settings.lake_url))
    before = _files(*roots)
    failures = []
    for probe in [p for p in _probes(settings) if p.sqllab]:
        ok, text = _sql(analyst, serving, probe.sql)
        # a SELECT reaches DuckDB, which refuses the path; anything else stops at the guard
        expected = probe.duckdb_error if probe.is_select else GUARD
        if ok or expected not in text:
            failures.append(f"{probe.sql}\n  expected {expected!r}, got: {text[:300]}")
        if probe.writes is not None and probe.writes.exists():
            failures.append(f"{probe.sql}\n  wrote {probe.writes}")
    assert not failures, "\n".join(failures)
    assert _files(*roots) == before  # nothing written, nothing deleted

    ok, text = _sql(analyst, serving, f"select count(*) as n from {MART}")
    assert ok, text[:500]
    assert json.loads(text)["data"] == [{"n": _mart_rows(pipeline_run)}]


def test_admin_sql_lab_on_ops_is_confined_too(superset_synced, pipeline_run):
    admin = superset_synced.client()
    ops = _database_id(superset_synced, "inferwatch_ops")
    ok, text = _sql(
        admin, ops, f"select * from read_text({_lit(pipeline_run.settings.secrets_path)})"
    )
    assert not ok and DUCKDB_PERMISSION in text, text[:500]
    # (its charts still answer: tests/test_dashboards.py::test_data_quality_dashboard_reads_ops)


# The Superset environment's SQLAlchemy and duckdb-engine with superset_config.py loaded, as
# gunicorn loads it: the connect event confines the connection, DuckDB alone refuses.
_CONFINED_SCRIPT = r"""
import importlib.util, json, os, sys
from types import SimpleNamespace

spec = importlib.util.spec_from_file_location("superset_config", os.environ["SUPERSET_CONFIG_PATH"])
config = importlib.util.module_from_spec(spec)
spec.loader.exec_module(config)
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

serving, mart = sys.argv[1], sys.argv[2]
probes, statements = json.loads(sys.argv[3]), json.loads(sys.argv[4])
engine = create_engine(f"duckdb:///{serving}?access_mode=read_only", poolclass=NullPool)
out = {"duckdb": {}, "guard": {}}
raw = engine.raw_connection()
try:
    cursor = raw.cursor()
    for sql in probes:
        try:
            cursor.execute(sql)
            out["duckdb"][sql] = "ran: " + repr(cursor.fetchall())[:200]
        except Exception as error:
            out["duckdb"][sql] = f"{type(error).__name__}: {error}"
    cursor.execute(f"select count(*) from main.{mart}")
    out["rows"] = cursor.fetchall()[0][0]
finally:
    raw.close()
mutator = getattr(config, "SQL_QUERY_MUTATOR", None)
for sql in statements + [f"select count(*) from {mart}"]:
    try:
        mutated = mutator(sql, database=SimpleNamespace(backend="duckdb")) if mutator else sql
        out["guard"][sql] = "ran" if mutated == sql else "mutated: " + mutated
    except Exception as error:
        out["guard"][sql] = f"{type(error).__name__}: {error}"
print(json.dumps(out))
"""


def test_superset_duckdb_connections_refuse_by_themselves(pipeline_run, tmp_path):
    python = superset_server.superset_venv() / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Superset environment at {superset_server.superset_venv()}")
    settings = pipeline_run.settings
    probes = _probes(settings)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    }
    env.update(
        SUPERSET_CONFIG_PATH=str(SUPERSET_ASSETS_DIR / "superset_config.py"),
        SUPERSET_SECRET_KEY=secrets.token_urlsafe(48),
        SUPERSET_HOME=str(tmp_path),
    )
    roots = (settings.data_dir, Path(settings.lake_url))
    before = _files(*roots)
    direct = [p.sql for p in probes if p.duckdb_error is not None]
    proc = subprocess.run(
        [str(python), "-c", _CONFINED_SCRIPT, str(settings.serving_path), MART,
         json.dumps(direct), json.dumps([p.sql for p in probes])],
        env=env, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    failures = [
        f"{p.sql}\n  expected {p.duckdb_error!r}, got: {out['duckdb'][p.sql][:300]}"
        for p in probes
        if p.sql in direct and p.duckdb_error not in out["duckdb"][p.sql]
    ]
    failures += [
        f"{sql}\n  the guard let it through: {out['guard'][sql]}"
        for sql in [p.sql for p in probes if not p.is_select]
        if GUARD not in out["guard"][sql]
    ]
    assert not failures, "\n".join(failures)
    assert _files(*roots) == before
    assert out["rows"] == _mart_rows(pipeline_run)
    assert out["guard"][f"select count(*) from {MART}"] == "ran"

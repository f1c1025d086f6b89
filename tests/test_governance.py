"""Governance (README: Governance): no raw PII anywhere the pipeline writes, a tamper-evident
audit trail, an Admin-only audit dashboard, owner-only generated secrets, no secret in the
repository."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import zlib
from pathlib import Path

import duckdb
import pytest

from conftest import AIRFLOW_HOME
from inferwatch.audit import collect as audit
from inferwatch.config import PROJECT_ROOT
from inferwatch.serve.superset_sync import load_assets

INFERWATCH = str(Path(sys.executable).with_name("inferwatch"))

# ---------------------------------------------------------------- PII, from the raw files
#: Written here, independently of the PII policy: what a person would call PII in the raw logs.
RAW_PATTERNS = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "phone": re.compile(r"\+\d{1,3}(?:[ .-]?\(?\d{2,4}\)?){2,4}\d"),
    "ip": re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])"),
    "user_id": re.compile(r'"user_id"\s*:\s*"([^"\n]+)"'),
}
#: Characters a PII value is made of: any occurrence lies inside one run of them.
TOKEN = re.compile(r"[A-Za-z0-9._%+@:-]+")
SQL_TOKEN = r"[A-Za-z0-9._%+@:-]+"


def _read_raw(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":  # the simulator truncates one gzip object: read what zlib can
        data = zlib.decompressobj(wbits=31).decompress(data)
    return data.decode("utf-8", errors="replace")


def raw_pii(lake: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {kind: set() for kind in RAW_PATTERNS}
    for path in (lake / "raw").rglob("*"):
        if path.is_file():
            text = _read_raw(path)
            for kind, pattern in RAW_PATTERNS.items():
                found[kind].update(pattern.findall(text))
    return found


def _text_tokens(data: bytes) -> set[str]:
    if data[:2] == b"\x1f\x8b":
        with contextlib.suppress(OSError, EOFError):
            data = gzip.decompress(data)
    return set(TOKEN.findall(data.decode("utf-8", errors="ignore")))


def _duckdb_tokens(con: duckdb.DuckDBPyConnection, relation: str) -> set[str]:
    query = f"select * from {relation}"
    columns = [row[0] for row in con.execute(f"describe {query}").fetchall()]
    if not columns:
        return set()
    text = " || ' ' || ".join(f"coalesce(\"{c}\"::VARCHAR, '')" for c in columns)
    rows = con.execute(
        f"select distinct unnest(regexp_extract_all({text}, '{SQL_TOKEN}')) from ({query})"
    ).fetchall()
    return {row[0] for row in rows}


def _relations(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "select database_name, schema_name, table_name from duckdb_tables() "
        "union all select database_name, schema_name, view_name from duckdb_views() "
        "where not internal"
    ).fetchall()
    return [f'"{d}"."{s}"."{t}"' for d, s, t in rows]


def _database_tokens(path: Path) -> set[str]:
    tokens: set[str] = set()
    with duckdb.connect(str(path), read_only=True) as con:
        for name in _relations(con):
            tokens |= _duckdb_tokens(con, name)
    return tokens


def _sqlite_bytes(path: Path) -> bytes:
    """A live SQLite file's bytes, read through SQLite: a plain open and close of the file in
    this process would drop the POSIX locks of the process's own SQLite connections to it
    (Airflow's session), and a write by another process could then meet a stale page cache
    here ("database disk image is malformed")."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        return con.serialize()


def haystacks(roots: list[Path], skip: tuple[Path, ...]) -> dict[str, set[str]]:
    """``{file: tokens}`` of every file under ``roots``: DuckDB files table by table (views
    too), Parquet through DuckDB, everything else as text (gzip opened)."""
    out: dict[str, set[str]] = {}
    with duckdb.connect() as scratch:
        for root in roots:
            for path in sorted(root.rglob("*")):
                if not path.is_file() or any(path.is_relative_to(s) for s in skip):
                    continue
                if path.suffix == ".duckdb":
                    out[str(path)] = _database_tokens(path)
                elif path.suffix == ".parquet":
                    out[str(path)] = _duckdb_tokens(scratch, f"read_parquet('{path}')")
                elif path.suffix == ".db":
                    out[str(path)] = _text_tokens(_sqlite_bytes(path))
                else:
                    out[str(path)] = _text_tokens(path.read_bytes())
    return out


def hits(values: set[str], tokens: set[str]) -> set[str]:
    """The values found in ``tokens``: as a whole token, or inside one (a value is made of
    token characters only, so it can never straddle two tokens)."""
    found = values & tokens
    if not values:
        return found
    lengths = sorted({len(v) for v in values})
    anchors = {v[:2] for v in values}
    for token in tokens:
        if len(token) <= lengths[0] or not any(a in token for a in anchors):
            continue
        for size in lengths:
            for start in range(len(token) - size + 1):
                if token[start : start + size] in values:
                    found.add(token[start : start + size])
    return found


@pytest.fixture(scope="module")
def pii_values(sim_lake) -> dict[str, set[str]]:
    lake, _ = sim_lake
    found = raw_pii(lake)
    # the simulator writes each kind: an empty set would make the search below prove nothing
    assert len(found["email"]) > 500, {k: len(v) for k, v in found.items()}
    assert len(found["phone"]) > 50 and len(found["ip"]) > 500 and len(found["user_id"]) > 1000
    # the person's name, as the local part of their address ("jane.doe42")
    found["name"] = {email.split("@")[0] for email in found["email"]}
    return found


def test_no_raw_pii_value_anywhere_the_pipeline_wrote(pipeline_run, sim_lake, pii_values):
    lake, _ = sim_lake
    settings = pipeline_run.settings
    assert settings.warehouse_path.exists() and settings.serving_path.exists()
    assert settings.ops_path.exists() and audit.published_path(settings).exists()
    assert any((lake / "bronze").rglob("*.parquet")) and any((lake / "quarantine").rglob("*"))
    assert any(settings.data_docs_dir.rglob("*.html"))
    task_logs = "".join(p.read_text() for p in (AIRFLOW_HOME / "logs").rglob("*.log"))
    assert "Returned value was" in task_logs and "task_id=ingest" in task_logs, task_logs[:500]
    found = haystacks(
        [settings.data_dir, lake, AIRFLOW_HOME],
        skip=(lake / "raw", lake / "reference", settings.data_dir / "truth"),
    )
    tables = {}
    for name, path in (("warehouse", settings.warehouse_path), ("serving", settings.serving_path),
                       ("ops", settings.ops_path)):  # fmt: skip
        with duckdb.connect(str(path), read_only=True) as con:
            tables[f"{name} tables"] = len(_relations(con))
    searched = {
        **tables,
        "bronze files": sum("/bronze/" in f for f in found),
        "quarantine files": sum("/quarantine/" in f for f in found),
        "data docs files": sum(f.startswith(str(settings.data_docs_dir)) for f in found),
        "airflow files": sum(f.startswith(str(AIRFLOW_HOME)) for f in found),
    }
    assert all(searched.values()), searched
    # the search finds what is there: the raw files themselves are full of hits
    sample = next((lake / "raw").rglob("*.jsonl"))
    assert hits(pii_values["email"] | pii_values["user_id"], _text_tokens(sample.read_bytes()))
    leaks = {}
    for kind, values in pii_values.items():
        for name, tokens in found.items():
            if leaked := hits(values, tokens):
                leaks[f"{kind} in {name}"] = sorted(leaked)[:5]
    assert leaks == {}, json.dumps(leaks, indent=1)[:4000]


def test_user_ids_are_keyed_hashes_and_ips_keep_only_country_and_region(pipeline_run):
    with pipeline_run.warehouse() as con:
        hashes = con.execute(
            "select count(distinct user_hash), min(length(user_hash)), max(length(user_hash)) "
            "from fct_inferences where user_hash is not null"
        ).fetchone()
        countries = (
            {
                r[0]
                for r in con.execute(
                    "select distinct geo_country from fct_inferences where geo_country is not null"
                ).fetchall()
            }
            if "geo_country" in {c[0] for c in con.execute("describe fct_inferences").fetchall()}
            else None
        )
    assert hashes[0] > 1000 and hashes[1] == hashes[2] == 64
    if countries is not None:
        assert countries <= {"DE", "FR", "US", "GB", "ES", "NL", "BR", "IN"}


# ---------------------------------------------------------------- the audit trail
def _verify(path: Path, settings) -> subprocess.CompletedProcess:
    """`inferwatch audit verify` of ``path`` with the audit key and anchors of ``settings``."""
    return subprocess.run(
        [INFERWATCH, "audit", "verify", "--file", str(path), "--data-dir", str(settings.data_dir),
         "--lake", settings.lake_url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_audit_rows_from_the_pipeline_run_chain_and_verify(pipeline_run):
    settings = pipeline_run.settings
    ledger = audit.ledger_path(settings)
    with duckdb.connect(str(ledger), read_only=True) as con:
        by_source = dict(
            con.execute("select source, count(*) from mart_audit_log group by 1").fetchall()
        )
        outcome = con.execute(
            "select action from mart_audit_log where source = 'pipeline' order by seq"
        ).fetchall()
    # the run's own `audit` task: its outcome, and Airflow's event log of the run
    assert outcome == [("run published",)], outcome
    assert by_source.get("airflow_log", 0) > 0, by_source
    result = _verify(ledger, settings)
    assert result.returncode == 0 and "audit chain OK" in result.stdout, result.stdout


def test_audit_collect_is_incremental_and_records_airflow_actions(pipeline_run, tmp_path):
    settings = pipeline_run.settings
    env = {**os.environ, "AIRFLOW_HOME": str(AIRFLOW_HOME)}
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run(
        [airflow, "dags", "pause", "inferwatch_pipeline"],
        env=env, check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    subprocess.run(
        [airflow, "dags", "unpause", "inferwatch_pipeline"],
        env=env, check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    first = audit.collect(settings, use_superset=False)
    second = audit.collect(settings, use_superset=False)
    assert first["airflow_log"] >= 2 and first["airflow_dag_run"] >= 1, first
    assert {k: v for k, v in second.items() if k.startswith(("airflow", "pipeline"))} == {
        "pipeline": 0, "airflow_log": 0, "airflow_dag_run": 0,
    }, second  # fmt: skip
    with duckdb.connect(str(audit.ledger_path(settings)), read_only=True) as con:
        pauses = con.execute(
            "select actor, action, object_id from mart_audit_log "
            "where source = 'airflow_log' and action like '%pause%' order by seq"
        ).fetchall()
        duplicates = con.execute(
            "select count(*) from (select source, source_id from mart_audit_log "
            "group by all having count(*) > 1)"
        ).fetchone()[0]
        runs = con.execute(
            "select action, object_id from mart_audit_log where source = 'airflow_dag_run'"
        ).fetchall()
    assert [a for _, a, _ in pauses] == ["cli_dag_pause", "cli_dag_unpause"], pauses
    assert all(o == "inferwatch_pipeline" for *_, o in pauses)
    assert duplicates == 0
    assert ("dag run success", "inferwatch_pipeline/") in {(a, o[:20]) for a, o in runs}, runs
    assert _verify(audit.ledger_path(settings), settings).returncode == 0


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "reason"),
    [
        ("update mart_audit_log set actor = 'someone else' where seq = 3", 3, "edited"),
        ("update mart_audit_log set details = null where seq = 2", 2, "edited"),
        ("delete from mart_audit_log where seq = 4", 5, "row 4 deleted"),
        ("delete from mart_audit_log where seq = (select max(seq) from mart_audit_log)", None,
         "last rows deleted"),
    ],
)  # fmt: skip
def test_editing_or_deleting_an_audit_row_fails_verify_naming_it(
    pipeline_run, tmp_path, tamper, bad_seq, reason
):
    copy = tmp_path / "ledger.duckdb"
    shutil.copy(audit.ledger_path(pipeline_run.settings), copy)
    with duckdb.connect(str(copy)) as con:
        rows = con.execute("select count(*) from mart_audit_log").fetchone()[0]
        assert rows >= 6
        con.execute(tamper)
    result = _verify(copy, pipeline_run.settings)
    assert result.returncode == 1, result.stdout + result.stderr
    expected_seq = rows if bad_seq is None else bad_seq
    assert f"BROKEN at row seq={expected_seq}:" in result.stdout, result.stdout
    assert reason in result.stdout, result.stdout


# ---------------------------------------------------------------- Superset: audit is Admin only
def _audit_ids(superset_synced) -> tuple[int, int, list[int]]:
    assets = load_assets()
    ids = superset_synced.ids
    dashboard = ids["dashboard"][assets["dashboards/audit.yaml"]["uuid"]]
    dataset = ids["dataset"][assets["datasets/inferwatch_audit/mart_audit_log.yaml"]["uuid"]]
    charts = [ids["chart"][c["uuid"]] for n, c in assets.items() if n.startswith("charts/audit/")]
    return dashboard, dataset, charts


def _status(client, path: str) -> int:
    return client.http.get(f"{client.url}{path}", timeout=60).status_code


def test_stakeholder_and_analyst_cannot_open_the_audit_dashboard_or_dataset(superset_synced):
    dashboard, dataset, charts = _audit_ids(superset_synced)
    database = superset_synced.ids["database"][
        load_assets()["databases/inferwatch_audit.yaml"]["uuid"]
    ]
    admin = superset_synced.client()
    # the Admin sees it, and its charts answer with the ledger's figures
    assert _status(admin, f"/api/v1/dashboard/{dashboard}") == 200
    for chart in charts:
        result = admin.request("GET", f"/api/v1/chart/{chart}/data/")["result"][0]
        assert result["status"] == "success", result.get("error")
    with duckdb.connect(str(audit.published_path(superset_synced.settings)), read_only=True) as con:
        (rows,) = con.execute("select count(*) from mart_audit_log").fetchone()
    by_actor = admin.request("GET", f"/api/v1/chart/{charts[0]}/data/")["result"][0]["data"]
    assert rows > 0
    assert sum(r["events"] for r in by_actor) == rows  # charts/audit/by_actor.yaml
    for username in ("stakeholder", "analyst"):
        client = superset_synced.client(username)  # a real login with the generated password
        listed = client.request("GET", "/api/v1/dashboard/?q=(page_size:100)")["result"]
        assert dashboard not in {d["id"] for d in listed}, username
        assert _status(client, f"/api/v1/dashboard/{dashboard}") in (403, 404), username
        assert _status(client, "/api/v1/dashboard/audit") in (403, 404), username
        assert _status(client, f"/api/v1/dataset/{dataset}") in (403, 404), username
        for chart in charts:
            assert _status(client, f"/api/v1/chart/{chart}/data/") in (403, 404), username
        page = client.http.get(f"{client.url}/superset/dashboard/audit/", timeout=60)
        assert page.status_code != 200 or "/login" in page.url or "Audit trail" not in page.text
        sql = client.http.post(
            f"{client.url}/api/v1/sqllab/execute/",
            json={"database_id": database, "sql": "select count(*) from mart_audit_log",
                  "runAsync": False, "schema": "main"},
            timeout=60,
        )  # fmt: skip
        assert sql.status_code != 200, (username, sql.text[:300])


def test_superset_actions_and_sql_reach_the_audit_trail(superset_synced):
    settings = superset_synced.settings
    dashboard, _, charts = _audit_ids(superset_synced)
    admin = superset_synced.client()
    admin.request("GET", f"/api/v1/dashboard/{dashboard}")
    admin.request("GET", f"/api/v1/chart/{charts[0]}/data/")
    analyst = superset_synced.client("analyst")
    serving = superset_synced.ids["database"][
        load_assets()["databases/inferwatch_serving.yaml"]["uuid"]
    ]
    marker = "select count(*) as n from mart_inference_hourly -- audit probe jane@example.com"
    response = analyst.http.post(
        f"{analyst.url}/api/v1/sqllab/execute/",
        json={"database_id": serving, "sql": marker, "runAsync": False, "schema": "main"},
        timeout=60,
    )
    assert response.status_code == 200, response.text[:500]
    appended = audit.collect(settings, superset_client=admin)
    assert appended["superset_log"] > 0 and appended["superset_query"] >= 1, appended
    again = audit.collect(settings, superset_client=admin)
    with duckdb.connect(str(audit.ledger_path(settings)), read_only=True) as con:
        queries = con.execute(
            "select actor, object_id, details from mart_audit_log where source = 'superset_query'"
        ).fetchall()
        opened = con.execute(
            "select count(*) from mart_audit_log where source = 'superset_log' "
            "and actor = 'admin' and object_type = 'dashboard' and object_id = ?",
            [str(dashboard)],
        ).fetchone()[0]
        duplicates = con.execute(
            "select count(*) from (select source, source_id from mart_audit_log "
            "group by all having count(*) > 1)"
        ).fetchone()[0]
    assert duplicates == 0, again
    probe = [q for q in queries if "audit probe" in (q[2] or "")]
    assert probe and probe[0][0] == "analyst" and probe[0][1] == "InferWatch serving", queries
    assert "jane@example.com" not in probe[0][2] and "[redacted:email]" in probe[0][2]
    assert opened >= 1
    assert audit.verify(audit.ledger_path(settings)).ok


# ---------------------------------------------------------------- secrets
def test_generated_secrets_are_owner_only_and_git_ignored(tmp_path):
    from inferwatch.secrets import GENERATED, ensure_secrets

    path = tmp_path / "secrets.env"
    first = ensure_secrets(path)
    assert set(GENERATED) <= set(first)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_secrets(path) == first  # never regenerated
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "data/secrets.env"], cwd=PROJECT_ROOT, check=False
    )
    assert ignored.returncode == 0


def test_user_hash_key_comes_from_the_environment_then_an_airflow_connection(monkeypatch):
    from inferwatch.orchestrate import current_settings

    monkeypatch.delenv("INFERWATCH_USER_HASH_KEY", raising=False)
    key = "key-from-airflow"
    connection = {"conn_type": "generic", "password": key}
    monkeypatch.setenv("AIRFLOW_CONN_INFERWATCH_USER_HASH", json.dumps(connection))
    assert current_settings().user_hash_key == key
    monkeypatch.setenv("INFERWATCH_USER_HASH_KEY", "key-from-env")
    assert current_settings().user_hash_key == "key-from-env"


def test_secret_scanner_finds_nothing_new_in_the_repository():
    """detect-secrets over every git-tracked file, with the plugins and filters of the reviewed
    ``.secrets.baseline``: every finding must be in the baseline, reviewed as not a secret.
    Compared by (file, type, hashed value), not line, so that edits elsewhere do not matter."""
    from detect_secrets import SecretsCollection
    from detect_secrets.core import baseline as ds_baseline
    from detect_secrets.settings import default_settings

    path = PROJECT_ROOT / ".secrets.baseline"
    reviewed = ds_baseline.load_from_file(str(path))
    unreviewed = [
        (name, item["type"], item["line_number"])
        for name, items in reviewed["results"].items()
        for item in items
        if item.get("is_secret") is not False
    ]
    assert unreviewed == [], "baseline entries not reviewed as false positives"
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    # the baseline holds the reviewed findings' hashes: detect-secrets never scans its own baseline
    files = [f for f in files if f and f != ".secrets.baseline" and (PROJECT_ROOT / f).is_file()]
    assert len(files) > 100
    cwd = os.getcwd()
    os.chdir(PROJECT_ROOT)  # detect-secrets names files relative to the working directory
    try:
        with default_settings():
            known = ds_baseline.load(reviewed, str(path))
            found = SecretsCollection()
            for name in files:  # one process: forking this threaded test process can hang
                found.scan_file(name)
    finally:
        os.chdir(cwd)
    new = [(name, s.type, s.line_number) for name, s in found - known]
    assert new == [], f"possible secrets (add a reviewed baseline entry only if false): {new}"

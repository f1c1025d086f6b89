"""Gaps between steps and state anyone could rewrite or read (issue 18): publish refuses a
warehouse changed since it was validated, secrets are generated once under a lock, a journal of
a live swap on another host is left alone, every state file is owner-only, and the audit chain
is keyed and anchored outside its file.

The cheap cases run on a small lake in ``tmp_path`` without dbt; the ones that need a built
and validated warehouse reuse the session's ``pipeline_run``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from conftest import AIRFLOW_HOME, settings_for
from inferwatch import pipeline
from inferwatch.audit import collect as audit
from inferwatch.lake import Lake
from inferwatch.maintain import journal
from inferwatch.publish import record_run
from inferwatch.secrets import ensure_secrets
from pipeline_steps import key_of, raw_object

LOOSE_BITS = stat.S_IRWXG | stat.S_IRWXO


def loose_paths(root: Path) -> list[str]:
    """Every file or folder under ``root`` (and root) that grants group or other anything."""
    found = []
    for path in [root, *(root.rglob("*") if root.is_dir() else [])]:
        if not path.is_symlink() and path.lstat().st_mode & LOOSE_BITS:
            found.append(f"{path.relative_to(root)} {stat.filemode(path.lstat().st_mode)}")
    return found


# ---------------------------------------------------------------- validate → publish
def validation_of(settings) -> dict:
    """What the DAG's validate task returned in the session's run (its XCom), as publish got it."""
    from airflow.models.xcom import XComModel
    from airflow.sdk.serde import deserialize
    from airflow.utils.session import create_session

    (record,) = [json.loads(p.read_text()) for p in settings.runs_dir.glob("*.json")]
    with create_session() as session:
        row = (
            session.query(XComModel.value)
            .filter_by(dag_id="inferwatch_pipeline", task_id="validate", key="return_value")
            .filter_by(run_id=record["run_id"])
            .one()
        )
    return deserialize(row.value)


def test_publish_refuses_a_warehouse_changed_since_validation(pipeline_run, tmp_path):
    """A second writer (a rebuild, another run's transform) between validate and publish: the
    served catalog stays what it was, and the run is recorded as held back."""
    source = pipeline_run.settings
    validation = validation_of(source)
    assert validation["passed_gate"]
    settings = settings_for(source.lake_url, tmp_path / "state")
    # the validated warehouse and the served catalog, as they were (copies keep mtimes)
    shutil.copytree(source.warehouse_path.parent, settings.warehouse_path.parent)
    shutil.copy2(source.serving_path, settings.serving_path)
    served = settings.serving_path.stat()
    with duckdb.connect(str(settings.warehouse_path)) as con:  # what a rebuild would change
        con.execute("update mart_inference_hourly set requests = requests + 1")

    with pytest.raises(pipeline.GateFailed, match="changed since it was validated"):
        pipeline.publish(settings, "late", validation, {}, datetime.now(UTC).isoformat())
    after = settings.serving_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (served.st_ino, served.st_mtime_ns)
    (record,) = [json.loads(p.read_text()) for p in settings.runs_dir.glob("*.json")]
    assert record["outcome"] == "held_back" and "changed since" in record["message"]


# ---------------------------------------------------------------- secrets
def _first_run(path: str, barrier, results) -> None:
    """A first run's ``ensure_secrets``, held after its first read of the file until every
    other caller has read it too: the widest window two first runs can hit."""
    from inferwatch import secrets as module

    read, waited = module.read_secrets, []

    def read_then_wait(target):
        values = read(target)
        if not waited:
            waited.append(True)
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
        return values

    module.read_secrets = read_then_wait
    try:
        results.put(("ok", module.ensure_secrets(Path(path))["INFERWATCH_USER_HASH_KEY"]))
    except Exception as error:  # noqa: BLE001 - reported to the parent
        results.put(("error", repr(error)))


def test_simultaneous_first_runs_generate_one_user_hash_key(tmp_path):
    from inferwatch.config import read_secrets

    callers = 6
    path = tmp_path / "data" / "secrets.env"
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(callers), context.Queue()
    processes = [
        context.Process(target=_first_run, args=(str(path), barrier, results))
        for _ in range(callers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert [status for status, _ in outcomes] == ["ok"] * callers, outcomes
    keys = {key for _, key in outcomes}
    assert keys == {read_secrets(path)["INFERWATCH_USER_HASH_KEY"]}, keys
    assert path.read_text().count("INFERWATCH_USER_HASH_KEY=") == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ---------------------------------------------------------------- journals on a shared lake
def _swap_in_progress(lake: Lake, owner: dict, started: datetime, lease: timedelta) -> set[str]:
    """A compaction's journal as its owner wrote it, one of two outputs landed so far."""
    inputs = ["bronze/events/batch=1/0.parquet"]
    outputs = ["bronze/events/day=x/part-c.parquet", "bronze/events/day=y/part-c.parquet"]
    lake.write_bytes(inputs[0], b"old")
    lake.write_bytes(outputs[0], b"new")
    plan = {"outputs": outputs, "inputs": inputs, "owner": owner, "started_at": started.isoformat(),
            "lease_until": (started + lease).isoformat()}  # fmt: skip
    lake.write_bytes(f"{journal.JOURNAL_PREFIX}/compact-1.json", json.dumps(plan).encode())
    return {o.key for o in lake.list("bronze")}


def _dead_pid() -> int:
    process = multiprocessing.get_context("fork").Process(target=lambda: None)
    process.start()
    process.join()
    return process.pid


@pytest.mark.parametrize(
    ("case", "recovered"),
    [("live on another host", False), ("lease expired on another host", True),
     ("dead on this host", True)],
)  # fmt: skip
def test_recover_leaves_a_live_swap_of_another_host_alone(tmp_path, case, recovered):
    lake = Lake(str(tmp_path / "lake"))
    now = datetime.now(UTC)
    other = {"host": "worker-2.example", "boot_id": "another-boot", "pid": os.getpid()}
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    here = {"host": socket.gethostname(), "boot_id": boot, "pid": _dead_pid()}
    owner, started, lease = {
        "live on another host": (other, now - timedelta(minutes=5), timedelta(hours=1)),
        "lease expired on another host": (other, now - timedelta(hours=2), timedelta(hours=1)),
        "dead on this host": (here, now - timedelta(minutes=5), timedelta(hours=1)),
    }[case]
    before = _swap_in_progress(lake, owner, started, lease)

    assert journal.recover(lake) == int(recovered)
    after = {o.key for o in lake.list("bronze")}
    if recovered:  # undone: the one landed output goes, the input stays, the journal goes
        assert after == {"bronze/events/batch=1/0.parquet"}
    else:
        assert after == before


# ---------------------------------------------------------------- owner-only state
def small_lake(root: Path):
    lake = Lake(str(root / "lake"))
    for n in range(2):
        lake.write_bytes(key_of(n), raw_object(n))
    return lake, settings_for(lake.url, root / "data")


@pytest.fixture
def shell_umask():
    """The umask a shell usually gives a process (an earlier test may have tightened it)."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_state_files_are_owner_only(tmp_path, monkeypatch, shell_umask):
    """The steps that need no dbt, on a small lake: nothing they write under the data dir
    grants group or other anything."""
    monkeypatch.delenv("INFERWATCH_AUDIT_KEY", raising=False)
    monkeypatch.delenv(audit.AIRFLOW_DB_ENV, raising=False)
    lake, settings = small_lake(tmp_path)
    report = pipeline.ingest(settings, lake, pipeline.discover(lake), "modes")
    pipeline.publish(settings, "modes", {"passed_gate": True}, report, "2025-05-20T00:00:00")
    ensure_secrets(settings.secrets_path)
    audit.collect(settings, use_superset=False)
    assert (settings.data_dir / "secrets.env").exists() and settings.ops_path.exists()
    assert loose_paths(settings.data_dir) == []


def test_an_existing_data_dir_is_made_owner_only_in_place(tmp_path, shell_umask):
    """A data dir an older version left world-readable is tightened at its first step."""
    lake, settings = small_lake(tmp_path)
    for folder in ("warehouse", "airflow", "runs"):
        (settings.data_dir / folder).mkdir(parents=True)
    (settings.data_dir / "airflow" / "passwords.json").write_text('{"admin": "x"}')
    (settings.data_dir / "warehouse" / "warehouse.duckdb").write_bytes(b"")
    settings.data_dir.chmod(0o755)
    assert loose_paths(settings.data_dir)
    pipeline.ingest(settings, lake, pipeline.discover(lake), "upgrade")
    assert loose_paths(settings.data_dir) == []


def test_the_session_runs_state_is_owner_only(pipeline_run):
    """The whole DAG run (dbt, GX, Data Docs, publish, audit) in `inferwatch run`'s way."""
    assert loose_paths(pipeline_run.settings.data_dir) == []
    assert loose_paths(AIRFLOW_HOME / "airflow.db") == []


# ---------------------------------------------------------------- the audit chain
def _unkeyed_hash(prev: str, row: dict) -> str:
    """The chain as it was first written: SHA-256 of the previous hash and the row's JSON."""
    columns = ("seq", "source", "source_id", "event_ts", "actor", "action", "object_type",
               "object_id", "details", "recorded_at")  # fmt: skip

    def text(value):
        if isinstance(value, datetime):
            return value.isoformat(timespec="microseconds")
        return None if value is None else str(value)

    payload = json.dumps([text(row[c]) for c in columns], ensure_ascii=False)
    return hashlib.sha256(f"{prev}\n{payload}".encode()).hexdigest()


def rehash_without_the_key(ledger: Path, edit: str) -> None:
    """What someone who can write the ledger file but not read the key can do: edit a row,
    then re-hash every row after it and the stored head so that the chain holds again."""
    with duckdb.connect(str(ledger)) as con:
        con.execute(edit)
        cursor = con.execute("select * from mart_audit_log order by seq")
        names = [d[0] for d in cursor.description]
        prev = "0" * 64
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            new = _unkeyed_hash(prev, row)
            con.execute("update mart_audit_log set prev_hash = ?, row_hash = ? where seq = ?",
                        [prev, new, row["seq"]])  # fmt: skip
            prev = new
        (count,) = con.execute("select count(*) from mart_audit_log").fetchone()
        con.execute("update audit_head set head_seq = ?, head_hash = ?", [count, prev])


def runs(settings, *ids: str) -> None:
    """Run records r<n>, finished n minutes past noon (what the `pipeline` source reads)."""
    for run_id in ids:
        finished = datetime(2025, 5, 20, 12, int(run_id[1:])).isoformat()
        record_run(settings, run_id, {"run_id": run_id, "finished_at": finished,
                                      "outcome": "published", "gate_passed": True})  # fmt: skip


def verify_cli(settings) -> tuple[int, str]:
    from inferwatch.cli import main

    result = CliRunner().invoke(main, ["audit", "verify", "--data-dir", str(settings.data_dir)])
    return result.exit_code, result.output


@pytest.fixture
def audited(tmp_path, monkeypatch):
    """A data dir with a short audit chain (run records only), its key generated on first use."""
    monkeypatch.delenv("INFERWATCH_AUDIT_KEY", raising=False)
    monkeypatch.delenv(audit.AIRFLOW_DB_ENV, raising=False)  # only the run records: seq known
    lake = Lake(str(tmp_path / "lake"))
    settings = settings_for(lake.url, tmp_path / "data")
    monkeypatch.setenv("INFERWATCH_LAKE_URL", lake.url)  # what the CLI reads
    monkeypatch.setenv("INFERWATCH_DATA_DIR", str(settings.data_dir))
    runs(settings, "r1", "r2", "r3")
    audit.collect(settings, use_superset=False)
    return settings, lake


@pytest.mark.parametrize(
    "edit",
    ["update mart_audit_log set actor = 'someone else' where seq = 2",
     "delete from mart_audit_log where seq = 3"],
)  # fmt: skip
def test_a_chain_rehashed_without_the_key_fails_verify_and_the_next_append(audited, edit):
    settings, lake = audited
    assert verify_cli(settings)[0] == 0
    rehash_without_the_key(audit.ledger_path(settings), edit)

    code, output = verify_cli(settings)
    assert code == 1 and "audit chain BROKEN at row seq=" in output, output
    runs(settings, "r4")
    with pytest.raises(RuntimeError, match="audit chain BROKEN"):
        audit.collect(settings, use_superset=False)
    with duckdb.connect(str(audit.ledger_path(settings)), read_only=True) as con:
        actions = [a for (a,) in con.execute("select action from mart_audit_log").fetchall()]
    assert "run published" in actions and len(actions) <= 3  # r4 was not chained on top
    incidents = [json.loads(lake.read_bytes(o.key)) for o in lake.list("audit/incidents")]
    assert len(incidents) == 1 and "BROKEN" in incidents[0]["verification"], incidents


def test_anchored_heads_catch_a_rewrite_even_with_the_key(audited):
    """Someone who also stole the key re-hashes a shortened chain: the heads anchored in the
    lake (written once, never overwritten) no longer match."""
    from inferwatch.audit import ledger

    settings, lake = audited
    heads = [o.key for o in lake.list("audit/heads")]
    assert [h.split("/")[-1][:13] for h in heads] == ["000000000003-"], heads
    key = audit.audit_key(settings)
    with duckdb.connect(str(audit.ledger_path(settings))) as con:
        con.execute("delete from mart_audit_log where seq = 3")
        con.execute("update audit_head set head_seq = 2, "
                    "head_hash = (select row_hash from mart_audit_log where seq = 2)")  # fmt: skip
        assert ledger.verify(con, key).ok  # the file alone holds together
    code, output = verify_cli(settings)
    assert code == 1 and "anchored" in output, output


def test_an_unkeyed_ledger_is_reanchored_once(audited):
    """A ledger an older version wrote (SHA-256 only, no key) is verified as it was, keyed from
    the next row on, with an entry saying so; its old rows keep their hashes."""
    settings, lake = audited
    path = audit.ledger_path(settings)
    with duckdb.connect(str(path)) as con:
        con.execute("delete from audit_keying")
    rehash_without_the_key(path, "select 1")
    for anchor in lake.list("audit/heads"):
        lake.remove(anchor.key)
    with duckdb.connect(str(path), read_only=True) as con:
        old = con.execute("select seq, row_hash from mart_audit_log order by seq").fetchall()

    runs(settings, "r4")
    audit.collect(settings, use_superset=False)
    audit.collect(settings, use_superset=False)
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute("select seq, row_hash, action from mart_audit_log order by seq")
        rows = rows.fetchall()
    assert [(s, h) for s, h, _ in rows[:3]] == old
    assert [a for *_, a in rows[3:]] == ["audit chain keyed and re-anchored", "run published"]
    assert verify_cli(settings)[0] == 0
    assert [o.key.split("/")[-1][:12] for o in lake.list("audit/heads")] == ["000000000005"]

"""What the quarantine checks judge: each run not yet passed, on its own, less acknowledged
objects.

Small warehouses written here with DuckDB (the table the checks read, mart_ingestion_by_model,
as dbt builds it), validated with the data dir's gate state as the pipeline's validate step
does, and published. tests/test_gate.py runs the same checks end to end through Airflow
(junk published with an alert, a model losing lines, a run mostly quarantined).
"""

from __future__ import annotations

import contextlib
import json
import stat
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from click.testing import CliRunner

from conftest import settings_for
from inferwatch import pipeline
from inferwatch.audit.collect import ledger_path
from inferwatch.cli import main
from inferwatch.validate import validate

SUITES = ["quarantine", "junk"]
T1 = datetime(2026, 1, 1, 10)
T2 = datetime(2026, 1, 1, 11)
T3 = datetime(2026, 1, 1, 12)
WRONG_TYPE = "wrong type: latency_ms (number expected)"
TABLE = """
create or replace table mart_ingestion_by_model (
    object_key varchar, batch_id varchar, ingested_at timestamp, model varchar,
    events_loaded bigint, lines_quarantined bigint, top_reason varchar
)
"""


def add(settings, *rows: tuple, replace_object: str | None = None) -> None:
    """Land a batch in the candidate warehouse (a rewritten object replaces its rows)."""
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute(TABLE.replace("create or replace table", "create table if not exists"))
        if replace_object:
            con.execute(
                "delete from mart_ingestion_by_model where object_key = ?", [replace_object]
            )
        con.executemany("insert into mart_ingestion_by_model values (?, ?, ?, ?, ?, ?, ?)", rows)


def gate(settings, run_id: str) -> dict:
    """The validate step on the quarantine suites, then publish: what each said."""
    outcome = validate(
        settings.warehouse_path, run_id=run_id, data_docs_dir=settings.data_docs_dir,
        suites=SUITES, gate_dir=settings.gate_dir,
    )  # fmt: skip
    validation = {
        "passed_gate": outcome.passed_gate, "results": outcome.results,
        "failed_critical": outcome.failed_critical, "summary": outcome.summary(),
        # what pipeline.validate records: publish refuses a warehouse changed since
        "fingerprint": pipeline.warehouse_fingerprint(settings),
    }  # fmt: skip
    with contextlib.suppress(pipeline.GateFailed):  # held back: ops says so below
        pipeline.publish(settings, run_id, validation, {}, datetime.now(UTC).isoformat())
    with duckdb.connect(str(settings.ops_path), read_only=True) as ops:
        (published,) = ops.sql(
            "select outcome from pipeline_runs where run_id = ?", params=[run_id]
        ).fetchone()
    failed = {
        f"{r['suite']}.{r['column']}": json.loads(r["details"] or "[]")
        for r in outcome.results
        if not r["success"]
    }
    return {"outcome": published, "failed": failed, "results": outcome.results,
            "summary": outcome.summary()}  # fmt: skip


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> dict:
    """Four runs and an acknowledgement on one data dir; each stage recorded as it was."""
    root = tmp_path_factory.mktemp("gate-run")
    settings = settings_for(str(root / "lake"), root / "state")
    seen = {}

    # 1. A good object and 27 lines of junk: published, with a warning.
    add(settings, ("raw/a.jsonl", "A", T1, "fraud_detector", 80, 0, None),
        ("raw/junk.jsonl", "A", T1, None, 0, 27, "invalid JSON"))  # fmt: skip
    seen["junk"] = gate(settings, "run-1")
    seen["gate_files"] = {
        path.name: stat.S_IMODE(path.stat().st_mode) for path in settings.gate_dir.iterdir()
    }

    # 2. fraud_detector loses 12 of 60 lines in this run (8.6% of its lines so far, 20% of
    #    the run's); churn 5 of 105.
    add(settings, ("raw/b.jsonl", "B", T2, "fraud_detector", 48, 12, WRONG_TYPE),
        ("raw/b.jsonl", "B", T2, "churn", 100, 5, WRONG_TYPE))  # fmt: skip
    seen["broken"] = gate(settings, "run-2")
    # 3. A clean run of ten times the volume: the held run is judged again, on its own.
    add(settings, ("raw/c.jsonl", "B2", T3, "fraud_detector", 600, 0, None))
    seen["again"] = gate(settings, "run-3")

    # 4. Acknowledged on the command line (a typo is refused): the next run publishes.
    # This lake, whatever an earlier test's in-process run left in INFERWATCH_LAKE_URL: the
    # acknowledgement is anchored in the lake the environment names.
    cli = CliRunner(env={"INFERWATCH_LAKE_URL": settings.lake_url})
    data_dir = ["--data-dir", str(settings.data_dir)]
    seen["typo"] = cli.invoke(
        main, ["quarantine", "acknowledge", "raw/nope.jsonl", "--reason", "x", *data_dir]
    )
    seen["cli"] = cli.invoke(main, ["quarantine", "acknowledge", "raw/b.jsonl", *data_dir,
                                    "--reason", "producer fixed in 2.3; hour lost"])  # fmt: skip
    seen["acknowledged_mode"] = stat.S_IMODE(
        (settings.gate_dir / "acknowledged.json").stat().st_mode
    )
    assert seen["cli"].exit_code == 0, seen["cli"].output
    seen["acknowledged"] = gate(settings, "run-4")
    with duckdb.connect(str(ledger_path(settings)), read_only=True) as ledger:
        seen["audit"] = ledger.sql(
            "select actor, action, object_type, object_id, details from mart_audit_log"
        ).fetchall()

    # 5. The object is rewritten after the acknowledgement, broken again: judged again.
    later = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=1)
    add(settings, ("raw/b.jsonl", "C", later, "fraud_detector", 30, 10, WRONG_TYPE),
        replace_object="raw/b.jsonl")  # fmt: skip
    seen["rewritten"] = gate(settings, "run-5")
    return seen


def test_junk_publishes_with_a_warning(stages):
    junk = stages["junk"]
    assert junk["outcome"] == "published"
    assert set(junk["failed"]) == {"junk.junk_lines", "junk.object_quarantined_share"}
    (row,) = junk["failed"]["junk.junk_lines"]
    assert row == {"object_key": "raw/junk.jsonl", "junk_lines": 27,
                   "top_reason": "invalid JSON", "junk_lines_in_run": 27}  # fmt: skip
    assert stages["gate_files"] == {"state.json": 0o600}  # what passed, owner-only


def test_a_model_losing_over_a_tenth_of_the_runs_lines_holds_until_acknowledged(stages):
    broken = stages["broken"]
    assert broken["outcome"] == "held_back"
    # The run is ingest B: fraud_detector lost 12 of its 60 lines there (20% > 10%), although
    # only 12 of its 140 lines so far; churn 5 of 105; the run 17 of 165.
    assert set(broken["failed"]) == {"quarantine.model_quarantined_share"}
    (row,) = broken["failed"]["quarantine.model_quarantined_share"]
    assert row == {"batch_id": "B", "model": "fraud_detector", "lines": 60,
                   "lines_quarantined": 12,
                   "quarantined_share": 0.2, "top_reason": WRONG_TYPE,
                   "objects": ["raw/b.jsonl"]}  # fmt: skip
    assert "inferwatch quarantine acknowledge" in broken["summary"]
    assert "raw/b.jsonl" in broken["summary"]
    # Not diluted by the clean run after it (12 of 660 lines would be under 10%).
    assert stages["again"]["outcome"] == "held_back"
    assert stages["again"]["failed"] == broken["failed"]


def test_acknowledging_the_object_publishes_the_next_run_with_an_audit_entry(stages):
    assert stages["typo"].exit_code == 1 and "no quarantined line" in stages["typo"].output
    assert "raw/b.jsonl" in stages["typo"].output  # it names what could be meant
    assert stages["cli"].exit_code == 0, stages["cli"].output
    assert stages["acknowledged_mode"] == 0o600
    done = stages["acknowledged"]
    assert done["outcome"] == "published" and done["failed"] == {}
    ((actor, action, object_type, object_id, details),) = stages["audit"]
    assert (action, object_type, object_id) == ("quarantine_acknowledge", "raw_object",
                                                "raw/b.jsonl")  # fmt: skip
    assert actor and json.loads(details) == {
        "reason": "producer fixed in 2.3; hour lost", "lines_quarantined": 12 + 5,
    }  # fmt: skip
    (row,) = [r for r in done["results"] if r["column"] == "acknowledged_object"]
    assert (row["suite"], row["severity"], row["success"]) == ("quarantine", "info", True)
    assert row["observed_value"] == "raw/b.jsonl: 17 quarantined lines left out"
    assert "producer fixed in 2.3" in row["threshold"]
    # A later version of the object is judged again.
    rewritten = stages["rewritten"]
    assert rewritten["outcome"] == "held_back"
    (row,) = rewritten["failed"]["quarantine.model_quarantined_share"]
    assert (row["lines"], row["lines_quarantined"]) == (40, 10)


def test_a_run_mostly_quarantined_holds_the_build_even_as_junk(tmp_path):
    settings = settings_for(str(tmp_path / "lake"), tmp_path / "state")
    add(settings, ("raw/x.jsonl", "D", T1, None, 0, 31, "invalid JSON"),
        ("raw/y.jsonl", "D", T1, "churn", 30, 0, None))  # fmt: skip
    held = gate(settings, "run-d")
    assert held["outcome"] == "held_back"
    assert "quarantine.quarantined_share" in held["failed"]
    assert "quarantine.model_quarantined_share" not in held["failed"]
    (row,) = held["failed"]["quarantine.quarantined_share"]
    assert (row["batch_id"], row["lines"], row["lines_quarantined"], row["junk_lines"]) == (
        "D",
        61,
        31,
        31,
    )


def test_a_data_dir_from_before_the_gate_state_judges_only_runs_after_its_last_publish(tmp_path):
    """Upgraded in place: what the last published run had ingested is not judged again."""
    settings = settings_for(str(tmp_path / "lake"), tmp_path / "state")
    add(settings, ("raw/old-junk.jsonl", "A", T1, None, 0, 50, "invalid JSON"),
        ("raw/new.jsonl", "B", T2, "churn", 30, 1, WRONG_TYPE))  # fmt: skip
    settings.runs_dir.mkdir(parents=True)
    record = {"run_id": "old", "gate_passed": True, "finished_at": (T1 + timedelta(minutes=5))}
    (settings.runs_dir / "old.json").write_text(json.dumps(record, default=str))
    assert gate(settings, "run-upgraded")["outcome"] == "published"

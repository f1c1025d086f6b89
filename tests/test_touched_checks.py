"""Data tests read the partitions a build touched, and dbt's parse is kept across runs.

On a copy of the session's pipeline run, only fct_inferences' data tests are re-run as the
pipeline's build runs them (`dbt test --select fct_inferences`, its column and grain tests
folded into one `model_checks` node; a few seconds each) on a warehouse planted with violations,
in partitions the last passing build checked and in ones it did not; the gate once.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime

import duckdb
import pytest

from conftest import settings_for
from inferwatch import pipeline, transform
from inferwatch.lake import Lake

SCOPED = re.compile(r"from (\(select \* from .*\)) as dbt_subquery", re.DOTALL)
FAILED = re.compile(r"\(failed: (.*)\)$")


@pytest.fixture(scope="module")
def built(pipeline_run, tmp_path_factory):
    """A copy of the session pipeline run's data dir (its build passed its tests and the gate),
    over the same lake (only read here)."""
    state = tmp_path_factory.mktemp("touched") / "state"
    shutil.copytree(pipeline_run.settings.data_dir, state)
    settings = settings_for(pipeline_run.settings.lake_url, state)
    return settings, Lake(settings.lake_url)


def dbt_log_size(settings) -> int:
    path = settings.data_dir / "dbt" / "logs" / "dbt.log"
    return path.stat().st_size if path.exists() else 0


def run_fct_inferences_tests(settings, lake) -> tuple[transform.BuildResult, str]:
    """fct_inferences' data tests as the pipeline's build runs them (folded), and what dbt
    logged meanwhile."""
    offset = dbt_log_size(settings)
    manifest = transform.parse(settings, lake)
    outcome = transform.run_dbt(
        settings, lake, "test", *transform.PRODUCTION_BUILD, "--select", "fct_inferences",
        "--exclude", *transform.folded_exclusion(manifest), manifest=manifest,
    )  # fmt: skip
    with (settings.data_dir / "dbt" / "logs" / "dbt.log").open("rb") as fh:
        fh.seek(offset)
        return outcome, fh.read().decode(errors="replace")


def rows_tested(settings, test_name: str) -> int:
    """How many rows of its model the folded test reads in the compiled model_checks node (its
    scoped subquery, counted)."""
    compiled = next(
        (settings.data_dir / "dbt" / "target" / "compiled").rglob("model_checks_fct_inferences_*")
    ).read_text()
    part = next(p for p in compiled.split("union all") if f"'{test_name}' as failed_check" in p)
    match = SCOPED.search(part)
    assert match, f"{test_name} is not scoped:\n{part}"
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.sql(f"select count(*) from {match.group(1)} as scoped").fetchone()[0]


def failed_tests(outcome: transform.BuildResult) -> set[str]:
    """The failed tests, folded ones by their own name (model_checks names them)."""
    names = set()
    for failure in outcome.failures:
        folded = FAILED.search(failure)
        if folded:
            names |= {check.rsplit(" ", 1)[0] for check in folded.group(1).split(", ")}
        else:
            names.add(failure.split(":")[0])
    return names


def test_docs_page_kept_when_project_and_schema_unchanged(built):
    settings, lake = built
    index = settings.dbt_docs_dir / "index.html"
    written = index.stat().st_mtime_ns  # by the run's transform
    offset = dbt_log_size(settings)
    assert transform.generate_docs(settings, lake) == index
    assert index.stat().st_mtime_ns == written
    assert dbt_log_size(settings) == offset  # dbt was not invoked


def test_nothing_new_tests_no_row(built):
    settings, lake = built
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        (checked_through,) = con.sql(
            "select checked_through from inferwatch_data_test_state"
        ).fetchone()
        (newest,) = con.sql("select max(ingested_at) from fct_inferences").fetchone()
    assert newest < checked_through  # the build began after the ingest it built from

    # (the copy's first dbt command parses in full: dbt's saved parse is keyed by the profile's
    # values, and the copied warehouse has another path)
    outcome, _ = run_fct_inferences_tests(settings, lake)

    assert outcome.success and outcome.nodes >= 1
    for name in ("not_null_fct_inferences_event_id", "unique_fct_inferences_event_id"):
        assert rows_tested(settings, name) == 0


def test_violations_in_checked_partitions_are_not_reread(built):
    """An event duplicated by a touched row fails `unique` (the semi-join reaches the untouched
    copy); a null planted in an untouched row is not read; once its row is touched, it fails.
    And dbt parses only what changed since the command before."""
    settings, lake = built
    now = datetime.now(UTC).replace(tzinfo=None)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        (old_id,) = con.sql("select min(event_id) from fct_inferences").fetchone()
        con.execute(
            "insert into fct_inferences select * replace (? as ingested_at) "
            "from fct_inferences where event_id = ?",
            [now, old_id],
        )
        con.execute(
            "update fct_inferences set model = null where event_id = "
            "(select max(event_id) from fct_inferences)"
        )
    try:
        outcome, logged = run_fct_inferences_tests(settings, lake)
        # dbt reused the parse of the command before (target path in the data dir)
        assert "Partial parsing enabled" in logged, logged[-3000:]
        assert "Unable to do partial parsing" not in logged
        assert failed_tests(outcome) == {"unique_fct_inferences_event_id"}
        assert rows_tested(settings, "unique_fct_inferences_event_id") == 2
        assert rows_tested(settings, "not_null_fct_inferences_model") == 1  # the new copy

        with duckdb.connect(str(settings.warehouse_path)) as con:
            con.execute("update fct_inferences set ingested_at = ? where model is null", [now])
        outcome, _ = run_fct_inferences_tests(settings, lake)
        assert "not_null_fct_inferences_model" in failed_tests(outcome)
    finally:
        with duckdb.connect(str(settings.warehouse_path)) as con:
            con.execute("delete from fct_inferences where ingested_at = ?", [now])


def contract_rows(settings) -> int:
    """How many rows the contract suite's batch reads under the gate's current window."""
    from inferwatch.validate import gate_state
    from inferwatch.validate.policy import Policy
    from inferwatch.validate.scopes import plan_batches
    from inferwatch.validate.suites import load_suite_specs

    window = gate_state.load_window(settings.gate_dir)
    batches = plan_batches(
        settings.warehouse_path, load_suite_specs(["contract"]), Policy.load(None), window=window
    )
    # the row checks' batch (the shape checks read the table's metadata only)
    batch = next(b for b in batches if any(
        e["type"] == "expect_column_values_to_be_unique" for e in b.spec.expectations
    ))  # fmt: skip
    source = f"({batch.query})" if batch.query else batch.spec.table
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.sql(f"select count(*) from {source} as batch").fetchone()[0]


def contract_failures(validation: dict) -> set[str]:
    return {
        row["column"] or row["expectation"]
        for row in validation["results"]
        if row["suite"] == "contract" and not row["success"]
    }


def test_gate_reads_the_touched_rows(built):
    """The contract reads the rows ingested since the last build that passed: none after a
    pass; a violation planted there holds the build back (and is read again next time, as
    nothing passed), one in a row an earlier gate passed is not read again."""
    settings, _ = built
    assert contract_rows(settings) == 0  # the run passed the gate

    now = datetime.now(UTC).replace(tzinfo=None)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute(
            "insert into fct_inferences select * replace ('planted-new' as event_id, "
            "-1.0 as latency_ms, ? as ingested_at) from fct_inferences limit 1",
            [now],
        )
        con.execute(
            "update fct_inferences set confidence = 5 where event_id = "
            "(select min(event_id) from fct_inferences)"
        )
    try:
        assert contract_rows(settings) == 1
        held = pipeline.validate(settings, "touched-v2")
        assert not held["passed_gate"]
        assert contract_failures(held) == {"latency_ms"}
        assert contract_rows(settings) == 1  # held back: the next run reads it again
    finally:
        with duckdb.connect(str(settings.warehouse_path)) as con:
            con.execute("delete from fct_inferences where event_id = 'planted-new'")


def test_a_new_row_repeating_an_old_event_id_fails_uniqueness(built):
    """The key checks read the touched rows and every row sharing their key, so a new row
    with an old row's event_id is a duplicate; the other row checks read only the new row."""
    from inferwatch.validate import gate_state
    from inferwatch.validate.policy import Policy
    from inferwatch.validate.scopes import plan_batches
    from inferwatch.validate.suites import load_suite_specs

    settings, _ = built
    now = datetime.now(UTC).replace(tzinfo=None)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        # not min(event_id): the test above left a bad confidence there (an old row)
        old = con.sql("select max(event_id) from fct_inferences").fetchone()[0]
        con.execute(
            "insert into fct_inferences select * replace (? as ingested_at) "
            "from fct_inferences where event_id = ?",
            [now, old],
        )
    try:
        batches = plan_batches(
            settings.warehouse_path, load_suite_specs(["contract"]), Policy.load(None),
            window=gate_state.load_window(settings.gate_dir),
        )  # fmt: skip
        read = {}
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            for batch in batches:
                if batch.query:
                    read[batch.name] = con.sql(f"select count(*) from ({batch.query})").fetchone()
        assert read == {"contract[touched]": (1,), "contract[touched-keys]": (2,)}
        held = pipeline.validate(settings, "touched-duplicate")
        assert not held["passed_gate"]
        assert contract_failures(held) == {"event_id"}
    finally:
        with duckdb.connect(str(settings.warehouse_path)) as con:
            con.execute("delete from fct_inferences where ingested_at = ?", [now])

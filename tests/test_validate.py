"""The validation gate's critical suites against small DuckDB warehouses built here with duckdb.

The per-model suites (freshness, volume, drift, output distribution) need the marts of a real
build: tests/test_validation_suites.py runs them on the simulated lake's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from inferwatch.validate import ValidationOutcome, validate

ROWS = 200
GATE_SUITES = ["contract", "reconciliation", "quarantine"]
OBJECTS = ("raw/2025/05/20/a.jsonl", "raw/2025/05/20/b.jsonl.gz")

FCT_INFERENCES = f"""
create table fct_inferences as
select
    'evt-' || i::varchar                                      as event_id,
    'customer_churn'                                          as model,
    'v2'                                                      as model_version,
    timestamp '2025-05-20 00:00:00' + to_seconds(i)           as event_ts,
    date '2025-05-20'                                         as event_day,
    '/predict'                                                as endpoint,
    'client-' || (i % 3)::varchar                             as client_id,
    case when i % 4 = 0 then null else sha256('user-' || (i % 17)::varchar) end as user_hash,
    case when i % 10 = 0 then 'error' else 'ok' end           as status,
    case when i % 10 = 0 then 'timeout' end                   as error_type,
    case when i % 10 = 0 then 'model timed out' end           as error_message,
    case when i % 10 = 0 then null else (i % 250)::double end as latency_ms,
    case when i % 10 = 0 then null else (i % 101) / 100.0 end::double as confidence,
    case when i % 2 = 0 then 'churn' else 'stay' end          as prediction,
    (i % 3)::integer                                          as retry_count,
    i % 7 = 0                                                 as fallback,
    'req-' || i::varchar                                      as request_id,
    '{OBJECTS[0]}'                                            as object_key,
    (i + 1)::bigint                                           as line_number,
    timestamp '2025-05-20 01:00:00'                           as ingested_at
from range({ROWS}) as t(i)
"""

# 2 quarantined lines of 210 read: a share of ~0.0095, under the default ceiling of 0.05.
MART_INGESTION = f"""
create table mart_ingestion as
select * from (values
    ('{OBJECTS[0]}', 205::bigint, 200::bigint, 2::bigint, 3::bigint, 0::bigint, 0::bigint,
     'loaded', timestamp '2025-05-20 01:00:00'),
    ('{OBJECTS[1]}', 5::bigint, 0::bigint, 0::bigint, 5::bigint, 0::bigint, 0::bigint,
     'loaded', timestamp '2025-05-20 01:00:00')
) as t(object_key, lines_read, lines_loaded, lines_quarantined, lines_blank, lines_merged,
       lines_duplicate, status, ingested_at)
"""

FCT_QUARANTINE = f"""
create table fct_quarantine as
select '{OBJECTS[0]}' as object_key, line_number::bigint as line_number,
       'not a JSON object' as reason, '{{"truncated' as raw_line,
       timestamp '2025-05-20 01:00:00' as ingested_at
from (values (7), (42)) as t(line_number)
"""


# The same 2 quarantined lines, by model and batch (what dbt builds from the two above).
MART_INGESTION_BY_MODEL = f"""
create table mart_ingestion_by_model as
select * from (values
    ('{OBJECTS[0]}', 'b1', timestamp '2025-05-20 01:00:00', 'customer_churn', 200::bigint,
     2::bigint, 'not a JSON object')
) as t(object_key, batch_id, ingested_at, model, events_loaded, lines_quarantined, top_reason)
"""


def build_warehouse(path: Path, *breakage: str) -> Path:
    """Write a warehouse that meets every expectation, then apply the given SQL to break it."""
    tables = (FCT_INFERENCES, MART_INGESTION, FCT_QUARANTINE, MART_INGESTION_BY_MODEL)
    with duckdb.connect(str(path)) as con:
        for statement in (*tables, *breakage):
            con.execute(statement)
    return path


@pytest.fixture(scope="module")
def good_warehouse(tmp_path_factory) -> Path:
    return build_warehouse(tmp_path_factory.mktemp("good") / "warehouse.duckdb")


@pytest.fixture(scope="module")
def good_outcome(good_warehouse, tmp_path_factory) -> ValidationOutcome:
    docs = tmp_path_factory.mktemp("docs")
    return validate(good_warehouse, run_id="run-good", data_docs_dir=docs, suites=GATE_SUITES)


def validate_broken(tmp_path: Path, *breakage: str, **kwargs) -> ValidationOutcome:
    path = build_warehouse(tmp_path / "warehouse.duckdb", *breakage)
    kwargs.setdefault("suites", GATE_SUITES)
    return validate(path, run_id="run-broken", data_docs_dir=tmp_path / "docs", **kwargs)


def test_good_warehouse_passes_the_gate(good_outcome):
    failed = [r for r in good_outcome.results if not r["success"]]
    assert failed == []
    assert good_outcome.passed_gate
    assert good_outcome.failed_critical == []
    assert {r["suite"] for r in good_outcome.results} == set(GATE_SUITES)
    assert "gate passed" in good_outcome.summary()


def test_result_rows_carry_what_mart_data_quality_needs(good_outcome):
    keys = {
        "run_id",
        "suite",
        "severity",
        "expectation",
        "column",
        "success",
        "observed_value",
        "threshold",
        "validated_at",
        "model",
        "model_version",
        "details",
    }
    assert all(set(row) == keys for row in good_outcome.results)
    assert {row["run_id"] for row in good_outcome.results} == {"run-good"}
    assert all(isinstance(row["observed_value"], str) for row in good_outcome.results)
    between = next(
        row
        for row in good_outcome.results
        if row["expectation"] == "expect_column_values_to_be_between"
        and row["column"] == "confidence"
    )
    assert between["threshold"] == "between 0.0 and 1.0"
    assert between["severity"] == "critical"
    share = next(row for row in good_outcome.results if row["column"] == "quarantined_share")
    assert share["threshold"] == "in every run, quarantined lines / its lines <= 0.5"


def test_data_docs_index_is_written(good_outcome):
    index = good_outcome.data_docs_index
    assert index is not None and index.name == "index.html" and index.is_file()
    assert "contract" in index.read_text()


def test_warehouse_is_not_locked_after_validation(good_outcome, good_warehouse):
    # Same process, read-write: DuckDB refuses this while any read-only handle survives.
    with duckdb.connect(str(good_warehouse)) as con:
        con.execute("create table written_after_validation as select 1 as x")
        assert con.execute("select count(*) from fct_inferences").fetchone() == (ROWS,)


def test_duplicated_event_id_fails_the_contract(tmp_path):
    outcome = validate_broken(
        tmp_path, "insert into fct_inferences select * from fct_inferences where event_id = 'evt-1'"
    )
    assert not outcome.passed_gate
    assert outcome.failed_critical == ["contract.expect_column_values_to_be_unique(event_id)"]
    assert "expect_column_values_to_be_unique(event_id)" in outcome.summary()
    # The file is released after a failing run too.
    duckdb.connect(str(tmp_path / "warehouse.duckdb")).close()


def test_object_that_does_not_reconcile_fails(tmp_path):
    outcome = validate_broken(
        tmp_path, f"update mart_ingestion set lines_read = 6 where object_key = '{OBJECTS[1]}'"
    )
    assert outcome.failed_critical == ["reconciliation.object_reconciles"]
    row = next(r for r in outcome.results if r["column"] == "object_reconciles")
    assert row["observed_value"] == "1 unexpected rows"
    # The failing rows themselves come along, so the dashboard names the object.
    assert json.loads(row["details"]) == [{"object_key": OBJECTS[1]}]


def test_confidence_above_one_fails(tmp_path):
    outcome = validate_broken(
        tmp_path, "update fct_inferences set confidence = 1.5 where event_id = 'evt-3'"
    )
    assert outcome.failed_critical == ["contract.expect_column_values_to_be_between(confidence)"]
    row = next(r for r in outcome.results if not r["success"])
    assert "1.5" in row["observed_value"]


def test_user_hash_that_is_not_a_digest_fails_without_echoing_it(tmp_path):
    outcome = validate_broken(
        tmp_path,
        "update fct_inferences set user_hash = 'alice@example.com' where event_id = 'evt-5'",
    )
    assert outcome.failed_critical == ["contract.user_hash"]
    assert "alice" not in repr(outcome.results)


def test_missing_column_fails_and_names_it(tmp_path):
    outcome = validate_broken(tmp_path, "alter table fct_inferences drop column retry_count")
    assert "contract.expect_table_columns_to_match_set" in outcome.failed_critical
    assert "contract.expect_column_values_to_be_between(retry_count)" in outcome.failed_critical
    columns_row = next(
        r for r in outcome.results if r["expectation"] == "expect_table_columns_to_match_set"
    )
    assert "retry_count" in columns_row["observed_value"]


def test_quarantine_ceiling_is_configurable(tmp_path, good_warehouse):
    shutil.copy(good_warehouse, tmp_path / "warehouse.duckdb")
    outcome = validate(
        tmp_path / "warehouse.duckdb",
        run_id="run-strict",
        data_docs_dir=tmp_path / "docs",
        suites=["quarantine"],
        thresholds={"quarantine_share_ceiling": 0.005},
    )
    assert outcome.failed_critical == ["quarantine.quarantined_share"]
    row = next(r for r in outcome.results if r["column"] == "quarantined_share")
    assert row["threshold"].endswith("<= 0.005")


def test_unknown_threshold_is_refused(good_warehouse, tmp_path):
    with pytest.raises(ValueError, match="quarantine_ceiling"):
        validate(
            good_warehouse,
            run_id="run-typo",
            data_docs_dir=tmp_path,
            thresholds={"quarantine_ceiling": 0.01},
        )


def test_a_model_losing_lines_fails_although_the_runs_share_is_low(tmp_path):
    """One producer breaking the contract: 30 of fraud_detector's 40 lines, 1% of the run."""
    bad = "raw/2025/05/20/renamed.jsonl"
    outcome = validate_broken(
        tmp_path,
        "insert into mart_ingestion_by_model values "
        f"('{bad}', 'b1', timestamp '2025-05-20 01:00:00', 'fraud_detector', 10, 30, "
        "'wrong type: latency_ms (number expected)'), "
        f"('{bad}', 'b1', timestamp '2025-05-20 01:00:00', 'customer_churn', 3000, 0, null)",
    )
    assert outcome.failed_critical == ["quarantine.model_quarantined_share"]
    row = next(r for r in outcome.results if r["column"] == "model_quarantined_share")
    assert json.loads(row["details"]) == [
        {
            "batch_id": "b1",
            "model": "fraud_detector",
            "lines": 40,
            "lines_quarantined": 30,
            "quarantined_share": 0.75,
            "top_reason": "wrong type: latency_ms (number expected)",
            "objects": [bad],
        }
    ]


def test_a_suite_whose_table_is_missing_fails_and_says_so(tmp_path):
    outcome = validate_broken(tmp_path, "drop table mart_ingestion")
    assert outcome.failed_critical == ["reconciliation.table_exists"]
    row = next(r for r in outcome.results if r["suite"] == "reconciliation")
    assert row["observed_value"] == "no table mart_ingestion in the warehouse"


def test_policy_severity_must_be_known_and_per_model_only_where_the_suite_is(tmp_path):
    from inferwatch.validate import load_suite_specs
    from inferwatch.validate.policy import Policy

    specs = load_suite_specs()
    typo = tmp_path / "typo.yml"
    typo.write_text("defaults:\n  severity: {drift: fatal}\n")
    with pytest.raises(ValueError, match="fatal"):
        Policy.load(typo)
    whole_table = tmp_path / "whole.yml"
    whole_table.write_text("models:\n  m1:\n    severity: {contract: warning}\n")
    with pytest.raises(ValueError, match="whole table"):
        Policy.load(whole_table).check_against(specs)
    unknown = tmp_path / "unknown.yml"
    unknown.write_text("models:\n  m1:\n    thresholds: {freshness_hours: 2}\n")
    with pytest.raises(ValueError, match="freshness_hours"):
        Policy.load(unknown).check_against(specs)


def test_a_broken_check_fails_alone_and_the_next_still_runs(tmp_path, good_warehouse):
    """DuckDB aborts the transaction on an error; the checks after it must still be answered."""
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "broken.json").write_text(
        json.dumps(
            {
                "table": "fct_inferences",
                "severity": "warning",
                "expectations": [
                    {
                        "type": "unexpected_rows_expectation",
                        "kwargs": {"unexpected_rows_query": "select 1000000 * 3600 from {batch}"},
                        "meta": {"check": "overflows"},
                    },
                    {
                        "type": "unexpected_rows_expectation",
                        "kwargs": {
                            "unexpected_rows_query": "select event_id from {batch} "
                            "where confidence > 0.95"
                        },
                        "meta": {"check": "confident"},
                    },
                ],
            }
        )
    )
    shutil.copy(good_warehouse, tmp_path / "warehouse.duckdb")
    outcome = validate(
        tmp_path / "warehouse.duckdb", run_id="run-broken-sql", data_docs_dir=tmp_path / "docs",
        expectations_dir=suites,
    )  # fmt: skip
    rows = {r["column"]: r for r in outcome.results}
    assert rows["overflows"]["observed_value"].startswith("error:")
    assert "Overflow" in rows["overflows"]["observed_value"]
    with duckdb.connect(str(good_warehouse), read_only=True) as con:
        (expected,) = con.sql(
            "select count(*) from fct_inferences where confidence > 0.95"
        ).fetchone()
    assert expected > 0
    assert rows["confident"]["observed_value"] == f"{expected} unexpected rows"
    assert outcome.passed_gate  # a warning suite, however broken, does not hold the build back


def test_suite_pages_are_rendered_again_only_when_their_suite_changed(good_warehouse, tmp_path):
    """Data Docs: each run's results get their page, but a suite's page is re-rendered only
    when the suite itself (expectations, thresholds) changed since it was last rendered."""
    docs = tmp_path / "docs"

    def run(run_id: str, **kwargs) -> dict[str, int]:
        validate(good_warehouse, run_id=run_id, data_docs_dir=docs, suites=GATE_SUITES, **kwargs)
        assert list((docs / "validations").glob(f"*/{run_id}/*/*.html"))  # this run's pages
        return {p.name: p.stat().st_mtime_ns for p in (docs / "expectations").glob("*.html")}

    first = run("run-1")
    assert set(first) >= {"contract.html", "reconciliation.html", "quarantine.html"}
    assert run("run-2") == first  # nothing changed: no suite page written again
    third = run("run-3", thresholds={"quarantine_share_ceiling": 0.25})
    assert {name for name in first if third[name] != first[name]} == {"quarantine.html"}
    assert "0.25" in (docs / "expectations" / "quarantine.html").read_text()

"""Run every batch in one GX checkpoint against the closed DuckDB warehouse, read-only.

The SQL datasource needs a persisted connection on DuckDB (see
:func:`_enable_duckdb_persisted_connection`), and every engine is disposed before returning
so the file is not left locked for the publish step.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import duckdb
import great_expectations as gx
import sqlalchemy as sa
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier
from great_expectations.execution_engine import sqlalchemy_execution_engine

from inferwatch.config import EXPECTATIONS_DIR
from inferwatch.state_file import read_json, write_json
from inferwatch.validate import gate_state
from inferwatch.validate.policy import Policy
from inferwatch.validate.results import (
    ValidationOutcome,
    acknowledgement_row,
    clip_json,
    missing_table_row,
    outcome_of,
    rows_of,
)
from inferwatch.validate.scopes import Batch, plan_batches
from inferwatch.validate.suites import GATE_SEVERITY, build_suite, load_suite_specs

log = logging.getLogger(__name__)


class _DropReflectionNotice(logging.Filter):
    """GX warns once per type expectation that it has no DuckDB dialect module and compares
    with SQLAlchemy's generic types, which is exactly what the contract's types are written
    in: twenty identical warnings a run would only bury real ones in the task log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No sqlalchemy dialect found" not in record.getMessage()


logging.getLogger("great_expectations.expectations.type_comparison").addFilter(
    _DropReflectionNotice()
)

DATASOURCE_NAME = "warehouse"
DOCS_SITE_NAME = "inferwatch"
#: Example rows kept from a failed SQL check: enough to name the feature and day, or the
#: object and reason, without copying a table into the ops file.
SAMPLE_ROWS = 20


class _DialectName(str):
    """A dialect name that also answers ``.value``, as GX's ``GXSqlDialect`` members do."""

    @property
    def value(self) -> str:
        return str(self)


def _enable_duckdb_persisted_connection() -> None:
    """Make GX keep one connection open for DuckDB.

    GX's SQL engine otherwise closes each connection before fetching the result, and
    duckdb-engine then yields no rows: every metric fails with "list index out of range"
    (great_expectations#10738). GX keeps a persisted connection (StaticPool) for the dialects
    in ``_PERSISTED_CONNECTION_DIALECTS``; it compares entries both with ``==`` against the
    dialect name and through ``.value`` against the URL, hence the str subclass.
    """
    module = sqlalchemy_execution_engine
    dialects = module._PERSISTED_CONNECTION_DIALECTS
    if "duckdb" not in [getattr(d, "value", d) for d in dialects]:
        module._PERSISTED_CONNECTION_DIALECTS = (*dialects, _DialectName("duckdb"))


def _ephemeral_context(data_docs_dir: Path) -> Any:
    docs_site = {
        "class_name": "SiteBuilder",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(data_docs_dir),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={DOCS_SITE_NAME: docs_site},
        analytics_enabled=False,
        # tqdm bars would flood the Airflow task log.
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _read_only_url(warehouse_path: Path, duckdb_config: dict[str, str]) -> str:
    # Read-only: validation must never write the candidate, and a shared lock lets readers
    # of the same file (a debugging session) coexist with it. duckdb-engine passes the URL's
    # query as the connection's config (threads, memory_limit).
    query = urlencode({"access_mode": "read_only", **duckdb_config})
    return f"duckdb:///{warehouse_path.resolve()}?{query}"


def _add_validation_definitions(
    context: Any, datasource: Any, batches: list[Batch], suites: list[gx.ExpectationSuite]
) -> list[gx.ValidationDefinition]:
    """One asset and whole-asset batch definition per slice, one definition per suite."""
    definitions, batch_definitions = [], {}
    for batch, suite in zip(batches, suites, strict=True):
        key = batch.query or batch.spec.table
        if key not in batch_definitions:
            if batch.query is None:
                # No schema_name (deprecated in GX 1.x): DuckDB resolves tables in ``main``.
                asset = datasource.add_table_asset(name=batch.name, table_name=batch.spec.table)
            else:
                asset = datasource.add_query_asset(name=batch.name, query=batch.query)
            batch_definitions[key] = asset.add_batch_definition_whole_table(name=batch.name)
        context.suites.add(suite)
        definition = gx.ValidationDefinition(
            name=batch.name, data=batch_definitions[key], suite=suite
        )
        definitions.append(context.validation_definitions.add(definition))
    return definitions


def _recover_after_error(context: Any) -> None:
    """Roll DuckDB back after a failed statement, so one broken check fails alone.

    DuckDB aborts the open transaction on any error and refuses every later statement on the
    connection; GX runs all checks on one persisted connection and only recovers from
    SQLAlchemy's own PendingRollbackError, so without this every check after the first broken
    one would fail with "Current transaction is aborted".
    """
    connection = context.connection
    if connection is None or connection.closed:
        return
    with contextlib.suppress(duckdb.Error):  # no transaction was open: nothing to recover
        connection.connection.dbapi_connection.rollback()


def _dispose(datasource: Any) -> None:
    """Close every connection GX opened, so the DuckDB file is free when we return.

    The datasource keeps two engines: its own (reflection, connection tests) and the
    execution engine's StaticPool holding the persisted connection.
    """
    if datasource is None:
        return
    # Disposing a StaticPool closes the one DBAPI connection it holds, even while GX still
    # references its Connection wrapper.
    for engine in (datasource.get_engine(), datasource.get_execution_engine().engine):
        engine.dispose()


def _sample_failed_rows(
    warehouse_path: Path, failed: list[tuple[dict, Batch, str]], duckdb_config: dict[str, str]
) -> None:
    """Attach example rows to each failed SQL check (``details``), given (row, batch, query).

    GX returns a SQL check's rows only at result format COMPLETE, which would also make every
    column expectation return every failing value; re-running just the failed queries with a
    LIMIT is cheaper and bounded.
    """
    if not failed:
        return
    with duckdb.connect(str(warehouse_path), read_only=True, config=duckdb_config) as con:
        for row, batch, query in failed:
            source = batch.spec.table if batch.query is None else f"({batch.query})"
            sql = query.replace("{batch}", source)
            try:
                cursor = con.execute(f"select * from ({sql}) as failed limit {SAMPLE_ROWS}")
                names = [d[0] for d in cursor.description]
                sample = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
            except duckdb.Error as error:  # the check itself broke; GX already said how
                log.debug("no sample for %s: %s", batch.name, error)
                continue
            row["details"] = clip_json(sample)


def validate(
    warehouse_path: Path,
    *,
    run_id: str,
    data_docs_dir: Path,
    suites: list[str] | None = None,
    thresholds: dict | None = None,
    policy_path: Path | None = None,
    expectations_dir: Path = EXPECTATIONS_DIR,
    duckdb_config: dict[str, str] | None = None,
    gate_dir: Path | None = None,
) -> ValidationOutcome:
    """Run the expectation suites against a closed DuckDB warehouse in one GX checkpoint.

    ``suites`` names suite files (stems) in ``expectations_dir``; ``None`` runs them all.
    ``thresholds`` overrides suite thresholds by name for every model (an unknown name is an
    error); ``policy_path`` is the per-model policy file (:mod:`inferwatch.validate.policy`).
    The file is opened read-only; no other connection in this process may hold it read-write
    (DuckDB refuses a second configuration), so close dbt's connections first.
    ``duckdb_config`` (e.g. ``Settings.duckdb_config``: threads, memory_limit) applies to every
    connection validation opens. ``gate_dir`` keeps what the gate passed and the acknowledged
    objects (:mod:`inferwatch.validate.gate_state`); without it, run-scoped suites judge every
    row and a pass is not remembered.
    """
    duckdb_config = dict(duckdb_config or {})
    warehouse_path = Path(warehouse_path)
    if not warehouse_path.is_file():
        raise FileNotFoundError(f"no warehouse at {warehouse_path}")
    every_spec = load_suite_specs(expectations_dir=expectations_dir)
    specs = (
        every_spec
        if suites is None
        else load_suite_specs(suites, expectations_dir=expectations_dir)
    )
    policy = Policy.load(policy_path, thresholds)
    policy.check_against(every_spec)  # names in the policy refer to any suite, run or not
    window = gate_state.load_window(gate_dir)
    planned = plan_batches(warehouse_path, specs, policy, duckdb_config, window)
    batches = [batch for batch in planned if not batch.table_missing]
    run_batches = [batch for batch in batches if batch.spec.scope == "run"]
    suite_objects, skipped = [], []
    for batch in batches:
        suite, left_out = build_suite(
            batch.spec, batch.name, batch.severity, batch.thresholds, batch.partitions
        )
        suite_objects.append(suite)
        skipped.extend(f"{batch.name}.{name}: no training reference" for name in left_out)
    for note in skipped:
        log.info("not checked: %s", note)
    log.info(
        "validating %d batches of %d suites (policy: %s)", len(planned), len(specs), policy.source
    )

    data_docs_dir = Path(data_docs_dir).resolve()
    validated_at = datetime.now(UTC)
    rows = [
        missing_table_row(batch, run_id, validated_at) for batch in planned if batch.table_missing
    ]
    passed_through, acknowledged = None, []
    if run_batches:
        with duckdb.connect(str(warehouse_path), read_only=True, config=duckdb_config) as con:
            passed_through = gate_state.newest_ingested(con)
            acknowledged = gate_state.acknowledged_in_run(con, window)
        # Under the suite that would have held the build back.
        suite = max(run_batches, key=lambda b: b.severity == GATE_SEVERITY).spec.name
        rows += [acknowledgement_row(suite, ack, run_id, validated_at) for ack in acknowledged]
    if batches:
        rows += _run_checkpoint(
            warehouse_path, batches, suite_objects, run_id, validated_at, data_docs_dir,
            duckdb_config,
        )  # fmt: skip
    outcome = outcome_of(rows, run_id, data_docs_dir, skipped)
    if outcome.passed_gate and run_batches and gate_dir is not None:
        gate_state.record_pass(gate_dir, passed_through, run_id)
    return outcome


#: Which suite pages of the Data Docs site are rendered, and from what (a digest per suite).
SUITE_PAGES_STATE = ".inferwatch-suite-pages.json"


def _build_data_docs(context, result, suites: list, data_docs_dir: Path) -> None:
    """Render this run's results, the index, and the pages of the suites that changed, once.

    GX's UpdateDataDocsAction rebuilds the site, index included, once per validation result
    (two thirds of the gate's time with ~15 suites). A suite page depends only on the suite,
    which is the same run after run until its expectations or thresholds change: rendering
    ~20 unchanged suite pages again would be half of what is left."""
    state_path = data_docs_dir / SUITE_PAGES_STATE
    # unreadable: every page rendered again
    rendered = read_json(state_path, {}, unreadable_is_default=True)
    rendered = rendered if isinstance(rendered, dict) else {}
    digests = {suite.name: _suite_digest(suite) for suite in suites}
    changed = [
        ExpectationSuiteIdentifier(name=name)
        for name, digest in digests.items()
        if rendered.get(name) != digest or not _suite_page(data_docs_dir, name).is_file()
    ]
    context.build_data_docs(
        site_names=[DOCS_SITE_NAME], resource_identifiers=[*result.run_results, *changed]
    )
    write_json(state_path, {**rendered, **digests})


def _suite_digest(suite: gx.ExpectationSuite) -> str:
    """What a suite page is rendered from: the suite without the ids GX gives it on each
    run, and GX's version (its renderer)."""
    content = suite.to_json_dict()
    content.pop("id", None)
    for expectation in content.get("expectations", []):
        expectation.pop("id", None)
    text = json.dumps([gx.__version__, content], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _suite_page(data_docs_dir: Path, name: str) -> Path:
    return data_docs_dir / "expectations" / f"{name}.html"


def _run_checkpoint(
    warehouse_path: Path,
    batches: list[Batch],
    suites: list[gx.ExpectationSuite],
    run_id: str,
    validated_at: datetime,
    data_docs_dir: Path,
    duckdb_config: dict[str, str],
) -> list[dict]:
    """One GX checkpoint over every batch; Data Docs updated; result rows with samples."""
    _enable_duckdb_persisted_connection()
    data_docs_dir.mkdir(parents=True, exist_ok=True)
    context = _ephemeral_context(data_docs_dir)
    datasource = None
    try:
        datasource = context.data_sources.add_sql(
            name=DATASOURCE_NAME, connection_string=_read_only_url(warehouse_path, duckdb_config)
        )
        sa.event.listen(
            datasource.get_execution_engine().engine, "handle_error", _recover_after_error
        )
        definitions = _add_validation_definitions(context, datasource, batches, suites)
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name="inferwatch_gate",
                validation_definitions=definitions,
                # SUMMARY keeps at most 20 example values per expectation; COMPLETE would
                # pull every failing row of a 10M-row table into memory and Data Docs.
                result_format="SUMMARY",
            )
        )
        result = checkpoint.run(run_id=RunIdentifier(run_name=run_id, run_time=validated_at))
        _build_data_docs(context, result, suites, data_docs_dir)
    finally:
        _dispose(datasource)

    by_name = {batch.name: batch for batch in batches}
    rows, failed_sql = [], []
    for suite_result in result.run_results.values():
        batch = by_name[suite_result.suite_name]
        batch_rows = rows_of(suite_result, batch, run_id, validated_at)
        for row, expectation in zip(batch_rows, suite_result.results, strict=True):
            query = expectation.expectation_config.kwargs.get("unexpected_rows_query")
            if query and not row["success"]:
                failed_sql.append((row, batch, query))
        rows.extend(batch_rows)
    _sample_failed_rows(warehouse_path, failed_sql, duckdb_config)
    return rows

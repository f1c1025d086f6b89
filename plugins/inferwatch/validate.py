"""Validate a candidate warehouse with Great Expectations before it is published.

The expectation suites live in ``expectations/*.json`` as small, reviewable files::

    {"name": "contract", "table": "fct_inferences", "severity": "critical",
     "thresholds": {"some_ceiling": 0.05},
     "expectations": [{"type": "expect_column_values_to_be_unique",
                       "kwargs": {"column": "event_id"}, "meta": {}, "notes": "..."}]}

``${name}`` in any kwarg or meta string is replaced by the suite's threshold of that name (or
the caller's override), so a ceiling written into SQL stays configurable. Each suite checks
one table; suites of severity ``critical`` form the publishing gate, the others only warn.

:func:`validate` runs every suite in one GX checkpoint against the closed DuckDB file, opened
read-only, and writes a Data Docs site. The SQL datasource needs a persisted connection on
DuckDB (see :func:`_enable_duckdb_persisted_connection`), and every engine is disposed before
returning so the file is not left locked for the publish step.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import great_expectations as gx
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.execution_engine import sqlalchemy_execution_engine

from inferwatch.config import EXPECTATIONS_DIR

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

GATE_SEVERITY = "critical"
SEVERITIES = ("critical", "warning", "info")  # GX's own FailureSeverity values
DATASOURCE_NAME = "warehouse"
DOCS_SITE_NAME = "inferwatch"
_SUITE_KEYS = {"name", "table", "severity", "description", "notes", "thresholds", "expectations"}
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_MAX_TEXT = 500  # observed values end up in a dashboard table, not a log


# ---------------------------------------------------------------- suite files


@dataclass(frozen=True)
class SuiteSpec:
    """One ``expectations/<name>.json`` file, before thresholds are filled in."""

    name: str
    table: str
    severity: str
    expectations: list[dict]
    thresholds: dict[str, float] = field(default_factory=dict)
    description: str = ""

    @classmethod
    def from_file(cls, path: Path) -> SuiteSpec:
        raw = json.loads(path.read_text())
        # Strict on keys: a misspelt "severity" must not quietly take a suite off the gate.
        unknown = set(raw) - _SUITE_KEYS
        if unknown:
            raise ValueError(f"{path.name}: unknown keys {sorted(unknown)}")
        severity = raw["severity"]
        if severity not in SEVERITIES:
            raise ValueError(f"{path.name}: severity {severity!r} is not one of {SEVERITIES}")
        return cls(
            name=raw.get("name", path.stem),
            table=raw["table"],
            severity=severity,
            expectations=raw["expectations"],
            thresholds={k: _as_number(k, v) for k, v in raw.get("thresholds", {}).items()},
            description=raw.get("description", ""),
        )


def load_suite_specs(
    names: Iterable[str] | None = None, *, expectations_dir: Path = EXPECTATIONS_DIR
) -> list[SuiteSpec]:
    """Read the named suites (file stems), or every ``*.json`` in the folder when ``None``."""
    if names is None:
        paths = sorted(expectations_dir.glob("*.json"))
    else:
        paths = [expectations_dir / f"{name}.json" for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no expectation suite {missing} in {expectations_dir}")
    if not paths:
        raise FileNotFoundError(f"no expectation suites in {expectations_dir}")
    return [SuiteSpec.from_file(p) for p in paths]


def _as_number(name: str, value: Any) -> float:
    # Thresholds are pasted into SQL text: only finite numbers may get there.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"threshold {name!r} must be a finite number, got {value!r}")
    return value


def _check_threshold_names(overrides: Mapping[str, Any], specs: list[SuiteSpec]) -> None:
    # A misspelt threshold would silently leave the default in force on a gate.
    known = {name for spec in specs for name in spec.thresholds}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown thresholds {unknown}; the suites declare {sorted(known)}")


def _fill(value: Any, thresholds: Mapping[str, float]) -> Any:
    """Replace ``${name}`` placeholders, recursively; a bare placeholder becomes the number."""
    if isinstance(value, dict):
        return {k: _fill(v, thresholds) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, thresholds) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match[str]) -> str:
        if match[1] not in thresholds:
            raise ValueError(f"placeholder {match[0]} names no threshold of the suite")
        return repr(thresholds[match[1]])

    whole = _PLACEHOLDER.fullmatch(value)
    if whole:
        lookup(whole)  # raises on an unknown name
        return thresholds[whole[1]]
    return _PLACEHOLDER.sub(lookup, value)


def build_suite(spec: SuiteSpec, overrides: Mapping[str, Any] | None = None) -> gx.ExpectationSuite:
    """Turn a suite file into a ``gx.ExpectationSuite``, thresholds filled in."""
    overrides = overrides or {}
    thresholds = {
        **spec.thresholds,
        **{k: _as_number(k, v) for k, v in overrides.items() if k in spec.thresholds},
    }
    configs = []
    for expectation in spec.expectations:
        config = _fill(dict(expectation), thresholds)
        # GX carries a severity per expectation; keep it in step with the suite's so Data
        # Docs show what the gate does.
        config["severity"] = spec.severity
        configs.append(config)
    return gx.ExpectationSuite(
        name=spec.name,
        expectations=configs,
        meta={"table": spec.table, "severity": spec.severity, "thresholds": thresholds},
        notes=spec.description or None,
    )


# ---------------------------------------------------------------- outcome


@dataclass
class ValidationOutcome:
    """What the gate decided, and one row per expectation for ``mart_data_quality``."""

    run_id: str
    passed_gate: bool
    results: list[dict]
    failed_critical: list[str]
    data_docs_index: Path | None = None

    @property
    def failed_warnings(self) -> list[str]:
        """Failed expectations of the suites that only warn."""
        return [
            _display_name(r)
            for r in self.results
            if not r["success"] and r["severity"] != GATE_SEVERITY
        ]

    def summary(self) -> str:
        """One line for logs, notifications and the failed task's message."""
        checked = len(self.results)
        if not self.passed_gate:
            return (
                f"validation {self.run_id}: gate FAILED, {len(self.failed_critical)} critical "
                f"expectation(s) failed: {', '.join(self.failed_critical)}"
            )
        warnings = self.failed_warnings
        if warnings:
            return (
                f"validation {self.run_id}: gate passed ({checked} expectations); "
                f"warnings: {', '.join(warnings)}"
            )
        return f"validation {self.run_id}: gate passed, all {checked} expectations met"


def _display_name(row: Mapping[str, Any]) -> str:
    target = f"({row['column']})" if row["column"] else ""
    return f"{row['suite']}.{row['expectation']}{target}"


# ---------------------------------------------------------------- GX plumbing


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


def _read_only_url(warehouse_path: Path) -> str:
    # Read-only: validation must never write the candidate, and a shared lock lets readers
    # of the same file (a debugging session) coexist with it.
    return f"duckdb:///{warehouse_path.resolve()}?access_mode=read_only"


def _add_validation_definitions(
    context: Any, datasource: Any, suites: list[tuple[SuiteSpec, gx.ExpectationSuite]]
) -> list[gx.ValidationDefinition]:
    """One table asset and whole-table batch per table, one validation definition per suite."""
    batches = {}
    for spec, _ in suites:
        if spec.table not in batches:
            # No schema_name (deprecated in GX 1.x): DuckDB resolves tables in ``main``.
            asset = datasource.add_table_asset(name=spec.table, table_name=spec.table)
            batches[spec.table] = asset.add_batch_definition_whole_table(name=spec.table)
    definitions = []
    for spec, suite in suites:
        context.suites.add(suite)
        definition = gx.ValidationDefinition(name=spec.name, data=batches[spec.table], suite=suite)
        definitions.append(context.validation_definitions.add(definition))
    return definitions


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


# ---------------------------------------------------------------- results → rows


def _threshold_text(expectation_type: str, kwargs: Mapping[str, Any], meta: Mapping) -> str:
    if "threshold" in meta:
        return str(meta["threshold"])
    if "value_set" in kwargs:
        text = f"in {list(kwargs['value_set'])}"
    elif "type_" in kwargs:
        text = f"type {kwargs['type_']}"
    elif "column_set" in kwargs:
        scope = "exactly" if kwargs.get("exact_match") else "at least"
        text = f"{scope} columns {sorted(kwargs['column_set'])}"
    elif kwargs.get("min_value") is not None or kwargs.get("max_value") is not None:
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if low is not None and high is not None:
            text = f"between {low} and {high}"
        else:
            text = f">= {low}" if low is not None else f"<= {high}"
    elif expectation_type == "expect_column_values_to_be_unique":
        text = "unique"
    elif expectation_type == "expect_column_values_to_not_be_null":
        text = "not null"
    else:
        text = ""
    if kwargs.get("mostly") is not None:
        text += f" (mostly {kwargs['mostly']})"
    return text


def _exception_message(info: Mapping | None) -> str | None:
    """First line of the error GX caught, if any.

    ``exception_info`` is flat when the expectation itself raised, but keyed by metric when a
    metric failed (e.g. a missing column).
    """
    if not info:
        return None
    entries = [info] if "exception_message" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, Mapping) and (
            entry.get("raised_exception") or entry.get("exception_message")
        ):
            lines = str(entry.get("exception_message") or "").strip().splitlines()
            return lines[0] if lines else "exception"
    return None


def _observed_text(expectation_type: str, result: Any) -> str:
    error = _exception_message(result.exception_info)
    if error:
        return _clip(f"error: {error}")
    details = result.result or {}
    if expectation_type == "unexpected_rows_expectation":
        return f"{details.get('observed_value', '?')} unexpected rows"
    mismatched = (details.get("details") or {}).get("mismatched")
    if mismatched:
        return _clip(f"mismatched columns {mismatched}")
    if details.get("observed_value") is not None:
        return _clip(str(details["observed_value"]))
    if "unexpected_count" in details:
        text = f"{details['unexpected_count']} unexpected"
        if details.get("unexpected_percent") is not None:
            text += f" ({details['unexpected_percent']:.3g}%)"
        examples = details.get("partial_unexpected_list") or []
        if examples:
            text += f", e.g. {examples[:3]}"
        return _clip(text)
    return ""


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _rows(suite_result: Any, spec: SuiteSpec, run_id: str, validated_at: datetime) -> list[dict]:
    rows = []
    for result in suite_result.results:
        config = result.expectation_config
        kwargs, meta = config.kwargs, config.meta or {}
        rows.append(
            {
                "run_id": run_id,
                "suite": spec.name,
                "severity": spec.severity,
                "expectation": config.type,
                # Table-level checks report under the label their meta gives them, so two
                # SQL checks of one suite stay apart on the dashboard.
                "column": kwargs.get("column") or meta.get("check"),
                "success": bool(result.success),
                "observed_value": _observed_text(config.type, result),
                "threshold": _threshold_text(config.type, kwargs, meta),
                "validated_at": validated_at,
            }
        )
    return rows


# ---------------------------------------------------------------- entry point


def validate(
    warehouse_path: Path,
    *,
    run_id: str,
    data_docs_dir: Path,
    suites: list[str] | None = None,
    thresholds: dict | None = None,
    expectations_dir: Path = EXPECTATIONS_DIR,
) -> ValidationOutcome:
    """Run the expectation suites against a closed DuckDB warehouse in one GX checkpoint.

    ``suites`` names suite files (stems) in ``expectations_dir``; ``None`` runs them all.
    ``thresholds`` overrides suite thresholds by name (an unknown name is an error). The
    file is opened read-only; no other connection in this process may hold it read-write
    (DuckDB refuses a second configuration), so close dbt's connections first.
    """
    warehouse_path = Path(warehouse_path)
    if not warehouse_path.is_file():
        raise FileNotFoundError(f"no warehouse at {warehouse_path}")
    specs = load_suite_specs(suites, expectations_dir=expectations_dir)
    _check_threshold_names(thresholds or {}, load_suite_specs(expectations_dir=expectations_dir))
    suite_pairs = [(spec, build_suite(spec, thresholds)) for spec in specs]

    _enable_duckdb_persisted_connection()
    data_docs_dir = Path(data_docs_dir).resolve()
    data_docs_dir.mkdir(parents=True, exist_ok=True)
    validated_at = datetime.now(UTC)
    context = _ephemeral_context(data_docs_dir)
    datasource = None
    try:
        datasource = context.data_sources.add_sql(
            name=DATASOURCE_NAME, connection_string=_read_only_url(warehouse_path)
        )
        definitions = _add_validation_definitions(context, datasource, suite_pairs)
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name="inferwatch_gate",
                validation_definitions=definitions,
                actions=[UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE_NAME])],
                # SUMMARY keeps at most 20 example values per expectation; COMPLETE would
                # pull every failing row of a 200k-row table into memory and Data Docs.
                result_format="SUMMARY",
            )
        )
        result = checkpoint.run(run_id=RunIdentifier(run_name=run_id, run_time=validated_at))
    finally:
        _dispose(datasource)
    return _outcome(result, specs, run_id, validated_at, data_docs_dir)


def _outcome(
    result: Any, specs: list[SuiteSpec], run_id: str, validated_at: datetime, data_docs_dir: Path
) -> ValidationOutcome:
    by_name = {spec.name: spec for spec in specs}
    rows, gate = [], []
    for suite_result in result.run_results.values():
        spec = by_name[suite_result.suite_name]
        rows.extend(_rows(suite_result, spec, run_id, validated_at))
        if spec.severity == GATE_SEVERITY:
            gate.append(bool(suite_result.success))
    failed_critical = [
        _display_name(r) for r in rows if not r["success"] and r["severity"] == GATE_SEVERITY
    ]
    index = data_docs_dir / "index.html"
    outcome = ValidationOutcome(
        run_id=run_id,
        passed_gate=all(gate),
        results=rows,
        failed_critical=failed_critical,
        data_docs_index=index if index.is_file() else None,
    )
    log.info("%s", outcome.summary())
    return outcome

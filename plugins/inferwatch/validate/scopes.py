"""What one validated batch is: a whole table, one model's rows, a version's newest day, the
rows of the run (ingested since the last build that passed; :mod:`.gate_state`), or the rows
touched since then (with every row sharing their key).

Read from the candidate warehouse (read-only, closed before GX opens it) so the suites stay
model-agnostic: a new model is validated, with its own severity and thresholds, the first run
it appears in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import duckdb

from inferwatch.names import encoded
from inferwatch.validate.gate_state import RunWindow
from inferwatch.validate.policy import Policy
from inferwatch.validate.suites import SuiteSpec

log = logging.getLogger(__name__)

UNSEEN_BIN = "__unseen__"


@dataclass(frozen=True)
class Batch:
    """One suite applied to one slice of its table."""

    spec: SuiteSpec
    name: str  # the GX suite and validation-definition name, unique per checkpoint
    severity: str
    thresholds: dict[str, float]
    model: str | None = None
    model_version: str | None = None
    query: str | None = None  # None: the whole table
    partitions: dict[str, dict] = field(default_factory=dict)
    #: The suite's table is not in the warehouse: reported as a failure, not sent to GX
    #: (whose table asset refuses a missing table before any expectation runs).
    table_missing: bool = False


def plan_batches(
    warehouse_path: Path,
    specs: list[SuiteSpec],
    policy: Policy,
    duckdb_config: dict[str, str] | None = None,
    window: RunWindow | None = None,
) -> list[Batch]:
    """Expand every suite into its batches, reading which models and versions exist;
    ``window`` is what run-scoped suites judge (default: every row, none acknowledged)."""
    batches: list[Batch] = []
    with duckdb.connect(str(warehouse_path), read_only=True, config=duckdb_config or {}) as con:
        listed = con.execute("select table_name from duckdb_tables()").fetchall()
        tables = {name for (name,) in listed}
        for spec in specs:
            if spec.table not in tables:
                batches.append(replace(_table_batch(spec, policy), table_missing=True))
            elif spec.scope == "table":
                batches.append(_table_batch(spec, policy))
            elif spec.scope == "model":
                batches.extend(_model_batches(con, spec, policy))
            elif spec.scope == "touched":
                batches.extend(_touched_batches(spec, policy, window or RunWindow()))
            elif spec.scope == "run":
                query = (window or RunWindow()).query(spec.table)
                batches.append(replace(_table_batch(spec, policy), query=query))
            else:
                batches.extend(_version_day_batches(con, spec, policy, tables))
    return batches


def _table_batch(spec: SuiteSpec, policy: Policy) -> Batch:
    return Batch(spec, spec.name, policy.severity(spec), policy.thresholds(spec))


#: Expectations on the table's shape (columns, types): read from its metadata, never its rows,
#: and only a table asset reflects the types as the contract writes them.
SHAPE_EXPECTATIONS = frozenset(
    {"expect_table_columns_to_match_set", "expect_column_values_to_be_of_type",
     "expect_column_values_to_be_in_type_list"}
)  # fmt: skip


#: Expectations whose verdict on a row depends on other rows sharing its key: they read the
#: touched rows *and* every row sharing a key with one, so uniqueness holds against the whole
#: table. Every other row check reads the touched rows alone: a row sharing a key with a
#: touched one was judged by the run that passed it, and the key semi-join costs two scans of
#: the table per query (most of the hour's validation at 10M events a day).
KEY_EXPECTATIONS = frozenset(
    {"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"}
)


def _touched_batches(spec: SuiteSpec, policy: Policy, window: RunWindow) -> list[Batch]:
    """The shape checks on the table, the row checks on the rows touched since the last build
    that passed, the key checks on those rows and every row sharing their key (all rows in
    one batch when no build passed yet)."""
    if window.passed_through is None:
        return [_table_batch(spec, policy)]
    shape, rows, keys = [], [], []
    for expectation in spec.expectations:
        kind = expectation["type"]
        if kind in SHAPE_EXPECTATIONS:
            shape.append(expectation)
        elif kind in KEY_EXPECTATIONS and spec.key is not None:
            keys.append(expectation)
        else:
            rows.append(expectation)
    batches = []
    if shape:
        batches.append(_table_batch(replace(spec, expectations=shape), policy))
    if rows:
        query = window.touched_query(spec.table, None)
        batches.append(_query_batch(spec, rows, policy, f"{spec.name}[touched]", query))
    if keys:
        query = window.touched_query(spec.table, spec.key, _columns_of(keys, spec.key))
        batches.append(_query_batch(spec, keys, policy, f"{spec.name}[touched-keys]", query))
    return batches


def _query_batch(
    spec: SuiteSpec, expectations: list[dict], policy: Policy, name: str, query: str
) -> Batch:
    part = _table_batch(replace(spec, expectations=expectations), policy)
    return replace(part, name=name, query=query)


def _columns_of(expectations: list[dict], key: str | None) -> list[str]:
    """The columns the key checks read (the key first), for a batch that selects only them."""
    columns = [key] if key else []
    for expectation in expectations:
        kwargs = expectation.get("kwargs", {})
        for column in [kwargs.get("column"), *kwargs.get("column_list", [])]:
            if column and column not in columns:
                columns.append(column)
    return columns


def _model_batches(con: duckdb.DuckDBPyConnection, spec: SuiteSpec, policy: Policy) -> list[Batch]:
    listed = con.execute(f"select distinct model from {spec.table} order by 1").fetchall()
    models = [model for (model,) in listed]
    return [
        Batch(
            spec,
            f"{spec.name}[{encoded(model)}]",  # Data Docs keys may not hold "/"
            policy.severity(spec, model),
            policy.thresholds(spec, model),
            model=model,
            query=f"select * from {spec.table} where model = {_literal(model)}",
        )
        for model in models
    ]


def _version_day_batches(
    con: duckdb.DuckDBPyConnection, spec: SuiteSpec, policy: Policy, tables: set[str]
) -> list[Batch]:
    newest = con.execute(
        f"select model, model_version, max(event_day) from {spec.table} "
        "where model_version is not null group by all order by all"
    ).fetchall()
    batches = []
    for model, version, day in newest:
        batches.append(
            Batch(
                spec,
                f"{spec.name}[{encoded(model)}@{encoded(version)}]",  # as above
                policy.severity(spec, model),
                policy.thresholds(spec, model),
                model=model,
                model_version=version,
                query=(
                    f"select * from {spec.table} where model = {_literal(model)} and "
                    f"model_version = {_literal(version)} and event_day = {_date(day)}"
                ),
                partitions=_reference_partitions(con, model, version, tables),
            )
        )
    return batches


def _reference_partitions(
    con: duckdb.DuckDBPyConnection, model: str, version: str, tables: set[str]
) -> dict[str, dict]:
    """GX partition objects of the training reference the version is compared with.

    Numeric features: the reference decile bins; their open first and last bins become GX's
    ``tail_weights`` (GX cannot serialise infinite edges). Categorical: the reference's
    categories with their shares; unseen values fall to the expectation's tail holdout.
    """
    needed = {"int_reference_bins", "int_model_versions_matched_to_references"}
    if not needed <= tables:
        return {}
    rows = con.execute(
        """
        select bins.feature, bins.bin_kind, bins.bin_label, bins.bin_lower, bins.bin_upper,
               bins.reference_share
        from int_model_versions_matched_to_references as matched
        inner join int_reference_bins as bins
            on matched.model = bins.model and matched.reference_version = bins.reference_version
        where matched.model = ? and matched.model_version = ?
            and bins.bin_kind in ('psi', 'category')
        order by bins.feature, bins.bin_index
        """,
        [model, version],
    ).fetchall()
    by_feature: dict[str, list[tuple]] = {}
    for feature, *rest in rows:
        by_feature.setdefault(feature, []).append(tuple(rest))
    partitions = {}
    for feature, bins in by_feature.items():
        partition = _partition(bins)
        if partition is None:
            log.info("no usable reference histogram of %s for %s/%s", feature, model, version)
        else:
            partitions[feature] = partition
    return partitions


def _partition(bins: list[tuple]) -> dict | None:
    kind = bins[0][0]
    if kind == "category":
        kept = [(label, share) for _, label, _, _, share in bins if label != UNSEEN_BIN]
        if not kept:
            return None
        return {"values": [label for label, _ in kept], "weights": [s for _, s in kept]}
    if len(bins) < 3:  # a (nearly) constant feature: no inner bin to compare
        return None
    inner = bins[1:-1]
    return {
        "bins": [inner[0][2], *(upper for *_, upper, _ in inner)],
        "weights": [share for *_, share in inner],
        "tail_weights": [bins[0][-1], bins[-1][-1]],
    }


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _date(value: date) -> str:
    return f"date '{value.isoformat()}'"

"""The serving tables as immutable Parquet files, and the small catalog of views over them that
readers open (README: publishing costs what changed, not the whole history).

Each serving table is cut into *units*: its hours when it has an hour or timestamp column
(``HOUR_COLUMNS``), its days when it has only a date (``DAY_COLUMNS``), else one unit. Units are
packed into files by size (``pack``): the whole table in one file while it holds at most
``file_rows`` rows, else one file per month, per day or per hour, whichever is the coarsest
that stays within ``file_rows`` (hours only for a day above it). So a small mart is one file
whatever its history, a day of 100k events one file, and a day of 10M events 24 hour files:
one more hour rewrites that hour's file, or a small table's single file, never a day of 10M.

Which files to write is decided from cheap statistics per unit, computed in the warehouse:
row count and newest watermark (``WATERMARK_COLUMNS``: every row a build writes carries the
newest ingest time it read) where the table has one, counted only for the units with newer
rows than the last publish saw (``_unit_statistics``), else row count and the sum of its rows'
hashes (no row order changes it). A file is written again when the statistics of any of its
units, its packing or the table's columns differ from what the served catalog recorded, and
also (``_must_rewrite``) when a change could keep them: a new version of the dbt project, a
unit whose events an object rewrite dropped since the last publish (``int_superseded_event_*``),
or, in a table whose watermark is a build's stamp (``source_watermark``), a file holding the
newest watermark of the last publish when a build ran since (a rebuild with no new data stamps
the same value). So a
new hour, late labels, a rebuild and retention are published, and the rows of units nothing
touched are never hashed. ``rewrite_all`` writes every file anew (after a hand edit).

A file is never overwritten: every write gets a new name, and a view lists its files one by one
(no glob), so a reader of an older catalog keeps reading exactly the files it was built over.
A file is deleted only when neither the new catalog nor the one it replaces refers to it, and
only under this data dir's ``published/``. The catalog records paths relative to the data dir
while the views use absolute ones (DuckDB resolves a relative path against the reader's working
directory, not the catalog file): a copied data dir reads the original's files until its next
publish, which reuses the copies under its own ``published/`` and never touches the original's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import defaultdict
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

PUBLISHED_DIR = "published"
#: The catalog's own tables: one row per file a view reads, one per unit of a table (its
#: statistics), and what else the next publish compares.
FILES_TABLE, UNITS_TABLE, STATE_TABLE = "published_files", "published_units", "published_state"
#: Columns that cut a table into hours (TIMESTAMP), best first; else into days (a date, or the
#: date of a timestamp of another type).
HOUR_COLUMNS = ("hour", "event_hour", "event_ts")
DAY_COLUMNS = ("event_day", "day", "hour", "event_ts")
#: A row's newest ingest time, best first (dbt_project/macros/touched_partitions.sql).
WATERMARK_COLUMNS = ("source_watermark", "ingested_at")
#: A watermark that is a build's stamp (the same value in every row one build writes), not a
#: property of the row's own source.
STAMPED_WATERMARK = "source_watermark"
#: Warehouse tables naming the hours/days whose events an object rewrite dropped, and when.
SUPERSEDED_PREFIX = "int_superseded_event_"
#: The unit of a table without a time column and the file of a table without rows (with the
#: columns and no rows, so that its view still has them); the unit of rows without a time.
WHOLE, EMPTY, NO_TIME = "all", "empty", "none"
#: Default of INFERWATCH_PUBLISH_FILE_ROWS (README: Publishing).
DEFAULT_FILE_ROWS = 500_000
#: Unit names cut to these lengths give the month, day and hour ("2025-05-01T13").
_LEVELS = (7, 10, 13)
#: Parquet has no 128-bit integer (DuckDB would write a DOUBLE): write an exact decimal and
#: cast it back in the view.
_WRITE_AS = {"HUGEINT": "DECIMAL(38,0)"}


@dataclass(frozen=True)
class PublishedFile:
    table_name: str
    #: "all", a month ("2025-05"), a day ("2025-05-01"), an hour ("2025-05-01T13"), "none"
    partition: str
    #: The table's columns and types when written: a change rewrites every file.
    schema_hash: str
    row_count: int
    #: Digest of its units' statistics (None in catalogs from before units: never equal).
    stats: str | None
    #: Its newest watermark, when the table has one.
    watermark: str | None
    #: Relative to the data dir (so a copied data dir finds its own copy).
    path: str
    bytes: int


@dataclass
class _Table:
    """One serving table as this publish sees it."""

    name: str
    columns: list[tuple[str, str]]
    schema_hash: str
    #: (column, "hour" | "day") that cuts it into units, or None
    cut: tuple[str, str] | None
    watermark: str | None
    #: unit → (rows, newest watermark or row hash, as text)
    units: dict[str, tuple[int, str]]

    @property
    def source(self) -> str:
        return f"warehouse.main.{_ident(self.name)}"


@dataclass
class Previous:
    """What the served catalog recorded."""

    #: The files it refers to: None if it cannot be read (then nothing may be deleted).
    files: list[PublishedFile] | None
    #: table → unit → (rows, statistic), as ``_Table.units``
    units: dict[str, dict[str, tuple[int, str]]]
    state: dict[str, str]


def read_files(con: duckdb.DuckDBPyConnection, catalog: Path) -> Previous:
    """What the served catalog recorded (no files if there is none)."""
    if not catalog.exists():
        return Previous([], {}, {})
    # Attached rather than connected: a connection of this process may hold the file open with
    # other settings, which duckdb.connect refuses.
    try:
        con.execute(f"attach {_literal(catalog)} as previous_catalog (read_only)")
    except duckdb.Error as error:
        log.warning("cannot read %s (%s): publishing every partition anew", catalog, error)
        return Previous(None, {}, {})
    try:
        tables = {name for (name,) in con.execute(
            "select table_name from duckdb_tables() where database_name = 'previous_catalog'"
        ).fetchall()}  # fmt: skip
        if FILES_TABLE not in tables:  # a serving.duckdb of copied tables, from before catalogs
            return Previous([], {}, {})
        present = {row[0] for row in con.execute(
            f"describe previous_catalog.main.{FILES_TABLE}").fetchall()}  # fmt: skip
        # A catalog of an older publish lacks some columns: null, so that nothing matches.
        names = ", ".join(
            f.name if f.name in present else f"null as {f.name}" for f in fields(PublishedFile)
        )
        rows = con.execute(f"select {names} from previous_catalog.main.{FILES_TABLE}").fetchall()
        state, units = {}, defaultdict(dict)
        if STATE_TABLE in tables:
            query = f"select key, value from previous_catalog.main.{STATE_TABLE}"
            state = dict(con.execute(query).fetchall())
        if UNITS_TABLE in tables:
            query = (
                f"select table_name, unit, row_count, stat from previous_catalog.main.{UNITS_TABLE}"
            )
            for table, unit, count, stat in con.execute(query).fetchall():
                units[table][unit] = (count, stat)
        return Previous([PublishedFile(*row) for row in rows], dict(units), state)
    finally:
        con.execute("detach previous_catalog")


def build(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    tables: list[str],
    previous: Previous,
    *,
    file_rows: int = DEFAULT_FILE_ROWS,
    rewrite_all: bool = False,
    build_id: str = "",
) -> list[PublishedFile]:
    """Write the files that changed, then one view per table and the catalog's tables into
    ``con``'s database. The warehouse is attached to ``con`` as ``warehouse``; ``build_id``
    names the build that wrote it (a new one says that a build ran since the last publish)."""
    kept: dict[tuple[str, str], list[PublishedFile]] = defaultdict(list)
    for file in previous.files or []:
        kept[(file.table_name, file.partition)].append(file)
    state = {**_warehouse_state(con), "build": build_id}
    superseded = _superseded(con, previous.state)
    forced = _ForcedRewrites(previous.state, state, rewrite_all, superseded)
    files: list[PublishedFile] = []
    units: dict[str, dict] = {}
    for name in tables:
        table = _read_table(con, name, previous.units.get(name, {}), superseded)
        table_files = _publish_table(con, data_dir, table, kept, forced, file_rows)
        _create_view(con, data_dir, table, table_files)
        files += table_files
        units[name] = table.units
    _write_catalog(con, files, units, state)
    return files


def delete_unreferenced(
    data_dir: Path, current: list[PublishedFile], previous: list[PublishedFile] | None
) -> int:
    """Delete the files under ``data_dir/published`` that neither catalog refers to (leftovers
    of older publishes and of interrupted ones). Returns how many."""
    if previous is None:  # the replaced catalog's files are unknown: its readers may need any
        return 0
    keep = {f.path for f in current} | {f.path for f in previous}
    root = data_dir / PUBLISHED_DIR
    deleted = 0
    for path in sorted(root.rglob("*"), reverse=True) if root.exists() else []:
        if path.is_file() and path.relative_to(data_dir).as_posix() not in keep:
            path.unlink(missing_ok=True)
            deleted += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return deleted


def _warehouse_state(con) -> dict[str, str]:
    """What the next publish compares: the dbt project's version that built the warehouse,
    and the latest object rewrite its superseded tables record."""
    state = {"format": "2"}
    names = _warehouse_tables(con)
    if "inferwatch_input_state" in names:
        (project,) = con.execute(
            "select max(project_fingerprint) from warehouse.main.inferwatch_input_state"
        ).fetchone()
        state["project"] = project or ""
    for name in sorted(n for n in names if n.startswith(SUPERSEDED_PREFIX)):
        if "superseded_at" in dict(_columns(con, f"warehouse.main.{_ident(name)}")):
            (latest,) = con.execute(
                f"select max(superseded_at)::varchar from warehouse.main.{_ident(name)}"
            ).fetchone()
            state[f"superseded_through:{name}"] = latest or ""
    return state


def _warehouse_tables(con) -> set[str]:
    return {name for (name,) in con.execute(
        "select table_name from duckdb_tables() "
        "where database_name = 'warehouse' and schema_name = 'main'"
    ).fetchall()}  # fmt: skip


def _superseded(con, previous_state: dict) -> set[str]:
    """The hours and days (unit names) whose events an object rewrite dropped since the last
    publish: the rows built there may have changed while their statistics did not. Hours are
    named with their days; a day known only as a day also as "<day>T" (all of its hours)."""
    units: set[str] = set()
    for name in sorted(n for n in _warehouse_tables(con) if n.startswith(SUPERSEDED_PREFIX)):
        columns = dict(_columns(con, f"warehouse.main.{_ident(name)}"))
        column = next((c for c in ("event_hour", "event_day") if c in columns), None)
        if "superseded_at" not in columns or column is None:
            continue
        since = previous_state.get(f"superseded_through:{name}") or None
        where = f"superseded_at > {_literal(since)}" if since else "true"
        values = con.execute(
            f"select distinct {column} from warehouse.main.{_ident(name)} "
            f"where {where} and {column} is not null"
        ).fetchall()
        names = {_unit_name(value) for (value,) in values}
        # an hour's day (a day-cut table's unit); a day known only as a day: all its hours too
        units |= names | {n[:10] if column == "event_hour" else f"{n}T" for n in names}
    return units


@dataclass
class _ForcedRewrites:
    """What must be written even when its statistics did not change (see the module doc)."""

    previous_state: dict
    state: dict
    rewrite_all: bool
    superseded: set[str]

    def of(self, table: _Table, previous: list[PublishedFile], parts: dict[str, list[str]]):
        """The partitions of ``table`` (name → its units) to write whatever their statistics."""
        if self.rewrite_all:
            return set(parts)
        if table.watermark is None:  # hashed statistics are exact
            return set()
        if self.previous_state.get("project", "") != self.state.get("project", ""):
            return set(parts)
        forced = {
            part for part, units in parts.items()
            if any(u in self.superseded or f"{u[:10]}T" in self.superseded for u in units)
        }  # fmt: skip
        rebuilt = self.previous_state.get("build") != self.state.get("build")
        if table.watermark == STAMPED_WATERMARK and rebuilt:
            newest = max((f.watermark for f in previous if f.watermark), default=None)
            forced |= {
                part for part, units in parts.items()
                if newest is not None and max(table.units[u][1] for u in units) == newest
            }  # fmt: skip
        return forced


def _read_table(con, name: str, before: dict, superseded: set[str]) -> _Table:
    """The table's columns, cut and per-unit statistics (see ``_unit_statistics``)."""
    source = f"warehouse.main.{_ident(name)}"
    columns = _columns(con, source)
    kinds = dict(columns)
    cut = next(((c, "hour") for c in HOUR_COLUMNS if kinds.get(c) == "TIMESTAMP"), None) or next(
        ((c, "day") for c in DAY_COLUMNS if kinds.get(c, "").startswith(("DATE", "TIMESTAMP"))),
        None,
    )
    watermark = next((c for c in WATERMARK_COLUMNS if c in kinds), None)
    schema_hash = hashlib.sha256(json.dumps(columns).encode()).hexdigest()[:16]
    table = _Table(name, columns, schema_hash, cut, watermark, {})
    table.units = _unit_statistics(con, table, before, superseded)
    return table


def _unit_statistics(con, table: _Table, before: dict, superseded: set[str]) -> dict:
    """Per unit: rows and newest watermark (rows and the sum of row hashes without one).

    With a watermark and the last publish's statistics, only the units that may have changed
    are counted: those with rows at least as new as the newest watermark then served (a range
    scan that skips older row groups by their min/max; "as new": a rebuild with no new data
    stamps that very value) and the superseded ones. The others keep
    their recorded statistics, which the table's total row count must confirm (a deletion
    elsewhere, e.g. retention, changes it): else, and otherwise, every unit is counted."""
    unit = "null" if table.cut is None else _truncated(*table.cut)
    stat = (
        f"coalesce(max({_ident(table.watermark)})::varchar, '')"  # '' sorts first
        if table.watermark
        else "sum(hash(_row)::hugeint)"
    )
    newest = max((s for _, s in before.values()), default="") if table.watermark else ""
    if newest and table.cut is not None:
        touched = {
            _unit_name(value) for (value,) in con.execute(
                f"select distinct {unit} from {table.source} "
                f"where {_ident(table.watermark)} >= {_literal(newest)}"
            ).fetchall()
        } | {u for u in before if u in superseded or f"{u[:10]}T" in superseded}  # fmt: skip
        fresh = {}
        if touched:
            rows = con.execute(
                f"select {unit}, count(*), {stat} from {table.source} as _row "
                f"where {_unit_range(table, touched)} group by all"
            ).fetchall()
            fresh = {_unit_name(value): (count, str(s)) for value, count, s in rows}
        units = {**{u: v for u, v in before.items() if u not in fresh}, **fresh}
        (total,) = con.execute(f"select count(*) from {table.source}").fetchone()
        if total == sum(count for count, _ in units.values()):
            return units
    rows = con.execute(
        f"select {unit}, count(*), {stat} from {table.source} as _row group by all"
    ).fetchall()
    return {
        (_unit_name(value) if table.cut else WHOLE): (count, str(s)) for value, count, s in rows
    }


def pack(units: dict[str, int], file_rows: int) -> dict[str, str]:
    """Unit → the partition (file) it goes to: the coarsest of whole table, month, day, hour
    that holds at most ``file_rows`` rows (a unit is never split)."""
    if sum(units.values()) <= file_rows:
        return dict.fromkeys(units, WHOLE)
    out: dict[str, str] = {}

    def split(members: dict[str, int], level: int) -> None:
        groups: dict[str, dict[str, int]] = defaultdict(dict)
        for unit, rows in members.items():
            groups[unit[: _LEVELS[level]]][unit] = rows
        for name, group in groups.items():
            finest = level == len(_LEVELS) - 1 or all(len(u) <= _LEVELS[level] for u in group)
            if finest or sum(group.values()) <= file_rows:
                out.update(dict.fromkeys(group, name))
            else:
                split(group, level + 1)

    split(units, 0)
    return out


def _publish_table(con, data_dir, table: _Table, kept, forced, file_rows) -> list[PublishedFile]:
    if not table.units:
        return _write_empty(con, data_dir, table, {} if forced.rewrite_all else kept)
    partition_of = pack({u: rows for u, (rows, _) in table.units.items()}, file_rows)
    parts: dict[str, list[str]] = defaultdict(list)
    for unit, part in sorted(partition_of.items()):
        parts[part].append(unit)
    previous = [f for (name, _), group in kept.items() if name == table.name for f in group]
    must = forced.of(table, previous, parts)
    files, stale = [], []
    for part, units in parts.items():
        before = kept.get((table.name, part), [])
        if part not in must and before and all(
            f.schema_hash == table.schema_hash and f.stats == _stats(table, units)
            and _intact(data_dir, f) for f in before
        ):  # fmt: skip
            files += before
        else:
            stale.append(part)
    if stale:
        files += _write(con, data_dir, table, {p: parts[p] for p in stale})
        log.info("%s: wrote %d of %d files", table.name, len(stale), len(parts))
    return sorted(files, key=lambda f: (f.partition, f.path))


def _stats(table: _Table, units: list[str]) -> str:
    listed = [[unit, *table.units[unit]] for unit in sorted(units)]
    return hashlib.sha256(json.dumps(listed).encode()).hexdigest()[:16]


def _file_record(table: _Table, part: str, units: list[str], path: Path, data_dir: Path):
    newest = max(table.units[u][1] for u in units) if table.watermark else None
    return PublishedFile(
        table.name, part, table.schema_hash, sum(table.units[u][0] for u in units),
        _stats(table, units), newest, path.relative_to(data_dir).as_posix(), path.stat().st_size,
    )  # fmt: skip


def _select_list(table: _Table) -> str:
    return ", ".join(
        f"{_ident(name)}::{_WRITE_AS[kind]} as {_ident(name)}" if kind in _WRITE_AS
        else _ident(name)
        for name, kind in table.columns
    )  # fmt: skip


def _write_empty(con, data_dir, table: _Table, kept) -> list[PublishedFile]:
    before = kept.get((table.name, EMPTY), [])
    if before and all(
        f.schema_hash == table.schema_hash and f.row_count == 0 and _intact(data_dir, f)
        for f in before
    ):
        return before
    path = data_dir / PUBLISHED_DIR / table.name / f"_partition={EMPTY}" / f"{uuid.uuid4()}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    query = f"select {_select_list(table)} from {table.source} limit 0"
    con.execute(f"copy ({query}) to {_literal(path)} (format parquet)")
    return [PublishedFile(
        table.name, EMPTY, table.schema_hash, 0, _stats(table, []), None,
        path.relative_to(data_dir).as_posix(), path.stat().st_size,
    )]  # fmt: skip


def _write(con, data_dir, table: _Table, parts: dict[str, list[str]]) -> list[PublishedFile]:
    """One partitioned COPY of the stale partitions' rows, each into a new uniquely named
    file; only the rows of their units are read (a range of the cut column first, which skips
    row groups by their min/max)."""
    target = data_dir / PUBLISHED_DIR / table.name
    target.mkdir(parents=True, exist_ok=True)
    partition_of = {unit: part for part, units in parts.items() for unit in units}
    if table.cut is None:
        query = f"select {_select_list(table)}, {_literal(WHOLE)} as _partition from {table.source}"
    else:
        mapping = ", ".join(f"({_literal(u)}, {_literal(p)})" for u, p in partition_of.items())
        query = (
            f"select {_select_list(table)}, _partition from (select *, "
            f"coalesce(strftime({_truncated(*table.cut)}, {_literal(_FORMATS[table.cut[1]])}), "
            f"{_literal(NO_TIME)}) as _unit from {table.source} "
            f"where {_unit_range(table, partition_of)}) as _rows "
            f"join (values {mapping}) as _units(_unit, _partition) using (_unit)"
        )
    ((_, written),) = con.execute(
        f"copy ({query}) to {_literal(target)} (format parquet, partition_by (_partition), "
        "append, filename_pattern '{uuid}', return_files true)"
    ).fetchall()
    out = []
    for name in written:
        path = Path(name)
        part = path.parent.name.partition("=")[2]
        out.append(_file_record(table, part, parts[part], path, data_dir))
    return out


#: How a unit's name is written from its truncated time (hour or day).
_FORMATS = {"hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d"}


def _truncated(column: str, grain: str) -> str:
    if grain == "hour":
        return f"date_trunc('hour', {_ident(column)})"
    return f"cast({_ident(column)} as date)"


def _unit_name(value) -> str:
    if value is None:
        return NO_TIME
    if hasattr(value, "hour"):  # a datetime: its hour
        return value.strftime(_FORMATS["hour"])
    return value.isoformat()


def _unit_range(table: _Table, units) -> str:
    """A condition on the cut column that holds for the rows of ``units`` (and few others)."""
    column, grain = table.cut
    timed = sorted(u for u in units if u != NO_TIME)
    conditions = [f"{_ident(column)} is null"] if NO_TIME in units else []
    if timed:
        first, last = timed[0], timed[-1]
        step = "1 hour" if grain == "hour" else "1 day"
        start = first.replace("T", " ") + (":00:00" if grain == "hour" else "")
        end = last.replace("T", " ") + (":00:00" if grain == "hour" else "")
        conditions.append(
            f"({_ident(column)} >= timestamp {_literal(start)} and "
            f"{_ident(column)} < timestamp {_literal(end)} + interval {step})"
        )
    return " or ".join(conditions) or "false"


def _write_catalog(con, files: list[PublishedFile], units: dict, state: dict[str, str]) -> None:
    con.execute(
        f"create table main.{FILES_TABLE} (table_name varchar, partition varchar, "
        "schema_hash varchar, row_count bigint, stats varchar, watermark varchar, path varchar, "
        "bytes bigint)"
    )
    _insert(con, FILES_TABLE, [astuple(f) for f in files])
    con.execute(
        f"create table main.{UNITS_TABLE} "
        "(table_name varchar, unit varchar, row_count bigint, stat varchar)"
    )
    _insert(con, UNITS_TABLE, [
        (table, unit, count, stat) for table, by_unit in units.items()
        for unit, (count, stat) in sorted(by_unit.items())
    ])  # fmt: skip
    con.execute(f"create table main.{STATE_TABLE} (key varchar, value varchar)")
    _insert(con, STATE_TABLE, sorted(state.items()))


def _insert(con, table: str, rows: list[tuple], batch: int = 5000) -> None:
    """Literals, a statement per batch: Python parameters make DuckDB import pandas (seconds)."""
    for start in range(0, len(rows), batch):
        values = ", ".join(
            "(" + ", ".join(_sql_value(v) for v in row) + ")" for row in rows[start : start + batch]
        )
        con.execute(f"insert into main.{table} values {values}")


def _sql_value(value) -> str:
    if value is None:
        return "null"
    return _literal(value) if isinstance(value, str) else str(int(value))


def _create_view(con, data_dir: Path, table: _Table, files: list[PublishedFile]) -> None:
    """The view reads exactly ``files``, with the warehouse table's columns, order and types."""
    paths = ", ".join(_literal(data_dir / f.path) for f in files)
    scan = f"read_parquet([{paths}], hive_partitioning = false)"
    # Every file was written from the same columns (schema_hash): one footer tells their types.
    one = f"read_parquet([{_literal(data_dir / files[0].path)}], hive_partitioning = false)"
    written = dict(_columns(con, one))
    select = ", ".join(
        _ident(name) if written.get(name) == kind else f"{_ident(name)}::{kind} as {_ident(name)}"
        for name, kind in table.columns
    )
    con.execute(f"create view main.{_ident(table.name)} as select {select} from {scan}")


def _columns(con, relation: str) -> list[tuple[str, str]]:
    """Names and types, in order (``describe`` binds only this relation, unlike
    information_schema, which binds every view of the warehouse)."""
    return [
        (name, kind)
        for name, kind, *_ in con.execute(f"describe select * from {relation}").fetchall()
    ]


def _intact(data_dir: Path, file: PublishedFile) -> bool:
    """The recorded file is there, in this data dir, whole (a copy may lack it)."""
    try:
        return (data_dir / file.path).stat().st_size == file.bytes
    except OSError:
        return False


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"

"""The serving tables as immutable Parquet partitions, and the small catalog of views over them
that readers open (README: publishing costs what changed, not the whole history).

Each serving table is cut into partitions: one per day of its day column (``DAY_COLUMNS``), or
one for the whole table when it has none. A partition is fingerprinted in the warehouse itself
— its row count and the sum of its rows' hashes, which no row order changes — and its Parquet
file is written only when that fingerprint or the table's columns differ from what the served
catalog recorded. So whatever changed a day (a new hour, late labels, a rebuild, retention) is
rewritten, and nothing else is: no guess about which days a run touched.

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
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

PUBLISHED_DIR = "published"
#: The catalog's own table: one row per file a view reads.
FILES_TABLE = "published_files"
#: The columns that cut a table into days, best first; a timestamp is cut by its date.
DAY_COLUMNS = ("event_day", "day", "hour", "event_ts")
#: The partition of a table without a day column, and of a table without rows (a file with
#: the columns and no rows, so that its view still has them).
WHOLE, EMPTY = "all", "empty"
#: Parquet has no 128-bit integer (DuckDB would write a DOUBLE): write an exact decimal and
#: cast it back in the view.
_WRITE_AS = {"HUGEINT": "DECIMAL(38,0)"}


@dataclass(frozen=True)
class PublishedFile:
    table_name: str
    partition: str
    #: The table's columns and types when written: a change rewrites every partition.
    schema_hash: str
    row_count: int
    row_hash: int
    #: Relative to the data dir (so a copied data dir finds its own copy).
    path: str
    bytes: int

    def fingerprint(self) -> tuple:
        return (self.schema_hash, self.row_count, self.row_hash)


def read_files(con: duckdb.DuckDBPyConnection, catalog: Path) -> list[PublishedFile] | None:
    """The files the served catalog refers to: [] if there is none (or one from before
    partitions), None if it cannot be read (then nothing may be deleted)."""
    if not catalog.exists():
        return []
    # Attached rather than connected: a connection of this process may hold the file open with
    # other settings, which duckdb.connect refuses.
    try:
        con.execute(f"attach {_literal(catalog)} as previous_catalog (read_only)")
    except duckdb.Error as error:
        log.warning("cannot read %s (%s): publishing every partition anew", catalog, error)
        return None
    names = ", ".join(f.name for f in fields(PublishedFile))
    try:
        rows = con.execute(f"select {names} from previous_catalog.main.{FILES_TABLE}").fetchall()
        return [PublishedFile(*row) for row in rows]
    except duckdb.CatalogException:  # a serving.duckdb of copied tables, from before catalogs
        return []
    finally:
        con.execute("detach previous_catalog")


def build(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    tables: list[str],
    previous: list[PublishedFile],
) -> list[PublishedFile]:
    """Write the partitions that changed, then one view per table and the files table into
    ``con``'s database. The warehouse is attached to ``con`` as ``warehouse``."""
    kept: dict[tuple[str, str], list[PublishedFile]] = {}
    for file in previous:
        kept.setdefault((file.table_name, file.partition), []).append(file)
    files: list[PublishedFile] = []
    for table in tables:
        table_files = _publish_table(con, data_dir, table, kept)
        _create_view(con, data_dir, table, table_files)
        files += table_files
    con.execute(
        f"create table main.{FILES_TABLE} (table_name varchar, partition varchar, "
        "schema_hash varchar, row_count bigint, row_hash hugeint, path varchar, bytes bigint)"
    )
    if files:  # literals, one statement: Python parameters make DuckDB import pandas (seconds)
        values = ", ".join(
            "("
            + ", ".join(_literal(v) if isinstance(v, str) else str(int(v)) for v in astuple(f))
            + ")"
            for f in files
        )
        con.execute(f"insert into main.{FILES_TABLE} values {values}")
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


def _publish_table(con, data_dir: Path, table: str, kept: dict) -> list[PublishedFile]:
    columns = _columns(con, f"warehouse.main.{_ident(table)}")
    schema_hash = hashlib.sha256(json.dumps(columns).encode()).hexdigest()[:16]
    partition = _partition_expression(columns)
    source = f"warehouse.main.{_ident(table)}"
    # The row as one struct value: hash() of it covers every column, sum() ignores row order.
    fingerprints = {
        part: (schema_hash, rows, row_hash)
        for part, rows, row_hash in con.execute(
            f"select {partition}, count(*), sum(hash(_row)::hugeint) "
            f"from {source} as _row group by all"
        ).fetchall()
    } or {EMPTY: (schema_hash, 0, 0)}

    files, stale = [], []
    for part, fingerprint in fingerprints.items():
        previous = kept.get((table, part), [])
        if previous and all(
            f.fingerprint() == fingerprint and _intact(data_dir, f) for f in previous
        ):
            files += previous
        else:
            stale.append(part)
    if stale:
        files += _write(con, data_dir, table, columns, partition, stale, fingerprints)
        log.info("%s: wrote %d of %d partitions", table, len(stale), len(fingerprints))
    return sorted(files, key=lambda f: (f.partition, f.path))


def _write(con, data_dir, table, columns, partition, parts, fingerprints) -> list[PublishedFile]:
    """One partitioned COPY of the stale partitions, each into new uniquely named files."""
    target = data_dir / PUBLISHED_DIR / table
    target.mkdir(parents=True, exist_ok=True)
    select = ", ".join(
        f"{_ident(name)}::{_WRITE_AS[kind]} as {_ident(name)}" if kind in _WRITE_AS
        else _ident(name)
        for name, kind in columns
    )  # fmt: skip
    source = f"warehouse.main.{_ident(table)}"
    if parts == [EMPTY]:
        query = f"select {select} from {source} limit 0"
        path = target / f"_partition={EMPTY}" / f"{uuid.uuid4()}.parquet"
        path.parent.mkdir(exist_ok=True)
        con.execute(f"copy ({query}) to {_literal(path)} (format parquet)")
        written = [str(path)]
    else:
        only = "" if len(parts) == len(fingerprints) else (
            f"where {partition} in ({', '.join(_literal(p) for p in parts)})"
        )  # fmt: skip
        query = f"select {select}, {partition} as _partition from {source} {only}"
        ((_, written),) = con.execute(
            f"copy ({query}) to {_literal(target)} (format parquet, partition_by (_partition), "
            "append, filename_pattern '{uuid}', return_files true)"
        ).fetchall()
    out = []
    for name in written:
        path = Path(name)
        part = path.parent.name.partition("=")[2]
        out.append(PublishedFile(
            table, part, *fingerprints[part], path.relative_to(data_dir).as_posix(),
            path.stat().st_size,
        ))  # fmt: skip
    return out


def _create_view(con, data_dir: Path, table: str, files: list[PublishedFile]) -> None:
    """The view reads exactly ``files``, with the warehouse table's columns, order and types."""
    paths = ", ".join(_literal(data_dir / f.path) for f in files)
    scan = f"read_parquet([{paths}], hive_partitioning = false)"
    written = dict(_columns(con, scan))
    columns = _columns(con, f"warehouse.main.{_ident(table)}")
    select = ", ".join(
        _ident(name) if written.get(name) == kind else f"{_ident(name)}::{kind} as {_ident(name)}"
        for name, kind in columns
    )
    con.execute(f"create view main.{_ident(table)} as select {select} from {scan}")


def _columns(con, relation: str) -> list[tuple[str, str]]:
    """Names and types, in order (``describe`` binds only this relation, unlike
    information_schema, which binds every view of the warehouse)."""
    return [
        (name, kind)
        for name, kind, *_ in con.execute(f"describe select * from {relation}").fetchall()
    ]


def _partition_expression(columns: list[tuple[str, str]]) -> str:
    kinds = dict(columns)
    for name in DAY_COLUMNS:
        if kinds.get(name, "").startswith(("DATE", "TIMESTAMP")):
            return f"coalesce(cast(cast({_ident(name)} as date) as varchar), 'none')"
    return _literal(WHOLE)


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

"""Publishing writes what changed: Parquet files by hour, day, month or whole table (by size)
under ``published/``, a catalog of views over them, old files kept for the old catalog's
readers, nothing shared with a copy; a catalog published by the code before hour files is
upgraded in place.

A small lake of two days (two hours each), built and published with files of at most
``FILE_ROWS`` rows (so that the facts are cut into hours and the small marts are one file),
then one more hour of the second day, built and published again. Which files should be
rewritten is worked out independently: the hours (or days) whose rows differ between the two
warehouse builds (EXCEPT ALL).
"""

from __future__ import annotations

import dataclasses
import gzip
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import duckdb
import pytest

from conftest import settings_for
from inferwatch import pipeline, publish, serving_catalog
from inferwatch.lake import Lake
from inferwatch.publish import is_serving_table, publish_serving
from pipeline_steps import raw_object

REPO = Path(__file__).resolve().parents[1]
DAYS = ("2025-05-19", "2025-05-20")
#: A file's most rows here: a day of the test lake (300+ events) is cut into hours.
FILE_ROWS = 100
#: A table's hour, as the design says: its hour/timestamp column; else its day (date column).
HOUR_COLUMNS = ("hour", "event_hour", "event_ts")
DAY_COLUMNS = ("event_day", "day", "hour", "event_ts")
#: The code before hour files and change statistics (day partitions, every row hashed).
DAY_FILES_COMMIT = "782939d"
OLD_MODULE = "plugins/inferwatch/serving_catalog.py"


def day_object(day: str, hour: int) -> bytes:
    """The shared test object of ``hour`` (150 fraud events), moved to ``day``."""
    text = gzip.decompress(raw_object(hour)).decode()
    text = text.replace("2025-05-20T", f"{day}T").replace('"event_id": "o', f'"event_id": "{day}-o')
    return gzip.compress(text.encode())


def add_hour(lake: Lake, day: str, hour: int) -> None:
    lake.write_bytes(f"raw/fraud/{day.replace('-', '/')}/{hour:02d}/part-0.jsonl.gz",
                     day_object(day, hour))  # fmt: skip


def small_files(settings):
    return dataclasses.replace(settings, publish_file_rows=FILE_ROWS)


def build(settings, lake: Lake, run_id: str) -> None:
    """The warehouse as the DAG builds it (discover, ingest, transform), without the gate."""
    pipeline.ingest(settings, lake, pipeline.discover(lake), run_id)
    pipeline.transform(settings, lake)


def files_on_disk(data_dir: Path) -> dict[str, tuple[int, int]]:
    """Every published file: relative path → (inode, mtime_ns)."""
    return {
        p.relative_to(data_dir).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (data_dir / "published").rglob("*")
        if p.is_file()
    }


def catalog_files(settings) -> dict[str, tuple[str, str]]:
    """What the served catalog records: relative path → (table, partition)."""
    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        rows = con.sql("select path, table_name, partition from published_files").fetchall()
    return {path: (table, part) for path, table, part in rows}


def catalog_rows(settings) -> dict[tuple[str, str], int]:
    """(table, partition) → rows, as the served catalog records them."""
    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        rows = con.sql("select table_name, partition, sum(row_count) from published_files "
                       "group by all").fetchall()  # fmt: skip
    return {(table, part): int(n) for table, part, n in rows}


def view_paths(settings) -> set[str]:
    """The files the views read, as their SQL names them."""
    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        sql = " ".join(s for (s,) in con.sql("select sql from duckdb_views() where not internal")
                       .fetchall())  # fmt: skip
    return set(re.findall(r"'(/[^']*\.parquet)'", sql))


def serving_tables(warehouse: Path) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        names = con.sql("select table_name from duckdb_tables() where schema_name = 'main'")
        return sorted(t for (t,) in names.fetchall() if is_serving_table(t))


def mismatches(settings) -> dict[str, tuple]:
    """Serving relations that differ from the warehouse table: rows (EXCEPT ALL both ways),
    column names and types."""
    out = {}
    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        con.execute(f"attach '{settings.warehouse_path}' as wh (read_only)")
        for table in serving_tables(settings.warehouse_path):
            extra = con.sql(f"select count(*) from (from main.{table} except all "
                            f"from wh.main.{table})").fetchone()[0]  # fmt: skip
            missing = con.sql(f"select count(*) from (from wh.main.{table} except all "
                              f"from main.{table})").fetchone()[0]  # fmt: skip
            served = con.sql(f"describe main.{table}").fetchall()
            built = con.sql(f"describe wh.main.{table}").fetchall()
            types_differ = [(a[:2], b[:2]) for a, b in zip(served, built, strict=True)
                            if a[:2] != b[:2]]  # fmt: skip
            if extra or missing or types_differ or len(served) != len(built):
                out[table] = (extra, missing, types_differ)
    return out


def unit_key(columns: dict[str, str]) -> str:
    """SQL naming a row's hour ("2025-05-20T02"), else its day, else 'all'."""
    hour = next((c for c in HOUR_COLUMNS if columns.get(c) == "TIMESTAMP"), None)
    if hour:
        return f"coalesce(strftime({hour}, '%Y-%m-%dT%H'), 'none')"
    day = next((c for c in DAY_COLUMNS if c in columns), None)
    return f"coalesce(cast(cast({day} as date) as varchar), 'none')" if day else "'all'"


def changed_units(before: Path, after: Path) -> set[tuple[str, str]]:
    """(table, hour or day or 'all') whose rows differ between two warehouse files."""
    changed = set()
    with duckdb.connect() as con:
        con.execute(f"attach '{before}' as a (read_only)")
        con.execute(f"attach '{after}' as b (read_only)")
        for table in serving_tables(after):
            columns = {name: kind for name, kind, *_ in con.sql(f"describe b.main.{table}")
                       .fetchall()}  # fmt: skip
            key = unit_key(columns)
            diff = con.sql(
                f"select distinct {key} from (from a.main.{table} except all from b.main.{table} "
                f"union all (from b.main.{table} except all from a.main.{table}))"
            ).fetchall()
            changed |= {(table, value) for (value,) in diff}
    return changed


def holds(partition: str, unit: str) -> bool:
    """Whether a file's partition (all, a month, day or hour) holds the unit (an hour or day)."""
    return partition == "all" or unit.startswith(partition)


def newest_stamped(warehouse: Path) -> set[tuple[str, str]]:
    """(table, unit) of rows holding the newest source_watermark of their table: a rebuild with
    no new data stamps the same value, so the files holding them are written again."""
    out = set()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for table in serving_tables(warehouse):
            columns = {name: kind for name, kind, *_ in con.sql(f"describe main.{table}")
                       .fetchall()}  # fmt: skip
            if "source_watermark" in columns:
                rows = con.sql(f"select distinct {unit_key(columns)} from main.{table} where "
                               f"source_watermark = (select max(source_watermark) "
                               f"from main.{table})").fetchall()  # fmt: skip
                out |= {(table, unit) for (unit,) in rows}
    return out


def publish_as_before(settings) -> None:
    """serving.duckdb as the code before hour files publishes it (from git history)."""
    shown = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{DAY_FILES_COMMIT}:{OLD_MODULE}"],
        capture_output=True, text=True,
    )  # fmt: skip
    if shown.returncode != 0:
        pytest.fail(f"the upgrade test needs commit {DAY_FILES_COMMIT} in this clone's history "
                    f"(`git fetch --unshallow`): {shown.stderr}")  # fmt: skip
    old = types.ModuleType("old_serving_catalog")
    sys.modules[old.__name__] = old  # its dataclass looks its module up
    try:
        exec(compile(shown.stdout, "old_serving_catalog.py", "exec"), old.__dict__)
    finally:
        del sys.modules[old.__name__]
    built = {}

    def fill(con):  # publish.publish_serving of that commit
        built["previous"] = old.read_files(con, settings.serving_path)
        con.execute(f"attach '{settings.warehouse_path}' as warehouse (read_only)")
        built["files"] = old.build(con, settings.data_dir, serving_tables(settings.warehouse_path),
                                   built["previous"] or [])  # fmt: skip
        publish._copy_macros(con)
        con.execute("detach warehouse")

    publish._swap_in(settings, settings.serving_path, fill)
    old.delete_unreferenced(settings.data_dir, built["files"], built["previous"])


@pytest.fixture(scope="module")
def two_publishes(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("publish")
    lake = Lake(str(root / "lake"))
    for day in DAYS:
        for hour in (0, 1):
            add_hour(lake, day, hour)
    settings = small_files(settings_for(lake.url, root / "state"))
    build(settings, lake, "first")
    publish_serving(settings)
    out = {"settings": settings, "lake": lake, "mismatches_first": mismatches(settings)}
    out["catalog_first"] = catalog_files(settings)
    out["disk_first"] = files_on_disk(settings.data_dir)
    first_warehouse = root / "first-warehouse.duckdb"
    shutil.copy(settings.warehouse_path, first_warehouse)
    with duckdb.connect(str(first_warehouse), read_only=True) as con:
        out["first_fct"] = con.sql("select count(*), sum(hash(event_id, latency_ms)::hugeint) "
                                   "from fct_inferences").fetchone()  # fmt: skip

    add_hour(lake, DAYS[1], 2)
    build(settings, lake, "second")
    reader = duckdb.connect(str(settings.serving_path), read_only=True)  # the old catalog
    try:
        publish_serving(settings)
        out["old_reader_fct"] = reader.sql("select count(*), sum(hash(event_id, latency_ms)"
                                           "::hugeint) from fct_inferences").fetchone()  # fmt: skip
    finally:
        reader.close()
    out["mismatches_second"] = mismatches(settings)
    out["catalog_second"] = catalog_files(settings)
    out["disk_second"] = files_on_disk(settings.data_dir)
    out["expected_changed"] = changed_units(first_warehouse, settings.warehouse_path)
    out["newest_first"] = newest_stamped(first_warehouse)
    return out


def test_one_more_hour_rewrites_only_the_files_it_changed(two_publishes):
    first, second = two_publishes["catalog_first"], two_publishes["catalog_second"]
    written = {second[path] for path in set(second) - set(first)}
    changed = two_publishes["expected_changed"]
    # every file holding a changed hour (or day) is new ...
    assert {(t, p) for t, p in set(second.values()) if any(
        t == table and holds(p, unit) for table, unit in changed)} <= written  # fmt: skip
    # ... and nothing else, but files of a stamped table holding its newest watermark of the
    # first publish (what a rebuild with no new data could change without a new stamp)
    newest = two_publishes["newest_first"]
    assert all(
        any(t == table and holds(p, unit) for table, unit in changed | newest) for t, p in written
    ), written
    # the facts are cut into hours: one more hour writes that hour's file and no other
    assert {p for t, p in written if t == "fct_inferences"} == {f"{DAYS[1]}T02"}
    assert ("fct_inferences", f"{DAYS[1]}T01") in set(second.values())
    # every partition is still served, and the untouched ones from the very same files
    assert set(second.values()) >= set(first.values())
    kept = set(second) & set(first)
    assert {first[path] for path in kept} == set(first.values()) - written
    disk_first, disk_second = two_publishes["disk_first"], two_publishes["disk_second"]
    assert all(disk_second[path] == disk_first[path] for path in kept)  # same inode and mtime
    # the replaced files stay for the old catalog's readers; nothing else is on disk
    assert set(disk_second) == set(first) | set(second)


def test_files_are_as_coarse_as_their_size_allows(two_publishes):
    """A table of at most FILE_ROWS rows is one file (a 90-day chart opens one file, not 90);
    a larger one is cut by month, day, then hour, never beyond FILE_ROWS but for one hour."""
    settings = two_publishes["settings"]
    served = catalog_rows(settings)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        totals = {t: con.sql(f"select count(*) from main.{t}").fetchone()[0]
                  for t in serving_tables(settings.warehouse_path)}  # fmt: skip
    for table, rows in totals.items():
        parts = {p for t, p in served if t == table}
        if rows <= FILE_ROWS:
            assert parts in ({"all"}, {"empty"}), (table, parts)
        else:
            assert "all" not in parts, table
            assert all(n <= FILE_ROWS or len(p) == len("2025-05-20T02")
                       for (t, p), n in served.items() if t == table), table  # fmt: skip
    assert 1 < len([t for t, n in totals.items() if n <= FILE_ROWS]) < len(totals)
    assert {p for t, p in served if t == "fct_inferences"} == {
        f"{day}T{hour:02d}" for day in DAYS for hour in (0, 1)} | {f"{DAYS[1]}T02"}  # fmt: skip


def test_a_catalog_of_day_files_is_upgraded_in_place(two_publishes, tmp_path):
    """A data dir the code before hour files published: the next publish serves the same
    figures as a fresh one, reading only new files; the old ones go a publish later."""
    data_dir = tmp_path / "state"
    shutil.copytree(two_publishes["settings"].data_dir, data_dir, ignore=shutil.ignore_patterns(
        "published", "serving.duckdb"))  # fmt: skip
    settings = small_files(settings_for(two_publishes["lake"].url, data_dir))
    publish_as_before(settings)
    assert mismatches(settings) == {}
    old = catalog_files(settings)
    assert ("fct_inferences", DAYS[1]) in set(old.values())  # a day partition
    publish_serving(settings)
    assert mismatches(settings) == {}
    assert catalog_rows(settings) == catalog_rows(two_publishes["settings"])
    new = catalog_files(settings)
    assert {new[path] for path in set(new) & set(old)} <= {(t, "empty") for t, _ in old.values()}
    assert set(files_on_disk(data_dir)) == set(old) | set(new)  # the old readers' files stay
    publish_serving(settings)
    assert catalog_files(settings) == new  # nothing changed: nothing written
    assert set(files_on_disk(data_dir)) == set(new)


def test_rewrite_all_publishes_a_hand_edit(two_publishes, tmp_path):
    """A hand edit keeping row counts and watermarks is not seen by the change statistics:
    INFERWATCH_PUBLISH_REWRITE_ALL writes every file anew."""
    data_dir = tmp_path / "state"
    shutil.copytree(two_publishes["settings"].data_dir, data_dir)
    settings = small_files(settings_for(two_publishes["lake"].url, data_dir))
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("update main.fct_inferences set latency_ms = latency_ms + 1")
    publish_serving(dataclasses.replace(settings, publish_rewrite_all=True))
    assert mismatches(settings) == {}
    assert not set(catalog_files(settings)) & set(two_publishes["catalog_second"])


def test_every_view_equals_its_warehouse_table_after_each_publish(two_publishes):
    assert two_publishes["mismatches_first"] == {}
    assert two_publishes["mismatches_second"] == {}
    settings = two_publishes["settings"]
    assert len(serving_tables(settings.warehouse_path)) > 10
    # the views read exactly the files the catalog records, by absolute path in this data dir
    assert view_paths(settings) == {
        str(settings.data_dir / path) for path in two_publishes["catalog_second"]
    }
    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        # the macro Superset's latency metrics call is there beside the views
        (p95, exact) = con.sql(
            "select latency_quantile(list(struct_pack(bucket := bucket, events := events)), "
            "0.95), (select quantile_cont(latency_ms, 0.95) from fct_inferences) "
            "from mart_latency_buckets_hourly"
        ).fetchone()
        assert abs(p95 - exact) <= 0.01 * exact


def test_a_reader_of_the_old_catalog_reads_the_old_build(two_publishes):
    assert two_publishes["old_reader_fct"] == two_publishes["first_fct"]
    settings = two_publishes["settings"]
    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        now = con.sql("select count(*) from fct_inferences").fetchone()[0]
    assert now == two_publishes["first_fct"][0] + 150


def test_a_deleted_day_disappears_and_its_files_go_a_publish_later(two_publishes, tmp_path):
    data_dir = tmp_path / "state"
    shutil.copytree(two_publishes["settings"].data_dir, data_dir)
    settings = small_files(settings_for(two_publishes["lake"].url, data_dir))
    publish_serving(settings)  # its own files from now on (see the copy test)
    tables = serving_tables(settings.warehouse_path)
    with duckdb.connect(str(settings.warehouse_path)) as con:  # what retention does to a day
        for table in tables:
            columns = {row[0] for row in con.sql(f"describe main.{table}").fetchall()}
            day = next((c for c in DAY_COLUMNS if c in columns), None)
            if day:
                con.execute(f"delete from main.{table} where cast({day} as date) = '{DAYS[0]}'")
    before = catalog_files(settings)
    publish_serving(settings)
    assert mismatches(settings) == {}
    after = catalog_files(settings)
    assert any(part.startswith(DAYS[0]) for _, part in before.values())
    assert not any(part.startswith(DAYS[0]) for _, part in after.values())
    assert set(files_on_disk(data_dir)) == set(before) | set(after)
    publish_serving(settings)  # no reader can hold the catalog before last any more
    assert set(files_on_disk(data_dir)) == set(after)


def test_a_copied_data_dir_neither_reads_nor_deletes_the_originals_files(two_publishes, tmp_path):
    original = two_publishes["settings"].data_dir
    copy = tmp_path / "state"
    shutil.copytree(original, copy)
    settings = small_files(settings_for(two_publishes["lake"].url, copy))
    with duckdb.connect(str(settings.warehouse_path)) as con:  # a change, so that it writes:
        # the day's events ingested again (a newer ingest time), with other latencies
        con.execute("update main.fct_inferences set latency_ms = latency_ms + 1, ingested_at = "
                    "(select max(ingested_at) from main.fct_inferences) + interval 1 second "
                    f"where event_day = '{DAYS[1]}'")  # fmt: skip
    disk = files_on_disk(original)
    hidden = original.with_name("hidden-published")
    (original / "published").rename(hidden)  # reading the original's files would fail now
    try:
        publish_serving(settings)
        assert mismatches(settings) == {}
    finally:
        hidden.rename(original / "published")
    assert files_on_disk(original) == disk  # same files, inodes and mtimes
    assert view_paths(settings) and all(
        path.startswith(f"{copy}/published/") for path in view_paths(settings)
    )
    # what did not change is served from the copy's own copies: only the changed hours are new
    catalog = catalog_files(settings)
    new = set(catalog) - set(two_publishes["catalog_second"])
    assert {catalog[path] for path in new} == {
        ("fct_inferences", f"{DAYS[1]}T{hour:02d}") for hour in (0, 1, 2)}  # fmt: skip


def test_a_rebuild_with_no_new_data_is_published(two_publishes, tmp_path):
    """What a full refresh does to a stamped mart with no new data: rows of an old hour rebuilt
    (here: changed by hand as a build would) and stamped with the newest watermark again, by a
    new build (a new build id). Files of one hour each: that hour is not in the file holding
    the newest rows."""
    data_dir = tmp_path / "state"
    shutil.copytree(two_publishes["settings"].data_dir, data_dir)
    settings = settings_for(two_publishes["lake"].url, data_dir)
    settings = dataclasses.replace(settings, publish_file_rows=1)
    publish_serving(settings)  # its own files, by hour
    with duckdb.connect(str(settings.warehouse_path)) as con:
        newest = con.sql("select max(source_watermark) from mart_inference_hourly").fetchone()[0]
        con.execute(
            "update mart_inference_hourly set requests = requests + 1, "
            "source_watermark = ? where hour = ?",
            [newest, f"{DAYS[0]} 00:00:00"],
        )
    pipeline.new_build(settings)
    publish_serving(settings)
    assert mismatches(settings) == {}


def test_pack_takes_the_coarsest_cut_within_the_limit():
    hours = {f"2025-05-{d:02d}T{h:02d}": rows for d, rows in ((1, 1), (2, 5), (3, 1))
             for h in range(24)}  # fmt: skip
    hours["none"] = 3
    assert set(serving_catalog.pack(hours, 1000).values()) == {"all"}
    assert set(serving_catalog.pack(hours, 170).values()) == {"2025-05", "none"}
    # a day above the limit goes by hour, the others stay whole days
    packed = serving_catalog.pack(hours, 100)
    assert {packed[u] for u in hours if u.startswith("2025-05-02")} == {
        f"2025-05-02T{h:02d}" for h in range(24)}  # fmt: skip
    assert {packed[u] for u in hours if not u.startswith("2025-05-02")} == {
        "2025-05-01", "2025-05-03", "none"}  # fmt: skip
    days = {"2025-04-30": 50, "2025-05-01": 50, "2025-05-02": 50}
    assert serving_catalog.pack(days, 10) == {d: d for d in days}  # a day unit is never cut
    assert serving_catalog.pack(days, 60) == {"2025-04-30": "2025-04", "2025-05-01": "2025-05-01",
                                              "2025-05-02": "2025-05-02"}  # fmt: skip
    assert serving_catalog.pack(days, 100) == {"2025-04-30": "2025-04", "2025-05-01": "2025-05",
                                               "2025-05-02": "2025-05"}  # fmt: skip

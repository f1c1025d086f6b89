"""Building day by day (late data included) gives exactly the marts of one full rebuild."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from conftest import settings_for
from inferwatch import pipeline
from inferwatch.ingest.manifest import discover
from inferwatch.lake import Lake
from inferwatch.simulate import simulate

#: Columns that record when a row was built, not what it says.
BUILD_TIME_COLUMNS = {"source_watermark"}


def checksums(warehouse) -> dict[str, tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = [
            name
            for (name,) in con.sql(
                "select table_name from information_schema.tables "
                "where table_schema = 'main' and table_type = 'BASE TABLE' "
                "and regexp_matches(table_name, '^(fct|mart)_')"
            ).fetchall()
        ]
        out = {}
        for table in tables:
            columns = [
                c
                for (c,) in con.sql(
                    "select column_name from information_schema.columns "
                    f"where table_name = '{table}' order by ordinal_position"
                ).fetchall()
                if c not in BUILD_TIME_COLUMNS
            ]
            row = ", ".join(f'"{c}"' for c in columns)
            out[table] = con.sql(
                f"select count(*), sum(hash(struct_pack({row}))::hugeint) from {table}"
            ).fetchone()
        return out


def day_of(key: str) -> str:
    """raw/<model>/YYYY/MM/DD/HH/part-n.jsonl → YYYY-MM-DD"""
    return "-".join(key.split("/")[2:5])


@pytest.fixture(scope="module")
def lake_by_day(tmp_path_factory):
    root = tmp_path_factory.mktemp("by-day")
    simulate(
        str(root / "lake"),
        truth_dir=root / "truth",
        start=datetime(2025, 5, 1, tzinfo=UTC),
        end=datetime(2025, 5, 4, tzinfo=UTC),
        events=6_000,
        seed=11,
    )
    return root, Lake(str(root / "lake"))


def test_day_by_day_build_equals_full_rebuild(lake_by_day):
    root, lake = lake_by_day
    daily = settings_for(lake.url, root / "daily")
    objects = discover(lake)
    days = sorted({day_of(o.key) for o in objects})
    assert len(days) == 3
    # Day by day, oldest first, but one object of the first day arrives last (late data).
    late = next(o for o in objects if day_of(o.key) == days[0])
    batches = [[o for o in objects if day_of(o.key) == d and o != late] for d in days]
    batches.append([late])
    for number, batch in enumerate(batches):
        pipeline.ingest(daily, lake, [o.__dict__ for o in batch], f"day-{number}")
        pipeline.transform(daily, lake)
    assert discover(lake) == []

    full = settings_for(lake.url, root / "full")
    pipeline.transform(full, lake, full_refresh=True)

    incremental, rebuilt = checksums(daily.warehouse_path), checksums(full.warehouse_path)
    assert set(incremental) >= {"fct_inferences", "mart_inference_hourly", "mart_latency_daily"}
    assert incremental == rebuilt

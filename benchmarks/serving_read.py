"""What a chart pays to read the served catalog (issue 20): one query per served view, timed as
Superset's DuckDB connections run it.

    .venv/pipeline/bin/python benchmarks/serving_read.py DATA_DIR [--repeat 5] [--out JSON]

``DATA_DIR`` is a data dir with a published ``serving.duckdb`` (e.g. ``state/e2e`` of a
``benchmarks/run.py --keep`` work dir). For every view, the query a time-series chart asks of
it over its whole history: rows per day of its hour/day column (``count(*)`` for a view without
one), timed by ``chart_cost.time_sql`` (medians over ``--repeat``: a new confined instance and
the query on it, then the query on a kept instance). Beside each: how many Parquet files the
view reads (what a new instance opens the footers of). Run it on data dirs published by two
versions of the code to compare what readers pay for their file layouts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chart_cost import time_sql  # noqa: E402

#: The time column a chart buckets by, best first (serving_catalog's cut columns).
TIME_COLUMNS = ("hour", "event_hour", "event_ts", "event_day", "day")


def chart_queries(serving: Path) -> dict[str, tuple[str, int]]:
    """View → (the chart-like query over it, how many files it reads)."""
    out = {}
    with duckdb.connect(str(serving), read_only=True) as con:
        views = con.execute(
            "select view_name, sql from duckdb_views() where not internal order by 1"
        ).fetchall()
        for name, sql in views:
            columns = {row[0] for row in con.execute(f'describe "{name}"').fetchall()}
            time = next((c for c in TIME_COLUMNS if c in columns), None)
            query = (
                f'select cast("{time}" as date) as day, count(*) from "{name}" '
                "group by 1 order by 1"
                if time
                else f'select count(*) from "{name}"'
            )
            out[name] = (query, sql.count(".parquet'"))
    return out


def measure(data_dir: Path, repeat: int) -> dict[str, dict]:
    serving = data_dir / "serving.duckdb"
    out = {}
    for name, (query, files) in chart_queries(serving).items():
        out[name] = {"files": files, **time_sql(str(serving), query, repeat)}
    return out


def table(results: dict[str, dict]) -> str:
    lines = [
        "| view | files | connect ms | cold query ms | warm query ms |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['files']} | {r['connect_ms']:.0f} | {r['cold_query_ms']:.0f} | "
            f"{r['warm_query_ms']:.0f} |"
        )
    total = {k: sum(r[k] for r in results.values()) for k in
             ("files", "connect_ms", "cold_query_ms", "warm_query_ms")}  # fmt: skip
    lines.append(
        f"| **all views** | {total['files']} | {total['connect_ms']:.0f} | "
        f"{total['cold_query_ms']:.0f} | {total['warm_query_ms']:.0f} |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    results = measure(args.data_dir.resolve(), args.repeat)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()

"""Where a chart's time goes (issue 20): the SQL Superset runs for it, timed in DuckDB alone.

    .venv/pipeline/bin/python benchmarks/chart_cost.py RESULTS_JSON [--repeat 10]

``benchmarks/run.py --only superset`` records, for every chart, the SQL its saved query runs
(``result_type: query`` of ``/api/v1/chart/data``) and the DuckDB file its database opens, then
calls :func:`breakdown` while the published files are still there. For each chart, ``--repeat``
times and as medians:

- ``connect_ms``: opening the file read-only as Superset's connection does without a pool (a
  new DuckDB instance, confined as ``superset/superset_config.py`` confines it);
- ``cold_query_ms``: the chart's SQL on that new instance (binding the views over the Parquet
  partitions, reading their footers, the query, fetching every row);
- ``warm_query_ms``: the same SQL on an instance that has answered it before (what a query
  costs once the instance and its Parquet metadata cache are kept between queries).

Superset's own cost is the chart-data time minus what DuckDB took. The command re-times the
SQL a saved run recorded (on that run's data dir, which ``--keep`` kept) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import duckdb

#: superset_config.py: every connection may read only the published/ folder beside its file.
PUBLISHED_DIR = "published"


def open_as_superset(path: str, metadata_cache: bool = False) -> duckdb.DuckDBPyConnection:
    """A new read-only DuckDB instance on ``path``, confined like Superset's connections."""
    con = duckdb.connect(path, read_only=True)
    con.execute(f"set parquet_metadata_cache = {str(metadata_cache).lower()}")
    published = str(Path(path).resolve().parent / PUBLISHED_DIR) + "/"
    con.execute(f"set allowed_directories = ['{published}']")
    con.execute("set enable_external_access = false")
    con.execute("set lock_configuration = true")
    return con


def time_sql(path: str, sql: str, repeat: int) -> dict[str, float]:
    """Medians over ``repeat`` rounds: a new connection and the SQL on it; then the SQL on one
    kept connection (DuckDB shares one instance per file and process, so the cold rounds come
    first, each closing its instance)."""
    connect, cold, warm = [], [], []
    for _ in range(repeat):
        started = time.perf_counter()
        con = open_as_superset(path)
        opened = time.perf_counter()
        try:
            con.execute(sql).fetchall()
        finally:
            con.close()
        connect.append((opened - started) * 1000)
        cold.append((time.perf_counter() - opened) * 1000)
    with open_as_superset(path, metadata_cache=True) as kept:
        kept.execute(sql).fetchall()
        for _ in range(repeat):
            started = time.perf_counter()
            with kept.cursor() as cursor:
                cursor.execute(sql).fetchall()
            warm.append((time.perf_counter() - started) * 1000)
    return {
        "connect_ms": round(statistics.median(connect), 1),
        "cold_query_ms": round(statistics.median(cold), 1),
        "warm_query_ms": round(statistics.median(warm), 1),
    }


def breakdown(charts: dict[str, dict], repeat: int) -> dict[str, dict]:
    """For each chart with ``sql`` and ``database_path``: :func:`time_sql`'s figures."""
    out = {}
    for name, chart in charts.items():
        if chart.get("sql") and chart.get("database_path"):
            try:
                out[name] = time_sql(chart["database_path"], chart["sql"], repeat)
            except duckdb.Error as error:
                out[name] = {"error": str(error)[:200]}
    return out


def table(charts: dict[str, dict], costs: dict[str, dict]) -> str:
    lines = [
        "| chart | chart-data p50 ms | p95 ms | DuckDB connect ms | cold query ms | "
        "warm query ms | Superset ms (p50 - connect - cold) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, chart in charts.items():
        cost = costs.get(name) or {}
        if "connect_ms" not in cost:
            continue
        rest = chart["p50_ms"] - cost["connect_ms"] - cost["cold_query_ms"]
        lines.append(
            f"| {name} | {chart['p50_ms']:.0f} | {chart['p95_ms']:.0f} | "
            f"{cost['connect_ms']:.0f} | {cost['cold_query_ms']:.0f} | "
            f"{cost['warm_query_ms']:.0f} | {rest:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a run.py --only superset results JSON")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    charts = json.loads(args.results.read_text())["superset"]["charts"]
    print(table(charts, breakdown(charts, args.repeat)))


if __name__ == "__main__":
    main()

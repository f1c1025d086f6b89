"""The chart rollups' SQL against what it replaced, in DuckDB alone (issue 20).

    .venv/pipeline/bin/python benchmarks/rollup_sql.py DATA_DIR/serving.duckdb [--repeat 10]

For each chart pointed at a rollup, the query its metric runs (per hour or day, no filter, as
the saved chart asks) on the old source and on the rollup, each on a fresh read-only connection
(as Superset opens one per query), ``--repeat`` times: median and p95 in ms, and whether both
return the same figures. Superset's own cost (~100 ms a request) comes on top.
"""

from __future__ import annotations

import argparse
import statistics
import time

import duckdb

BUCKETS = "list(struct_pack(bucket := bucket, events := events))"
QUANTILES = (0.50, 0.95, 0.99)


def rollup_pick(column: str, q: float) -> str:
    """superset/datasets/inferwatch_serving/mart_latency_rollup_hourly.yaml's metric."""
    whens = [
        "WHEN COUNT(*) FILTER (WHERE rollup_level = 3) = 1 "
        f"THEN ANY_VALUE({column}) FILTER (WHERE rollup_level = 3)"
    ]
    for level in (2, 1):
        whens.append(
            f"WHEN COUNT(*) FILTER (WHERE rollup_level > {level}) = 0 AND COUNT(*) FILTER "
            f"(WHERE rollup_level = {level}) = 1 THEN ANY_VALUE({column}) FILTER "
            f"(WHERE rollup_level = {level})"
        )
    whens.append(
        f"WHEN COUNT(*) FILTER (WHERE rollup_level > 0) = 0 AND COUNT(*) = 1 "
        f"THEN ANY_VALUE({column})"
    )
    merge = "FLATTEN(LIST(latency_buckets) FILTER (WHERE rollup_level = 0))"
    return f"CASE {' '.join(whens)} ELSE latency_quantile({merge}, {q}) END"


def daily_pick(column: str, q: float) -> str:
    merge = "latency_quantile(FLATTEN(LIST(latency_buckets))"
    return f"CASE WHEN COUNT(*) = 1 THEN ANY_VALUE({column}) ELSE {merge}, {q}) END"


def queries() -> dict[str, tuple[str, str]]:
    old_hourly = ", ".join(f"latency_quantile({BUCKETS}, {q})" for q in QUANTILES)
    new_hourly = ", ".join(rollup_pick(f"latency_p{round(q * 100)}_ms", q) for q in QUANTILES)
    return {
        "Latency p50 / p95 / p99 (hourly, all traffic)": (
            f"select date_trunc('hour', hour) as t, {old_hourly} "
            "from main.mart_latency_buckets_hourly group by 1 order by 1",
            f"select date_trunc('hour', hour) as t, {new_hourly} "
            "from main.mart_latency_rollup_hourly group by 1 order by 1",
        ),
        "Latency p95 by version (daily)": (
            f"select date_trunc('day', hour) as t, model, model_version, "
            f"latency_quantile({BUCKETS}, 0.95) "
            "from main.mart_latency_buckets_hourly group by all order by all",
            f"select date_trunc('day', event_day) as t, model, model_version, "
            f"{daily_pick('latency_p95_ms', 0.95)} "
            "from main.mart_model_daily group by all order by all",
        ),
    }


def timed(path: str, sql: str, repeat: int) -> tuple[list[float], list]:
    samples, rows = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        with duckdb.connect(path, read_only=True) as con:
            rows = con.execute(sql).fetchall()
        samples.append((time.perf_counter() - started) * 1000)
    return samples, rows


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("serving", help="a published serving.duckdb")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    for chart, (old, new) in queries().items():
        old_ms, old_rows = timed(args.serving, old, args.repeat)
        new_ms, new_rows = timed(args.serving, new, args.repeat)
        print(
            f"{chart}: old median {statistics.median(old_ms):.0f} ms, p95 {p95(old_ms):.0f} ms; "
            f"rollup median {statistics.median(new_ms):.0f} ms, p95 {p95(new_ms):.0f} ms; "
            f"{len(new_rows)} rows, same figures: {old_rows == new_rows}"
        )


if __name__ == "__main__":
    main()

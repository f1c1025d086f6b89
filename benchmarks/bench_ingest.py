"""Bronze ingest against the DuckDB floor, in the same run (a first slice of issue 7's suite).

    .venv/pipeline/bin/python benchmarks/bench_ingest.py --events 1000000

The floor is one DuckDB query (2 threads) that decompresses, parses and aggregates every raw
line; InferWatch's ingest additionally validates every field, scrubs PII, hashes user ids,
quarantines bad lines and writes typed Parquet. Ingest runs twice per round, with the parser's
fast path off (``INFERWATCH_INGEST_FAST_PATH=0``: every line through the full statement, the
parser before issue 20) and on, over the same objects; rounds alternate floor, off, on, so
that the machine's load weighs on all three alike. Prints medians and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from inferwatch.ingest.bronze import ingest
from inferwatch.ingest.fast_path import FAST_PATH_ENV
from inferwatch.ingest.manifest import discover
from inferwatch.lake import Lake
from inferwatch.simulate import simulate

FLOOR_SQL = """
    select json ->> '$.model' as model,
           date_trunc('hour', try_cast(json ->> '$.timestamp' as timestamptz)) as hour,
           count(*) as requests,
           quantile_cont(try_cast(json -> '$.latency_ms' as double), [0.5, 0.95, 0.99])
    from read_json_objects({files}, format = 'newline_delimited', ignore_errors = true)
    group by all
"""


def rounds(fns: dict, repeat: int) -> dict[str, float]:
    """Median seconds of each function, run in turn ``repeat`` times."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        end = datetime(2025, 5, 2, tzinfo=UTC)
        started = time.perf_counter()
        summary = simulate(str(root / "lake"), truth_dir=root / "truth",
                           start=end - timedelta(days=1), end=end, events=args.events,
                           objects_per_hour=4)  # fmt: skip
        print(f"simulate {args.events:,} events: {time.perf_counter() - started:.1f}s")

        lake = Lake(str(root / "lake"))
        objects = discover(lake)
        # The truncated gzip object fails DuckDB's whole query, even with ignore_errors: leave it
        # out of the floor, which is then a slightly smaller job than InferWatch's.
        truncated = json.dumps(summary, default=str)
        readable = [o for o in objects if o.key not in truncated]

        def floor() -> None:
            with duckdb.connect() as con:
                con.execute("set threads = 2")
                files = "[" + ", ".join(f"'{lake.path(o.key)}'" for o in readable) + "]"
                con.execute(FLOOR_SQL.format(files=files)).fetchall()

        runs = iter(range(1_000_000))

        def bronze(fast: str) -> None:
            os.environ[FAST_PATH_ENV] = fast
            try:
                ingest(lake, objects, batch_id=f"bench-{next(runs)}", user_hash_key=b"bench",
                       work_dir=root / "work", threads=2)  # fmt: skip
            finally:
                del os.environ[FAST_PATH_ENV]

        s = rounds(
            {"floor": floor, "off": lambda: bronze("0"), "on": lambda: bronze("1")}, args.repeat
        )
        print(f"DuckDB floor (parse + aggregate):     {s['floor']:.2f}s median of {args.repeat}")
        print(f"bronze ingest, fast path off (old):   {s['off']:.2f}s")
        print(f"bronze ingest, fast path on (new):    {s['on']:.2f}s")
        print(f"ratio old / floor:                    {s['off'] / s['floor']:.2f}x")
        print(f"ratio new / floor:                    {s['on'] / s['floor']:.2f}x")
        print(f"speed-up new vs old:                  {s['off'] / s['on']:.2f}x")


if __name__ == "__main__":
    main()

"""Bronze ingest against the DuckDB floor, in the same run (a first slice of issue 7's suite).

    .venv/pipeline/bin/python benchmarks/bench_ingest.py --events 1000000
    .venv/pipeline/bin/python benchmarks/bench_ingest.py --events 3000000 --paths on --profile
    .venv/pipeline/bin/python benchmarks/bench_ingest.py --lake KEPT_LAKE --paths on --profile

The floor is one DuckDB query (2 threads) that decompresses, parses and aggregates every raw
line; InferWatch's ingest additionally validates every field, scrubs PII, hashes user ids,
quarantines bad lines and writes typed Parquet. Ingest runs once per path and round: with the
parser's fast path off (``INFERWATCH_INGEST_FAST_PATH=0``: every line through the full
statement, the parser before issue 20) and on, over the same objects; rounds alternate floor,
off, on, so that the machine's load weighs on all of them alike. Prints medians and the ratios.

``--lake`` reads the raw objects of an existing lake (e.g. the ``lakes/day-src`` of a
``benchmarks/run.py --keep`` work dir) instead of simulating a day: they are hard-linked into
a temporary lake, so the lake given is only read; ``--max-objects N`` takes N of them, spread
evenly over its keys (models and hours), e.g. a few million lines in objects of a 10M day's
size. ``--profile`` prints where the last ingest
of each path spent its time, step by step (the ingest report's ``phase_seconds``), with the
1-minute load average beside each measure and ingest's peak RSS.
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
from measure import TreeSampler

from inferwatch.ingest.bronze import ingest
from inferwatch.ingest.fast_path import FAST_PATH_ENV
from inferwatch.ingest.lines import decompress
from inferwatch.ingest.manifest import discover
from inferwatch.lake import Lake, is_raw_log
from inferwatch.simulate import simulate

FLOOR_SQL = """
    select json ->> '$.model' as model,
           date_trunc('hour', try_cast(json ->> '$.timestamp' as timestamptz)) as hour,
           count(*) as requests,
           quantile_cont(try_cast(json -> '$.latency_ms' as double), [0.5, 0.95, 0.99])
    from read_json_objects({files}, format = 'newline_delimited', ignore_errors = true)
    group by all
"""
PATHS = {"off": "0", "on": "1"}


def rounds(fns: dict, repeat: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Median seconds of each function, run in turn ``repeat`` times; and the 1-minute load
    average before each run."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    loads: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            loads[name].append(round(os.getloadavg()[0], 2))
            started = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}, loads


def simulated_lake(root: Path, events: int) -> tuple[Lake, set[str]]:
    """A simulated day of ``events`` and the keys of its cut gzip objects."""
    end = datetime(2025, 5, 2, tzinfo=UTC)
    started = time.perf_counter()
    summary = simulate(str(root / "lake"), truth_dir=root / "truth",
                       start=end - timedelta(days=1), end=end, events=events,
                       objects_per_hour=4)  # fmt: skip
    print(f"simulate {events:,} events: {time.perf_counter() - started:.1f}s")
    lake = Lake(str(root / "lake"))
    text = json.dumps(summary, default=str)
    return lake, {o.key for o in lake.list("raw") if o.key in text}


def linked_lake(source: str, root: Path, max_objects: int | None) -> tuple[Lake, set[str]]:
    """The raw objects of the lake ``source`` (at most ``max_objects``, every k-th key),
    hard-linked into ``root/lake`` (``source`` is only read), and the keys of its cut gzip
    objects (inflated once to find them)."""
    src, lake = Lake(source), Lake(str(root / "lake"))
    raw = [obj for obj in src.list("raw") if is_raw_log(obj.key)]
    if max_objects and max_objects < len(raw):
        raw = [raw[i * len(raw) // max_objects] for i in range(max_objects)]
    cut = set()
    for obj in raw:
        target = Path(lake.path(obj.key))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(src.path(obj.key), target)
        if decompress(obj.key, Path(target).read_bytes()).truncated:
            cut.add(obj.key)
    return lake, cut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="a simulated day's events")
    parser.add_argument("--lake", help="read this lake's raw objects instead of simulating")
    parser.add_argument("--max-objects", type=int, help="with --lake: read only this many")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--paths", default="off,on", help="parser paths to time: off, on or both")
    parser.add_argument("--profile", action="store_true", help="print ingest's steps")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not paths or set(paths) - set(PATHS):
        parser.error(f"--paths takes off, on or off,on, not {args.paths!r}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.lake:
            lake, cut = linked_lake(args.lake, root, args.max_objects)
        else:
            lake, cut = simulated_lake(root, args.events)
        objects = discover(lake)
        # A cut gzip object fails DuckDB's whole query, even with ignore_errors: leave it out
        # of the floor, which is then a slightly smaller job than InferWatch's.
        readable = [o for o in objects if o.key not in cut]
        print(f"{len(objects)} objects ({len(cut)} cut gzip streams left out of the floor), "
              f"{sum(o.size for o in objects) / 1e6:,.0f} MB stored")  # fmt: skip

        def floor() -> None:
            with duckdb.connect() as con:
                con.execute("set threads = 2")
                files = "[" + ", ".join(f"'{lake.path(o.key)}'" for o in readable) + "]"
                con.execute(FLOOR_SQL.format(files=files)).fetchall()

        runs = iter(range(1_000_000))
        reports: dict[str, dict] = {}
        peaks: dict[str, int] = {}

        def bronze(path: str) -> None:
            os.environ[FAST_PATH_ENV] = PATHS[path]
            sampler = TreeSampler(lambda: {"ingest": os.getpid()}, 0.1)
            sampler.start()
            try:
                report = ingest(lake, objects, batch_id=f"bench-{next(runs)}",
                                user_hash_key=b"bench", work_dir=root / "work",
                                threads=2)  # fmt: skip
            finally:
                sampler.stop()
                del os.environ[FAST_PATH_ENV]
            reports[path] = report.as_dict()
            peaks[path] = max(peaks.get(path, 0), sampler.peak)

        fns = {"floor": floor, **{path: (lambda p=path: bronze(p)) for path in paths}}
        seconds, loads = rounds(fns, args.repeat)
        lines = reports[paths[-1]]["lines_read"]
        print(f"{lines:,} lines read by ingest; 1-minute load before each run: {loads}")
        print(f"DuckDB floor (parse + aggregate):     {seconds['floor']:.2f}s "
              f"median of {args.repeat}")  # fmt: skip
        names = {"off": "fast path off (old)", "on": "fast path on (new)"}
        for path in paths:
            ratio = seconds[path] / seconds["floor"]
            print(f"bronze ingest, {names[path] + ':':<22} {seconds[path]:.2f}s, "
                  f"{ratio:.2f}x the floor, peak RSS {peaks[path] / 2**20:,.0f} MB")  # fmt: skip
        if len(paths) == 2:
            print(f"speed-up new vs old:                  {seconds['off'] / seconds['on']:.2f}x")
        if args.profile:
            for path in paths:
                print_profile(names[path], reports[path], seconds["floor"])
        if args.json:
            out = {"seconds": seconds, "loads": loads, "peak_rss": peaks, "reports": reports}
            args.json.write_text(json.dumps(out, indent=1, default=str) + "\n")


def print_profile(name: str, report: dict, floor: float) -> None:
    """Ingest's steps (wall seconds summed over chunks), largest first, against the floor."""
    total = report["seconds"]
    steps = report["phase_seconds"]
    print(f"\nwhere ingest's time went, {name}: {total:.1f}s over {report['lines_read']:,} "
          f"lines ({report['lines_read'] / total:,.0f} lines/s); steps in the chunk loop, "
          f"seconds and x the floor")  # fmt: skip
    pooled = {k: v for k, v in steps.items() if "fetch pool" in k}
    inline = {k: v for k, v in steps.items() if k not in pooled}
    for step, value in sorted(inline.items(), key=lambda kv: -kv[1]):
        print(f"  {step:<52} {value:8.2f}s {value / floor:6.2f}x")
    rest = total - sum(inline.values())
    print(f"  {'(the rest: connections, temp dirs, set-up)':<52} {rest:8.2f}s {rest / floor:6.2f}x")
    for step, value in pooled.items():
        print(f"  {step:<52} {value:8.2f}s (CPU beside the chunks, not in the total)")


if __name__ == "__main__":
    main()

"""Fixed cost of a steady-state run (issue 20): `inferwatch run` three times on one data dir.

A tiny lake (``--events`` over two hours, simulated) is built from its first hour, then the
same data dir runs again with nothing new, then once more after the second hour's objects
land: what an hourly (or more frequent) schedule pays per run once the first build is done.
Prints per-run wall time, per-task seconds (the run's Airflow metadata DB) and dbt's slowest
nodes, as JSON (also written to ``--out``). Start-up of a fresh data dir is `run.py --only
startup`.

    .venv/pipeline/bin/python benchmarks/steady_run.py --events 1000 --out /tmp/steady.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import run
from run import DAY_START, Bench, clone_lake, log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/steady_run.py", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000, help="events over the two hours")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="results JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="inferwatch-steady-"))
    bench = Bench(run.parse_args(["--only", "startup"]), work)
    try:
        results = measure(bench, work, args.events, args.seed)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


def measure(bench: Bench, work: Path, events: int, seed: int) -> dict:
    source = work / "lakes" / "src"
    bench.simulate("steady", source, DAY_START, DAY_START + timedelta(hours=2), events, seed, 1)
    lake, held = work / "lakes" / "steady", work / "lakes" / "second-hour"
    clone_lake(source, lake)
    second_hour = DAY_START + timedelta(hours=1)
    for path in sorted((lake / "raw").rglob(second_hour.strftime("%Y/%m/%d/%H/*"))):
        target = held / path.relative_to(lake)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
    data_dir = bench.data_dir("steady")
    runs = {"first_build": bench.inferwatch_run("first build", data_dir, lake)}
    runs["nothing_new"] = bench.inferwatch_run("nothing new", data_dir, lake)
    for path in sorted(p for p in held.rglob("*") if p.is_file()):
        target = lake / path.relative_to(held)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
    runs["one_more_hour"] = bench.inferwatch_run("one more hour", data_dir, lake)
    out = {
        label: {
            key: measured.get(key)
            for key in ("wall_s", "outcome", "tasks_s", "dbt_nodes_s", "load_avg_start_end")
        }
        for label, measured in runs.items()
    }
    for label, measured in out.items():
        log(f"{label}: {measured['wall_s']:.1f}s {measured['tasks_s']}")
    return {"events": events, "machine": run.machine(), "git": run.git_state(), "runs": out}


if __name__ == "__main__":
    raise SystemExit(main())

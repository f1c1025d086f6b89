"""One measured step, run in its own process by ``benchmarks/run.py`` (never by hand).

    python benchmarks/stage.py STAGE IN.json OUT.json

``IN.json`` holds the step's arguments; ``OUT.json`` gets ``import_s`` (importing what the
step needs, after interpreter start), ``work_s`` (the step itself) and the step's result.
Pipeline steps call the very functions the Airflow tasks call (``inferwatch.pipeline``),
with the settings of the environment (``INFERWATCH_DATA_DIR``, ``INFERWATCH_LAKE_URL``).
"""

from __future__ import annotations

import functools
import gzip
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

_STARTED = time.perf_counter()

# ---------------------------------------------------------------- the floor and the alternative

#: Decompress, parse and aggregate every raw line: hourly requests and latency percentiles per
#: model. Epoch timestamps (seconds or milliseconds, told apart by size) count too, so the
#: floor produces the same aggregate as the hand-written job and as InferWatch's marts.
FLOOR_SQL = """
    with lines as (
        select json ->> '$.model' as model,
               json -> '$.timestamp' as ts,
               try_cast(json ->> '$.latency_ms' as double) as latency_ms
        from read_json_objects({files}, format = 'newline_delimited', ignore_errors = true)
    )
    select model,
           date_trunc('hour', case
               when json_type(ts) = 'VARCHAR' then try_cast(ts ->> '$' as timestamptz)
               when abs(try_cast(ts as double)) >= 1e11
                   then to_timestamp(try_cast(ts as double) / 1000)
               else to_timestamp(try_cast(ts as double)) end) as hour,
           count(*) as requests,
           quantile_cont(latency_ms, [0.5, 0.95, 0.99]) as latency_p50_p95_p99
    from lines
    group by all
"""


#: The same aggregate with the JSON reader told which three fields to read (typed columns):
#: each line is parsed once instead of once per extraction. Reported beside the floor, not used
#: in the ratios (issue 7's floor is the query above, as in bench_ingest.py).
FLOOR_TYPED_SQL = """
    with lines as (
        select model, "timestamp" as ts, try_cast(latency_ms::varchar as double) as latency_ms
        from read_json({files}, format = 'newline_delimited', ignore_errors = true,
                       columns = {{model: 'VARCHAR', "timestamp": 'JSON', latency_ms: 'JSON'}})
    )
    select model,
           date_trunc('hour', case
               when json_type(ts) = 'VARCHAR' then try_cast(ts ->> '$' as timestamptz)
               when abs(try_cast(ts as double)) >= 1e11
                   then to_timestamp(try_cast(ts as double) / 1000)
               else to_timestamp(try_cast(ts as double)) end) as hour,
           count(*) as requests,
           quantile_cont(latency_ms, [0.5, 0.95, 0.99]) as latency_p50_p95_p99
    from lines
    group by all
"""


def floor(args: dict) -> dict:
    import duckdb

    imported = time.perf_counter()
    files = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in args["files"]) + "]"

    def query(sql: str) -> tuple[float, list]:
        started = time.perf_counter()
        with duckdb.connect() as con:
            con.execute(f"set threads = {int(args['threads'])}")
            con.execute(f"set memory_limit = '{args['memory_limit']}'")
            con.execute("set TimeZone = 'UTC'")
            result = con.execute(sql.format(files=files)).fetchall()
        return time.perf_counter() - started, result

    samples, typed = [], []
    rows = lines = 0
    for _ in range(args["repeat"]):
        seconds, result = query(FLOOR_SQL)
        samples.append(seconds)
        rows, lines = len(result), sum(r[2] for r in result)
    for _ in range(args.get("typed_repeat", 1)):
        typed.append(query(FLOOR_TYPED_SQL)[0])
    return {
        "import_s": imported - _STARTED,
        "samples_s": samples,
        "typed_samples_s": typed,
        "groups": rows,
        "lines": lines,
    }


def pandas_job(args: dict) -> dict:
    """What a user would write by hand: json.loads per line, then a pandas groupby."""
    import pandas as pd

    imported = time.perf_counter()
    started = time.perf_counter()
    models, stamps, latencies = [], [], []
    for path in args["files"]:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as fh:
            for raw in fh:
                if not raw.strip():
                    continue
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                models.append(event.get("model"))
                stamps.append(event.get("timestamp"))
                latencies.append(event.get("latency_ms"))
    frame = pd.DataFrame({"model": models, "ts": stamps, "latency_ms": latencies})
    text = frame["ts"].map(lambda v: isinstance(v, str))
    number = pd.to_numeric(frame["ts"].where(~text), errors="coerce")
    hour = pd.to_datetime(frame["ts"].where(text), format="ISO8601", utc=True, errors="coerce")
    epoch_ms = number.where(number.abs() >= 1e11, number * 1000)
    hour = hour.fillna(pd.to_datetime(epoch_ms, unit="ms", utc=True, errors="coerce"))
    frame["hour"] = hour.dt.floor("h")
    frame["latency_ms"] = pd.to_numeric(frame["latency_ms"], errors="coerce")
    grouped = frame.groupby(["model", "hour"], dropna=False)["latency_ms"]
    result = grouped.size().to_frame("requests").join(grouped.quantile([0.5, 0.95, 0.99]).unstack())
    seconds = time.perf_counter() - started
    return {
        "import_s": imported - _STARTED,
        "work_s": seconds,
        "lines": len(frame),
        "groups": len(result),
    }


# ---------------------------------------------------------------- DAG parse


def dagparse(args: dict) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    imported = time.perf_counter()
    started = time.perf_counter()
    bag = DagBag(dag_folder=args["dag_file"])
    parse_s = time.perf_counter() - started
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    stats = [
        {"file": str(s.file), "duration_s": _seconds(s.duration), "dags": s.dag_num}
        for s in bag.dagbag_stats
    ]
    return {
        "import_s": imported - _STARTED,
        "work_s": parse_s,
        "dag_ids": sorted(bag.dag_ids),
        "stats": stats,
    }


def _seconds(value) -> float:
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)


# ---------------------------------------------------------------- pipeline steps


class _Timer:
    """Accumulated wall time of wrapped functions (ingest's breakdown, single-threaded calls)."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, module, name: str, label: str | None = None) -> None:
        original = getattr(module, name)
        label = label or name

        @functools.wraps(original)
        def timed(*a, **kw):
            started = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1

        setattr(module, name, timed)

    def as_dict(self) -> dict:
        return {k: {"s": round(v, 3), "calls": self.calls[k]} for k, v in self.seconds.items()}


def _pipeline():
    from inferwatch import pipeline
    from inferwatch.orchestrate import current_lake, current_settings

    settings = current_settings()
    return pipeline, settings, current_lake(settings)


def discover(args: dict) -> dict:
    pipeline, settings, lake = _pipeline()
    imported = time.perf_counter()
    started = time.perf_counter()
    objects = pipeline.discover(lake)
    work = time.perf_counter() - started
    Path(args["objects_file"]).write_text(json.dumps(objects))
    return {
        "import_s": imported - _STARTED,
        "work_s": work,
        "objects": len(objects),
        "bytes": sum(o["size"] for o in objects),
    }


def ingest(args: dict) -> dict:
    from inferwatch.ingest import bronze

    pipeline, settings, lake = _pipeline()
    timer = _Timer()
    # Where ingest's time goes, without touching its code: the per-chunk steps it calls.
    timer.wrap(bronze, "lines_table", "split lines (NumPy → Arrow)")
    timer.wrap(bronze, "parse", "parse + validate + scrub (DuckDB, into a temp table)")
    timer.wrap(bronze, "_register_user_hashes", "HMAC of distinct user ids")
    timer.wrap(bronze, "_ingest_chunk", "chunk total (after fetch + inflate)")
    imported = time.perf_counter()
    objects = json.loads(Path(args["objects_file"]).read_text())
    started = time.perf_counter()
    report = pipeline.ingest(settings, lake, objects, args["run_id"])
    work = time.perf_counter() - started
    Path(args["report_file"]).write_text(json.dumps(report, default=str))
    breakdown = timer.as_dict()
    chunk = breakdown.get("chunk total (after fetch + inflate)", {}).get("s", 0.0)
    inner = sum(
        v["s"] for k, v in breakdown.items() if not k.startswith("chunk total")
    )  # the rest of a chunk: the COPY statements writing Parquet, counts, manifest, moves
    breakdown["write Parquet + counts + manifest (rest of chunk)"] = {
        "s": round(chunk - inner, 3),
        "calls": breakdown.get("chunk total (after fetch + inflate)", {}).get("calls", 0),
    }
    breakdown["fetch + inflate (threads) and the rest"] = {"s": round(work - chunk, 3), "calls": 1}
    return {
        "import_s": imported - _STARTED,
        "work_s": work,
        "report": {k: v for k, v in report.items() if k != "truncated_objects"},
        "breakdown": breakdown,
    }


def transform(args: dict) -> dict:
    pipeline, settings, lake = _pipeline()
    import dbt.cli.main  # noqa: F401  (dbt's import cost belongs to start-up, not to the work)

    imported = time.perf_counter()
    started = time.perf_counter()
    result = pipeline.transform(settings, lake)
    work = time.perf_counter() - started
    return {
        "import_s": imported - _STARTED,
        "work_s": work,
        "result": result,
        "slowest_nodes": _slowest_dbt_nodes(settings.data_dir / "dbt" / "target"),
    }


def _slowest_dbt_nodes(target: Path, top: int = 10) -> list[dict]:
    try:
        results = json.loads((target / "run_results.json").read_text())
    except FileNotFoundError:
        return []
    nodes = [
        {
            "node": r["unique_id"].split(".", 1)[0] + ":" + r["unique_id"].rsplit(".", 1)[-1],
            "s": round(r.get("execution_time") or 0.0, 3),
        }
        for r in results.get("results", [])
    ]
    total = sum(n["s"] for n in nodes)
    nodes.sort(key=lambda n: -n["s"])
    return [{"node": "(all nodes, sum)", "s": round(total, 3), "count": len(nodes)}, *nodes[:top]]


def validate(args: dict) -> dict:
    pipeline, settings, lake = _pipeline()
    import inferwatch.validate  # noqa: F401  (GX import cost belongs to start-up)

    imported = time.perf_counter()
    started = time.perf_counter()
    result = pipeline.validate(settings, args["run_id"])
    work = time.perf_counter() - started
    Path(args["validation_file"]).write_text(json.dumps(result, default=str))
    return {
        "import_s": imported - _STARTED,
        "work_s": work,
        "passed_gate": result.get("passed_gate"),
        "expectations": len(result.get("results") or []),
        "failed_critical": result.get("failed_critical"),
    }


def publish(args: dict) -> dict:
    pipeline, settings, lake = _pipeline()
    import inferwatch.publish  # noqa: F401

    imported = time.perf_counter()
    validation = json.loads(Path(args["validation_file"]).read_text())
    report = json.loads(Path(args["report_file"]).read_text())
    started = time.perf_counter()
    result = pipeline.publish(settings, args["run_id"], validation, report, args["started_at"])
    work = time.perf_counter() - started
    sizes = {
        name: Path(path).stat().st_size for name, path in result.items() if Path(path).exists()
    }
    return {"import_s": imported - _STARTED, "work_s": work, "published_bytes": sizes}


STAGES = {
    "floor": floor,
    "pandas": pandas_job,
    "dagparse": dagparse,
    "discover": discover,
    "ingest": ingest,
    "transform": transform,
    "validate": validate,
    "publish": publish,
}


def main() -> None:
    name, in_path, out_path = sys.argv[1:4]
    args = json.loads(Path(in_path).read_text())
    result = STAGES[name](args)
    Path(out_path).write_text(json.dumps(result, default=str, indent=1))


if __name__ == "__main__":
    main()

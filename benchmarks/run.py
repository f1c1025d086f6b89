"""InferWatch benchmarks (issue 7): throughput, incremental cost and memory vs the DuckDB floor.

    .venv/pipeline/bin/python benchmarks/run.py                    # 10M events, one day
    .venv/pipeline/bin/python benchmarks/run.py --events 200000    # a quick look
    .venv/pipeline/bin/python benchmarks/run.py --events 30000000 --only e2e      # memory at 30M
    .venv/pipeline/bin/python benchmarks/run.py --only superset    # chart latency, 90 days

One run simulates N events over one day (24 hours x --objects-per-hour gzip/plain objects per
model) and measures, in the same run and on the same files: the DuckDB floor, the hand-written
json.loads + pandas job, InferWatch end to end (`inferwatch run`) and stage by stage, fixed
start-up, one more hour of data, peak RSS of every process tree, DAG parse time and (optional)
Superset chart-data latency. Every measured step runs in its own process. Prints a Markdown
table, writes the results as JSON (--out) and, with --readme, appends the table to
benchmarks/README.md. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import chart_cost
from measure import MB, Measured, TreeSampler, add_output_arguments, run_measured

from inferwatch import airflow_env
from inferwatch.config import DAGS_DIR, PROJECT_ROOT, Settings, read_secrets

BENCH_DIR = Path(__file__).resolve().parent
STAGE_SCRIPT = BENCH_DIR / "stage.py"
PYTHON = sys.executable
INFERWATCH = str(Path(PYTHON).with_name("inferwatch"))
DAG_FILE = DAGS_DIR / "inferwatch_pipeline.py"

DAY_START = datetime(2025, 5, 1, tzinfo=UTC)
DAY_END = DAY_START + timedelta(days=1)
LAST_HOUR = DAY_END - timedelta(hours=1)
GB = 1 << 30

#: Everything one run can measure; --only picks a subset. Opt-in: superset (it simulates and
#: builds its own 90 days and starts a Superset) and stages (the pipeline a second time, each
#: step in its own process: per-step memory without the other steps' leftovers, ingest's
#: breakdown). By default each step's time and peak memory come from the end-to-end run's
#: Airflow task instances and its memory timeline, so the 10M run fits in 30 minutes.
STAGES = ("floor", "pandas", "startup", "scheduled", "e2e", "stages", "hour", "dag", "superset")
DEFAULT_STAGES = tuple(s for s in STAGES if s not in ("superset", "stages"))
PIPELINE_STEPS = ("discover", "ingest", "transform", "validate", "publish")

TARGETS = {
    "e2e": 3.0,  # end to end, start-up excluded, / floor
    "bronze": 2.0,  # ingest stage / floor
    "hour": 0.10,  # one more hour / the full day, start-up included
    "hour_excl": 0.05,  # the same, start-up (the 1,000-event run) subtracted from both
    "rss_gb": 2.0,  # peak RSS of any stage's process tree
    "chart_p95_ms": 250.0,
    "dag_parse_s": 0.5,
}


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dead_url() -> str:
    """A URL where nothing listens: the pipeline's Superset refresh must touch no real Superset."""
    return f"http://127.0.0.1:{free_port()}"


def clone_lake(
    src: Path, dst: Path, prefixes=("raw", "reference", "registry"), skip=frozenset()
) -> None:
    """Hard-link (raw objects are immutable) ``prefixes`` of ``src`` into ``dst``, but the
    files in ``skip``."""
    for prefix in prefixes:
        root = src / prefix
        if not root.exists():
            continue
        for path in root.rglob("*"):
            if path.is_dir() or path in skip:
                continue
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)


def object_lines(truth_dir: Path) -> dict[str, int]:
    """Lines read per raw object, from the simulator's truth (objects.csv)."""
    import csv

    with (truth_dir / "objects.csv").open() as fh:
        return {row["object_key"]: int(row["lines_read"]) for row in csv.DictReader(fh)}


def raw_files(lake: Path) -> list[Path]:
    return sorted(p for p in (lake / "raw").rglob("*") if p.is_file())


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.work = work
        self.logs = work / "logs"
        self.results: dict = {}
        self.env_base = {
            k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "INFERWATCH_"))
        }
        for key in ("INFERWATCH_DUCKDB_THREADS", "INFERWATCH_DUCKDB_MEMORY_LIMIT"):
            if os.environ.get(key):
                self.env_base[key] = os.environ[key]
        if args.duckdb_memory_limit:
            self.env_base["INFERWATCH_DUCKDB_MEMORY_LIMIT"] = args.duckdb_memory_limit
        self.settings_defaults = Settings.from_env({**self.env_base, "INFERWATCH_DATA_DIR": "/x"})
        self.airflow_template: Path | None = None
        self.counter = 0

    # ------------------------------------------------------------ environments and processes

    def env(self, data_dir: Path, lake: Path) -> dict[str, str]:
        env = dict(self.env_base)
        env.update(
            INFERWATCH_DATA_DIR=str(data_dir),
            INFERWATCH_LAKE_URL=str(lake),
            INFERWATCH_SUPERSET_URL=dead_url(),
            INFERWATCH_USER_HASH_KEY="inferwatch-benchmark-key",
            PYTHONUNBUFFERED="1",
        )
        return env

    def measure(self, label: str, argv: list[str], env: dict, **kw) -> Measured:
        self.counter += 1
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
        return run_measured(
            label, argv, env=env, log_path=self.logs / f"{self.counter:02d}-{safe}.log", **kw
        )

    def stage(self, name: str, label: str, args: dict, env: dict) -> tuple[Measured, dict]:
        io_dir = self.work / "io"
        io_dir.mkdir(parents=True, exist_ok=True)
        in_path, out_path = io_dir / f"{label}.in.json", io_dir / f"{label}.out.json"
        in_path.write_text(json.dumps(args, default=str))
        out_path.unlink(missing_ok=True)
        measured = self.measure(
            label, [PYTHON, str(STAGE_SCRIPT), name, str(in_path), str(out_path)], env
        )
        return measured, json.loads(out_path.read_text())

    def data_dir(self, name: str) -> Path:
        """A fresh INFERWATCH_DATA_DIR whose Airflow metadata DB is already migrated."""
        path = self.work / "state" / name
        path.mkdir(parents=True)
        shutil.copytree(self.airflow_home_template(), path / "airflow")
        return path

    def airflow_home_template(self) -> Path:
        """Migrate one Airflow metadata DB (timed: a first `inferwatch run` pays it) and copy it."""
        if self.airflow_template is None:
            base = self.work / "state" / "_template"
            base.mkdir(parents=True)
            settings = Settings.from_env({**self.env_base, "INFERWATCH_DATA_DIR": str(base)})
            home = base / "airflow"
            env = {**self.env_base, **airflow_env.airflow_environment(settings, home)}
            home.mkdir(parents=True)
            airflow = str(Path(PYTHON).with_name("airflow"))
            m = self.measure("airflow db migrate", [airflow, "db", "migrate"], env)
            (home / ".inferwatch-migrated").write_text("ok\n")
            self.results["first_use"] = {"airflow_db_migrate_s": round(m.wall_s, 2)}
            log(f"first use: airflow db migrate {m.wall_s:.1f}s (once per data dir, not counted)")
            self.airflow_template = home
        return self.airflow_template

    def simulate(
        self, label: str, lake: Path, start, end, events: int, seed: int, parts: int
    ) -> dict:
        truth = self.work / "truth" / label
        argv = [
            INFERWATCH,
            "simulate",
            "--lake",
            str(lake),
            "--data-dir",
            str(self.work / "sim"),
            "--truth-dir",
            str(truth),
            "--start",
            start.strftime("%Y-%m-%dT%H:%M:%S"),
            "--end",
            end.strftime("%Y-%m-%dT%H:%M:%S"),
            "--events",
            str(events),
            "--seed",
            str(seed),
            "--objects-per-hour",
            str(parts),
        ]
        m = self.measure(f"simulate {label}", argv, dict(self.env_base))
        summary = json.loads((truth / "summary.json").read_text())
        files = raw_files(lake)
        info = {
            "events": events,
            "seconds": round(m.wall_s, 2),
            "objects": len(files),
            "raw_bytes": sum(p.stat().st_size for p in files),
            "lines_read": summary["lines_read"],
            "truncated_object": summary["truncated_object"],
            "peak_rss_mb": round(m.peak_rss / MB),
        }
        log(
            f"simulated {label}: {events:,} events, {len(files)} objects, "
            f"{info['raw_bytes'] / MB:,.0f} MB in {m.wall_s:.1f}s"
        )
        return info

    # ------------------------------------------------------------ the day's data

    def simulate_day(self) -> None:
        self.day_lake = self.work / "lakes" / "day-src"
        self.results["simulate"] = self.simulate(
            "day",
            self.day_lake,
            DAY_START,
            DAY_END,
            self.args.events,
            self.args.seed,
            self.args.objects_per_hour,
        )
        truncated = (self.results["simulate"]["truncated_object"] or {}).get("key")
        self.held_back = frozenset(self.last_hour_objects())
        lines = object_lines(self.work / "truth" / "day")
        self.day_lines = sum(
            n for key, n in lines.items() if self.day_lake / key not in self.held_back
        )
        # DuckDB's read_json fails the whole query on a cut gzip stream, even with ignore_errors:
        # the floor and the pandas job leave that one object out (a slightly smaller job than
        # InferWatch's). Neither reads the hour held back for "one more hour".
        self.readable = [
            p
            for p in raw_files(self.day_lake)
            if p.relative_to(self.day_lake).as_posix() != truncated and p not in self.held_back
        ]
        held_back = self.held_back
        if held_back:
            self.results["simulate"]["held_back"] = {
                "hour": LAST_HOUR.isoformat(),
                "objects": len(self.held_back),
                "lines": sum(
                    lines[p.relative_to(self.day_lake).as_posix()] for p in self.held_back
                ),
            }

    def last_hour_objects(self) -> list[Path]:
        """The day's last hour, held back to be "one more hour" inside the built day (only
        when `hour` is measured with --hour-at in-day)."""
        if "hour" not in self.args.only or self.args.hour_at != "in-day":
            return []
        mark = LAST_HOUR.strftime("/%Y/%m/%d/%H/")
        return [p for p in raw_files(self.day_lake) if mark in p.as_posix()]

    # ------------------------------------------------------------ the floor and the alternative

    def floor(self) -> None:
        args = {
            "files": [str(p) for p in self.readable],
            "threads": 2,
            "memory_limit": self.settings_defaults.duckdb_memory_limit,
            "repeat": self.args.repeat,
            "typed_repeat": 1,
        }
        m, out = self.stage("floor", "floor", args, dict(self.env_base))
        self.results["floor"] = {
            "median_s": round(median(out["samples_s"]), 3),
            "samples_s": [round(s, 3) for s in out["samples_s"]],
            "typed_read_json_s": round(median(out["typed_samples_s"]), 3),
            "lines": out["lines"],
            "groups": out["groups"],
            "threads": 2,
            "memory_limit": args["memory_limit"],
            "peak_rss_mb": round(m.peak_rss / MB),
            "load_avg_start_end": m.as_dict()["load_avg_start_end"],
        }
        log(f"DuckDB floor: {self.results['floor']['median_s']:.2f}s median of {self.args.repeat}")

    def pandas(self) -> None:
        total_lines = self.day_lines
        want = min(self.args.pandas_events, total_lines)
        # A random sample of whole objects (all models, hours, gzip and plain) of ~`want` lines.
        files = list(self.readable)
        random.Random(self.args.seed).shuffle(files)
        per_byte = total_lines / sum(p.stat().st_size for p in self.readable)
        chosen, lines = [], 0.0
        for path in files:
            if lines >= want:
                break
            chosen.append(str(path))
            lines += path.stat().st_size * per_byte
        m, out = self.stage("pandas", "pandas", {"files": chosen}, dict(self.env_base))
        scaled = out["work_s"] * total_lines / max(out["lines"], 1)
        self.results["pandas"] = {
            "lines": out["lines"],
            "objects": len(chosen),
            "work_s": round(out["work_s"], 3),
            "scaled_to_all_lines_s": round(scaled, 3),
            "wall_s": round(m.wall_s, 3),
            "peak_rss_mb": round(m.peak_rss / MB),
            "load_avg_start_end": m.as_dict()["load_avg_start_end"],
        }
        log(f"pandas job: {out['lines']:,} lines in {out['work_s']:.1f}s (scaled {scaled:.1f}s)")

    # ------------------------------------------------------------ InferWatch

    def inferwatch_run(self, label: str, data_dir: Path, lake: Path) -> dict:
        dbt_log = data_dir / "dbt" / "logs" / "dbt.log"
        dbt_log_offset = dbt_log.stat().st_size if dbt_log.exists() else 0
        m = self.measure(label, [INFERWATCH, "run"], self.env(data_dir, lake))
        out = m.as_dict()
        intervals = task_intervals(data_dir / "airflow" / "airflow.db")
        out["tasks_s"] = {task: round(i["duration_s"], 2) for task, i in intervals.items()}
        # Each task's share of the run's memory timeline: all tasks share one process
        # (dag.test()), so a task's peak includes what earlier tasks left allocated.
        out["tasks_peak_rss_mb"] = {
            task: round(m.peak_between(i["start"], i["end"]) / MB) for task, i in intervals.items()
        }
        out["dbt_nodes_s"] = dbt_node_times(dbt_log, dbt_log_offset)
        runs = sorted((data_dir / "runs").glob("*.json"), key=lambda p: p.stat().st_mtime)
        if runs:
            record = json.loads(runs[-1].read_text())
            ingest = record.get("ingest") or {}
            out["outcome"] = record.get("outcome")
            out["lines_loaded"] = ingest.get("lines_loaded")
            out["lines_quarantined"] = ingest.get("lines_quarantined")
        return out

    def tiny_source(self) -> Path:
        """The `--tiny-events` lake of the start-up measures (simulated once)."""
        src = self.work / "lakes" / "tiny-src"
        if not src.exists():
            start = DAY_START
            self.simulate(
                "tiny", src, start, start + timedelta(hours=1), self.args.tiny_events,
                self.args.seed, 1,
            )  # fmt: skip
        return src

    def startup(self) -> None:
        """Fixed cost: `inferwatch run` with nothing (empty lake) and next to nothing to do."""
        empty_lake = self.work / "lakes" / "empty"
        (empty_lake / "raw").mkdir(parents=True)
        empty_dir = self.data_dir("startup-empty")
        empty = [
            self.inferwatch_run(f"startup empty {i}", empty_dir, empty_lake)
            for i in range(self.args.repeat)
        ]
        tiny_src = self.tiny_source()
        tiny = []
        for i in range(self.args.repeat):
            lake = self.work / "lakes" / f"tiny-{i}"
            clone_lake(tiny_src, lake)
            tiny.append(self.inferwatch_run(f"startup tiny {i}", self.data_dir(f"tiny-{i}"), lake))
        self.results["startup"] = {
            "empty_lake_s": round(median([r["wall_s"] for r in empty]), 3),
            "empty_lake_samples_s": [r["wall_s"] for r in empty],
            "empty_lake_tasks_s": empty[-1]["tasks_s"],
            "tiny_lake_events": self.args.tiny_events,
            "tiny_lake_s": round(median([r["wall_s"] for r in tiny]), 3),
            "tiny_lake_samples_s": [r["wall_s"] for r in tiny],
            "tiny_lake_tasks_s": tiny[-1]["tasks_s"],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in empty + tiny),
        }
        s = self.results["startup"]
        log(
            f"start-up: empty lake {s['empty_lake_s']:.1f}s, {s['tiny_lake_events']:,} events "
            f"{s['tiny_lake_s']:.1f}s (medians of {self.args.repeat})"
        )

    def scheduled(self) -> None:
        """Start-up under the real scheduler: the DAG triggered over Airflow's REST API on a
        running deployment (`inferwatch airflow start`: API server, scheduler, DAG processor,
        triggerer; LocalExecutor), first on an empty lake (`--repeat` runs), then once after
        the 1,000-event lake of `startup` lands in it (its first build, as in `startup`)."""
        lake = self.work / "lakes" / "scheduled"
        (lake / "raw").mkdir(parents=True)
        data_dir = self.data_dir("scheduled")
        port = free_port()
        env = {**self.env(data_dir, lake), "INFERWATCH_SCHEDULE": "none"}  # triggered runs only
        home = data_dir / "airflow"
        started = self.measure(
            "airflow start", [INFERWATCH, "airflow", "start", "--port", str(port)], env
        )
        sampler = TreeSampler(lambda: airflow_roots(home), 0.5)
        sampler.start()
        try:
            registered = wait_for_dag(home / "airflow.db")
            api = AirflowApi(port, home)
            empty = [api.run(f"empty {i}") for i in range(self.args.repeat)]
            clone_lake(self.tiny_source(), lake)
            tiny = [api.run("tiny")]
        finally:
            sampler.stop()
            subprocess.run([INFERWATCH, "airflow", "stop"], env=env, check=False)
        self.results["scheduled"] = {
            "airflow_start_s": round(started.wall_s, 1),
            "dag_registered_after_s": round(registered, 1),
            "empty_lake_s": round(median([r["trigger_to_end_s"] for r in empty]), 2),
            "empty_lake_samples_s": [r["trigger_to_end_s"] for r in empty],
            "empty_lake_runs": empty,
            "tiny_lake_events": self.args.tiny_events,
            "tiny_lake_s": tiny[0]["trigger_to_end_s"],
            "tiny_lake_runs": tiny,
            "deployment_peak_rss_mb": round(sampler.peak / MB),
            "deployment_peak_parts_mb": {
                k: round(v / MB) for k, v in sorted(sampler.peak_parts.items())
            },
        }
        s = self.results["scheduled"]
        log(
            f"start-up under the scheduler: empty lake {s['empty_lake_s']:.1f}s (median of "
            f"{len(empty)}), {s['tiny_lake_events']:,} events {s['tiny_lake_s']:.1f}s; "
            f"deployment peak RSS {s['deployment_peak_rss_mb']:,} MB"
        )

    def e2e(self, period: str) -> None:
        if period == "day":
            self.e2e_lake = self.work / "lakes" / "e2e"
            clone_lake(self.day_lake, self.e2e_lake, skip=self.held_back)
            self.e2e_dir = self.data_dir("e2e")
        out = self.inferwatch_run(f"inferwatch run {period}", self.e2e_dir, self.e2e_lake)
        self.results.setdefault("e2e", {})[period] = out
        log(
            f"inferwatch run ({period}): {out['wall_s']:.1f}s, peak RSS "
            f"{out['peak_rss_mb']:,.0f} MB, {out.get('outcome')}"
        )

    def stages(self, period: str) -> None:
        if period == "day":
            self.stages_lake = self.work / "lakes" / "stages"
            clone_lake(self.day_lake, self.stages_lake, skip=self.held_back)
            self.stages_dir = self.data_dir("stages")
        env = self.env(self.stages_dir, self.stages_lake)
        io = self.work / "io" / f"stages-{period}"
        io.mkdir(parents=True, exist_ok=True)
        files = {
            "objects_file": str(io / "objects.json"),
            "report_file": str(io / "ingest_report.json"),
            "validation_file": str(io / "validation.json"),
        }
        run_id = f"benchmark__{period}"
        started_at = datetime.now(UTC).replace(tzinfo=None).isoformat()
        steps = {}
        for step in PIPELINE_STEPS:
            args = {**files, "run_id": run_id, "started_at": started_at}
            m, out = self.stage(step, f"{step}-{period}", args, env)
            steps[step] = {**m.as_dict(), **out}
            log(
                f"  {step} ({period}): {m.wall_s:.1f}s wall, {out['work_s']:.1f}s work, "
                f"peak RSS {m.peak_rss / MB:,.0f} MB"
            )
        self.results.setdefault("stages", {})[period] = steps

    def simulate_hour(self) -> None:
        """One more hour into the lakes the day was run on: the day's last hour, held back
        (--hour-at in-day: the hour falls inside the day already built, as a late hour
        does), or the next day's first hour at the day's average rate (next-day: a new day,
        the measure before issue 20)."""
        if self.args.hour_at == "in-day":
            held = sorted(self.held_back)
            self.results["simulate_hour"] = {
                **self.results["simulate"]["held_back"],
                "raw_bytes": sum(p.stat().st_size for p in held),
            }
            for lake in (getattr(self, "e2e_lake", None), getattr(self, "stages_lake", None)):
                if lake is None:
                    continue
                for path in held:
                    target = lake / path.relative_to(self.day_lake)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.link(path, target)
            return
        src = self.work / "lakes" / "hour-src"
        events = max(1, round(self.args.events / 24))
        # Another seed: the simulator seeds each hour by its index in the period, and hour 0
        # with the same seed would repeat the day's first hour (same event ids).
        self.results["simulate_hour"] = self.simulate(
            "hour",
            src,
            DAY_END,
            DAY_END + timedelta(hours=1),
            events,
            self.args.seed + 1,
            self.args.objects_per_hour,
        )
        for lake in (getattr(self, "e2e_lake", None), getattr(self, "stages_lake", None)):
            if lake is not None:
                clone_lake(src, lake, prefixes=("raw",))

    # ------------------------------------------------------------ DAG parse

    def dag(self) -> None:
        base = self.work / "state" / "_template"
        settings = Settings.from_env({**self.env_base, "INFERWATCH_DATA_DIR": str(base)})
        env = {
            **self.env_base,
            **airflow_env.airflow_environment(settings, self.airflow_home_template()),
        }
        parse, wall, imports = [], [], []
        for i in range(self.args.dag_repeat):
            m, out = self.stage("dagparse", f"dagparse-{i}", {"dag_file": str(DAG_FILE)}, env)
            parse.append(out["work_s"])
            imports.append(out["import_s"])
            wall.append(m.wall_s)
        # One run under -X importtime: which top-level imports the fresh process pays for.
        io = self.work / "io"
        (io / "importtime.in.json").write_text(json.dumps({"dag_file": str(DAG_FILE)}))
        proc = subprocess.run(
            [
                PYTHON,
                "-X",
                "importtime",
                str(STAGE_SCRIPT),
                "dagparse",
                str(io / "importtime.in.json"),
                str(io / "importtime.out.json"),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        self.results["dag"] = {
            "file": str(DAG_FILE.relative_to(PROJECT_ROOT)),
            "dag_ids": out["dag_ids"],
            "parse_s": round(median(parse), 4),
            "parse_samples_s": [round(s, 4) for s in parse],
            "dagbag_stats": out["stats"],
            "import_airflow_s": round(median(imports), 3),
            "fresh_process_s": round(median(wall), 3),
            "top_imports_s": top_imports(proc.stderr),
        }
        d = self.results["dag"]
        log(
            f"DAG parse: {d['parse_s']:.3f}s median of {len(parse)} (fresh process "
            f"{d['fresh_process_s']:.1f}s, of which importing Airflow {d['import_airflow_s']:.1f}s)"
        )

    # ------------------------------------------------------------ Superset

    def superset(self) -> None:
        days, per_day = self.args.superset_days, self.args.superset_events_per_day
        if self.args.superset_reuse:  # a kept run's lake and data dir, upgraded in place
            kept = self.args.superset_reuse
            lake, data_dir = kept / "lakes" / "superset", kept / "state" / "superset"
            run = self.inferwatch_run("inferwatch run superset (reused)", data_dir, lake)
            self.superset_charts(data_dir, lake, days * per_day, run)
            return
        lake = self.work / "lakes" / "superset"
        end = DAY_START
        sim = self.simulate(
            "superset", lake, end - timedelta(days=days), end, days * per_day, self.args.seed, 1
        )
        data_dir = self.data_dir("superset")
        run = self.inferwatch_run("inferwatch run superset", data_dir, lake)
        self.superset_charts(data_dir, lake, sim["events"], run)

    def superset_charts(self, data_dir: Path, lake: Path, events: int, run: dict) -> None:
        """Start Superset on a published data dir, time the overview charts, stop it."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = self.env(data_dir, lake)
        env["INFERWATCH_SUPERSET_URL"] = url
        started = self.measure(
            "superset start", [INFERWATCH, "superset", "start", "--port", str(port)], env
        )
        try:
            sync_log = self.measure("superset sync", [INFERWATCH, "superset", "sync"], env)
            ids = json.loads(_json_block(Path(sync_log.log).read_text()))
            password = read_secrets(data_dir / "secrets.env")["SUPERSET_ADMIN_PASSWORD"]
            charts = chart_latencies(
                url, password, ids, self.args.superset_requests, self.args.superset_chart_budget
            )
        finally:
            subprocess.run([INFERWATCH, "superset", "stop"], env=env, check=False)
        for name, cost in chart_cost.breakdown(charts, repeat=5).items():
            charts[name]["duckdb"] = cost
        every = [ms for c in charts.values() for ms in c["samples_ms"]]
        serving = data_dir / "serving.duckdb"
        # the catalog and the Parquet files its views read
        published = (data_dir / "published").rglob("*.parquet")
        served = sum(p.stat().st_size for p in published) + (
            serving.stat().st_size if serving.exists() else 0
        )
        self.results["superset"] = {
            "days": self.args.superset_days,
            "events": events,
            "pipeline_run_s": run.get("wall_s"),
            "pipeline_tasks_s": run.get("tasks_s"),
            "serving_mb": round(served / MB) if serving.exists() else None,
            "superset_start_s": round(started.wall_s, 1),
            "requests_per_chart": self.args.superset_requests,
            "charts": {
                name: {k: v for k, v in c.items() if k != "samples_ms"}
                for name, c in charts.items()
            },
            # the target is per chart: the slowest chart's p95
            "p95_ms": max(c["p95_ms"] for c in charts.values()),
            "pooled_p50_ms": round(percentile(every, 50), 1),
            "pooled_p95_ms": round(percentile(every, 95), 1),
        }
        s = self.results["superset"]
        log(
            f"Superset chart data: slowest chart p95 {s['p95_ms']:.0f} ms; all requests "
            f"p50 {s['pooled_p50_ms']:.0f} ms, p95 {s['pooled_p95_ms']:.0f} ms"
        )


# ---------------------------------------------------------------- helpers


def task_intervals(airflow_db: Path, run_id: str | None = None) -> dict[str, dict]:
    """Start, end (epoch seconds) and duration of each task of a DAG run (default: the latest),
    in the order they started, from the Airflow metadata DB (UTC timestamps)."""
    try:
        with sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True, timeout=30) as con:
            if run_id is None:
                (run_id,) = con.execute(
                    "select run_id from dag_run where dag_id = 'inferwatch_pipeline' "
                    "order by id desc limit 1"
                ).fetchone()
            rows = con.execute(
                "select task_id, start_date, end_date, duration from task_instance "
                "where dag_id = 'inferwatch_pipeline' and run_id = ? order by start_date",
                [run_id],
            ).fetchall()
    except (sqlite3.Error, TypeError):
        return {}

    def epoch(text: str | None) -> float:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() if text else 0.0

    return {
        task: {"start": epoch(start), "end": epoch(end), "duration_s": duration or 0.0}
        for task, start, end, duration in rows
    }


def airflow_roots(home: Path) -> dict[str, int]:
    """{component: pid} of the Airflow servers `inferwatch airflow start` runs from ``home``."""
    out = {}
    for path in sorted((home / "pids").glob("*.pid")):
        try:
            out[path.stem] = int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            continue
    return out


def wait_for_dag(airflow_db: Path, timeout: float = 300) -> float:
    """Seconds until the DAG processor has registered the pipeline DAG in the metadata DB."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True, timeout=30) as con:
                if con.execute("select 1 from dag where dag_id = 'inferwatch_pipeline'").fetchone():
                    return time.monotonic() - started
        except sqlite3.Error:
            pass
        time.sleep(1)
    raise TimeoutError(f"the DAG processor did not register inferwatch_pipeline: {airflow_db}")


class AirflowApi:
    """Triggers the pipeline DAG over Airflow's REST API and waits for the run's end state."""

    def __init__(self, port: int, home: Path):
        import requests

        self.url = f"http://127.0.0.1:{port}"
        self.home = home
        self.http = requests.Session()
        password = json.loads((home / "passwords.json").read_text())["admin"]
        token = self.http.post(
            f"{self.url}/auth/token", json={"username": "admin", "password": password}, timeout=60
        )
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def run(self, label: str, timeout: float = 1800) -> dict:
        """Trigger one run; time from the trigger to its end state, and its tasks' durations
        (the run's end and start times from the metadata DB)."""
        path = "/api/v2/dags/inferwatch_pipeline/dagRuns"
        triggered = time.time()
        made = self.http.post(f"{self.url}{path}", json={"logical_date": None}, timeout=60)
        made.raise_for_status()
        run_id = made.json()["dag_run_id"]
        while time.time() - triggered < timeout:
            state = self.http.get(f"{self.url}{path}/{run_id}", timeout=60).json()["state"]
            if state in ("success", "failed"):
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"run {run_id} did not end within {timeout:.0f}s")
        run = self.http.get(f"{self.url}{path}/{run_id}", timeout=60).json()
        start, end = (_api_epoch(run[k]) for k in ("start_date", "end_date"))
        tasks = task_intervals(self.home / "airflow.db", run_id)
        log(f"  triggered run {label}: {state} in {end - triggered:.1f}s")
        return {
            "label": label,
            "state": state,
            "trigger_to_end_s": round(end - triggered, 2),
            "trigger_to_start_s": round(start - triggered, 2),
            "tasks_s": {task: round(i["duration_s"], 2) for task, i in tasks.items()},
            # the run's time when none of its tasks ran: the scheduler's loop, queueing, each
            # LocalExecutor task process starting before its task's clock starts
            "no_task_running_s": round(end - start - covered(tasks.values()), 2),
        }


def covered(intervals) -> float:
    """Seconds covered by the union of task intervals (tasks may run side by side)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted((i["start"], i["end"]) for i in intervals if i["end"]):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _api_epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


_DBT_RESULT = re.compile(
    r"\d+ of \d+ (?:OK created|PASS|WARN|FAIL|ERROR).*? (?:main\.)?(\S+) \.+ \[.*? in ([\d.]+)s\]"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def dbt_node_times(dbt_log: Path, offset: int = 0, top: int = 8) -> dict[str, float]:
    """dbt's slowest nodes from what one run appended to dbt.log (its run_results.json is
    overwritten by the anomaly step's second, smaller build), plus the sum over all nodes."""
    if not dbt_log.exists():
        return {}
    with dbt_log.open("rb") as fh:
        fh.seek(offset)
        text = _ANSI.sub("", fh.read().decode(errors="replace"))
    times: dict[str, float] = {}
    for name, seconds in _DBT_RESULT.findall(text):
        times[name] = times.get(name, 0.0) + float(seconds)
    slowest = sorted(times.items(), key=lambda kv: -kv[1])[:top]
    return {"(all nodes, sum)": round(sum(times.values()), 1)} | {
        name: round(s, 1) for name, s in slowest
    }


def top_imports(importtime_stderr: str, top: int = 8) -> dict[str, float]:
    """Top-level modules by cumulative import time, from ``python -X importtime``."""
    found: dict[str, float] = {}
    for line in importtime_stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m and not m.group(3):  # not indented: imported by the script itself
            root = m.group(4).split(".")[0]
            found[root] = found.get(root, 0.0) + int(m.group(2)) / 1e6
    ranked = sorted(found.items(), key=lambda kv: -kv[1])[:top]
    return {name: round(s, 3) for name, s in ranked}


def _json_block(text: str) -> str:
    """The JSON object `inferwatch superset sync` prints (logging lines around it)."""
    start = text.index("{\n")
    end = text.rindex("\n}") + 2
    return text[start:end]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def saved_query_context(client, chart_id: int) -> tuple[dict, dict]:
    """A synced chart and its saved ``query_context``, ready to POST to /api/v1/chart/data
    (the datasource's id filled in from the form data, JSON results)."""
    chart = client.request("GET", f"/api/v1/chart/{chart_id}")["result"]
    query_context = json.loads(chart["query_context"])
    datasource = query_context.get("datasource") or {}
    if not datasource.get("id"):
        form = query_context.get("form_data") or {}
        ds = form.get("datasource") or ""
        if "__" in ds:
            datasource = {"id": int(ds.split("__")[0]), "type": ds.split("__")[1]}
    query_context["datasource"] = datasource
    query_context["result_format"] = "json"
    query_context["result_type"] = "full"
    return chart, query_context


def chart_latencies(
    url: str, password: str, ids: dict, repeat: int, budget_s: float
) -> dict[str, dict]:
    """POST /api/v1/chart/data with each saved chart's query_context, ``repeat`` times.

    A chart stops repeating once its requests have taken ``budget_s`` (after at least 3), so
    that one slow chart cannot take the whole run; errors (e.g. a server-side timeout) are
    counted at the time they took and reported.
    """
    import requests

    from inferwatch.serve.superset_sync import SupersetClient

    out: dict[str, dict] = {}
    databases: dict[int, str | None] = {}
    for chart_id in ids["chart"].values():
        # a login per chart: Superset's access token expires after 15 minutes, which a run of
        # every chart can outlast on a loaded machine (it then failed with HTTP 401)
        client = SupersetClient(url, "admin", password, timeout=300)
        chart, query_context = saved_query_context(client, chart_id)
        errors: list[str] = []

        def post(qc=query_context, errors=errors, client=client) -> tuple[float, int]:
            started = time.perf_counter()
            try:
                response = client.http.post(
                    f"{client.url}/api/v1/chart/data", json=qc, timeout=client.timeout
                )
            except requests.RequestException as error:  # e.g. gunicorn killed the worker
                errors.append(f"{type(error).__name__}: {str(error)[:160]}")
                return (time.perf_counter() - started) * 1000, 0
            elapsed = (time.perf_counter() - started) * 1000
            if not response.ok:
                errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                return elapsed, 0
            results = response.json()["result"]
            bad = [r.get("error") for r in results if r.get("status") not in (None, "success")]
            if bad:
                errors.append(str(bad)[:200])
            return elapsed, sum(r.get("rowcount") or 0 for r in results)

        warm_ms, _ = post()  # the first query of a worker opens the DuckDB file
        samples, rows = [], 0
        spent = 0.0
        for _ in range(repeat):
            elapsed, rows = post()
            samples.append(elapsed)
            spent += elapsed / 1000
            if len(samples) >= 3 and spent > budget_s:
                break
        out[chart["slice_name"]] = {
            "rows": rows,
            "requests": len(samples),
            "warm_up_ms": round(warm_ms, 1),
            "p50_ms": round(percentile(samples, 50), 1),
            "p95_ms": round(percentile(samples, 95), 1),
            "errors": errors[:3],
            "samples_ms": samples,
            **chart_sql(client, query_context, databases),
        }
    return out


def chart_sql(client, query_context: dict, databases: dict[int, str | None]) -> dict:
    """The SQL a chart's saved query runs and the DuckDB file it runs on (chart_cost.py times
    it in DuckDB alone)."""
    try:
        dataset = client.request("GET", f"/api/v1/dataset/{query_context['datasource']['id']}")
        database_id = dataset["result"]["database"]["id"]
        if database_id not in databases:
            uri = client.request("GET", f"/api/v1/database/{database_id}/connection")["result"][
                "sqlalchemy_uri"
            ]
            databases[database_id] = (
                uri.removeprefix("duckdb:///").split("?")[0] if uri.startswith("duckdb:") else None
            )
        asked = {**query_context, "result_type": "query"}
        results = client.request("POST", "/api/v1/chart/data", json=asked)["result"]
    except Exception as error:  # noqa: BLE001 (a breakdown must not fail the timing run)
        return {"sql_error": f"{type(error).__name__}: {str(error)[:160]}"}
    return {
        "sql": ";\n".join(r["query"] for r in results if r.get("query")),
        "database_path": databases[database_id],
    }


def package_versions() -> dict[str, str]:
    out = {}
    for name in (
        "duckdb",
        "dbt-core",
        "dbt-duckdb",
        "apache-airflow",
        "great-expectations",
        "pandas",
        "pyarrow",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    site = sorted(
        (PROJECT_ROOT / ".venv" / "superset").glob(
            "lib/python*/site-packages/apache_superset-*.dist-info"
        )
    )
    out["apache-superset"] = (
        site[-1].name.removesuffix(".dist-info").split("-", 1)[1] if site else "absent"
    )
    out["python"] = platform.python_version()
    return out


def git_state() -> dict:
    """The commit measured, and whether the pipeline's code differed from it (uncommitted)."""

    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, check=False
        )
        return proc.stdout.strip()

    changed = git("status", "--porcelain", "--", "plugins", "dags", "dbt_project", "expectations")
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_changes": bool(changed)}


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil

    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(psutil.virtual_memory().total / GB, 1),
        "kernel": platform.release(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# ---------------------------------------------------------------- summary


def targets(r: dict) -> list[dict]:
    """Each target: measured value, the target, the ratio of the two, met or missed."""
    rows = []

    def add(name, measured, target, unit, note=""):
        if measured is None:
            return
        rows.append(
            {
                "target": name,
                "measured": measured,
                "limit": target,
                "unit": unit,
                "ratio_to_limit": round(measured / target, 2),
                "met": measured <= target,
                "note": note,
            }
        )

    floor = r.get("floor", {}).get("median_s")
    startup = r.get("startup", {}).get("tiny_lake_s")
    day = r.get("e2e", {}).get("day")
    if floor and day and startup is not None:
        add(
            "end to end / floor, start-up excluded",
            round((day["wall_s"] - startup) / floor, 2),
            TARGETS["e2e"],
            "x",
            f"({day['wall_s']:.1f}s - {startup:.1f}s) / {floor:.2f}s",
        )
    ingest = r.get("stages", {}).get("day", {}).get("ingest")
    if floor and ingest:
        add(
            "bronze ingest / floor",
            round(ingest["work_s"] / floor, 2),
            TARGETS["bronze"],
            "x",
            f"stage ingest {ingest['work_s']:.1f}s / {floor:.2f}s",
        )
    elif floor and day and day.get("tasks_s", {}).get("ingest"):
        ingest_s = day["tasks_s"]["ingest"]
        add(
            "bronze ingest / floor",
            round(ingest_s / floor, 2),
            TARGETS["bronze"],
            "x",
            f"task ingest of inferwatch run {ingest_s:.1f}s / {floor:.2f}s",
        )
    hour = r.get("e2e", {}).get("hour")
    where = r.get("config", {}).get("hour_at", "next-day")
    if day and hour:
        add(
            f"one more hour ({where}) / the day (inferwatch run)",
            round(hour["wall_s"] / day["wall_s"], 3),
            TARGETS["hour"],
            "x",
            f"{hour['wall_s']:.1f}s / {day['wall_s']:.1f}s",
        )
    if day and hour and startup is not None and day["wall_s"] > startup:
        add(
            f"one more hour ({where}) / the day, start-up excluded",
            round(max(hour["wall_s"] - startup, 0) / (day["wall_s"] - startup), 3),
            TARGETS["hour_excl"],
            "x",
            f"({hour['wall_s']:.1f}s - {startup:.1f}s) / ({day['wall_s']:.1f}s - {startup:.1f}s)",
        )
    rss = peak_rss_rows(r)
    if rss:
        worst = max(rss, key=lambda x: x[1])
        add(
            f"peak RSS ({r['config']['events']:,} events)",
            round(worst[1] / 1024, 2),
            TARGETS["rss_gb"],
            "GB",
            f"largest: {worst[0]}",
        )
    if "superset" in r:
        add(
            "Superset chart data p95 (slowest chart)",
            r["superset"]["p95_ms"],
            TARGETS["chart_p95_ms"],
            "ms",
            f"{r['superset']['days']} days, {r['superset']['events']:,} events; all requests "
            f"pooled: p95 {r['superset'].get('pooled_p95_ms', float('nan')):.0f} ms",
        )
    if "dag" in r:
        add(
            "DAG parse (DagBag, Airflow imported)",
            r["dag"]["parse_s"],
            TARGETS["dag_parse_s"],
            "s",
            f"fresh process {r['dag']['fresh_process_s']:.1f}s",
        )
    return rows


def peak_rss_rows(r: dict) -> list[tuple[str, float]]:
    rows = []
    for period, steps in r.get("stages", {}).items():
        for step, m in steps.items():
            rows.append((f"{step} ({period})", m["peak_rss_mb"]))
    for period, m in r.get("e2e", {}).items():
        rows.append((f"inferwatch run ({period})", m["peak_rss_mb"]))
        for task, rss in m.get("tasks_peak_rss_mb", {}).items():
            rows.append((f"inferwatch run ({period}) during {task}", rss))
    return rows


def render(r: dict) -> str:
    c, mach, v = r["config"], r["machine"], r["versions"]
    events = c["events"]
    data = f"one day, {c['objects_per_hour']} objects per model and hour, seed {c['seed']}"
    held = r.get("simulate", {}).get("held_back")
    if held:
        data += (
            f"; the day's last hour ({held['objects']} objects, {held['lines']:,} lines) held "
            "back until the day is built, then run as one more hour"
        )
    if set(c["measured"]) == {"superset"} and "superset" in r:
        events = r["superset"]["events"]
        data = (
            f"{r['superset']['days']} days, {events // r['superset']['days']:,} events a day, "
            f"1 object per model and hour, seed {c['seed']}; serving.duckdb "
            f"{r['superset'].get('serving_mb', '?')} MB; all synced charts, not only the overview"
        )
    lines = [
        f"### {r['date']} · {events:,} events · {', '.join(c['measured'])}",
        "",
        f"Machine: {mach['cores']} cores ({mach['cpu']}), {mach['memory_gib']} GiB, "
        f"load {mach['load_avg_at_start']} at start (shared with other jobs). "
        f"DuckDB {v['duckdb']}, dbt-core {v['dbt-core']} + dbt-duckdb {v['dbt-duckdb']}, "
        f"Airflow {v['apache-airflow']}, GX {v['great-expectations']}, "
        f"Superset {v['apache-superset']}, Python {v['python']}. "
        f"Code: {r.get('git', {}).get('commit', '?')}"
        f"{' + uncommitted changes' if r.get('git', {}).get('uncommitted_changes') else ''}. "
        f"DuckDB: {c['duckdb_threads']} threads, memory_limit {c['duckdb_memory_limit']} "
        f"(INFERWATCH_DUCKDB_MEMORY_LIMIT, set on the connections of ingest, dbt, validation "
        f"and publish). "
        f"Data: {data}. "
        f"The whole suite took {r['total_s'] / 60:.1f} min.",
        "",
    ]
    if "targets" in r and r["targets"]:
        lines += [
            "| target | measured | limit | measured / limit | met | how |",
            "|---|---|---|---|---|---|",
        ]
        for t in r["targets"]:
            lines.append(
                f"| {t['target']} | {t['measured']:g} {t['unit']} | {t['limit']:g} {t['unit']} | "
                f"{t['ratio_to_limit']:.2f} | {'yes' if t['met'] else '**no**'} | {t['note']} |"
            )
        lines.append("")
    rows = []
    if "simulate" in r:
        s = r["simulate"]
        rows.append(
            (
                "simulate (not timed against anything)",
                s["seconds"],
                None,
                None,
                s.get("peak_rss_mb"),
                f"{s['objects']} objects, {s['raw_bytes'] / MB:,.0f} MB raw",
            )
        )
    floor = r.get("floor", {}).get("median_s")
    if floor:
        f = r["floor"]
        rows.append(
            (
                "DuckDB floor (1 query, 2 threads)",
                f["median_s"],
                1.0,
                None,
                f["peak_rss_mb"],
                f"median of {len(f['samples_s'])}; {f['lines']:,} lines",
            )
        )
    if r.get("floor", {}).get("typed_read_json_s"):
        f = r["floor"]
        rows.append(
            (
                "same aggregate, read_json with 3 typed columns",
                f["typed_read_json_s"],
                f["typed_read_json_s"] / f["median_s"],
                None,
                None,
                "informational: parses each line once; not the floor of the ratios",
            )
        )
    if "pandas" in r:
        p = r["pandas"]
        rows.append(
            (
                f"json.loads + pandas, {p['lines']:,} lines, scaled",
                p["scaled_to_all_lines_s"],
                p["scaled_to_all_lines_s"] / floor if floor else None,
                None,
                p["peak_rss_mb"],
                f"measured {p['work_s']:.1f}s on {p['lines']:,} lines",
            )
        )
    if "startup" in r:
        s = r["startup"]
        rows.append(
            (
                "start-up: inferwatch run, empty lake",
                s["empty_lake_s"],
                None,
                None,
                s["peak_rss_mb"],
                f"median of {len(s['empty_lake_samples_s'])}; dbt and GX skip",
            )
        )
        rows.append(
            (
                f"start-up: inferwatch run, {s['tiny_lake_events']:,} events",
                s["tiny_lake_s"],
                None,
                None,
                None,
                "median; + dbt init and per-model cost, GX, publish (subtracted below)",
            )
        )
    if "scheduled" in r:
        s = r["scheduled"]
        for name, key, runs in (
            ("empty lake", "empty_lake_s", s["empty_lake_runs"]),
            (f"{s['tiny_lake_events']:,} events", "tiny_lake_s", s["tiny_lake_runs"]),
        ):
            last = runs[-1]
            rows.append(
                (
                    f"start-up under the scheduler: triggered run, {name}",
                    s[key],
                    None,
                    None,
                    s["deployment_peak_rss_mb"],
                    f"trigger to end, median of {len(runs)}; LocalExecutor; to start "
                    f"{last['trigger_to_start_s']:.1f}s, no task running "
                    f"{last['no_task_running_s']:.1f}s; tasks: "
                    + ", ".join(f"{k} {v:.1f}s" for k, v in last["tasks_s"].items()),
                )
            )
    startup = r.get("startup", {}).get("tiny_lake_s")
    for period, m in r.get("e2e", {}).items():
        excl = m["wall_s"] - startup if startup is not None else None
        rows.append(
            (
                f"inferwatch run, {period}",
                m["wall_s"],
                excl / floor if (floor and excl is not None and period == "day") else None,
                None,
                m["peak_rss_mb"],
                "tasks: " + ", ".join(f"{k} {v:.1f}s" for k, v in m.get("tasks_s", {}).items()),
            )
        )
    for period, m in r.get("e2e", {}).items():
        for task, seconds in m.get("tasks_s", {}).items():
            if seconds < 1.0 and task not in PIPELINE_STEPS:
                continue  # alert, audit, … on a run with nothing to say: not worth a row
            rows.append(
                (
                    f"task {task}, {period} (inferwatch run)",
                    seconds,
                    seconds / floor if (floor and period == "day") else None,
                    None,
                    m.get("tasks_peak_rss_mb", {}).get(task),
                    "first task: includes dag.test() starting its execution API"
                    if task == next(iter(m["tasks_s"]))
                    else "",
                )
            )
    for period, steps in r.get("stages", {}).items():
        for step, m in steps.items():
            rows.append(
                (
                    f"stage {step}, {period}",
                    m["wall_s"],
                    m["work_s"] / floor if (floor and period == "day") else None,
                    m["work_s"],
                    m["peak_rss_mb"],
                    f"imports {m['import_s']:.1f}s",
                )
            )
    if "dag" in r:
        d = r["dag"]
        rows.append(
            (
                "DAG parse (DagBag of the file)",
                d["parse_s"],
                None,
                None,
                None,
                f"fresh process {d['fresh_process_s']:.2f}s, "
                f"importing Airflow {d['import_airflow_s']:.2f}s",
            )
        )
    if "superset" in r:
        s = r["superset"]
        for name, chart in s["charts"].items():
            rows.append(
                (
                    f"chart data: {name}",
                    chart["p50_ms"] / 1000,
                    None,
                    None,
                    None,
                    f"p95 {chart['p95_ms']:.0f} ms, {chart['rows']} rows, "
                    f"{chart['requests']} requests"
                    + duckdb_note(chart.get("duckdb") or {})
                    + (f", errors: {chart['errors'][0]}" if chart["errors"] else ""),
                )
            )
    lines += [
        "| measure | wall s (median) | work / floor | work s | peak RSS MB | notes |",
        "|---|---|---|---|---|---|",
    ]
    for name, wall, ratio, work, rss, note in rows:
        lines.append(
            f"| {name} | {wall:.2f} | {'' if ratio is None else f'{ratio:.2f}x'} | "
            f"{'' if work is None else f'{work:.2f}'} | "
            f"{'' if rss is None else f'{rss:,.0f}'} | {note} |"
        )
    notes = notes_for(r)
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def duckdb_note(cost: dict) -> str:
    """chart_cost.py's figures for one chart: what its SQL costs in DuckDB alone."""
    if "connect_ms" not in cost:
        return ""
    return (
        f"; DuckDB alone: connect {cost['connect_ms']:.0f} ms, query {cost['cold_query_ms']:.0f}"
        f" ms (on a kept instance {cost['warm_query_ms']:.0f} ms)"
    )


def notes_for(r: dict) -> list[str]:
    out = []
    floor = r.get("floor", {}).get("median_s")
    if floor and "pandas" in r:
        p = r["pandas"]
        out.append(
            f"json.loads + pandas: {p['scaled_to_all_lines_s'] / floor:.1f}x the floor, scaled "
            f"linearly from {p['work_s']:.1f}s on {p['lines']:,} lines "
            f"({p['lines'] / max(r['floor']['lines'], 1):.0%} of the day's lines)."
        )
    day = r.get("e2e", {}).get("day")
    if floor and day and "pandas" in r:
        out.append(
            f"inferwatch run, day: {day['wall_s'] / floor:.1f}x the floor with start-up, "
            f"{day['wall_s'] / r['pandas']['scaled_to_all_lines_s']:.2f}x the pandas job (scaled)."
        )
    steps = r.get("stages", {}).get("day", {})
    if "validate" in steps and "transform" in steps:
        v, t = steps["validate"], steps["transform"]
        out.append(
            f"validation vs dbt build on the same data (issue 4): {v['work_s']:.1f}s vs "
            f"{t['work_s']:.1f}s ({v['work_s'] / t['work_s']:.2f}x); "
            f"{v.get('expectations')} expectations, gate passed: {v.get('passed_gate')}."
        )
    if "ingest" in steps and steps["ingest"].get("breakdown"):
        parts = sorted(steps["ingest"]["breakdown"].items(), key=lambda kv: -kv[1]["s"])
        out.append(
            "ingest breakdown: "
            + "; ".join(f"{k} {v['s']:.1f}s" for k, v in parts if not k.startswith("chunk total"))
        )
    if "transform" in steps and steps["transform"].get("slowest_nodes"):
        nodes = steps["transform"]["slowest_nodes"]
        out.append("dbt: " + ", ".join(f"{n['node']} {n['s']:.1f}s" for n in nodes[:7]))
    for period, m in r.get("e2e", {}).items():
        if m.get("dbt_nodes_s"):
            out.append(
                f"dbt nodes, inferwatch run ({period}; from dbt.log): "
                + ", ".join(f"{k} {v:.1f}s" for k, v in m["dbt_nodes_s"].items())
            )
    hour_steps = r.get("stages", {}).get("hour", {})
    if hour_steps:
        out.append(
            "one more hour, stage by stage (work s): "
            + ", ".join(f"{k} {v['work_s']:.1f}" for k, v in hour_steps.items())
        )
    loads = [("floor", r.get("floor")), ("pandas", r.get("pandas"))]
    loads += [(f"{k} ({p})", v) for p, st in r.get("stages", {}).items() for k, v in st.items()]
    loads += [(f"inferwatch run ({p})", v) for p, v in r.get("e2e", {}).items()]
    shown = [
        f"{name} {v['load_avg_start_end'][0]:.1f}→{v['load_avg_start_end'][1]:.1f}"
        for name, v in loads
        if v and v.get("load_avg_start_end")
    ]
    if shown:
        out.append(
            "1-minute load average (start→end; 2 cores, other jobs included): " + ", ".join(shown)
        )
    if "dag" in r:
        out.append(
            "fresh-process imports for the DAG file: "
            + ", ".join(f"{k} {v:.2f}s" for k, v in list(r["dag"]["top_imports_s"].items())[:5])
        )
    return out


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--events",
        type=int,
        default=10_000_000,
        help="events simulated over one day (default %(default)s)",
    )
    parser.add_argument(
        "--objects-per-hour",
        type=int,
        default=4,
        help="raw objects per model and hour (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_STAGES),
        help=f"comma-separated subset of {', '.join(STAGES)}, or 'all' (default: all but superset)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="repeats of the floor and of start-up; medians (default %(default)s)",
    )
    parser.add_argument(
        "--hour-at",
        choices=("in-day", "next-day"),
        default="in-day",
        help="one more hour: the day's last hour, held back until the day is built (default), "
        "or the next day's first hour (the measure before issue 20)",
    )
    parser.add_argument("--dag-repeat", type=int, default=5)
    parser.add_argument(
        "--pandas-events",
        type=int,
        default=1_000_000,
        help="lines the pandas job reads, then scaled (default %(default)s)",
    )
    parser.add_argument(
        "--tiny-events",
        type=int,
        default=1_000,
        help="events of the near-empty start-up run (default %(default)s)",
    )
    parser.add_argument(
        "--duckdb-memory-limit",
        help="sets INFERWATCH_DUCKDB_MEMORY_LIMIT for the pipeline (default: "
        "the environment's, else InferWatch's 1GB)",
    )
    parser.add_argument("--superset-days", type=int, default=90)
    parser.add_argument("--superset-events-per-day", type=int, default=100_000)
    parser.add_argument(
        "--superset-reuse",
        type=Path,
        metavar="KEPT_WORK_DIR",
        help="skip the simulation: run this code's pipeline again on the lake and data dir of a "
        "kept --only superset run (inferwatch-bench-* under --work-dir; --superset-days and "
        "--superset-events-per-day must be that run's), then time the charts",
    )
    parser.add_argument(
        "--superset-requests", type=int, default=20, help="requests per chart (default %(default)s)"
    )
    parser.add_argument(
        "--superset-chart-budget",
        type=float,
        default=120.0,
        help="seconds of requests per chart before it stops repeating (at least 3 requests)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="where lakes and state go (default: a new temp dir, removed after)",
    )
    add_output_arguments(parser, "benchmarks/results/<date>-<events>.json")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if only == ["all"]:
        only = list(STAGES)
    unknown = set(only) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s) {sorted(unknown)}; choose from {', '.join(STAGES)}")
    if "hour" in only and not {"e2e", "stages"} & set(only):
        parser.error("hour measures one more hour after the day: add e2e and/or stages")
    args.only = [s for s in STAGES if s in only]
    return args


def append_to_readme(table: str) -> None:
    readme = BENCH_DIR / "README.md"
    with readme.open("a") as fh:
        fh.write("\n" + table)
    log(f"appended to {readme}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        results = json.loads(args.render.read_text())
        results["targets"] = targets(results)
        table = render(results)
        print(table)
        if args.readme:
            append_to_readme(table)
        return 0
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="inferwatch-bench-", dir=args.work_dir))
    else:
        work = Path(tempfile.mkdtemp(prefix="inferwatch-bench-"))
    bench = Bench(args, work)
    settings = bench.settings_defaults
    bench.results.update(
        date=datetime.now(UTC).strftime("%Y-%m-%d"),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine(),
        versions=package_versions(),
        git=git_state(),
        config={
            "events": args.events,
            "objects_per_hour": args.objects_per_hour,
            "seed": args.seed,
            "repeat": args.repeat,
            "measured": args.only,
            "hour_at": args.hour_at,
            "duckdb_threads": settings.duckdb_threads,
            "duckdb_memory_limit": settings.duckdb_memory_limit,
        },
    )
    log(f"work dir {work}; measuring {', '.join(args.only)}")
    started = time.perf_counter()
    selected = set(args.only)
    try:
        if selected & {"floor", "pandas", "e2e", "stages"}:
            bench.simulate_day()
        if "dag" in selected:
            bench.dag()
        if "floor" in selected:
            bench.floor()
        if "pandas" in selected:
            bench.pandas()
        if "startup" in selected:
            bench.startup()
        if "scheduled" in selected:
            bench.scheduled()
        if "stages" in selected:
            bench.stages("day")
        if "e2e" in selected:
            bench.e2e("day")
        if "hour" in selected:
            bench.simulate_hour()
            if "stages" in selected:
                bench.stages("hour")
            if "e2e" in selected:
                bench.e2e("hour")
        if "superset" in selected:
            bench.superset()
    except BaseException:
        log(f"failed; logs kept in {work / 'logs'}")
        args.keep = True
        raise
    finally:
        bench.results["total_s"] = round(time.perf_counter() - started, 1)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results = bench.results
    results["targets"] = targets(results)
    table = render(results)
    print()
    print(table)
    out = args.out or BENCH_DIR / "results" / f"{results['date']}-{args.events}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    log(f"results: {out}  (total {results['total_s'] / 60:.1f} min)")
    if args.readme:
        append_to_readme(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Freshness (issue 20): how long an object that lands in the lake takes to show on a dashboard.

    .venv/pipeline/bin/python benchmarks/freshness.py                        # 30 min, 10M/day
    .venv/pipeline/bin/python benchmarks/freshness.py --minutes 5 --events-per-day 1000000

Starts the deployment the way a user does, each part in its own data dir under a work dir and
bound to 127.0.0.1: Superset (`inferwatch superset start` on a free port, then `inferwatch
superset sync`) and Airflow (`inferwatch airflow start`: API server, scheduler, DAG processor,
triggerer; LocalExecutor) with the pipeline DAG on `--schedule` (INFERWATCH_SCHEDULE). A writer
lands raw objects in the lake at a steady rate (`--events-per-day` over one object per model
every `--interval` seconds, made by `inferwatch.simulate` for the current UTC hour, moved into
`raw/` whole by a rename). For every object landed during the steady state (after
`--warmup-minutes` and the first successful run, for `--minutes`), the time from its landing
to the dashboards counting its events: the "Total requests" chart of the Inference overview,
its saved query filtered to the object's model and hour, POSTed to /api/v1/chart/data every
`--poll` seconds until the count reaches what the lake holds for that model and hour up to
and including the object. The lake starts with a history (`--history-hours`, default the
24 hours before the current one, at the same `--events-per-day`), ingested by one pipeline run
(`inferwatch run`) before Airflow starts, so the warehouse holds a day as the issue asks
(`--history-hours 0`: an empty lake). Reports p50/p95/max freshness, the DAG runs of the
steady state and their durations (Airflow's metadata DB), and the peak RSS of the whole
deployment (the sum over every process tree it started, sampled with psutil). Stops everything
it started by pid.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from measure import MB, TreeSampler, add_output_arguments
from run import (
    BENCH_DIR,
    INFERWATCH,
    free_port,
    git_state,
    log,
    machine,
    package_versions,
    percentile,
    saved_query_context,
)

from inferwatch.config import SUPERSET_ASSETS_DIR, read_secrets

DAG_ID = "inferwatch_pipeline"
CHART = "Total requests"  # Inference overview: sum of requests, per the dashboard's filters
TARGET_P95_S = 300.0
MODELS = ("customer_churn", "fraud_detector", "support_llm")


class Writer(threading.Thread):
    """Lands one object per model every ``interval`` seconds, at ``events_per_day``.

    Each tick simulates the current UTC hour into a staging folder (its own seed: the
    simulator seeds by hour, and the same seed would repeat event ids), then renames each raw
    object into ``raw/`` under a name of its own: a rename on one file system is atomic, so
    discovery never sees half an object. The simulator's truth gives each object's requests
    per model and hour, what the chart must reach.
    """

    def __init__(self, lake: Path, staging: Path, args: argparse.Namespace):
        super().__init__(daemon=True)
        self.lake, self.staging, self.args = lake, staging, args
        self.events = max(3, round(args.events_per_day * args.interval / 86400))
        self.landed: list[dict] = []  # one per object: key, model, hour, landed_at, target
        self.totals: dict[tuple[str, str], int] = defaultdict(int)
        self.lines = 0
        self.ticks = 0
        self.seconds: list[float] = []  # time to make one tick's objects
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        from inferwatch.simulate import simulate

        started = time.monotonic()
        ticks = 0
        try:
            while not self._halt.is_set():
                self.tick(simulate)
                ticks += 1
                # steady pace: tick k starts k intervals after the first, however long it took
                self._halt.wait(max(0.0, started + ticks * self.args.interval - time.monotonic()))
        except BaseException as error:  # reported by the main thread
            self.error = error

    def tick(self, simulate) -> None:
        tick, self.ticks = self.ticks, self.ticks + 1
        began = time.monotonic()
        now = datetime.now(UTC)
        hour = now.replace(minute=0, second=0, microsecond=0)
        folder = self.staging / f"tick-{tick}"
        summary = simulate(
            str(folder / "lake"),
            truth_dir=folder / "truth",
            start=hour,
            end=hour + timedelta(hours=1),
            events=self.events,
            seed=self.args.seed + tick,
            objects_per_hour=1,
        )
        if tick == 0:  # references and the registry once, before any raw object
            for prefix in ("reference", "registry"):
                shutil.copytree(folder / "lake" / prefix, self.lake / prefix, dirs_exist_ok=True)
        requests: dict[str, int] = defaultdict(int)
        with (folder / "truth" / "hourly.csv").open() as fh:
            for row in csv.DictReader(fh):
                requests[row["model"]] += int(row["requests"])
        label = hour.strftime("%Y-%m-%dT%H:00:00")
        for path in sorted((folder / "lake" / "raw").rglob("*")):
            if not path.is_file():
                continue
            relative = path.relative_to(folder / "lake")
            model = relative.parts[1]
            name = path.name.replace("part-0", f"part-t{tick:05d}", 1)
            target = self.lake / relative.with_name(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            landed_at = time.time()
            with self._lock:
                self.totals[(model, label)] += requests.get(model, 0)
                self.landed.append(
                    {
                        "key": target.relative_to(self.lake).as_posix(),
                        "model": model,
                        "hour": label,
                        "landed_at": landed_at,
                        "target": self.totals[(model, label)],
                    }
                )
        self.lines += summary["lines_read"]
        self.seconds.append(time.monotonic() - began)
        shutil.rmtree(folder, ignore_errors=True)

    def objects(self) -> list[dict]:
        with self._lock:
            return list(self.landed)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def land_history(lake: Path, staging: Path, args: argparse.Namespace) -> dict:
    """The ``--history-hours`` before the current hour, at ``--events-per-day``, in one
    simulation (one object per model and hour), moved into the lake: the raw objects (and
    labels), not the references and registry the writer's first tick already put there."""
    if not args.history_hours:
        return {"hours": 0, "events": 0, "lines": 0, "seconds": 0.0}
    from inferwatch.simulate import simulate

    began = time.monotonic()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    events = round(args.events_per_day * args.history_hours / 24)
    summary = simulate(
        str(staging / "lake"), truth_dir=staging / "truth",
        start=end - timedelta(hours=args.history_hours), end=end, events=events,
        seed=args.seed - 1, objects_per_hour=1,
    )  # fmt: skip
    for part in sorted((staging / "lake").iterdir()):
        if part.name not in ("reference", "registry"):
            shutil.copytree(part, lake / part.name, dirs_exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    seconds = round(time.monotonic() - began, 1)
    log(f"history: {args.history_hours} h, {summary['lines_read']:,} lines in {seconds:.0f} s")
    return {"hours": args.history_hours, "events": events, "lines": summary["lines_read"],
            "seconds": seconds}  # fmt: skip


class ChartProbe:
    """The dashboard's count of requests for one model and hour, over Superset's REST API."""

    def __init__(self, url: str, password: str, ids: dict):
        self.url, self.password = url, password
        self.login()
        uuid = chart_uuid(CHART)
        _, self.query_context = saved_query_context(self.client, ids["chart"][uuid])
        self.query_context["force"] = True  # no cache may answer for the database
        self.requests = 0
        self.logins = 1
        self.errors: list[str] = []

    def login(self) -> None:
        from inferwatch.serve.superset_sync import SupersetClient

        self.client = SupersetClient(self.url, "admin", self.password, timeout=120)

    def post(self, qc: dict):
        """POST the query; log in again once if the access token expired (Superset's JWT
        lasts 15 minutes: a longer run outlives it)."""
        url = f"{self.client.url}/api/v1/chart/data"
        response = self.client.http.post(url, json=qc, timeout=self.client.timeout)
        if response.status_code in (401, 422):  # expired; 422: a token it cannot read
            self.login()
            self.logins += 1
            response = self.client.http.post(url, json=qc, timeout=self.client.timeout)
        return response

    def count(self, model: str, hour: str) -> float | None:
        qc = json.loads(json.dumps(self.query_context))
        end = (datetime.fromisoformat(hour) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
        for query in qc["queries"]:
            for flt in query.get("filters", []):
                if flt.get("op") == "TEMPORAL_RANGE":
                    flt["val"] = f"{hour} : {end}"
            query.setdefault("filters", []).append({"col": "model", "op": "==", "val": model})
        self.requests += 1
        try:
            response = self.post(qc)
            response.raise_for_status()
            data = response.json()["result"][0]["data"]
        except Exception as error:  # a run swapping files under Superset: try again
            self.errors.append(f"{type(error).__name__}: {str(error)[:160]}")
            return None
        if not data:
            return 0.0
        value = next(iter(data[0].values()))
        return float(value or 0)


def chart_uuid(slice_name: str) -> str:
    for path in sorted((SUPERSET_ASSETS_DIR / "charts").rglob("*.yaml")):
        chart = yaml.safe_load(path.read_text())
        if chart.get("slice_name") == slice_name:
            return chart["uuid"]
    raise LookupError(f"no chart named {slice_name!r} under {SUPERSET_ASSETS_DIR}/charts")


def deployment_roots(airflow_home: Path, superset_home: Path):
    """{component: pid} of every server the deployment runs, from the pid files it keeps."""
    from inferwatch.serve import report_workers

    def roots() -> dict[str, int]:
        out = {}
        for path in sorted((airflow_home / "pids").glob("*.pid")):
            pid = _pid(path)
            if pid:
                out[f"airflow {path.stem}"] = pid
        pid = _pid(superset_home / "superset.pid")
        if pid:
            out["superset gunicorn"] = pid
        for name, pid in report_workers.running(superset_home).items():
            out[f"superset {name}"] = pid
        return out

    return roots


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def dag_runs(airflow_db: Path, since: float | None = None) -> list[dict]:
    """The pipeline's DAG runs (start, end in epoch seconds, state, per-task durations)."""
    if not airflow_db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True, timeout=30)
        runs = con.execute(
            "select run_id, start_date, end_date, state from dag_run where dag_id = ? order by id",
            [DAG_ID],
        ).fetchall()
        tasks = con.execute(
            "select run_id, task_id, duration from task_instance where dag_id = ?", [DAG_ID]
        ).fetchall()
        con.close()
    except sqlite3.Error:
        return []
    per_run: dict[str, dict[str, float]] = defaultdict(dict)
    for run_id, task, duration in tasks:
        per_run[run_id][task] = round(duration or 0.0, 2)
    out = []
    for run_id, start, end, state in runs:
        start_s, end_s = _epoch(start), _epoch(end)
        if since is not None and (start_s is None or start_s < since):
            continue
        out.append(
            {
                "run_id": run_id,
                "start": start_s,
                "end": end_s,
                "state": state,
                "duration_s": round(end_s - start_s, 2) if start_s and end_s else None,
                "tasks_s": per_run.get(run_id, {}),
            }
        )
    return out


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class Deployment:
    """Superset and Airflow started with the `inferwatch` commands, stopped by their pids."""

    def __init__(self, work: Path, args: argparse.Namespace):
        self.work, self.args = work, args
        self.data_dir = work / "state"
        self.lake = work / "lake"
        self.logs = work / "logs"
        for path in (self.data_dir, self.lake / "raw", self.logs):
            path.mkdir(parents=True, exist_ok=True)
        self.superset_port, self.airflow_port = free_port(), free_port()
        self.superset_url = f"http://127.0.0.1:{self.superset_port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "INFERWATCH_"))}
        self.env = {
            **base,
            "INFERWATCH_DATA_DIR": str(self.data_dir),
            "INFERWATCH_LAKE_URL": str(self.lake),
            "INFERWATCH_SUPERSET_URL": self.superset_url,
            "INFERWATCH_AIRFLOW_URL": f"http://127.0.0.1:{self.airflow_port}",
            "INFERWATCH_SCHEDULE": args.schedule,
            "INFERWATCH_USER_HASH_KEY": "inferwatch-benchmark-key",
            "PYTHONUNBUFFERED": "1",
        }
        self.started: list[str] = []
        self.timings: dict[str, float] = {}
        self.airflow_started = 0.0  # epoch seconds: runs before it are not the deployment's

    def inferwatch(self, label: str, *argv: str) -> str:
        began = time.monotonic()
        out = self.logs / f"{label}.log"
        with out.open("wb") as fh:
            proc = subprocess.run(
                [INFERWATCH, *argv], env=self.env, stdout=fh, stderr=fh, check=False
            )
        self.timings[label] = round(time.monotonic() - began, 1)
        text = out.read_text(errors="replace")
        if proc.returncode:
            raise RuntimeError(f"inferwatch {' '.join(argv)} failed; {out}:\n{text[-3000:]}")
        return text

    def start_superset(self) -> dict:
        self.started.append("superset")
        self.inferwatch("superset-start", "superset", "start", "--port", str(self.superset_port))
        text = self.inferwatch("superset-sync", "superset", "sync")
        return json.loads(text[text.index("{\n") : text.rindex("\n}") + 2])

    def start_airflow(self) -> None:
        self.started.append("airflow")
        self.inferwatch("airflow-start", "airflow", "start", "--port", str(self.airflow_port))
        self.unpause()

    def unpause(self) -> None:
        """Wait for the DAG processor to register the DAG; unpause it if it came paused."""
        db = self.airflow_home / "airflow.db"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
                row = con.execute("select is_paused from dag where dag_id = ?", [DAG_ID]).fetchone()
                con.close()
            except sqlite3.Error:
                row = None
            if row is not None:
                if row[0]:
                    env = {**self.env, **self.airflow_env()}
                    airflow = str(Path(sys.executable).with_name("airflow"))
                    subprocess.run(
                        [airflow, "dags", "unpause", DAG_ID], env=env, check=True,
                        stdout=subprocess.DEVNULL,
                    )  # fmt: skip
                return
            time.sleep(2)
        raise TimeoutError(f"the DAG processor did not register {DAG_ID}; see {self.airflow_home}")

    def airflow_env(self) -> dict:
        from inferwatch import airflow_env
        from inferwatch.config import Settings

        settings = Settings.from_env(self.env)
        return airflow_env.airflow_environment(settings, port=self.airflow_port)

    @property
    def airflow_home(self) -> Path:
        return self.data_dir / "airflow"

    @property
    def superset_home(self) -> Path:
        return self.data_dir / "superset"

    def stop(self) -> None:
        """Stop what this run started, by the pid files the start commands wrote."""
        for part in reversed(self.started):
            try:
                self.inferwatch(f"{part}-stop", part, "stop")
            except RuntimeError as error:
                log(f"stopping {part}: {error}")


def measure(args: argparse.Namespace, work: Path) -> dict:
    dep = Deployment(work, args)
    writer = Writer(dep.lake, work / "staging", args)
    sampler = TreeSampler(deployment_roots(dep.airflow_home, dep.superset_home), args.rss_interval)
    results: dict = {"work_dir": str(work)}
    try:
        log(f"work dir {work}; Superset on {dep.superset_url}, Airflow on :{dep.airflow_port}")
        from inferwatch.simulate import simulate

        writer.tick(simulate)  # references, registry and a first hour before the first run
        results["history"] = land_history(dep.lake, work / "history", args)
        ids = dep.start_superset()
        log(f"Superset started and synced ({dep.timings})")
        if args.history_hours:
            dep.inferwatch("history-run", "run")  # one run ingests the history (and the tick)
            log(f"history ingested by one pipeline run in {dep.timings['history-run']:.0f} s")
        sampler.start()
        dep.airflow_started = time.time()
        dep.start_airflow()
        log(f"Airflow started, {DAG_ID} unpaused on schedule {args.schedule!r} ({dep.timings})")
        writer.landed.clear()  # the first objects predate the deployment: not samples
        writer.start()
        probe = ChartProbe(dep.superset_url, read_secrets(dep.data_dir / "secrets.env")[
            "SUPERSET_ADMIN_PASSWORD"], ids)  # fmt: skip
        results.update(steady_state(args, dep, writer, probe))
    finally:
        if writer.is_alive():
            writer.stop()
        if sampler.is_alive():
            sampler.stop()
        dep.stop()
    results["rss"] = {
        "peak_mb": round(sampler.peak / MB),
        "peak_parts_mb": {k: round(v / MB) for k, v in sorted(sampler.peak_parts.items())},
        "samples": sampler.samples,
        "interval_s": args.rss_interval,
    }
    results["writer"]["simulate_s_median"] = round(percentile(writer.seconds, 50), 2)
    results["start_s"] = dep.timings
    return results


def steady_state(args, dep: Deployment, writer: Writer, probe: ChartProbe) -> dict:
    """Warm up, then sample every object landed during ``--minutes``; poll until counted."""
    db = dep.airflow_home / "airflow.db"
    began = time.time()
    warm_until = began + args.warmup_minutes * 60
    while True:
        first_ok = [r for r in dag_runs(db, since=dep.airflow_started) if r["state"] == "success"]
        if first_ok and time.time() >= warm_until:
            break
        if writer.error:
            raise writer.error
        if time.time() > began + args.warmup_minutes * 60 + 900:
            raise TimeoutError(f"no successful {DAG_ID} run within the warm-up; {dep.airflow_home}")
        time.sleep(args.poll)
    steady_start = time.time()
    steady_end = steady_start + args.minutes * 60
    log(f"steady state from {_clock(steady_start)} for {args.minutes} min")
    counted: dict[str, float] = {}
    said = 0.0
    drain_until = steady_end + args.drain_minutes * 60
    while True:
        now = time.time()
        if now >= steady_end and writer.is_alive():
            writer.stop()
        if writer.error:
            raise writer.error
        samples = [o for o in writer.objects() if steady_start <= o["landed_at"] < steady_end]
        pending = [o for o in samples if o["key"] not in counted]
        if now >= steady_end and (not pending or now >= drain_until):
            break
        for (model, hour), group in _by_group(pending).items():
            value = probe.count(model, hour)
            at = time.time()
            for obj in group:
                if value is not None and value >= obj["target"]:
                    counted[obj["key"]] = at
        if now - said > 60:
            said = now
            log(f"  {len(samples)} objects sampled, {len(pending)} not yet counted")
        time.sleep(args.poll)
    fresh = [counted[o["key"]] - o["landed_at"] for o in samples if o["key"] in counted]
    runs = dag_runs(db, since=max(steady_start - 3600, dep.airflow_started))
    steady_runs = [r for r in runs if r["end"] is None or r["end"] >= steady_start]
    durations = [r["duration_s"] for r in steady_runs if r["duration_s"] is not None]
    task_names = sorted({t for r in steady_runs for t in r["tasks_s"]})
    return {
        "steady_state": {"start": _clock(steady_start), "minutes": args.minutes},
        "freshness": {
            "samples": len(samples),
            "counted": len(fresh),
            "not_counted": len(samples) - len(fresh),
            "p50_s": round(percentile(fresh, 50), 1),
            "p95_s": round(percentile(fresh, 95), 1),
            "max_s": round(max(fresh), 1) if fresh else None,
            "poll_s": args.poll,
            "chart": CHART,
            "chart_requests": probe.requests,
            "chart_logins": probe.logins,
            "chart_errors": probe.errors[:5],
        },
        "runs": {
            "count": len(steady_runs),
            "states": {
                s: sum(r["state"] == s for r in steady_runs)
                for s in {r["state"] for r in steady_runs}
            },  # fmt: skip
            "duration_p50_s": round(percentile(durations, 50), 1),
            "duration_p95_s": round(percentile(durations, 95), 1),
            "duration_max_s": round(max(durations), 1) if durations else None,
            "tasks_median_s": {
                t: round(
                    percentile([r["tasks_s"][t] for r in steady_runs if t in r["tasks_s"]], 50), 2
                )
                for t in task_names
            },  # fmt: skip
            "list": steady_runs,
        },
        "samples": [
            {**o, "counted_after_s": round(counted[o["key"]] - o["landed_at"], 1)}
            if o["key"] in counted
            else {**o, "counted_after_s": None}
            for o in samples
        ],
        "writer": {
            "events_per_tick": writer.events,
            "interval_s": args.interval,
            "objects": len(writer.objects()),
            "lines_landed": writer.lines,
        },
    }


def _by_group(objects: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for obj in objects:
        groups[(obj["model"], obj["hour"])].append(obj)
    return groups


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def render(r: dict) -> str:
    c, m, f, runs = r["config"], r["machine"], r["freshness"], r["runs"]
    met = f["not_counted"] == 0 and f["p95_s"] <= TARGET_P95_S
    lines = [
        f"### {r['date']} · freshness · {c['events_per_day']:,} events a day · "
        f"schedule {c['schedule']}",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, load "
        f"{m['load_avg_at_start']} at start, {r.get('load_avg_at_end')} at end (shared with "
        f"other jobs). Code: {r['git']['commit']}"
        f"{' + uncommitted changes' if r['git']['uncommitted_changes'] else ''}. "
        f"Writer: one object per model every {c['interval_s']} s "
        f"({r['writer']['events_per_tick']:,} events a tick), "
        f"{r['writer']['lines_landed']:,} lines landed in {r['writer']['objects']} objects. "
        f"{_history_text(r)}"
        f"Warm-up {c['warmup_minutes']} min, steady state {c['minutes']} min, chart polled every "
        f"{c['poll_s']} s. Command: `benchmarks/freshness.py {c['argv']}`.",
        "",
        "| measure | value | notes |",
        "|---|---|---|",
        f"| freshness p50 | {f['p50_s']:.0f} s | {f['counted']} of {f['samples']} objects "
        f"counted; chart '{f['chart']}' |",
        f"| freshness p95 | {f['p95_s']:.0f} s | target ≤ {TARGET_P95_S:.0f} s: "
        f"{'met' if met else '**missed**'} |",
        f"| freshness max | {f['max_s'] or float('nan'):.0f} s | "
        f"{f['not_counted']} objects not counted within the drain |",
        f"| DAG runs in the steady state | {runs['count']} | {runs['states']} |",
        f"| run duration p50 / p95 / max | {runs['duration_p50_s']:.0f} / "
        f"{runs['duration_p95_s']:.0f} / {runs['duration_max_s'] or float('nan'):.0f} s | "
        "tasks (median s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in runs["tasks_median_s"].items())
        + " |",
        f"| peak RSS of the deployment | {r['rss']['peak_mb']:,} MB | at the peak: "
        + ", ".join(f"{k} {v}" for k, v in r["rss"]["peak_parts_mb"].items())
        + " |",
        f"| history run | {r['start_s'].get('history-run', 0):.0f} s | "
        f"{_history_text(r).strip() or 'none: empty lake'} |",
        f"| start-up | {r['start_s'].get('superset-start', 0):.0f} s Superset, "
        f"{r['start_s'].get('airflow-start', 0):.0f} s Airflow | "
        f"sync {r['start_s'].get('superset-sync', 0):.0f} s |",
    ]
    return "\n".join(lines) + "\n"


def _history_text(r: dict) -> str:
    """The lake's history before the warm-up, as the table says it ("" for an empty lake or a
    result written before --history-hours existed)."""
    h = r.get("history") or {}
    if not h.get("hours"):
        return ""
    return (
        f"History: {h['hours']:g} h before the current hour ({h['lines']:,} lines), ingested "
        "by one pipeline run before Airflow started. "
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/freshness.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--minutes", type=float, default=30, help="steady state (default 30)")
    parser.add_argument("--warmup-minutes", type=float, default=5, help="default 5")
    parser.add_argument(
        "--drain-minutes",
        type=float,
        default=10,
        help="after the steady state, how long to wait for the last objects",
    )
    parser.add_argument("--events-per-day", type=int, default=10_000_000)
    parser.add_argument(
        "--history-hours",
        type=float,
        default=24,
        help="hours of history before the current one, at --events-per-day, ingested by one "
        "pipeline run before the warm-up (default 24: a day; 0: an empty lake)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=60,
        help="seconds between two objects of a model (default 60)",
    )
    parser.add_argument(
        "--schedule",
        default="continuous",
        help="INFERWATCH_SCHEDULE of the deployment (default continuous)",
    )
    parser.add_argument("--poll", type=float, default=5, help="chart polling period, seconds")
    parser.add_argument("--rss-interval", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--work-dir", type=Path, help="default: a new temp dir, removed after")
    add_output_arguments(parser, "benchmarks/results/<date>-freshness.json")
    args = parser.parse_args(argv)
    args.argv = " ".join(sys.argv[1:] if argv is None else argv)
    return args  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        results = json.loads(args.render.read_text())
    else:
        parent = args.work_dir
        if parent:
            parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="inferwatch-fresh-", dir=parent))
        results = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "versions": package_versions(),
            "git": git_state(),
            "config": {
                "events_per_day": args.events_per_day,
                "history_hours": args.history_hours,
                "interval_s": args.interval,
                "schedule": args.schedule,
                "minutes": args.minutes,
                "warmup_minutes": args.warmup_minutes,
                "poll_s": args.poll,
                "seed": args.seed,
                "argv": args.argv,
            },
        }
        try:
            results.update(measure(args, work))
        except BaseException:
            log(f"failed; work dir kept: {work}")
            raise
        results["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        out = args.out or BENCH_DIR / "results" / f"{results['date']}-freshness.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1, default=str) + "\n")
        log(f"results: {out}")
    table = render(results)
    print(table)
    if args.readme:
        with (BENCH_DIR / "README.md").open("a") as fh:
            fh.write("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Hostile input, end to end (issue 18): lakes drawn from a grammar of the issue's cases (names
with separators, quotes, newlines, unicode and ``..``; deep nesting; wide objects; huge lines;
a gzip bomb; mixed encodings; PII in odd places), mixed with a simulated lake of ordinary
contract lines, each run through the whole pipeline DAG (``dag.test()``, what ``inferwatch
run`` does) and then the retraining trigger DAG, in a child process. Each run must:

- succeed: every task instance succeeded (``signal_retraining`` may skip), no step raised;
- account for every line: in ``mart_ingestion`` (ops.duckdb) every raw object has
  lines_read = loaded + quarantined + blank + merged, and lines_read equals the lines counted
  here from the bytes written (a gzip bomb may be stopped early; nothing of it loads);
- write nothing outside the lake and the data folder: the run's parent holds only those and
  decoys (training references where traversal names point, a reference/ beside the lake, a
  sibling folder); the child's HOME and TMPDIR are watched folders too; /tmp gets nothing
  named after the run; nothing under ``raw/`` changes; no step but ingest writes into
  ``bronze/events``; anomaly scores land only under ``anomaly_scores/``;
- stay within memory: DuckDB runs with a memory limit and the child's peak RSS stays under
  RSS_LIMIT_MB;
- let no planted PII out of ``raw/``: no file under the data folder or the lake (raw objects
  and model references aside) holds it (Parquet and DuckDB files are read back as text, per
  column), nor any alert e-mail or webhook post; no e-mail header is smuggled in by a name;
- keep names in their documented patterns (``inferwatch.names``): models and versions in
  ``fct_inferences`` become paths, Data Docs keys and e-mail subjects.

The gate's expected outcome is a published build: hostile lines that may be quarantined name a
valid model only within VALID_MODEL_BUDGET of its lines (the gate holds above 10%); all others
carry an invalid model name (junk, which publishes with a warning).

Lakes are derandomized (the same draws on every CI run), ``LAKES`` of them (at most 5), drawn
without shrinking (a shrink would re-run the pipeline dozens of times); each is its own test
item. A failure lists every problem of the lake: the check, the step (with the innermost
InferWatch frames of its traceback), the object and its cases. Cases found failing are kept in
``hostile_grammar.KEPT_LINES``: every lake carries them.

Run alone: ``pytest -m hostile -p no:randomly -n 0 tests/test_hostile_input.py``.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

import hostile_grammar as grammar
from alert_sinks import smtp_sink, webhook_receiver
from conftest import AIRFLOW_HOME, free_port

pytestmark = pytest.mark.hostile

# ---------------------------------------------------------------- knobs (tune here)
#: Derandomized lakes per run. Each costs one pipeline run in a child process: ~75 s of CPU
#: here (Airflow, dbt's build and tests, GX), so one lake keeps the suite's share near two
#: minutes; every lake holds every case variant of the grammar whatever the draws, and more
#: lakes add drawn combinations (placement, grouping into objects, object keys).
LAKES = 1
#: Hostile lines per lake, the fixed coverage (~125 lines: every case variant once) included,
#: and objects beyond one per object form.
HOSTILE_LINES_PER_LAKE = 200
EXTRA_OBJECTS_PER_LAKE = 6
#: The simulated (ordinary) part of each lake: events over SIM_HOURS hours of one day.
VALID_EVENTS_PER_LAKE = 5000
SIM_HOURS = 6
#: The line cap, lowered from 1 MiB so that near- and over-cap lines are cheap to make.
MAX_LINE_BYTES = 256 << 10
#: What the gzip bomb inflates to (from about a thousandth of it).
BOMB_INFLATED_BYTES = 64 << 20
#: Every DuckDB connection of the pipeline (INFERWATCH_DUCKDB_MEMORY_LIMIT).
DUCKDB_MEMORY_LIMIT = "256MB"
#: The child's peak RSS (itself or any process it waited for): Airflow, dbt, GX and
#: scikit-learn imported (~600 MB here), plus the work. Seen: under 1,200 MB alone, 1,947 MB
#: once inside the full suite (not yet explained; issue 18 keeps it open), so the limit is the
#: 2 GB the benchmarks hold a 10M-event day to, with room for that spread.
RSS_LIMIT_MB = 2560
#: A valid model may lose this share of its simulated lines to hostile lines that could be
#: quarantined (the gate holds a build above 10% per valid model). On top: the simulator's own
#: malformed lines (0.5%) and ordinary lines that land in a UTF-16, CR-only or cut gzip
#: object (~30 lines, <1%). So the expected outcome of every lake is a published build.
VALID_MODEL_BUDGET = 0.03
#: Shares of the simulated traffic (inferwatch.simulate).
SIM_SHARES = {"customer_churn": 0.50, "fraud_detector": 0.35}
#: The run's parent sits this deep inside the watched folder, deeper than any ``..`` climbs.
NESTING = ("a", "b", "c", "d", "e")
CHILD_TIMEOUT_S = 600

SIM_START = datetime(2025, 5, 1, tzinfo=UTC)
PII_FREE_LAKE_PREFIXES = ("raw/", "reference/")


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def airflow_template(tmp_path_factory, airflow_metadata_db) -> Path:
    """A migrated Airflow home to copy into each run's data folder (where ``inferwatch run``
    keeps it): the session's metadata DB, unless another test left planted PII in it."""
    template = tmp_path_factory.mktemp("hostile-airflow")
    database = template / "airflow.db"
    # through SQLite's backup API: a plain copy opens and closes the live file in this process,
    # which drops the POSIX locks of the process's own connections to it (Airflow's session)
    with (
        contextlib.closing(sqlite3.connect(AIRFLOW_HOME / "airflow.db")) as source,
        contextlib.closing(sqlite3.connect(database)) as copy,
    ):
        source.backup(copy)
    blob = database.read_bytes()
    if any(pii.encode() in blob for pii in grammar.PII):
        database.unlink()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env["AIRFLOW_HOME"] = str(template)
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{database}"
        airflow_bin = Path(sys.executable).with_name("airflow")
        subprocess.run([str(airflow_bin), "db", "migrate"], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    (template / ".inferwatch-migrated").write_text("ok\n")
    return template


@pytest.fixture(scope="module")
def sinks():
    """A real SMTP sink and webhook receiver: alerts are delivered, not only evaluated."""
    port = free_port()
    with smtp_sink(port) as mails, webhook_receiver() as (url, payloads):
        yield {"smtp_port": port, "mails": mails, "webhook": url, "payloads": payloads}


# ---------------------------------------------------------------- the test
@functools.cache
def drawn_lakes() -> list[grammar.LakePlan]:
    budget = {m: int(VALID_MODEL_BUDGET * VALID_EVENTS_PER_LAKE * s) for m, s in SIM_SHARES.items()}
    return grammar.draw_lakes(
        LAKES, hostile_lines=HOSTILE_LINES_PER_LAKE, extra_objects=EXTRA_OBJECTS_PER_LAKE,
        bomb_bytes=BOMB_INFLATED_BYTES, budget=budget, cap=MAX_LINE_BYTES,
    )  # fmt: skip


@pytest.mark.parametrize("lake", range(LAKES), ids=lambda n: f"lake{n}")
def test_hostile_lake_runs_clean(lake, tmp_path, airflow_template, sinks):
    plan = drawn_lakes()[lake]
    run = HostileRun(tmp_path, airflow_template)
    run.write(plan)
    result = run.execute(sinks)
    problems = run.check(result, sinks)
    assert not problems, run.report(plan, result, problems)


# ---------------------------------------------------------------- one lake's run
class HostileRun:
    """One lake: its folders and decoys, the child run and every check on what it did."""

    def __init__(self, root: Path, airflow_template: Path):
        self.root = root
        self.token = uuid.uuid4().hex[:10]
        self.watched = root / "watched"
        self.parent = self.watched.joinpath(*NESTING, "run")
        self.lake = self.parent / "lake"
        self.data_dir = self.parent / "data"
        self.tmp_dir = self.watched / "tmp"  # the child's TMPDIR: must be empty afterwards
        self.home = self.watched / "home"  # the child's HOME: must stay as it was
        self.truth = root / "truth"
        self.log = root / "child.log"
        self.result_path = root / "result.json"
        self.airflow_template = airflow_template
        self.abs_target = str(self.watched / "abs-target")
        self.tmp_target = f"/tmp/inferwatch-hostile-{self.token}"
        #: object key → (acceptable lines_read values, the hostile object or None if simulated)
        self.expected: dict[str, tuple[frozenset[int], grammar.RawObject | None]] = {}

    # ---- building

    def write(self, plan: grammar.LakePlan) -> None:
        from inferwatch.simulate import simulate

        for folder in (self.lake, self.data_dir, self.tmp_dir, self.home):
            folder.mkdir(parents=True)
        simulate(str(self.lake), truth_dir=self.truth, start=SIM_START,
                 end=SIM_START + timedelta(hours=SIM_HOURS), events=VALID_EVENTS_PER_LAKE,
                 seed=plan.seed)  # fmt: skip
        for path in sorted((self.lake / "raw").rglob("*")):
            if path.is_file():
                key = str(path.relative_to(self.lake))
                self.expected[key] = (frozenset({grammar.count_lines(path.read_bytes())}), None)
        for obj in plan.objects:
            data = obj.materialize(self.abs_target, self.tmp_target)
            target = self.lake / obj.key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            self.expected[obj.key] = (obj.expected_lines(data), obj)
        self.plant_decoys()
        airflow_home = self.data_dir / "airflow"
        shutil.copytree(self.airflow_template, airflow_home)

    def plant_decoys(self) -> None:
        """A training reference where the traversal names point (beside the lake, two levels
        up, at the absolute name), a fake reference/ beside the lake, a sibling folder."""
        version, _ = grammar.VALID_MODELS["customer_churn"]
        reference = self.lake / "reference" / "customer_churn" / version / "reference.parquet"
        targets = [
            self.parent / "outside" / grammar.DECOY_VERSION,
            self.parent.parent.parent / "outside" / grammar.DECOY_VERSION,
            self.watched / "abs-target" / grammar.DECOY_VERSION,
            self.parent / "reference" / "customer_churn" / version,
        ]
        for target in targets:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(reference, target / "reference.parquet")
        (self.parent / "sibling").mkdir()
        (self.parent / "sibling" / "notes.txt").write_text("not the lake\n")
        (self.parent / "secrets.env").write_text("INFERWATCH_USER_HASH_KEY=decoy\n")

    # ---- running
    def execute(self, sinks: dict) -> dict:
        self.delivered_before = (len(sinks["mails"]), len(sinks["payloads"]))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update({
            "INFERWATCH_LAKE_URL": str(self.lake),
            "INFERWATCH_DATA_DIR": str(self.data_dir),
            "INFERWATCH_DUCKDB_MEMORY_LIMIT": DUCKDB_MEMORY_LIMIT,
            "INFERWATCH_MAX_LINE_BYTES": str(MAX_LINE_BYTES),
            "INFERWATCH_SUPERSET_URL": f"http://127.0.0.1:{free_port()}",  # nobody listens
            "INFERWATCH_SMTP_HOST": "127.0.0.1",
            "INFERWATCH_SMTP_PORT": str(sinks["smtp_port"]),
            "INFERWATCH_ALERT_EMAILS": "ops@example.org",
            "INFERWATCH_ALERT_WEBHOOK_URL": sinks["webhook"],
            "TMPDIR": str(self.tmp_dir),
            "HOME": str(self.home),
            "PYTHONPATH": str(Path(__file__).parent),
        })  # fmt: skip
        self.before = grammar.tree_state(self.watched)
        self.tmp_before = set(os.listdir("/tmp"))
        with open(self.log, "wb") as log:
            child = subprocess.run(
                [sys.executable, grammar.__file__, str(self.watched), str(self.result_path)],
                env=env, stdout=log, stderr=subprocess.STDOUT, timeout=CHILD_TIMEOUT_S,
            )  # fmt: skip
        self.after = grammar.tree_state(self.watched)
        self.tmp_after = set(os.listdir("/tmp"))
        try:
            result = json.loads(self.result_path.read_text())
        except FileNotFoundError:
            result = {"state": "no result", "harness_error": self.tail_of_log()}
        result["returncode"] = child.returncode
        return result

    def tail_of_log(self, chars: int = 3000) -> str:
        return self.log.read_bytes()[-chars:].decode("utf-8", "replace")

    # ---- checking
    def check(self, result: dict, sinks: dict) -> list[str]:
        problems: list[str] = []
        problems += self.check_deliveries(sinks)
        problems += self.check_run(result)
        problems += self.check_writes(result)
        problems += self.check_memory(result)
        problems += self.check_accounting()
        problems += self.check_pii()
        problems += self.check_names()
        return problems

    def check_deliveries(self, sinks: dict) -> list[str]:
        """Alert e-mails and webhook posts of this run: no planted PII, no header a name
        smuggled in (a newline in a model name must not become a Bcc)."""
        mails = sinks["mails"][self.delivered_before[0] :]
        posts = sinks["payloads"][self.delivered_before[1] :]
        problems = []
        for mail in mails:
            text = mail.as_string()
            leaked = [pii for pii in grammar.PII if pii in text]
            if leaked or mail.get("Bcc"):
                problems.append(
                    f"alert e-mail {mail['Subject']!r}: PII {leaked}, Bcc {mail['Bcc']}"
                )
        leaked = [pii for pii in grammar.PII if pii in json.dumps(posts, ensure_ascii=False)]
        if leaked:
            problems.append(f"alert webhook posts carry PII {leaked}")
        return problems

    def check_run(self, result: dict) -> list[str]:
        problems = []
        if result.get("state") != "success":
            problems.append(
                f"run state {result.get('state')!r} (child exit {result['returncode']})"
            )
        if result.get("harness_error"):
            problems.append(f"harness error: {result['harness_error']}")
        for task, state in sorted((result.get("tasks") or {}).items()):
            skips = task.endswith(".signal_retraining")  # skipped when no alert asks for it
            allowed = {"success", "skipped"} if skips else {"success"}
            if state not in allowed:
                problems.append(f"task {task}: {state}")
        for step, error in sorted((result.get("errors") or {}).items()):
            problems.append(
                f"step {step} raised {error['type']}: {error['message'][:600]}"
                f" [at {where_in_code(error['where'])}]"
            )
        return problems

    def check_writes(self, result: dict) -> list[str]:
        problems = []
        inside = (self.rel(self.lake), self.rel(self.data_dir))
        changes = grammar.tree_changes(self.before, self.after)
        outside = [c for c in changes if not c[1:].startswith(inside)]
        raw = [c for c in changes if c[1:].startswith(self.rel(self.lake / "raw"))]
        if outside:
            problems.append(f"written outside lake/ and data/: {self.attribute(outside, result)}")
        if raw:
            problems.append(f"lake/raw changed: {raw[:10]}")
        leaked = sorted(name for name in self.tmp_after - self.tmp_before
                        if self.token in name or name.startswith("inferwatch-hostile"))  # fmt: skip
        if leaked:
            problems.append(f"written to /tmp: {leaked}")
        events = self.rel(self.lake / "bronze" / "events")
        scores = self.rel(self.lake / "anomaly_scores")
        lake = self.rel(self.lake)
        for step, writes in sorted((result.get("writes") or {}).items()):
            if step != "ingest":
                into_bronze = [w for w in writes if w[1:].startswith(events)]
                if into_bronze:
                    problems.append(f"step {step} wrote into bronze/events: {into_bronze[:5]}")
            if step == "score_anomalies":
                stray = [w for w in writes if w[1:].startswith(lake)
                         and not w[1:].startswith(scores)]  # fmt: skip
                if stray:
                    problems.append(f"anomaly scores outside anomaly_scores/: {stray[:5]}")
        return problems

    def attribute(self, changes: list[str], result: dict) -> str:
        """Each change outside with the step that made it (from the child's own snapshots)."""
        by_step = {w: step for step, writes in (result.get("writes") or {}).items() for w in writes}
        return "; ".join(f"{c} (by {by_step.get(c, '?')})" for c in changes[:15])

    def check_memory(self, result: dict) -> list[str]:
        rss = result.get("max_rss_mb")
        if rss is None:
            return ["no peak RSS reported"]
        return [f"peak RSS {rss:.0f} MB > {RSS_LIMIT_MB} MB"] if rss > RSS_LIMIT_MB else []

    def check_accounting(self) -> list[str]:
        source = self.settings_path("ops.duckdb")
        if not source.exists():
            source = self.data_dir / "warehouse" / "warehouse.duckdb"
        if not source.exists():
            return ["no ops.duckdb and no warehouse: nothing to account lines with"]
        with duckdb.connect(str(source), read_only=True) as con:
            rows = con.sql(
                "select object_key, lines_read, lines_loaded, lines_quarantined, lines_blank, "
                "lines_merged from mart_ingestion"
            ).fetchall()
        seen = {row[0]: row[1:] for row in rows}
        problems = []
        expected = self.expected
        for key, (lines, obj) in sorted(expected.items()):
            label = f"{key!r} ({', '.join(dict.fromkeys(obj.cases))})" if obj else repr(key)
            if key not in seen:
                problems.append(f"object {label} not in mart_ingestion ({source.name})")
                continue
            read, loaded, quarantined, blank, merged = seen[key]
            if read != loaded + quarantined + blank + merged:
                problems.append(
                    f"object {label}: lines_read {read} != loaded {loaded} + quarantined "
                    f"{quarantined} + blank {blank} + merged {merged}"
                )
            if obj is not None and obj.bomb_bytes:
                if read > max(lines) or loaded:
                    problems.append(f"gzip bomb {label}: read {read}, loaded {loaded}")
            elif read not in lines:
                problems.append(f"object {label}: lines_read {read}, written {sorted(lines)}")
        extra = sorted(set(seen) - set(expected))
        if extra:
            problems.append(f"mart_ingestion has objects never written: {extra[:5]}")
        return problems

    def settings_path(self, name: str) -> Path:
        return self.data_dir / name

    def check_pii(self) -> list[str]:
        found = []
        for base, skip in ((self.data_dir, ()), (self.lake, PII_FREE_LAKE_PREFIXES)):
            for path in sorted(p for p in base.rglob("*") if p.is_file()):
                rel = str(path.relative_to(base))
                if rel.startswith(skip):
                    continue
                hits = pii_in_file(path)
                if hits:
                    found.append(f"{self.rel(path)}: {hits}")
        return [f"planted PII found in {len(found)} files: {found[:12]}"] if found else []

    def check_names(self) -> list[str]:
        """Models and versions in the marts match the documented patterns (they become lake
        paths, Data Docs keys and e-mail subjects)."""
        from inferwatch import names

        warehouse = self.data_dir / "warehouse" / "warehouse.duckdb"
        if not warehouse.exists():
            return []
        with duckdb.connect(str(warehouse), read_only=True) as con:
            pairs = con.sql("select distinct model, model_version from fct_inferences").fetchall()
        bad = [
            (model, version)
            for model, version in pairs
            if not (names.is_valid("model", model) and names.is_valid("model_version", version))
        ]
        return [f"names outside the documented patterns in fct_inferences: {bad}"] if bad else []

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.watched))

    def report(self, plan: grammar.LakePlan, result: dict, problems: list[str]) -> str:
        lines = [
            f"hostile lake (seed {plan.seed}, {len(plan.objects)} hostile objects): {self.root}",
            f"cases: {', '.join(plan.cases())}",
            f"task states: {result.get('tasks')}",
            f"peak RSS: {result.get('max_rss_mb')} MB; child CPU {result.get('cpu_s')} s;"
            f" child log: {self.log}",
            "problems:",
            *(f"  - {problem}" for problem in problems),
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------- reporting helpers
def where_in_code(trace: str) -> str:
    """The innermost frames of a traceback that are InferWatch's (or the last one)."""
    frames = [line.strip() for line in trace.splitlines() if line.strip().startswith("File ")]
    ours = [frame for frame in frames if "/inferwatch/" in frame or "/dags/" in frame]
    picked = (ours[-2:] or frames[-1:]) + ([frames[-1]] if ours and frames[-1] != ours[-1] else [])
    return " -> ".join(frame.replace('File "', "").replace('", line ', ":") for frame in picked)


# ---------------------------------------------------------------- PII search
def pii_in_file(path: Path) -> list[str]:
    """Planted PII strings in one file, as ``pii in table.column``: Parquet and DuckDB files
    are read back as text (they compress strings), gzip is inflated, anything else is searched
    byte for byte."""
    name = path.name
    if name.endswith(".parquet"):
        with duckdb.connect() as con:
            return _pii_in_relation(con, f"read_parquet('{_sql_path(path)}')", "")
    if name.endswith(".duckdb"):
        return _pii_in_duckdb(path)
    blob = path.read_bytes()
    if name.endswith(".gz"):
        with contextlib.suppress(OSError):
            blob = gzip.decompress(blob)
    return [pii for pii in grammar.PII if pii.encode() in blob]


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _pii_in_relation(con: duckdb.DuckDBPyConnection, relation: str, label: str) -> list[str]:
    columns = [row[0] for row in con.sql(f"describe select * from {relation}").fetchall()]
    checks = [(pii, column) for column in columns for pii in grammar.PII]
    if not checks:
        return []
    sums = ", ".join(
        f"""coalesce(sum(contains("{column}"::varchar, '{pii}')::int), 0)"""
        for pii, column in checks
    )
    counts = con.sql(f"select {sums} from {relation}").fetchone()
    return [
        f"{pii} in {label}{column}" for (pii, column), count in zip(checks, counts, strict=True)
        if count
    ]  # fmt: skip


def _pii_in_duckdb(path: Path) -> list[str]:
    hits: list[str] = []
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.sql(
            "select schema_name, table_name from duckdb_tables() "
            "where database_name = current_database()"
        ).fetchall()
        for schema, table in tables:
            hits += _pii_in_relation(con, f'"{schema}"."{table}"', f"{table}.")
    return hits

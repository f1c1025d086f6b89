"""Run the dbt project: in-process against the DuckDB warehouse file (the default), or on Spark
(dbt-spark in session mode, from the Spark environment, in a subprocess: docs/scaling.md)."""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import logging
import os
import posixpath
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import yaml

from inferwatch.config import DBT_PROJECT_DIR, PROJECT_ROOT, Settings
from inferwatch.lake import Lake

log = logging.getLogger(__name__)


class TransformError(RuntimeError):
    pass


@dataclass
class BuildResult:
    success: bool
    nodes: int
    failures: list[str]

    def as_dict(self) -> dict:
        return {"success": self.success, "nodes": self.nodes, "failures": self.failures}


def dbt_environment(settings: Settings, lake: Lake) -> dict[str, str]:
    """What profiles.yml and the sources read: warehouse path, bronze root, S3 secret."""
    env = {
        "INFERWATCH_WAREHOUSE_PATH": str(settings.warehouse_path),
        "INFERWATCH_BRONZE_ROOT": lake.full_url(""),
        "INFERWATCH_DUCKDB_THREADS": str(settings.duckdb_threads),
        "INFERWATCH_DUCKDB_MEMORY_LIMIT": settings.duckdb_memory_limit,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    if not lake.is_local:
        env.update(duckdb_s3_environment(lake.storage_options))
    return env


def duckdb_s3_environment(storage_options: dict) -> dict[str, str]:
    """Map fsspec/s3fs options onto the variables profiles.yml turns into a DuckDB S3 secret."""
    client = storage_options.get("client_kwargs") or {}
    endpoint_url = client.get("endpoint_url") or storage_options.get("endpoint_url") or ""
    env = {
        "INFERWATCH_S3_KEY_ID": storage_options.get("key") or "",
        "INFERWATCH_S3_SECRET": storage_options.get("secret") or "",
        "INFERWATCH_S3_REGION": client.get("region_name") or "us-east-1",
    }
    if endpoint_url:
        parsed = urlparse(endpoint_url)
        env.update(
            INFERWATCH_S3_ENDPOINT=parsed.netloc,
            INFERWATCH_S3_USE_SSL="true" if parsed.scheme == "https" else "false",
            # S3-compatible servers (MinIO, moto) serve buckets by path, not by host name.
            INFERWATCH_S3_URL_STYLE="path",
        )
    return env


def install_httpfs() -> None:
    """Install DuckDB's httpfs from its PyPI package: `INSTALL httpfs` would need the internet."""
    import duckdb
    import duckdb_extension_httpfs  # noqa: F401  (the package ships the extension file)

    package_dir = Path(duckdb_extension_httpfs.__file__).parent
    candidates = sorted(package_dir.rglob("httpfs.duckdb_extension*"))
    if not candidates:
        raise TransformError(f"no httpfs extension file under {package_dir}")
    with duckdb.connect() as con:
        con.execute(f"INSTALL '{candidates[0]}'")


@contextmanager
def _environment(extra: dict[str, str]):
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def dbt_target_path(settings: Settings) -> Path:
    """dbt's artifacts (manifest, run results, docs) of the DuckDB target: in the data dir,
    never in the project (which may be read-only, e.g. inside an installed package)."""
    return settings.data_dir / "dbt" / "target"


def dbt_args(settings: Settings, command: str, *extra: str) -> list[str]:
    """``command`` may be two words (``docs generate``)."""
    return [
        *command.split(),
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(dbt_target_path(settings)),
        "--log-path", str(settings.data_dir / "dbt" / "logs"),
        *extra,
    ]  # fmt: skip


def _invoke(settings: Settings, lake: Lake, command: str, *extra: str, manifest=None):
    """Invoke dbt in this process (its dbtRunnerResult) and release the warehouse file after.
    ``manifest``: a project dbt parsed already in this process (no second parse)."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.cli.main import dbtRunner

    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    if not lake.is_local:
        install_httpfs()
    target = ["--target", "duckdb" if lake.is_local else "duckdb_s3"]
    args = dbt_args(settings, command, *target, *extra)
    log.info("dbt %s", _shown(args))
    with _environment(dbt_environment(settings, lake)):
        try:
            result = dbtRunner(manifest=manifest).invoke(args)
        finally:
            # dbt-duckdb keeps the file open after an in-process run.
            DuckDBConnectionManager.close_all_connections()
    if result.exception is not None:
        raise TransformError(f"dbt {command} crashed: {result.exception}") from result.exception
    return result


def _shown(args: list[str], most: int = 12) -> str:
    """dbt's arguments for the log, a long --exclude list (the folded tests) abridged."""
    shown: list[str] = []
    run = 0
    for arg in args:
        run = 0 if arg.startswith("--") else run + 1
        if run <= most:
            shown.append(arg)
        elif run == most + 1:
            shown.append("...")
    return " ".join(shown)


def run_dbt(
    settings: Settings, lake: Lake, command: str = "build", *extra: str, manifest=None
) -> BuildResult:
    """Invoke dbt in this process and release the warehouse file afterwards."""
    result = _invoke(settings, lake, command, *extra, manifest=manifest)
    failures: list[str] = []
    nodes = 0
    for node_result in result.result or []:
        nodes += 1
        status = str(getattr(node_result, "status", ""))
        if status in {"error", "fail", "runtime error"}:
            failures.append(
                f"{node_result.node.name}: {status}: {node_result.message}"
                + _failed_checks(settings, node_result.node)
            )
    return BuildResult(success=bool(result.success), nodes=nodes, failures=failures)


def parse(settings: Settings, lake: Lake):
    """dbt's parse of the project (partial: only files changed since the last one are read),
    as the Manifest a following command reuses."""
    result = _invoke(settings, lake, "parse")
    if not result.success or result.result is None:
        raise TransformError("dbt parse failed")
    return result.result


#: dbt unit tests check SQL logic on fixed inputs, so they belong to CI, not to every run
#: (dbt's own advice); tests/test_dbt_unit_tests.py runs them.
PRODUCTION_BUILD = ("--exclude-resource-type", "unit_test")


def build(
    settings: Settings, lake: Lake, *, full_refresh: bool = False, select: str | None = None,
    data_tests: bool = True,
) -> BuildResult:  # fmt: skip
    """``dbt build`` (models and, unless told not to, their data tests; ``select``ed or all);
    raises with the failed nodes named. Data tests read the partitions touched since the last
    full build that passed (dbt_project/macros/touched_partitions.sql), each model's column
    and grain tests in one node (macros/model_checks.sql).

    The pipeline's build (no ``select``, data tests on) builds only what reads a lake input
    whose files changed since the last such build passed, and everything when there is no
    such build for this project (first run, new project version, ``full_refresh``): see
    ``changed_inputs``."""
    started = datetime.now(UTC).replace(tzinfo=None)  # before dbt reads any ingest time
    fingerprint = project_fingerprint()
    _forget_checked_rows_if_stale(settings, fingerprint, full_refresh)
    manifest = parse(settings, lake)
    whole = data_tests and not select
    inputs = input_fingerprints(manifest, lake) if whole else {}
    if whole:
        changed = changed_inputs(settings, manifest, fingerprint, inputs, full_refresh)
        if changed is not None and not changed:
            log.info("dbt build: no lake input changed since the last build, nothing to build")
            _record_build(settings, started, fingerprint, inputs)
            return BuildResult(success=True, nodes=0, failures=[])
        if changed is not None:
            select = " ".join(f"source:{name}+" for name in changed)
            log.info("dbt build: only what reads the changed inputs: %s", select)
    extra = ["--full-refresh"] if full_refresh else []
    if select:
        extra += ["--select", select]
    if data_tests:
        extra += ["--exclude", *folded_exclusion(manifest)]
    else:
        extra += ["--exclude-resource-type", "test"]
    outcome = run_dbt(settings, lake, "build", *PRODUCTION_BUILD, *extra, manifest=manifest)
    if not outcome.success:
        raise TransformError("dbt build failed: " + "; ".join(outcome.failures))
    if whole:
        _record_build(settings, started, fingerprint, inputs)
    log.info("dbt build: %d nodes ok", outcome.nodes)
    return outcome


def _record_build(
    settings: Settings, started: datetime, fingerprint: str, inputs: dict[str, str]
) -> None:
    _record_checked_through(settings, started, fingerprint)
    _record_inputs(settings, fingerprint, inputs)


# ------------------------------------------------------ one test node per model (folding)
#: The generic tests a model's `model_checks` test runs (macros/model_checks.sql says the same).
FOLDED_TESTS = frozenset(
    {"not_null", "unique", "accepted_values", "value_in_range", "not_less_than_column",
     "unique_combination"}
)  # fmt: skip
MODEL_CHECKS = "model_checks"
#: The one Jinja a folded test's argument may hold (macros/model_checks.sql says the same).
FOLDED_VAR = re.compile(r"^\{\{ *var\( *'([A-Za-z0-9_]+)' *(, *(-?[0-9.]+) *)?\) *\}\}$")


def is_folded(node) -> bool:
    """Whether `model_checks` runs this test node (the rule of macros/model_checks.sql): one of
    FOLDED_TESTS with dbt's default pass/fail settings and no Jinja in its arguments but a
    plain var() (FOLDED_VAR)."""
    meta = getattr(node, "test_metadata", None)
    if meta is None or meta.namespace or meta.name not in FOLDED_TESTS:
        return False
    if not getattr(node, "attached_node", None):
        return False
    c = node.config
    if (
        str(c.severity).lower() != "error" or c.where != "__touched_partitions__"
        or c.fail_calc != "count(*)" or c.warn_if != "!= 0" or c.error_if != "!= 0"
        or c.limit is not None or c.store_failures
    ):  # fmt: skip
        return False
    return not any(
        isinstance(value, str) and ("{{" in value or "{%" in value) and not FOLDED_VAR.match(value)
        for key, value in meta.kwargs.items()
        if key != "model"
    )


def folded_tests(manifest) -> list[str]:
    """The names of the tests a `model_checks` node runs (left out of the build): those of
    models that declare one; a model without it keeps its tests as nodes of their own."""
    tests = [n for n in manifest.nodes.values() if n.resource_type == "test"]
    checked = {
        n.attached_node for n in tests
        if n.test_metadata is not None and n.test_metadata.name == MODEL_CHECKS
    }  # fmt: skip
    return sorted(n.name for n in tests if n.attached_node in checked and is_folded(n))


#: One dbt selector per folded test kind (an intersection): what `folded_exclusion` passes
#: when it selects exactly the folded tests. dbt resolves each selector by a pass over the
#: whole graph, so this costs ~1/50 of naming ~330 tests one by one.
_FOLDED_SELECTOR = "test_name:{},config.severity:error,config.where:__touched_partitions__"


def folded_exclusion(manifest) -> list[str]:
    """What ``--exclude`` leaves the folded tests out with: the selectors of _FOLDED_SELECTOR
    when they select exactly the folded tests (this project: tests/test_build_selection.py),
    else the folded tests by name."""
    folded = set(folded_tests(manifest))
    selected = {
        n.name for n in manifest.nodes.values()
        if n.resource_type == "test" and n.test_metadata is not None
        and n.test_metadata.name in FOLDED_TESTS
        and str(n.config.severity).lower() == "error"
        and n.config.where == "__touched_partitions__"
    }  # fmt: skip
    if selected == folded:
        return [_FOLDED_SELECTOR.format(name) for name in sorted(FOLDED_TESTS)]
    log.info("dbt build: %d tests are not folded alike, named one by one", len(selected ^ folded))
    return sorted(folded)


def _failed_checks(settings: Settings, node) -> str:
    """Which folded tests a failed `model_checks` node found failing, e.g. `` (failed:
    not_null_x_y 2)``; empty for any other node, or when they cannot be told."""
    meta = getattr(node, "test_metadata", None)
    if meta is None or meta.name != MODEL_CHECKS or not getattr(node, "compiled_code", None):
        return ""
    import duckdb

    try:
        with duckdb.connect(
            str(settings.warehouse_path), read_only=True, config=settings.duckdb_config
        ) as con:
            rows = con.execute(
                f"select failed_check, count(*) from ({node.compiled_code}) as failing "
                "group by all order by all"
            ).fetchall()
    except duckdb.Error:
        log.warning("could not list the failed checks of %s", node.name, exc_info=True)
        return ""
    return " (failed: " + ", ".join(f"{name} {count}" for name, count in rows) + ")"


# ------------------------------------------------------ build only what read changed inputs
#: One row per lake input (dbt source) of the last build that passed: the fingerprint of its
#: files then, and of the project.
INPUT_STATE = "inferwatch_input_state"
_BRONZE_ROOT_GLOB = re.compile(r"\{bronze_root\}/([^'\"]+)")


def source_glob(source) -> str | None:
    """The lake glob a dbt source reads (its ``meta.lake_glob``, else the part of its
    ``external_location`` under the lake root); None when it names none."""
    meta = {**(getattr(source, "source_meta", None) or {}), **(source.meta or {})}
    if meta.get("lake_glob"):
        return str(meta["lake_glob"])
    found = _BRONZE_ROOT_GLOB.search(str(meta.get("external_location") or ""))
    return found.group(1) if found else None


def _matches(key: str, glob: str) -> bool:
    """fnmatch segment by segment: `*` never crosses a `/`, as in DuckDB's globs."""
    parts, pattern = key.split("/"), glob.split("/")
    return len(parts) == len(pattern) and all(map(fnmatch.fnmatchcase, parts, pattern))


def glob_fingerprint(glob: str, url: str, listing: list) -> str:
    """A hash of the files of ``listing`` the glob matches: key, size and version (etag or
    mtime); ``url`` is the glob's full URL (another lake root is another input)."""
    digest = hashlib.sha256(url.encode())
    for info in listing:
        if _matches(info.key, glob):
            digest.update(f"{info.key}\0{info.size}\0{info.version}\n".encode())
    return digest.hexdigest()


def input_fingerprints(manifest, lake: Lake) -> dict[str, str]:
    """``source_name.table`` → fingerprint of its files (empty when it names no glob: such a
    source counts as changed on every build). Each folder is listed once, however many
    sources read it (the reference's Parquet and CSV sources share one)."""
    listings: dict[str, list] = {}
    found = {}
    for source in manifest.sources.values():
        glob = source_glob(source)
        if not glob:
            found[f"{source.source_name}.{source.name}"] = ""
            continue
        prefix = glob.split("*", 1)[0].rsplit("/", 1)[0]
        if prefix not in listings:
            listings[prefix] = list(lake.list(prefix + "/" if prefix else ""))
        found[f"{source.source_name}.{source.name}"] = glob_fingerprint(
            glob, lake.full_url(glob), listings[prefix]
        )
    return found


def changed_inputs(
    settings: Settings, manifest, fingerprint: str, inputs: dict[str, str], full_refresh: bool
) -> list[str] | None:
    """The sources whose files changed since the last build that passed (that build built and
    tested everything reading the others), or None when everything must be built: a full
    refresh, no such build of this project version, or a model's table missing."""
    import duckdb

    if full_refresh or not settings.warehouse_path.exists():
        return None
    with duckdb.connect(
        str(settings.warehouse_path), read_only=True, config=settings.duckdb_config
    ) as con:
        relations = {name for (name,) in con.execute("select table_name from duckdb_tables()"
                     " union all select view_name from duckdb_views()").fetchall()}  # fmt: skip
        if INPUT_STATE not in relations:
            return None
        rows = con.execute(
            f"select source, fingerprint, project_fingerprint from {INPUT_STATE}"
        ).fetchall()
    if not rows or any(project != fingerprint for _, _, project in rows):
        return None
    built = [
        n.alias or n.name for n in manifest.nodes.values()
        if n.resource_type in {"model", "seed"} and n.config.materialized != "ephemeral"
    ]  # fmt: skip
    if any(name not in relations for name in built):
        return None
    before = {source: value for source, value, _ in rows}
    return sorted(name for name, value in inputs.items() if not value or before.get(name) != value)


def _record_inputs(settings: Settings, fingerprint: str, inputs: dict[str, str]) -> None:
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), config=settings.duckdb_config) as con:
        con.execute(
            f"create table if not exists {INPUT_STATE} "
            "(source varchar, fingerprint varchar, project_fingerprint varchar)"
        )
        con.execute(f"delete from {INPUT_STATE}")
        con.executemany(
            f"insert into {INPUT_STATE} values (?, ?, ?)",
            [[name, value, fingerprint] for name, value in sorted(inputs.items())],
        )


# ------------------------------------------------- data tests on the touched partitions
#: Written after each full build whose data tests passed; its data tests read only rows with a
#: later watermark (dbt_project/macros/touched_partitions.sql).
DATA_TEST_STATE = "inferwatch_data_test_state"
#: What the project fingerprint covers (what a build's SQL and tests come from).
_PROJECT_PARTS = ("dbt_project.yml", "models", "macros", "seeds", "tests")


def project_fingerprint() -> str:
    """A hash of the dbt project's files and dbt's version: a new version of the models (an
    upgrade) makes the next build test every row again."""
    from dbt.version import __version__ as dbt_version

    digest = hashlib.sha256(dbt_version.encode())
    for part in _PROJECT_PARTS:
        root = DBT_PROJECT_DIR / part
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if path.is_file():
                digest.update(str(path.relative_to(DBT_PROJECT_DIR)).encode() + b"\0")
                digest.update(path.read_bytes())
    return digest.hexdigest()


def _state_table_exists(con) -> bool:
    return bool(
        con.execute(
            "select count(*) from duckdb_tables() where table_name = ?", [DATA_TEST_STATE]
        ).fetchone()[0]
    )


def _forget_checked_rows_if_stale(settings: Settings, fingerprint: str, full_refresh: bool) -> None:
    """Empty the state when the project changed since it was written (or on a full refresh):
    every row is tested again."""
    import duckdb

    if not settings.warehouse_path.exists():
        return
    with duckdb.connect(str(settings.warehouse_path), config=settings.duckdb_config) as con:
        if not _state_table_exists(con):
            return
        stale = con.execute(
            f"select count(*) from {DATA_TEST_STATE} "
            "where project_fingerprint is distinct from ? or ?",
            [fingerprint, full_refresh],
        ).fetchone()[0]
        if stale:
            log.info("data tests: the project changed (or full refresh): every row is tested")
            con.execute(f"delete from {DATA_TEST_STATE}")


def _record_checked_through(settings: Settings, started: datetime, fingerprint: str) -> None:
    """Every row built from data ingested before ``started`` passed the data tests."""
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), config=settings.duckdb_config) as con:
        if not _state_table_exists(con):  # a project without the hook (run by hand)
            return
        con.execute(f"delete from {DATA_TEST_STATE}")
        con.execute(f"insert into {DATA_TEST_STATE} values (?, ?)", [started, fingerprint])


def generate_docs(settings: Settings, lake: Lake) -> Path:
    """dbt's docs site of the warehouse just built, as one self-contained page (``dbt docs
    generate --static``: manifest and catalog inside) at ``settings.dbt_docs_dir/index.html``,
    replaced whole so the served page is never half written. ``--no-compile``: the build
    compiled the project already; right after a build in the same process this takes ~1 s.

    The page shows the project and the warehouse's tables and columns (dbt-duckdb's catalog
    has no row counts), so a build that changed neither keeps the page it has."""
    started = time.monotonic()
    index = settings.dbt_docs_dir / "index.html"
    key_path = settings.data_dir / "dbt" / "docs-key"
    key = _docs_key(settings)
    if index.is_file() and key_path.is_file() and key_path.read_text() == key:
        log.info("dbt docs: project and schema unchanged, %s kept", index)
        return index
    result = _invoke(settings, lake, "docs generate", "--no-compile", "--static")
    page = dbt_target_path(settings) / "static_index.html"
    if not result.success or not page.is_file():
        raise TransformError(f"dbt docs generate wrote no {page.name}")
    settings.dbt_docs_dir.mkdir(parents=True, exist_ok=True)
    tmp = index.with_name(f".index.{os.getpid()}.tmp")
    tmp.write_bytes(page.read_bytes())
    os.replace(tmp, index)
    key_path.write_text(key)
    log.info("dbt docs: %s in %.1f s", index, time.monotonic() - started)
    return index


def _docs_key(settings: Settings) -> str:
    """What the docs page is made of: the project and the warehouse's relations and columns."""
    import duckdb

    with duckdb.connect(
        str(settings.warehouse_path), read_only=True, config=settings.duckdb_config
    ) as con:
        columns = con.execute(
            "select table_schema, table_name, column_name, data_type from "
            "information_schema.columns order by all"
        ).fetchall()
    return hashlib.sha256((project_fingerprint() + repr(columns)).encode()).hexdigest()


# ---------------------------------------------------------------------------- Spark target
#: Which dbt target `inferwatch.transform` builds when asked for none: duckdb or spark.
TARGET_ENV = "INFERWATCH_DBT_TARGET"
#: The dbt executable of the Spark environment (`make spark`); override for a cluster's own.
SPARK_DBT_ENV = "INFERWATCH_SPARK_DBT"
SPARK_DBT_DEFAULT = PROJECT_ROOT / ".venv" / "spark" / "bin" / "dbt"
#: The models Spark builds by default: every mart and everything upstream of them.
SPARK_MARTS = (
    "fct_inferences",
    "mart_inference_hourly",
    "mart_latency_daily",
    "mart_errors_hourly",
    "mart_client_usage_daily",
    "mart_feature_distribution_daily",
    "mart_drift_daily",
    "mart_model_lineage",
    "mart_repeated_inputs_daily",
    # ground truth: performance, fairness and the label ingestion records
    "mart_model_performance_daily",
    "mart_model_performance_class_daily",
    "mart_fairness_daily",
    "mart_label_ingestion",
    "fct_label_quarantine",
    # operations
    "mart_ingestion",
    "fct_quarantine",
    "fct_failed_predictions",
    "mart_resource_usage_hourly",
    # anomalies (mart_input_anomalies_daily reads the scores inferwatch.anomaly wrote)
    "mart_anomalies_hourly",
    "mart_input_anomalies_daily",
)
SPARK_SELECTION = tuple(f"+{name}" for name in SPARK_MARTS)
REFERENCE_FORMATS = ("parquet", "csv")


def dbt_target(env: dict[str, str] | None = None) -> str:
    """`duckdb` (default) or `spark`, from INFERWATCH_DBT_TARGET."""
    value = ((os.environ if env is None else env).get(TARGET_ENV) or "duckdb").strip().lower()
    if value not in {"duckdb", "spark"}:
        raise TransformError(f"{TARGET_ENV} must be duckdb or spark, not {value!r}")
    return value


def spark_dir(settings: Settings) -> Path:
    """Where the Spark target keeps its warehouse (Parquet tables), metastore and dbt files."""
    return settings.data_dir / "spark"


def spark_table_path(settings: Settings, name: str, schema: str = "inferwatch") -> Path:
    """The folder of a table the Spark target built (Parquet files, day partitions inside)."""
    return spark_dir(settings) / "warehouse" / f"{schema}.db" / name


def lake_source_globs() -> list[str]:
    """The globs the dbt sources read (meta.lake_glob: the inference log's and the labels'
    source files), plus the reference file globs."""
    globs = [
        table["meta"]["lake_glob"]
        for path in sorted((DBT_PROJECT_DIR / "models" / "staging").glob("__*sources.yml"))
        for source in yaml.safe_load(path.read_text())["sources"]
        for table in source.get("tables", [])
        if (table.get("meta") or {}).get("lake_glob")
    ]
    return globs + [f"reference/*/*/*.{fmt}" for fmt in REFERENCE_FORMATS]


def spark_lake_listing(lake: Lake) -> dict:
    """What Spark SQL cannot find out itself (it has no glob()): which source globs match files,
    and the reference folders (one table each), as the dbt var `spark_lake`."""
    globs_with_files = [g for g in lake_source_globs() if lake.fs.glob(lake.path(g))]
    folders = []
    for fmt in REFERENCE_FORMATS:
        files = lake.fs.glob(lake.path(f"reference/*/*/*.{fmt}"))
        for folder in sorted({posixpath.dirname(path) for path in files}):
            key = posixpath.relpath(folder, lake.root)
            _, model, version = key.split("/")
            folders.append(
                {"model": model, "version": version, "format": fmt, "glob": f"{key}/*.{fmt}"}
            )
    return {"globs_with_files": globs_with_files, "reference_folders": folders}


def spark_environment(settings: Settings, lake: Lake) -> dict[str, str]:
    """The environment of the Spark dbt process: profiles.yml's target `spark` reads it."""
    root = lake.full_url("")
    if root.startswith("s3://"):
        # Hadoop's S3 filesystem is s3a:// (it needs the cluster's hadoop-aws jars).
        root = "s3a://" + root[len("s3://") :]
    env = {key: value for key, value in os.environ.items() if not key.startswith("DBT_")}
    env.update(
        INFERWATCH_BRONZE_ROOT=root,
        INFERWATCH_SPARK_DIR=str(spark_dir(settings)),
        # never read by the Spark target, but profiles.yml renders every output
        INFERWATCH_WAREHOUSE_PATH=str(settings.warehouse_path),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        PYSPARK_PYTHON=env.get("PYSPARK_PYTHON") or sys.executable,
    )
    return env


def run_dbt_spark(
    settings: Settings, lake: Lake, command: str = "build", *extra: str,
    select: tuple[str, ...] = SPARK_SELECTION, data_tests: bool = True,
) -> BuildResult:  # fmt: skip
    """Run dbt on the Spark target in the Spark environment's own process (dbt-spark and
    PySpark live there, not in the pipeline's). Unit tests are DuckDB-only (their fixtures are
    DuckDB SQL); data tests run as on DuckDB unless ``data_tests`` is false (seeds and models
    only, in one JVM)."""
    dbt = Path(os.environ.get(SPARK_DBT_ENV) or SPARK_DBT_DEFAULT)
    if not dbt.exists():
        raise TransformError(f"no dbt-spark at {dbt}: run `make spark` (or set {SPARK_DBT_ENV})")
    workdir = spark_dir(settings)
    workdir.mkdir(parents=True, exist_ok=True)
    env = spark_environment(settings, lake)
    # PySpark's driver runs the Spark venv's Python, not this one
    env["PYSPARK_PYTHON"] = str(dbt.parent / "python")
    args = [
        str(dbt), command,
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(workdir / "dbt" / "target"),
        "--log-path", str(workdir / "dbt" / "logs"),
        "--target", "spark",
        "--vars", json.dumps({"spark_lake": spark_lake_listing(lake)}),
    ]  # fmt: skip
    if select:
        args += ["--select", *select]
    if command in {"build", "test"}:
        args += ["--exclude-resource-type", "unit_test"]
        if not data_tests:
            args += ["--exclude-resource-type", "test"]
    args += list(extra)
    log.info("dbt (spark) %s", " ".join(args[1:]))
    # cwd: Spark and Derby drop stray files (derby.log, spark-warehouse/) into the working folder
    proc = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True)
    (workdir / "dbt" / "last_output.log").write_text(proc.stdout + proc.stderr)
    results_file = workdir / "dbt" / "target" / "run_results.json"
    failures: list[str] = []
    nodes = 0
    if results_file.exists() and proc.returncode in {0, 1}:
        for node in json.loads(results_file.read_text()).get("results", []):
            nodes += 1
            if node.get("status") in {"error", "fail", "runtime error"}:
                failures.append(f"{node['unique_id']}: {node['status']}: {node.get('message')}")
    if proc.returncode not in {0, 1}:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise TransformError(f"dbt {command} (spark) crashed (exit {proc.returncode}):\n{tail}")
    return BuildResult(success=proc.returncode == 0, nodes=nodes, failures=failures)


def build_spark(
    settings: Settings, lake: Lake, *, full_refresh: bool = False, data_tests: bool = True,
    select: tuple[str, ...] = SPARK_SELECTION,
) -> BuildResult:  # fmt: skip
    """The marts on Spark (seeds, models and, unless told not to, their data tests);
    raises with the failures named. Publishing stays on DuckDB: the Spark target's marts are
    Parquet tables under ``spark_dir(settings)/warehouse`` (docs/scaling.md)."""
    extra = ["--full-refresh"] if full_refresh else []
    started = time.monotonic()
    outcome = run_dbt_spark(settings, lake, "build", *extra, select=select, data_tests=data_tests)
    if not outcome.success:
        raise TransformError("dbt build (spark) failed: " + "; ".join(outcome.failures))
    elapsed = time.monotonic() - started
    log.info("dbt build (spark): %d nodes ok in %.0f s", outcome.nodes, elapsed)
    return outcome


def main(argv: list[str] | None = None) -> int:
    """`python -m inferwatch.transform [--target spark]`: build the dbt project on its own."""
    parser = argparse.ArgumentParser(
        prog="python -m inferwatch.transform", description=main.__doc__
    )
    parser.add_argument(
        "--target",
        choices=["duckdb", "spark"],
        default=None,
        help=f"dbt target (default: ${TARGET_ENV}, else duckdb)",
    )
    parser.add_argument(
        "--no-data-tests",
        action="store_true",
        help="seeds and models only (dbt build without its data tests)",
    )
    parser.add_argument("--full-refresh", action="store_true")
    parser.add_argument(
        "--select",
        nargs="*",
        default=None,
        help="dbt selection (Spark default: the marts and their upstream)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from inferwatch.orchestrate import current_lake, current_settings

    settings = current_settings()
    lake = current_lake(settings)
    target = args.target or dbt_target()
    started = time.monotonic()
    if target == "spark":
        select = tuple(args.select) if args.select is not None else SPARK_SELECTION
        outcome = build_spark(settings, lake, full_refresh=args.full_refresh,
                              data_tests=not args.no_data_tests, select=select)  # fmt: skip
    else:
        outcome = build(settings, lake, full_refresh=args.full_refresh,
                        select=" ".join(args.select or []) or None,
                        data_tests=not args.no_data_tests)  # fmt: skip
    elapsed = time.monotonic() - started
    print(json.dumps({"target": target, **outcome.as_dict(), "seconds": round(elapsed, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Settings read from the environment, and the fixed paths InferWatch keeps its state in."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: The checkout root (…/plugins/inferwatch/config.py → three levels up); in an installed package
#: (``pip install .``) the folder above site-packages, where nothing of InferWatch is.
PROJECT_ROOT = PACKAGE_DIR.parents[1]
#: Run from a checkout (the source tree, or an editable install of it)?
IN_CHECKOUT = (PROJECT_ROOT / "dbt_project" / "dbt_project.yml").is_file()
#: Where the dbt project, the suites, the DAGs, the Superset assets and the Airflow plugin are:
#: the checkout, or (installed) their copies inside the package, which the wheel's build puts
#: under ``inferwatch/bundled/`` (setup.py). Nothing is ever written there: dbt's target and
#: logs, like all state, go to the data dir.
BUNDLE_DIR = PROJECT_ROOT if IN_CHECKOUT else PACKAGE_DIR / "bundled"
DBT_PROJECT_DIR = BUNDLE_DIR / "dbt_project"
EXPECTATIONS_DIR = BUNDLE_DIR / "expectations"
SUPERSET_ASSETS_DIR = BUNDLE_DIR / "superset"
DAGS_DIR = BUNDLE_DIR / "dags"
#: Airflow's plugins folder: only the Data Docs plugin (and, in a checkout, an .airflowignore
#: hiding the package beside it).
AIRFLOW_PLUGINS_DIR = BUNDLE_DIR / "plugins"
#: The alert rules shipped with the repository (README: Alerts).
DEFAULT_ALERT_RULES = PACKAGE_DIR / "alerts" / "rules.yml"


#: INFERWATCH_SCHEDULE when unset: one run an hour (README: Scheduling).
DEFAULT_SCHEDULE = "1h"
_DURATION = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def pipeline_schedule(env: dict[str, str] | None = None) -> str | timedelta | None:
    """``INFERWATCH_SCHEDULE`` as the pipeline DAG's Airflow ``schedule`` (README: Scheduling).

    ``continuous`` (a run starts as soon as the previous one ends; the DAG keeps one active
    run), ``none`` (only runs someone triggers), a duration (``90s``, ``5m``, ``1h``, ``1d``:
    that long after the previous run's start), a cron preset (``@hourly``) or a five-field cron
    expression. Read from the environment alone: the DAG processor calls it at every parse,
    which must do no I/O.
    """
    value = (os.environ if env is None else env).get("INFERWATCH_SCHEDULE") or DEFAULT_SCHEDULE
    value = value.strip()
    if value.lower() in ("continuous", "@continuous"):
        return "@continuous"
    if value.lower() == "none":
        return None
    duration = _DURATION.fullmatch(value.lower())
    if duration and int(duration.group(1)) > 0:
        return timedelta(**{_UNITS[duration.group(2)]: int(duration.group(1))})
    if value.startswith("@") or len(value.split()) == 5:
        return value  # Airflow checks the preset or the expression when it parses the DAG
    raise ValueError(
        f"INFERWATCH_SCHEDULE={value!r}: expected continuous, none, a duration such as 5m or 1h, "
        "a cron preset such as @hourly or a five-field cron expression"
    )


def _default_data_dir() -> Path:
    """The checkout's ``data/``; installed, ``./data`` in the current directory."""
    return PROJECT_ROOT / "data" if IN_CHECKOUT else Path.cwd() / "data"


@dataclass(frozen=True)
class Settings:
    """Where the lake is and where InferWatch keeps its own state.

    ``lake_url`` is any fsspec URL or plain path (``file://``, ``/abs/path``, ``s3://bucket/root``).
    ``data_dir`` is always a local folder: the warehouse, the published DuckDB files, the Airflow
    home of ``inferwatch run`` and the generated secrets live there.
    """

    lake_url: str
    data_dir: Path
    #: Airflow connection that carries credentials and ``endpoint_url`` for an ``s3://`` lake.
    lake_conn_id: str = "inferwatch_lake"
    superset_url: str = "http://127.0.0.1:8088"
    airflow_url: str = "http://127.0.0.1:8080"
    #: Key for the keyed hash of ``user_id``. Never in the repository: from the environment or
    #: from the generated secrets file.
    user_hash_key: str | None = field(default=None, repr=False)
    #: HMAC key of the audit chain (README: Governance): the environment, else the secrets file.
    audit_key: str | None = field(default=None, repr=False)
    #: Overrides of the suites' thresholds for every model, e.g. {"quarantine_share_ceiling": 0.1}.
    validation_thresholds: dict = field(default_factory=dict)
    #: Severity and thresholds per model (YAML; see expectations/policy.yml).
    validation_policy_path: Path = EXPECTATIONS_DIR / "policy.yml"
    duckdb_threads: int = 2
    duckdb_memory_limit: str = "1GB"
    #: Most rows of one published Parquet file (README: Publishing): a smaller table is one
    #: file, a larger one a file per month, day or hour.
    publish_file_rows: int = 500_000
    #: The next publishes write every file anew, changed or not (after editing the warehouse
    #: by hand, which the publish's change statistics need not see).
    publish_rewrite_all: bool = False
    #: Which adapter reads which lake prefix (docs/producers.md): a YAML/JSON file's path, or
    #: inline JSON such as {"raw/sagemaker/": "sagemaker_capture"}. None: all of raw/ is
    #: contract v1.
    producers: str | None = None
    # ---------- notifications (alerts and scheduled reports share the SMTP server)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "inferwatch@localhost"
    alert_emails: tuple[str, ...] = ()
    report_emails: tuple[str, ...] = ()
    #: Slack-compatible incoming webhook; empty: no webhook delivery.
    alert_webhook_url: str = ""
    alert_rules_path: Path = DEFAULT_ALERT_RULES
    # ---------- ingest limits (README: Limits)
    limits: IngestLimits = field(default_factory=lambda: IngestLimits())

    @property
    def duckdb_config(self) -> dict[str, str]:
        """What every DuckDB connection of the pipeline is opened with (dbt reads the same two
        settings through profiles.yml): without a limit DuckDB takes 80% of RAM."""
        return {"threads": str(self.duckdb_threads), "memory_limit": self.duckdb_memory_limit}

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("INFERWATCH_DATA_DIR") or _default_data_dir()).resolve()
        lake_url = env.get("INFERWATCH_LAKE_URL") or str(data_dir / "lake")
        secrets = read_secrets(data_dir / "secrets.env")
        return cls(
            lake_url=lake_url,
            data_dir=data_dir,
            lake_conn_id=env.get("INFERWATCH_LAKE_CONN_ID", "inferwatch_lake"),
            superset_url=env.get("INFERWATCH_SUPERSET_URL", "http://127.0.0.1:8088").rstrip("/"),
            airflow_url=env.get("INFERWATCH_AIRFLOW_URL", "http://127.0.0.1:8080").rstrip("/"),
            user_hash_key=env.get("INFERWATCH_USER_HASH_KEY")
            or secrets.get("INFERWATCH_USER_HASH_KEY"),
            audit_key=env.get("INFERWATCH_AUDIT_KEY") or secrets.get("INFERWATCH_AUDIT_KEY"),
            validation_thresholds=json.loads(env.get("INFERWATCH_THRESHOLDS") or "{}"),
            validation_policy_path=Path(
                env.get("INFERWATCH_VALIDATION_POLICY") or EXPECTATIONS_DIR / "policy.yml"
            ),
            duckdb_threads=int(env.get("INFERWATCH_DUCKDB_THREADS", "2")),
            duckdb_memory_limit=env.get("INFERWATCH_DUCKDB_MEMORY_LIMIT", "1GB"),
            publish_file_rows=int(env.get("INFERWATCH_PUBLISH_FILE_ROWS") or 500_000),
            publish_rewrite_all=(env.get("INFERWATCH_PUBLISH_REWRITE_ALL") or "").strip().lower()
            in ("1", "true", "yes", "on"),
            producers=env.get("INFERWATCH_PRODUCERS") or None,
            smtp_host=env.get("INFERWATCH_SMTP_HOST") or "127.0.0.1",
            smtp_port=int(env.get("INFERWATCH_SMTP_PORT") or 25),
            smtp_from=env.get("INFERWATCH_SMTP_FROM") or "inferwatch@localhost",
            alert_emails=_address_list(env.get("INFERWATCH_ALERT_EMAILS")),
            report_emails=_address_list(env.get("INFERWATCH_REPORT_EMAILS")),
            alert_webhook_url=(env.get("INFERWATCH_ALERT_WEBHOOK_URL") or "").strip(),
            alert_rules_path=Path(env.get("INFERWATCH_ALERT_RULES") or DEFAULT_ALERT_RULES),
            limits=IngestLimits.from_env(env),
        )

    # ---------- state paths (all under data_dir)
    @property
    def warehouse_path(self) -> Path:
        """The DuckDB file dbt builds into; never read by Superset."""
        return self.data_dir / "warehouse" / "warehouse.duckdb"

    @property
    def serving_path(self) -> Path:
        return self.data_dir / "serving.duckdb"

    @property
    def ops_path(self) -> Path:
        return self.data_dir / "ops.duckdb"

    @property
    def lock_path(self) -> Path:
        return self.data_dir / "pipeline.lock"

    @property
    def secrets_path(self) -> Path:
        return self.data_dir / "secrets.env"

    @property
    def data_docs_dir(self) -> Path:
        return self.data_dir / "data_docs"

    @property
    def dbt_docs_dir(self) -> Path:
        """dbt's docs site of the last build (one self-contained ``index.html``)."""
        return self.data_dir / "dbt_docs"

    @property
    def gate_dir(self) -> Path:
        """What the gate passed and the acknowledged quarantine (inferwatch.validate.gate_state)."""
        return self.data_dir / "gate"

    @property
    def runs_dir(self) -> Path:
        """Per-run records (validation results, run outcome) that feed ops.duckdb."""
        return self.data_dir / "runs"


@dataclass(frozen=True)
class IngestLimits:
    """What one raw object and one run may bring in (README: Limits): past a cap the object
    gets a status in the manifest, or the lines a quarantine reason, never a failed run."""

    #: Stored (compressed) bytes of one raw object: a larger one is not fetched at all.
    max_object_bytes: int = 256 << 20
    #: Inflated bytes of one raw object: inflation stops there (a gzip bomb stops early).
    max_inflated_bytes: int = 256 << 20
    #: Distinct model names accepted in one run; lines naming another are quarantined.
    max_models_per_run: int = 1000
    #: Distinct ``input_features`` names per model in one run; a line bringing more is
    #: quarantined.
    max_features_per_model: int = 500
    #: Predictions one batched line may carry (``batch`` elements); a longer batch is
    #: quarantined as ``batch too large (over N predictions)``.
    max_batch: int = 1000

    @classmethod
    def from_env(cls, env: dict[str, str]) -> IngestLimits:
        default = cls()
        return cls(**{
            name: int(env.get(f"INFERWATCH_{name.upper()}") or getattr(default, name))
            for name in ("max_object_bytes", "max_inflated_bytes", "max_models_per_run",
                         "max_features_per_model", "max_batch")
        })  # fmt: skip


def _address_list(value: str | None) -> tuple[str, ...]:
    """``"a@x, b@y"`` → ``("a@x", "b@y")``; empty or unset → ``()``."""
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def read_secrets(path: Path) -> dict[str, str]:
    """Parse the generated ``KEY=value`` secrets file; missing file → empty."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out

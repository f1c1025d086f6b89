"""`inferwatch check` and the pipeline's first task: is the configuration usable?

One function per check; each returns its problems as :class:`Problem` (severity, the setting or
file to fix, what is wrong). Nothing here writes: the lake, the data dir and the servers are
only looked at. Heavy modules (Airflow, pyarrow, requests) are imported inside the check that
needs them, so an empty run pays only for what its configuration uses.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from inferwatch.config import Settings

ERROR = "error"
WARNING = "warning"
#: How long a server (S3 aside: inferwatch.lake bounds its client) may take to answer a check.
TIMEOUT_S = float(os.environ.get("INFERWATCH_CHECK_TIMEOUT_S") or 5.0)
#: Bytes of a CSV reference read to check its header (the rest is dbt's business).
CSV_HEAD_BYTES = 64 << 10
REFERENCE_FORMATS = ("parquet", "csv")


@dataclass(frozen=True)
class Problem:
    severity: str  # ERROR: the run cannot work as configured; WARNING: it works without this
    setting: str  # the environment variable, connection or lake file to fix
    message: str

    def line(self) -> str:
        return f"{self.severity:<7} {self.setting}: {self.message}"

    def as_dict(self) -> dict:
        return asdict(self)


class ConfigError(RuntimeError):
    """The configuration has errors; the message holds one line per problem."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(p.line() for p in problems))
        self.problems = problems


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def is_s3(url: str) -> bool:
    return url.startswith(("s3://", "s3a://"))


# ---------------------------------------------------------------- the lake
def connection_variable(conn_id: str) -> str:
    """The environment variable Airflow reads connection ``conn_id`` from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def check_lake_connection(settings: Settings) -> tuple[list[Problem], dict | None]:
    """For an s3:// lake, the Airflow connection holding its credentials and endpoint must be
    defined (an ``AIRFLOW_CONN_…`` variable, a secrets backend or the metadata DB). Returns the
    problems and the lake's storage options (None when they cannot be built)."""
    if not is_s3(settings.lake_url):
        return [], {}
    from inferwatch.orchestrate import lake_storage_options

    try:
        return [], lake_storage_options(settings)
    except Exception as error:  # noqa: BLE001 - "not found" has several types across versions
        variable = connection_variable(settings.lake_conn_id)
        state = "is not defined"
        if "isn't defined" not in str(error) and "NotFound" not in type(error).__name__:
            state = f"cannot be read ({_first_line(error)})"
        why = (
            f"the Airflow connection {settings.lake_conn_id!r} {state}; the s3:// lake "
            f"{settings.lake_url} takes its credentials and endpoint from it: set {variable} "
            "(JSON or URI) or add it with `airflow connections add` (README: The S3 lake's "
            "connection); another connection's id goes in INFERWATCH_LAKE_CONN_ID"
        )
        return [Problem(ERROR, variable, why)], None


def check_lake(settings: Settings, storage_options: dict) -> list[Problem]:
    """The lake URL opens, its root exists and can be listed, and so can ``raw/``."""
    from inferwatch.lake import Lake

    setting = "INFERWATCH_LAKE_URL"
    try:
        lake = Lake(settings.lake_url, storage_options, attempts=1)
    except Exception as error:  # noqa: BLE001 - fsspec raises ValueError, ImportError, …
        why = (
            f"{settings.lake_url!r} is not a lake URL fsspec can "
            f"open ({_first_line(error)}); e.g. /path/to/lake or s3://bucket/root"
        )
        return [Problem(ERROR, setting, why)]
    if lake.is_local:
        return _check_local_lake(lake, setting)
    return _check_remote_lake(lake, settings)


def _check_local_lake(lake, setting: str) -> list[Problem]:
    root = Path(lake.root)
    if not root.exists():
        why = (
            f"the lake folder {root} does not exist (a typo? "
            "`inferwatch simulate` creates a sample lake)"
        )
        return [Problem(ERROR, setting, why)]
    if not root.is_dir():
        return [Problem(ERROR, setting, f"{root} is not a folder")]
    if not os.access(root, os.R_OK | os.X_OK):
        return [Problem(ERROR, setting, f"the lake folder {root} cannot be read by this user")]
    problems = []
    if not os.access(root, os.W_OK):
        why = (
            f"the lake folder {root} is not writable by "
            "this user: bronze/ and quarantine/ are written there"
        )
        problems.append(Problem(ERROR, setting, why))
    raw = root / "raw"
    if not raw.exists():
        why = f"{root} has no raw/ folder: nothing to ingest until producers write logs under raw/"
        problems.append(Problem(WARNING, setting, why))
    elif not os.access(raw, os.R_OK | os.X_OK):
        problems.append(Problem(ERROR, setting, f"{raw} cannot be listed by this user"))
    return problems


def _check_remote_lake(lake, settings: Settings) -> list[Problem]:
    """An object store has no folders: the bucket must answer; an empty prefix only warns (it
    may be a typo, or a lake no producer has written to yet)."""
    conn = connection_variable(settings.lake_conn_id)
    try:
        names = [posixpath.basename(p.rstrip("/")) for p in lake.fs.ls(lake.root, detail=False)]
    except FileNotFoundError:
        names = None
    except Exception as error:  # noqa: BLE001 - botocore and aiohttp share no base class
        why = (
            f"listing {lake.url} failed ({_first_line(error)}): check "
            "the connection's endpoint_url and credentials"
        )
        return [Problem(ERROR, conn, why)]
    bucket = lake.root.split("/", 1)[0]
    if names is None:
        try:
            lake.fs.ls(bucket, detail=False)
        except FileNotFoundError:
            why = (
                f"the bucket {bucket!r} does not exist "
                f"at the endpoint of connection {settings.lake_conn_id!r}"
            )
            return [Problem(ERROR, "INFERWATCH_LAKE_URL", why)]
        except Exception as error:  # noqa: BLE001
            return [
                Problem(ERROR, conn, f"bucket {bucket!r} does not answer ({_first_line(error)})")
            ]
        why = f"no objects under {lake.url} (a typo in the prefix?): nothing to ingest"
        return [Problem(WARNING, "INFERWATCH_LAKE_URL", why)]
    if "raw" not in names:
        why = (
            f"{lake.url} has no raw/ prefix: "
            "nothing to ingest until producers write logs under raw/"
        )
        return [Problem(WARNING, "INFERWATCH_LAKE_URL", why)]
    return []


# ---------------------------------------------------------------- local state and settings
def check_data_dir(settings: Settings) -> list[Problem]:
    """The data dir (warehouse, published files, Airflow home) is writable, or can be made."""
    path = settings.data_dir
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return [Problem(ERROR, "INFERWATCH_DATA_DIR", f"{existing} is not a folder")]
    if not os.access(existing, os.W_OK | os.X_OK):
        what = path if existing == path else f"{existing} (to create {path})"
        return [Problem(ERROR, "INFERWATCH_DATA_DIR", f"{what} is not writable by this user")]
    return []


def check_producers(settings: Settings) -> list[Problem]:
    """INFERWATCH_PRODUCERS parses as ingest reads it (a file's path or inline JSON/YAML)."""
    if not settings.producers:
        return []
    from inferwatch.adapters.registry import ProducerMap

    try:
        ProducerMap.load(settings.producers)
    except Exception as error:  # noqa: BLE001 - a missing file, YAML or mapping errors
        return [Problem(ERROR, "INFERWATCH_PRODUCERS", _first_line(error))]
    return []


# ---------------------------------------------------------------- lake documents
def check_registry(lake) -> list[Problem]:
    """Each ``registry/<model>/<version>.json`` is a JSON object whose ids are valid names and
    whose ``deployed_at`` is a timestamp. The build reads a bad entry as one without lineage,
    so these are warnings."""
    problems = []
    for path in sorted(lake.fs.glob(lake.path("registry/*/*.json"))):
        key = posixpath.relpath(path, lake.root)
        try:
            entry = json.loads(lake.fs.cat_file(path))
        except Exception as error:  # noqa: BLE001 - JSON, UTF-8 or read errors alike
            why = (
                f"not valid JSON ({_first_line(error)}): the "
                "version's lineage (git commit, metrics) is left empty"
            )
            problems.append(Problem(WARNING, key, why))
            continue
        problems += [
            Problem(WARNING, key, message) for message in registry_entry_issues(key, entry)
        ]
    return problems


def registry_entry_issues(key: str, entry: object) -> list[str]:
    """What is wrong in one parsed registry entry (as stg_lake__registry reads it)."""
    from inferwatch.names import is_valid

    if not isinstance(entry, dict):
        return [
            f"a JSON {type(entry).__name__}, not an object: the version's lineage is left empty"
        ]
    _, path_model, path_version = key[: -len(".json")].split("/", 2)
    issues = []
    model = entry.get("model") or path_model
    version = entry.get("version") or entry.get("model_version") or path_version
    if not is_valid("model", model):
        issues.append(f"model {model!r} is not a valid model name")
    if not is_valid("model_version", version):
        issues.append(f"version {version!r} is not a valid model version")
    deployed = entry.get("deployed_at")
    if deployed is not None and not _is_timestamp(deployed):
        issues.append(f"deployed_at {deployed!r} is not an ISO 8601 timestamp")
    metrics = entry.get("training_metrics")
    if metrics is not None and not isinstance(metrics, dict):
        issues.append("training_metrics is not an object of metric → value")
    return issues


def _is_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


_REFERENCE_KEY = re.compile(r"reference/([^/]+)/([^/]+)/[^/]+\.(parquet|csv)")


def check_references(lake) -> list[Problem]:
    """Each reference file sits at ``reference/<model>/<version>/<file>.parquet|csv`` and its
    schema (Parquet footer, CSV header) reads. dbt reads them all in one query, so one bad
    file fails the build: an error, naming the file."""
    problems = []
    for path in sorted(lake.fs.find(lake.path("reference"))):
        key = posixpath.relpath(path, lake.root)
        match = _REFERENCE_KEY.fullmatch(key)
        if not match:
            if not posixpath.basename(key).startswith("."):
                why = (
                    "not read: a reference file is "
                    "reference/<model>/<version>/<name>.parquet or .csv"
                )
                problems.append(Problem(WARNING, key, why))
            continue
        if not lake.fs.size(path):
            problems.append(Problem(WARNING, key, "empty: no reference rows from this file"))
            continue
        error = _reference_error(lake, path, match.group(3))
        if error:
            problems.append(Problem(ERROR, key, error))
    return problems


def _reference_error(lake, path: str, fmt: str) -> str | None:
    """Why the file cannot be read as a reference, or None. Only the schema is read: the
    Parquet footer, or the CSV's first lines."""
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with lake.fs.open(path, "rb") as handle:
                names = pq.read_schema(handle).names
        else:
            names = _csv_header(lake, path)
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError) as error:
        return f"cannot be read as {fmt.upper()} ({_first_line(error)})"
    features = [n for n in names if n not in ("prediction", "confidence", "filename")]
    if not features:
        return "has no feature column (one column per input feature, named as in the logs)"
    return None


def _csv_header(lake, path: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    with lake.fs.open(path, "rb") as handle:
        head = handle.read(CSV_HEAD_BYTES)
    if len(head) == CSV_HEAD_BYTES:
        head = head[: head.rfind(b"\n") + 1] or head  # whole lines only
    return list(pcsv.read_csv(pa.BufferReader(head)).column_names)


# ---------------------------------------------------------------- servers
def superset_configured(settings: Settings, env: dict[str, str]) -> str | None:
    """How Superset is configured: ``explicit`` (INFERWATCH_SUPERSET_URL or
    SUPERSET_ADMIN_PASSWORD set), ``implicit`` (this data dir has a local Superset, made by
    `inferwatch superset start`) or None. The generated secrets file always holds an admin
    password, so it is no sign of a Superset."""
    if env.get("INFERWATCH_SUPERSET_URL") or env.get("SUPERSET_ADMIN_PASSWORD"):
        return "explicit"
    return "implicit" if (settings.data_dir / "superset").is_dir() else None


def check_superset(settings: Settings, severity: str = ERROR) -> list[Problem]:
    """Superset's /health answers 200 (what the pipeline's refresh asks first)."""
    import requests

    url = f"{settings.superset_url}/health"
    try:
        status = requests.get(url, timeout=TIMEOUT_S).status_code
    except requests.RequestException as error:
        why = (
            f"Superset does not answer at "
            f"{url} ({_first_line(error)}); dashboards are not refreshed"
        )
        return [Problem(severity, "INFERWATCH_SUPERSET_URL", why)]
    if status != 200:
        why = f"{url} answered HTTP {status}, not Superset's 200"
        return [Problem(severity, "INFERWATCH_SUPERSET_URL", why)]
    return []


def smtp_configured(settings: Settings, env: dict[str, str]) -> str | None:
    """E-mail is sent when alert or report recipients are set; a host set on purpose counts."""
    wanted = settings.alert_emails or settings.report_emails or env.get("INFERWATCH_SMTP_HOST")
    return "explicit" if wanted else None


def check_smtp(settings: Settings, severity: str = ERROR) -> list[Problem]:
    """The SMTP server accepts a connection and answers EHLO."""
    import smtplib

    where = f"{settings.smtp_host}:{settings.smtp_port}"
    setting = "INFERWATCH_SMTP_HOST/INFERWATCH_SMTP_PORT"
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT_S) as smtp:
            code, _ = smtp.ehlo()
    except (OSError, smtplib.SMTPException) as error:
        why = (
            f"no SMTP server answers at {where} "
            f"({_first_line(error)}); alert and report e-mails cannot be sent"
        )
        return [Problem(severity, setting, why)]
    if code != 250:
        return [Problem(severity, setting, f"the SMTP server at {where} refused EHLO ({code})")]
    return []


# ---------------------------------------------------------------- all of them
def run_checks(
    settings: Settings, env: dict[str, str] | None = None, *, servers_required: bool = True
) -> list[Problem]:
    """Every check, errors first. A server configured on purpose that does not answer is an
    error; ``servers_required=False`` (the pipeline's first task) reports it as a warning: a
    run goes on without it (the refresh is skipped, alerts are retried by the next run). So
    is a local Superset that is not running."""
    env = dict(os.environ if env is None else env)
    problems = check_data_dir(settings) + check_producers(settings)
    connection_problems, options = check_lake_connection(settings)
    problems += connection_problems
    if options is not None:
        lake_problems = check_lake(settings, options)
        problems += lake_problems
        if not any(p.severity == ERROR for p in lake_problems):
            problems += _lake_documents(settings, options)
    servers: Iterable[tuple[Callable, Callable]] = (
        (superset_configured, check_superset),
        (smtp_configured, check_smtp),
    )
    for configured, check in servers:
        how = configured(settings, env)
        if how:
            required = servers_required and how == "explicit"
            problems += check(settings, ERROR if required else WARNING)
    return sorted(problems, key=lambda p: p.severity != ERROR)


def _lake_documents(settings: Settings, options: dict) -> list[Problem]:
    from inferwatch.lake import Lake

    lake = Lake(settings.lake_url, options, attempts=1)
    try:
        return check_registry(lake) + check_references(lake)
    except Exception as error:  # noqa: BLE001 - a listing that fails midway
        why = f"reading registry/ and reference/ failed ({_first_line(error)})"
        return [Problem(ERROR, "INFERWATCH_LAKE_URL", why)]


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == ERROR]

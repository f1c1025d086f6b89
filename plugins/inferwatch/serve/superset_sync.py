"""Dashboards as code: import ``superset/`` into a running Superset through its REST API.

The assets follow Superset's export layout, one YAML per asset, linked by UUID:
``databases/<db>.yaml``, ``datasets/<db>/<table>.yaml``, ``charts/<dashboard>/<chart>.yaml``,
``dashboards/<dashboard>.yaml``. Two things differ from a raw export, both for review:

- the databases' ``sqlalchemy_uri`` hold ``${SERVING_PATH}`` / ``${OPS_PATH}``, filled here with
  the absolute paths of the published ``serving.duckdb`` and ``ops.duckdb`` (opened read-only);
- dataset SQL (column expressions) may hold ``${COMMIT_URL_TEMPLATE}`` and
  ``${DATA_URL_TEMPLATE}``: the lineage links, from ``superset/links.yaml`` or the environment
  (``INFERWATCH_COMMIT_URL_TEMPLATE``, ``INFERWATCH_DATA_URL_TEMPLATE``), quoted for SQL;
- a chart's ``query_context`` is a YAML mapping without ``form_data``; here it gets
  ``form_data`` (= ``params``) and is serialised to the JSON string Superset stores.

Each asset type goes through its own import endpoint with ``overwrite=true`` (a dashboard
import overwrites only the dashboard, not its charts or dataset), in dependency order, so a
re-sync updates everything in place: objects are matched by UUID, never duplicated.

Then the report schedules (superset/reports/*.yaml, see
:mod:`inferwatch.serve.superset_reports`) and the access model (README: governance), also
idempotent: roles ``Analyst`` (every
dashboard, Explore, SQL Lab on the serving database only) and ``Stakeholder`` (view dashboards
only: no SQL Lab, no dataset or database API), each dashboard opened to both roles through
``DASHBOARD_RBAC`` (which lets a role read the charts of a dashboard it may see, and nothing
else of their data) — except the audit trail (``ADMIN_ONLY_DASHBOARD_SLUGS``), which lists
the Admin role alone, on the ``InferWatch audit`` database no role is granted — and one demo
user per role whose password is generated into the
owner-only secrets file at the first sync and never leaves it.

Runs in the pipeline's environment: PyYAML, requests, zipfile and DuckDB (to read the
published columns) only.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import requests
import yaml

from inferwatch.config import SUPERSET_ASSETS_DIR, Settings, read_secrets
from inferwatch.serve.superset_access import ADMIN_ONLY_DASHBOARD_SLUGS, sync_access
from inferwatch.serve.superset_reports import sync_reports
from inferwatch.state_file import read_json, write_json

log = logging.getLogger(__name__)

SERVING_PATH_PLACEHOLDER = "${SERVING_PATH}"
OPS_PATH_PLACEHOLDER = "${OPS_PATH}"
#: The published audit trail (inferwatch.audit), beside serving.duckdb; Admin only.
AUDIT_PATH_PLACEHOLDER = "${AUDIT_PATH}"
LINKS_FILE = "links.yaml"
#: placeholder in dataset YAML → (key in links.yaml, environment variable overriding it)
LINK_PLACEHOLDERS = {
    "${COMMIT_URL_TEMPLATE}": ("commit_url_template", "INFERWATCH_COMMIT_URL_TEMPLATE"),
    "${DATA_URL_TEMPLATE}": ("training_data_url_template", "INFERWATCH_DATA_URL_TEMPLATE"),
}
BUNDLE_ROOT = "inferwatch_superset_assets"
IMPORT_VERSION = "1.0.0"

#: (folder, Superset model named in metadata.yaml, REST resource), in import order.
ASSET_TYPES = (
    ("databases", "Database", "database"),
    ("datasets", "SqlaTable", "dataset"),
    ("charts", "Slice", "chart"),
    ("dashboards", "Dashboard", "dashboard"),
)


#: libyaml's safe loader where PyYAML has it: the assets are parsed on every run's refresh, and
#: the pure-Python one takes seconds over them.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SupersetSyncError(RuntimeError):
    """Superset refused a login or an import."""


# ---------- assets → bundles
def load_assets(assets_dir: Path = SUPERSET_ASSETS_DIR) -> dict[str, dict[str, Any]]:
    """Every asset YAML under ``assets_dir``, keyed by its path relative to it."""
    assets = {}
    for folder, _, _ in ASSET_TYPES:
        for path in sorted((assets_dir / folder).rglob("*.yaml")):
            assets[path.relative_to(assets_dir).as_posix()] = yaml.load(path.read_text(), _LOADER)
    if not any(name.startswith("dashboards/") for name in assets):
        raise FileNotFoundError(f"no dashboards/*.yaml under {assets_dir}")
    return assets


def link_templates(assets_dir: Path = SUPERSET_ASSETS_DIR) -> dict[str, str]:
    """``${PLACEHOLDER}`` → URL template for the lineage links (environment over links.yaml)."""
    path = assets_dir / LINKS_FILE
    defaults = yaml.safe_load(path.read_text()) if path.exists() else {}
    return {
        placeholder: os.environ.get(env) or (defaults or {}).get(key) or ""
        for placeholder, (key, env) in LINK_PLACEHOLDERS.items()
    }


def _sql_literal_body(value: str) -> str:
    """``value`` as the inside of a single-quoted SQL string."""
    return value.replace("'", "''")


def _fill_dataset(config: dict[str, Any], links: dict[str, str]) -> dict[str, Any]:
    def fill(text):
        if not isinstance(text, str):
            return text
        for placeholder, template in links.items():
            text = text.replace(placeholder, _sql_literal_body(template))
        return text

    config["sql"] = fill(config.get("sql"))
    config["columns"] = [
        {**column, "expression": fill(column.get("expression"))}
        for column in config.get("columns") or []
    ]
    config["metrics"] = [
        {**metric, "expression": fill(metric.get("expression"))}
        for metric in config.get("metrics") or []
    ]
    return config


def render_assets(
    assets: dict[str, dict[str, Any]],
    serving_path: Path,
    ops_path: Path | None = None,
    links: dict[str, str] | None = None,
) -> dict[str, dict]:
    """Assets as Superset imports them: file paths and link templates filled in, query
    contexts as JSON. ``ops_path`` defaults to ``ops.duckdb`` beside ``serving_path``."""
    paths = {
        SERVING_PATH_PLACEHOLDER: Path(serving_path).resolve(),
        OPS_PATH_PLACEHOLDER: Path(
            ops_path or Path(serving_path).with_name("ops.duckdb")
        ).resolve(),
        AUDIT_PATH_PLACEHOLDER: Path(serving_path).with_name("audit.duckdb").resolve(),
    }
    for path in paths.values():
        if any(char in str(path) for char in "?#%"):
            raise ValueError(f"published path {path} holds a URL-reserved character")
    links = link_templates() if links is None else links
    rendered = {}
    for name, config in assets.items():
        config = dict(config)
        if name.startswith("databases/"):
            uri = config["sqlalchemy_uri"]
            for placeholder, path in paths.items():
                uri = uri.replace(placeholder, str(path))
            config["sqlalchemy_uri"] = uri
        elif name.startswith("datasets/"):
            config = _fill_dataset(config, links)
        elif name.startswith("charts/") and isinstance(config.get("query_context"), dict):
            query_context = dict(config["query_context"])
            query_context.setdefault("form_data", config.get("params") or {})
            config["query_context"] = json.dumps(query_context)
        rendered[name] = config
    return rendered


def build_bundle(rendered: dict[str, dict], model: str, folders: Iterable[str]) -> bytes:
    """A Superset import zip: ``<root>/metadata.yaml`` plus the assets under ``folders``."""
    folders = tuple(f"{folder}/" for folder in folders)
    metadata = {
        "version": IMPORT_VERSION,
        "type": model,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(f"{BUNDLE_ROOT}/metadata.yaml", yaml.safe_dump(metadata))
        for name, config in rendered.items():
            if name.startswith(folders):
                bundle.writestr(f"{BUNDLE_ROOT}/{name}", yaml.safe_dump(config, sort_keys=False))
    return buffer.getvalue()


# ---------- REST
def admin_password(settings: Settings) -> str | None:
    """``SUPERSET_ADMIN_PASSWORD`` from the environment, else from the secrets file."""
    return os.environ.get("SUPERSET_ADMIN_PASSWORD") or read_secrets(settings.secrets_path).get(
        "SUPERSET_ADMIN_PASSWORD"
    )


class SupersetClient:
    """A logged-in REST session: bearer token, session cookie and CSRF token."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 120.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        response = self.http.post(
            f"{self.url}/api/v1/security/login",
            json={"username": username, "password": password, "provider": "db", "refresh": False},
            timeout=timeout,
        )
        if response.status_code != 200:
            raise SupersetSyncError(
                f"login as {username!r} at {self.url} failed: HTTP {response.status_code}"
            )
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        csrf = self.request("GET", "/api/v1/security/csrf_token/")["result"]
        self.http.headers.update({"X-CSRFToken": csrf, "Referer": self.url})

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.http.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        if not response.ok:
            raise SupersetSyncError(
                f"{method} {path}: HTTP {response.status_code}: {response.text[:2000]}"
            )
        return response.json() if response.content else {}

    def import_bundle(self, resource: str, bundle: bytes) -> None:
        self.request(
            "POST",
            f"/api/v1/{resource}/import/",
            files={"formData": ("bundle.zip", bundle, "application/zip")},
            data={"overwrite": "true"},
        )

    def find_by_uuid(self, resource: str, uuid: str) -> list[int]:
        """Ids of the ``resource`` objects with this UUID (at most one, by Superset's schema)."""
        query = f"(filters:!((col:uuid,opr:eq,value:'{uuid}')),columns:!(id),page_size:100)"
        rows = self.request("GET", f"/api/v1/{resource}/?q={query}")["result"]
        return [row["id"] for row in rows]


def _client(settings: Settings, username: str, password: str | None) -> SupersetClient:
    password = password or admin_password(settings)
    if not password:
        raise SupersetSyncError(
            "no Superset password: set SUPERSET_ADMIN_PASSWORD or add it to "
            f"{settings.secrets_path}"
        )
    return SupersetClient(settings.superset_url, username, password)


def sync(
    settings: Settings,
    *,
    username: str = "admin",
    password: str | None = None,
    assets_dir: Path = SUPERSET_ASSETS_DIR,
) -> dict[str, dict[str, int]]:
    """Import every asset, overwriting by UUID, then the roles and demo users (see
    :mod:`inferwatch.serve.superset_access`); return ``{resource: {uuid: id}}`` plus
    ``role`` (``{name: id}``) and ``user`` (``{username: id}``).

    ``password`` defaults to :func:`admin_password`. Raises :class:`SupersetSyncError` when
    Superset refuses the login or an import.
    """
    return _sync(settings, _client(settings, username, password), assets_dir)


def _sync(
    settings: Settings, client: SupersetClient, assets_dir: Path
) -> dict[str, dict[str, int]]:
    started = time.monotonic()
    if not settings.serving_path.exists():
        log.warning(
            "%s does not exist yet: charts fail until it is published", settings.serving_path
        )
    _ensure_audit_file(settings.serving_path.with_name("audit.duckdb"))
    rendered = render_assets(
        load_assets(assets_dir),
        settings.serving_path,
        settings.ops_path,
        link_templates(assets_dir),
    )
    folders: list[str] = []
    for folder, model, resource in ASSET_TYPES:
        folders.append(folder)
        client.import_bundle(resource, build_bundle(rendered, model, folders))
    result: dict[str, dict[str, int]] = {}
    for folder, _, resource in ASSET_TYPES:
        ids = result.setdefault(resource, {})
        for name, config in rendered.items():
            if name.startswith(f"{folder}/"):
                found = client.find_by_uuid(resource, config["uuid"])
                if len(found) != 1:
                    raise SupersetSyncError(f"{resource} {config['uuid']} ({name}): ids {found}")
                ids[config["uuid"]] = found[0]
    serving_db = next(
        config["uuid"]
        for name, config in load_assets(assets_dir).items()
        if name.startswith("databases/") and SERVING_PATH_PLACEHOLDER in config["sqlalchemy_uri"]
    )
    admin_only = frozenset(
        result["dashboard"][config["uuid"]]
        for name, config in rendered.items()
        if name.startswith("dashboards/") and config.get("slug") in ADMIN_ONLY_DASHBOARD_SLUGS
    )
    access = sync_access(
        client,
        settings.secrets_path,
        dashboard_ids=sorted(result["dashboard"].values()),
        serving_database_id=result["database"][serving_db],
        admin_only_dashboard_ids=admin_only,
    )
    result["role"] = access["roles"]
    result["user"] = access["users"]
    # scheduled dashboard e-mails (superset/reports/*.yaml), recipients from the configuration
    reports_dir = assets_dir / "reports"
    reports = sync_reports(client, result["dashboard"], settings.report_emails, reports_dir)
    result["report"] = reports["report"]
    log.info(
        "Superset sync to %s: %s in %.1f s",
        client.url,
        {resource: len(ids) for resource, ids in result.items()},
        time.monotonic() - started,
    )
    return result


def _ensure_audit_file(path: Path) -> None:
    """The audit database's file must exist for Superset to open it (and refresh its dataset)
    before the first audit task has run: an empty ledger table then."""
    if not path.exists():
        from inferwatch.audit.ledger import create_empty

        create_empty(path)


def refresh(
    settings: Settings,
    *,
    username: str = "admin",
    password: str | None = None,
    assets_dir: Path = SUPERSET_ASSETS_DIR,
) -> bool:
    """The pipeline's last step: re-sync the assets and refresh dataset columns from the table.

    A run whose inputs are those of the last complete refresh (:func:`sync_digest`: the
    rendered assets, report schedules, the columns the published marts have, this code) into
    the same Superset imports nothing: it only drops Superset's cached results of the served
    datasets, so the charts show the new build. Anything changed re-syncs in full.

    Returns False, with a warning and without raising, when Superset does not answer or no
    password is configured: a published build must not fail for want of a dashboard server.
    Import errors from a reachable Superset raise :class:`SupersetSyncError`.
    """
    url = settings.superset_url
    try:
        healthy = requests.get(f"{url}/health", timeout=5).status_code == 200
    except requests.RequestException:
        healthy = False
    if not healthy:
        log.warning("Superset at %s is not reachable; dashboards not refreshed", url)
        return False
    if not (password or admin_password(settings)):
        log.warning("no SUPERSET_ADMIN_PASSWORD configured; Superset at %s not refreshed", url)
        return False
    client = _client(settings, username, password)
    digest = sync_digest(settings, assets_dir)
    last = read_json(sync_state_path(settings), {}, unreadable_is_default=True)
    if last.get("digest") == digest and last.get("databases") == _databases(client):
        _invalidate_cached_results(client, last.get("datasets") or [])
        log.info("Superset at %s: assets and served columns unchanged, nothing imported", url)
        return True
    ids = _sync(settings, client, assets_dir)
    for dataset_id in ids["dataset"].values():
        # adds the columns the table gained since the YAML was written, drops vanished ones
        client.request("PUT", f"/api/v1/dataset/{dataset_id}/refresh")
    _invalidate_cached_results(client, sorted(ids["dataset"].values()))
    synced = {
        "digest": digest,
        "databases": _databases(client),
        "datasets": sorted(ids["dataset"].values()),
    }
    write_json(sync_state_path(settings), synced)
    log.info("Superset at %s refreshed (%d datasets)", url, len(ids["dataset"]))
    return True


# ---------- what the last complete refresh synced
#: Modules whose code decides what a sync writes into Superset (roles, reports, bundles).
_SYNC_CODE = ("superset_sync.py", "superset_access.py", "superset_reports.py")


def sync_state_path(settings: Settings) -> Path:
    return settings.data_dir / "superset-sync.json"


def sync_digest(settings: Settings, assets_dir: Path = SUPERSET_ASSETS_DIR) -> str:
    """A digest of everything a refresh writes into Superset: the assets as rendered for this
    data dir, the report schedules and recipients, the columns of the published marts (a new
    column needs the dataset refreshed), the secrets file (demo users' passwords) and the code
    of the sync itself."""
    rendered = render_assets(
        load_assets(assets_dir), settings.serving_path, settings.ops_path,
        link_templates(assets_dir),
    )  # fmt: skip
    reports = sorted((assets_dir / "reports").glob("*.yaml"))
    secrets = settings.secrets_path.stat() if settings.secrets_path.exists() else None
    here = Path(__file__).parent
    inputs = {
        "superset_url": settings.superset_url,
        "assets": rendered,
        "reports": {path.name: path.read_text() for path in reports},
        "report_emails": list(settings.report_emails),
        "columns": {"serving": _columns(settings.serving_path), "ops": _columns(settings.ops_path)},
        "secrets": [secrets.st_size, secrets.st_mtime_ns] if secrets else None,
        "code": [(here / name).read_text() for name in _SYNC_CODE],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def _columns(path: Path) -> list[list[str]]:
    """Every (table, column, type) of a published DuckDB file; [] when not published yet."""
    if not path.exists():
        return []
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "select table_schema, table_name, column_name, data_type "
            "from information_schema.columns order by all"
        ).fetchall()
    return [list(row) for row in rows]


def _databases(client: SupersetClient) -> dict[str, list]:
    """Superset's side of the sync: each database's id and last change, by UUID. Another data
    dir synced into the same Superset, or a Superset whose metadata was reset, differs here."""
    query = "(columns:!(uuid,id,changed_on),page_size:100)"
    rows = client.request("GET", f"/api/v1/database/?q={query}")["result"]
    return {str(row["uuid"]): [row["id"], str(row["changed_on"])] for row in rows}


def _invalidate_cached_results(client: SupersetClient, dataset_ids: list[int]) -> None:
    """Drop what Superset's results cache holds for the served datasets (nothing with the
    shipped configuration, whose data cache is off; a deployment that turns one on would show
    the previous build until it expired). A failure is logged: the data is published."""
    if not dataset_ids:
        return
    try:
        client.request(
            "POST", "/api/v1/cachekey/invalidate",
            json={"datasource_uids": [f"{dataset_id}__table" for dataset_id in dataset_ids]},
        )  # fmt: skip
    except (SupersetSyncError, requests.RequestException) as error:
        log.warning("could not drop Superset's cached results: %s", error)

"""Report schedules as code: ``superset/reports/*.yaml`` → Superset's Alerts & Reports.

One YAML per scheduled dashboard e-mail::

    name: Inference overview (daily)        # the key: matched by name (unique per type)
    dashboard_uuid: 3cc9a05d-…              # the dashboard, by the UUID of its YAML
    crontab: "10 7 * * *"
    timezone: UTC
    report_format: PNG                      # PNG (inline image) or PDF (attachment)
    email_subject: …                        # optional, as are description, working_timeout,
                                            # log_retention, custom_width, active

Recipients are not in the files: they are configuration (``INFERWATCH_REPORT_EMAILS``, a comma
list). With none configured a report is synced *inactive*, so nothing is e-mailed to nobody.
The sync (:func:`sync_reports`, called by ``inferwatch superset sync``) creates what is missing
and updates only what differs, over the REST API (``/api/v1/report/``): a second sync changes
nothing. Reports are owned, and therefore taken, by the syncing user (admin). Reports created
by hand in Superset's UI are left alone.

Runs in the pipeline's environment (requests, PyYAML) through a logged-in
:class:`~inferwatch.serve.superset_sync.SupersetClient`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from inferwatch.config import SUPERSET_ASSETS_DIR

if TYPE_CHECKING:
    from inferwatch.serve.superset_sync import SupersetClient

log = logging.getLogger(__name__)

REPORTS_DIR = SUPERSET_ASSETS_DIR / "reports"
REPORT_FORMATS = ("PNG", "PDF")
#: YAML key → default; each is a field of Superset's report schedule of the same name.
OPTIONAL_FIELDS: dict[str, Any] = {
    "description": "",
    "timezone": "UTC",
    "email_subject": None,
    "working_timeout": 900,
    "log_retention": 90,
    "custom_width": None,
}
REQUIRED_FIELDS = ("name", "dashboard_uuid", "crontab", "report_format")


class ReportSpecError(ValueError):
    """A report YAML is incomplete or names an unknown dashboard."""


def load_reports(reports_dir: Path = REPORTS_DIR) -> list[dict[str, Any]]:
    """Every ``*.yaml`` under ``reports_dir``, checked, with defaults filled in."""
    specs = []
    for path in sorted(Path(reports_dir).glob("*.yaml")):
        spec = yaml.safe_load(path.read_text()) or {}
        missing = [key for key in REQUIRED_FIELDS if not spec.get(key)]
        if missing:
            raise ReportSpecError(f"{path}: missing {missing}")
        if spec["report_format"] not in REPORT_FORMATS:
            raise ReportSpecError(f"{path}: report_format must be one of {REPORT_FORMATS}")
        unknown = set(spec) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS) - {"active"}
        if unknown:
            raise ReportSpecError(f"{path}: unknown keys {sorted(unknown)}")
        specs.append({**OPTIONAL_FIELDS, "active": True, **spec, "source": path.name})
    names = [spec["name"] for spec in specs]
    if len(names) != len(set(names)):
        raise ReportSpecError(f"report names must be unique: {names}")
    return specs


def payload(
    spec: dict[str, Any], dashboard_id: int, owner_id: int, recipients: Iterable[str]
) -> dict[str, Any]:
    """The REST body of one report schedule (POST and PUT take the same)."""
    recipients = [address for address in recipients if address]
    body = {
        "type": "Report",
        "name": spec["name"],
        "description": spec["description"],
        "crontab": spec["crontab"],
        "timezone": spec["timezone"],
        "dashboard": dashboard_id,
        "report_format": spec["report_format"],
        "active": bool(spec["active"]) and bool(recipients),
        "owners": [owner_id],
        "working_timeout": spec["working_timeout"],
        "log_retention": spec["log_retention"],
        "creation_method": "alerts_reports",
        "recipients": (
            [{"type": "Email", "recipient_config_json": {"target": ",".join(recipients)}}]
            if recipients
            else []
        ),
    }
    for key in ("email_subject", "custom_width"):
        if spec.get(key) is not None:
            body[key] = spec[key]
    return body


def _rison_string(value: str) -> str:
    return "'" + value.replace("!", "!!").replace("'", "!'") + "'"


def find_report(client: SupersetClient, name: str) -> int | None:
    """Id of the report schedule named ``name``, if any."""
    query = f"(filters:!((col:name,opr:eq,value:{_rison_string(name)})),page_size:10)"
    rows = client.request("GET", f"/api/v1/report/?q={query}")["result"]
    found = [row["id"] for row in rows if row["name"] == name]
    return found[0] if found else None


def _current(client: SupersetClient, report_id: int) -> dict[str, Any]:
    """A stored report schedule in the shape of :func:`payload`, for comparing."""
    row = client.request("GET", f"/api/v1/report/{report_id}")["result"]
    recipients = []
    for recipient in row.get("recipients") or []:
        config = recipient.get("recipient_config_json") or {}
        if isinstance(config, str):
            config = json.loads(config or "{}")
        recipients.append({"type": recipient["type"], "recipient_config_json": config})
    return {
        **{key: row.get(key) for key in ("type", "name", "description", "crontab", "timezone")},
        "dashboard": (row.get("dashboard") or {}).get("id"),
        "report_format": row.get("report_format"),
        "active": row.get("active"),
        "owners": sorted(owner["id"] for owner in row.get("owners") or []),
        "working_timeout": row.get("working_timeout"),
        "log_retention": row.get("log_retention"),
        "creation_method": row.get("creation_method"),
        "recipients": recipients,
        "email_subject": row.get("email_subject"),
        "custom_width": row.get("custom_width"),
    }


def _differs(wanted: dict[str, Any], current: dict[str, Any]) -> list[str]:
    changed = []
    for key, value in wanted.items():
        have = current.get(key)
        if key == "recipients":
            value = [
                {**r, "recipient_config_json": {"target": r["recipient_config_json"]["target"]}}
                for r in value
            ]
            have = [
                {**r, "recipient_config_json": {"target": r["recipient_config_json"].get("target")}}
                for r in have or []
            ]
        if key == "owners":
            value = sorted(value)
        if (value or None) != (have or None):
            changed.append(key)
    return changed


def sync_reports(
    client: SupersetClient,
    dashboard_ids: dict[str, int],
    recipients: Iterable[str],
    reports_dir: Path = REPORTS_DIR,
) -> dict[str, Any]:
    """Create or update every report in ``reports_dir``; ``dashboard_ids`` maps dashboard UUIDs
    to ids (the sync's result). Returns ``{"report": {name: id}, "changed": [...]}`` (empty
    ``changed`` on a sync that had nothing to do). Superset without ``ALERT_REPORTS`` (no Redis
    configured) answers 404: then nothing is synced, with a warning."""
    specs = load_reports(reports_dir)
    recipients = list(recipients)
    if not specs:
        return {"report": {}, "changed": []}
    if not client.http.get(f"{client.url}/api/v1/report/_info", timeout=client.timeout).ok:
        log.warning("Superset at %s has Alerts & Reports off; reports not synced", client.url)
        return {"report": {}, "changed": []}
    if not recipients:
        log.warning("INFERWATCH_REPORT_EMAILS is empty: report schedules synced inactive")
    owner_id = client.request("GET", "/api/v1/me/")["result"]["id"]
    ids: dict[str, int] = {}
    changed: list[str] = []
    for spec in specs:
        dashboard_id = dashboard_ids.get(spec["dashboard_uuid"])
        if dashboard_id is None:
            found = client.find_by_uuid("dashboard", spec["dashboard_uuid"])
            if len(found) != 1:
                raise ReportSpecError(
                    f"{spec['source']}: no dashboard with uuid {spec['dashboard_uuid']}"
                )
            dashboard_id = found[0]
        body = payload(spec, dashboard_id, owner_id, recipients)
        report_id = find_report(client, spec["name"])
        if report_id is None:
            report_id = client.request("POST", "/api/v1/report/", json=body)["id"]
            changed.append(f"created {spec['name']}")
        else:
            differs = _differs(body, _current(client, report_id))
            if differs:
                client.request("PUT", f"/api/v1/report/{report_id}", json=body)
                changed.append(f"updated {spec['name']} ({', '.join(differs)})")
        ids[spec["name"]] = report_id
    if changed:
        log.info("Superset report schedules: %s", "; ".join(changed))
    return {"report": ids, "changed": changed}


def execution_logs(client: SupersetClient, report_id: int) -> list[dict[str, Any]]:
    """The report's execution log, newest first: ``state``, ``start_dttm``, ``end_dttm``,
    ``error_message``, ``scheduled_dttm``."""
    query = "(order_column:start_dttm,order_direction:desc,page_size:100)"
    return client.request("GET", f"/api/v1/report/{report_id}/log/?q={query}")["result"]

"""Superset Alerts & Reports for real: report schedules as code, e-mailed by a real Celery worker
and beat on a real Redis, screenshots by Debian's Chromium, delivered to an aiosmtpd sink on
127.0.0.1; and the proof that a report never races a publish.

The session's Superset (tests/fixtures_superset.py) runs gunicorn only; this module starts its
Redis, worker and beat (``superset_server.start_reports``, what ``inferwatch superset start``
does) and stops them by pid. Schedules run every minute here, so each e-mail arrives within
about two minutes. Images are measured in the Superset environment (Pillow) by
plugins/inferwatch/serve/report_image.py.
"""

from __future__ import annotations

import dataclasses
import email
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml

from inferwatch.config import PROJECT_ROOT, Settings
from inferwatch.pipeline import publish_lock
from inferwatch.publish import publish_serving
from inferwatch.serve import report_workers, superset_server
from inferwatch.serve.superset_reports import (
    REPORTS_DIR,
    execution_logs,
    load_reports,
    payload,
    sync_reports,
)
from inferwatch.serve.superset_sync import SupersetClient, load_assets

pytestmark = pytest.mark.superset

IMAGE_SCRIPT = PROJECT_ROOT / "plugins" / "inferwatch" / "serve" / "report_image.py"
RECIPIENTS = ("stakeholders@inferwatch.test", "cto@inferwatch.test")
OVERVIEW = "Inference overview (daily)"
LINEAGE = "Models and lineage (weekly)"
TOTAL_REQUESTS_UUID = "e042055a-07bc-4cd0-8fad-ee9e0d894189"


# ---------- an SMTP sink on 127.0.0.1
class SmtpSink:
    """aiosmtpd handler keeping every message: (arrival time, envelope recipients, message)."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, list[str], EmailMessage]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            self.messages.append((time.time(), list(envelope.rcpt_tos), message))
        return "250 OK"

    def wait_for(self, subject_part: str, after: float, timeout: float):
        """The first message whose subject holds ``subject_part``, arrived after ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for arrived, rcpt, message in self.messages:
                    if arrived >= after and subject_part in str(message["Subject"]):
                        return arrived, rcpt, message
            time.sleep(1)
        raise AssertionError(f"no e-mail with {subject_part!r} within {timeout:.0f} s")

    def subjects(self, after: float) -> list[str]:
        with self._lock:
            return [str(m["Subject"]) for arrived, _, m in self.messages if arrived >= after]


@pytest.fixture(scope="module")
def smtp_sink():
    from aiosmtpd.controller import Controller

    with socket.socket() as sock:  # aiosmtpd cannot bind port 0: pick a free one
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    handler = SmtpSink()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@dataclass
class Reports:
    settings: Settings
    client: SupersetClient
    home: Path
    dashboards: dict[str, int]  # uuid → id
    pids: dict[str, int]
    sink: SmtpSink


@pytest.fixture(scope="module")
def reports(superset_synced, smtp_sink):
    """The session's Superset plus Redis, a Celery worker and beat, mailing to the sink."""
    if not Path("/usr/bin/chromedriver").exists() or not shutil.which("chromium"):
        pytest.fail("no chromium / chromedriver: `make services` installs them (as root)")
    sink, port = smtp_sink
    settings = dataclasses.replace(
        superset_synced.settings, smtp_host="127.0.0.1", smtp_port=port, report_emails=RECIPIENTS
    )
    home = superset_synced.instance.home
    started = time.monotonic()
    pids = superset_server.start_reports(
        home, superset_synced.instance.url, superset_server.reports_env(settings)
    )
    print(f"report workers {pids} ready in {time.monotonic() - started:.1f} s")
    assert set(report_workers.running(home)) == {"redis", "worker", "beat"}
    client = superset_synced.client()
    try:
        yield Reports(settings, client, home, superset_synced.ids["dashboard"], pids, sink)
    finally:
        stopped = report_workers.stop(home)
        assert set(stopped) == {"redis", "worker", "beat"}
        assert report_workers.running(home) == {}
        assert not any(report_workers.reports_dir(home).glob("*.rdb"))  # nothing persisted
        # back to what the session sync left: the real schedules, inactive without recipients
        sync_reports(client, superset_synced.ids["dashboard"], ())


def _every_minute(folder: Path, sources: list[str], suffix: str) -> dict[str, str]:
    """Copies of superset/reports/<source> firing every minute; {report name: source}."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for source in sources:
        spec = yaml.safe_load((REPORTS_DIR / source).read_text())
        spec["name"] = f"{spec['name']} [{suffix}]"
        spec["email_subject"] = spec["name"]
        spec["crontab"] = "* * * * *"
        (folder / source).write_text(yaml.safe_dump(spec))
        names[spec["name"]] = source
    return names


def _delete_reports(client: SupersetClient, ids) -> None:
    for report_id in ids:
        client.request("DELETE", f"/api/v1/report/{report_id}")


def _measure(data: bytes) -> dict:
    proc = subprocess.run(
        [str(superset_server.superset_venv() / "bin" / "python"), str(IMAGE_SCRIPT)],
        input=data,
        capture_output=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout)


def _assert_shows_data(data: bytes, kind: str) -> dict:
    """An image (or PDF of images) of charts: not blank, no red "Data error" boxes."""
    measured = _measure(data)
    assert measured["format"] == kind, measured
    assert measured["frames"], measured
    for frame in measured["frames"]:
        assert frame["width"] >= 1000, frame
        assert frame["dominant_share"] < 0.9, f"mostly one colour: {frame}"
        assert frame["ink_share"] > 0.005, f"no text or lines: {frame}"
        assert frame["error_share"] < 0.01, f"error boxes: {frame}"
    return measured


def _attachment(message: EmailMessage, kind: str) -> bytes:
    """The inline PNG (``image/png``) or the attached PDF (Superset sends it as an
    ``application/octet-stream`` named ``<report>.pdf``) of a report e-mail."""
    found = [
        part.get_payload(decode=True)
        for part in message.walk()
        if (kind == "PNG" and part.get_content_type() == "image/png")
        or (kind == "PDF" and (part.get_filename() or "").endswith(".pdf"))
    ]
    assert found, [(p.get_content_type(), p.get_filename()) for p in message.walk()]
    return found[0]


def _latest_log(client: SupersetClient, report_id: int) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        logs = [row for row in execution_logs(client, report_id) if row["state"] != "Working"]
        if logs:
            return logs[0]
        time.sleep(1)
    raise AssertionError(f"no finished execution log for report {report_id}")


def _assert_dashboard_charts_return_data(client: SupersetClient, dashboard_id: int) -> int:
    charts = client.request("GET", f"/api/v1/dashboard/{dashboard_id}/charts")["result"]
    assert charts
    for chart in charts:
        for result in client.request("GET", f"/api/v1/chart/{chart['id']}/data/")["result"]:
            assert result["status"] == "success", (chart["slice_name"], result.get("error"))
            assert result["rowcount"] > 0, chart["slice_name"]
    return len(charts)


def _utc_epoch(iso: str) -> float:
    value = datetime.fromisoformat(iso)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


# ---------- the schedules as code, without a server
def test_report_schedules_are_code_with_recipients_from_configuration():
    specs = {spec["name"]: spec for spec in load_reports()}
    assert {name: spec["report_format"] for name, spec in specs.items()} == {
        OVERVIEW: "PNG",
        LINEAGE: "PDF",
    }
    slugs = {
        config["uuid"]: config["slug"]
        for name, config in load_assets().items()
        if name.startswith("dashboards/")
    }
    assert slugs[specs[OVERVIEW]["dashboard_uuid"]] == "inference-overview"
    assert slugs[specs[LINEAGE]["dashboard_uuid"]] == "models-lineage"
    minute, hour, day, month, weekday = specs[OVERVIEW]["crontab"].split()
    assert (day, month, weekday) == ("*", "*", "*") and "*" not in minute + hour  # daily
    *_, weekday = specs[LINEAGE]["crontab"].split()
    assert weekday != "*"  # weekly

    body = payload(specs[OVERVIEW], dashboard_id=7, owner_id=1, recipients=RECIPIENTS)
    assert body["active"] is True and body["dashboard"] == 7 and body["owners"] == [1]
    assert body["recipients"] == [
        {"type": "Email", "recipient_config_json": {"target": ",".join(RECIPIENTS)}}
    ]
    nobody = payload(specs[OVERVIEW], dashboard_id=7, owner_id=1, recipients=())
    assert nobody["active"] is False and nobody["recipients"] == []


# ---------- against the session's Superset
def test_report_workers_are_local_and_recorded_by_pid(reports):
    conf = (report_workers.reports_dir(reports.home) / "redis.conf").read_text().splitlines()
    assert {"bind 127.0.0.1", "protected-mode yes", 'save ""', "appendonly no"} <= set(conf)
    assert any(line.startswith("requirepass ") for line in conf)
    assert report_workers.redis_ping(reports.home)
    assert report_workers.running(reports.home) == reports.pids
    for name, pid in reports.pids.items():
        pid_file = report_workers.reports_dir(reports.home) / f"{name}.pid"
        assert int(pid_file.read_text()) == pid
        assert os.getpgid(pid) == pid  # its own process group: stopped with its children


def test_sync_creates_the_report_schedules_once(superset_synced):
    client = superset_synced.client()
    dashboards = superset_synced.ids["dashboard"]
    # the session's sync (no INFERWATCH_REPORT_EMAILS) made both, inactive
    assert set(superset_synced.ids["report"]) == {OVERVIEW, LINEAGE}
    try:
        first = sync_reports(client, dashboards, RECIPIENTS)
        second = sync_reports(client, dashboards, RECIPIENTS)
        assert first["report"] == second["report"] == superset_synced.ids["report"]
        assert first["changed"] and second["changed"] == []
        specs = {spec["name"]: spec for spec in load_reports()}
        for name, report_id in first["report"].items():
            row = client.request("GET", f"/api/v1/report/{report_id}")["result"]
            assert row["active"] is True
            assert row["crontab"] == specs[name]["crontab"]
            assert row["report_format"] == specs[name]["report_format"]
            assert row["dashboard"]["id"] == dashboards[specs[name]["dashboard_uuid"]]
            (recipient,) = row["recipients"]
            config = recipient["recipient_config_json"]
            config = json.loads(config) if isinstance(config, str) else config
            assert config["target"] == ",".join(RECIPIENTS)
    finally:
        sync_reports(client, dashboards, ())


def test_scheduled_dashboard_emails_arrive_with_data(reports, tmp_path):
    """Every-minute copies of both schedules: a PNG and a PDF e-mail, each within ~2 minutes,
    showing the dashboard's charts (no error box), logged Success, charts returning rows."""
    names = _every_minute(
        tmp_path,
        ["inference_overview_daily.yaml", "models_lineage_weekly.yaml"],
        "test every minute",
    )
    synced_at = time.time()
    ids = sync_reports(reports.client, reports.dashboards, RECIPIENTS, tmp_path)["report"]
    try:
        arrivals = {}
        for name in names:
            arrived, rcpt, message = reports.sink.wait_for(name, after=synced_at, timeout=240)
            arrivals[name] = arrived - synced_at
            assert sorted(rcpt) == sorted(RECIPIENTS)
            assert str(message["Subject"]) == f"[InferWatch] {name}"
            if "overview" in name.lower():
                png = _attachment(message, "PNG")
                measured = _assert_shows_data(png, "PNG")
                print(f"{name}: PNG {len(png)} bytes {measured}")
            else:
                pdf = _attachment(message, "PDF")
                assert pdf.startswith(b"%PDF")
                measured = _assert_shows_data(pdf, "PDF")
                print(f"{name}: PDF {len(pdf)} bytes {measured}")
        print(f"arrived after sync: {arrivals}")
        assert max(arrivals.values()) < 180
        for report_id in ids.values():
            entry = _latest_log(reports.client, report_id)
            assert entry["state"] == "Success", entry
            assert not entry.get("error_message"), entry
        for spec in load_reports(tmp_path):
            dashboard_id = reports.dashboards[spec["dashboard_uuid"]]
            assert _assert_dashboard_charts_return_data(reports.client, dashboard_id) >= 4
    finally:
        _delete_reports(reports.client, ids.values())


def test_a_report_due_during_a_publish_waits_and_shows_the_new_build(reports, tmp_path):
    """The proof that reports never race a build.

    Under the publish lock (what `publish` and the Superset refresh hold), serving.duckdb is
    made unreadable for Superset, the worst a build could do (an in-place writer: every chart
    would be a red "Data error" box, and Superset would still mail it and log Success). A
    report comes due and waits; a real publish swaps a new serving.duckdb in; once the lock
    is released the report runs, and its e-mail shows the new build's data.
    """
    settings = reports.settings
    worker_log = report_workers.log_file(reports.home, "worker")
    offset = worker_log.stat().st_size
    with publish_lock(settings, "test: a publish in progress"):
        locked_at = time.time()
        (name,) = _every_minute(tmp_path, ["inference_overview_daily.yaml"], "race test")
        ids = sync_reports(reports.client, reports.dashboards, RECIPIENTS, tmp_path)["report"]
        report_id = ids[name]
        # The worst a build could do: serving.duckdb replaced by a file no reader can open
        # (Superset keeps an instance per file version, so an in-place writer could not even
        # take the file's lock now).
        broken = settings.serving_path.with_name(".broken-serving.duckdb")
        broken.write_bytes(b"not a database " * 4096)
        os.replace(broken, settings.serving_path)
        chart_id = reports.client.find_by_uuid("chart", TOTAL_REQUESTS_UUID)[0]
        # the damage is real: Superset's queries fail now
        response = reports.client.http.get(
            f"{reports.client.url}/api/v1/chart/{chart_id}/data/", timeout=120
        )
        assert not response.ok, response.text
        deadline = time.monotonic() + 120
        while not _waits(worker_log, offset, report_id):
            assert time.monotonic() < deadline, "the report never came due"
            time.sleep(1)
        time.sleep(3)
        assert not [s for s in reports.sink.subjects(locked_at) if name in s]
        publish_serving(settings)  # a real atomic swap while the report waits
        released_at = time.time()
    try:
        arrived, _, message = reports.sink.wait_for(name, after=locked_at, timeout=150)
        assert arrived > released_at
        png = _attachment(message, "PNG")
        print(f"race test: PNG {len(png)} bytes {_assert_shows_data(png, 'PNG')}")
        entry = _latest_log(reports.client, report_id)
        assert entry["state"] == "Success", entry
        assert _utc_epoch(entry["start_dttm"]) >= released_at - 1, (entry, released_at)
        text = worker_log.read_bytes()[offset:].decode(errors="replace")
        lines = [line for line in text.splitlines() if f"report schedule {report_id} " in line]
        # an earlier task of the same schedule may log its release inside the window first
        waits = next(i for i, line in enumerate(lines) if "waits for the publish lock" in line)
        assert "holds" in lines[waits + 1], lines
    finally:
        _delete_reports(reports.client, [report_id])


def _waits(worker_log: Path, offset: int, report_id: int) -> str:
    """The worker log lines since ``offset`` that say report ``report_id`` waits for the lock."""
    text = worker_log.read_bytes()[offset:].decode(errors="replace")
    return "\n".join(
        line
        for line in text.splitlines()
        if f"report schedule {report_id} (task" in line and "waits for the publish lock" in line
    )

"""Headless Chromium, logged in as the stakeholder: every dashboard renders every chart without
an error, the overview's figures match the marts, and a screenshot of each lands in
docs/screenshots/ (what superset/README.md shows).

Chromium and chromedriver are Debian's (``make browser`` installs them); Selenium is in the
Superset environment, so the browser runs as a subprocess there
(plugins/inferwatch/serve/dashboard_browser.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from inferwatch.config import PROJECT_ROOT
from inferwatch.serve import superset_server
from inferwatch.serve.superset_access import ADMIN_ONLY_DASHBOARD_SLUGS, demo_logins
from inferwatch.serve.superset_sync import load_assets

pytestmark = pytest.mark.superset

SCRIPT = PROJECT_ROOT / "plugins" / "inferwatch" / "serve" / "dashboard_browser.py"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser_report(superset_synced) -> dict:
    if not Path(CHROMEDRIVER).exists() or not shutil.which("chromium"):
        # A skipped browser check would pass CI while proving nothing: fail instead.
        pytest.fail("no chromium / chromedriver: `make browser` installs them (as root)")
    screenshots = Path(
        os.environ.get("INFERWATCH_SCREENSHOT_DIR") or PROJECT_ROOT / "docs" / "screenshots"
    )
    _, password = demo_logins(superset_synced.settings.secrets_path)["stakeholder"]
    slugs = list(_expected_charts())  # the stakeholder's: not the admin-only ones
    job = {
        "url": superset_synced.instance.url,
        "username": "stakeholder",
        "password": password,
        "dashboards": slugs,
        "screenshot_dir": str(screenshots),
        "timeout": 240,
    }
    proc = subprocess.run(
        [str(superset_server.superset_venv() / "bin" / "python"), str(SCRIPT)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _expected_charts() -> dict[str, int]:
    out = {}
    for name, config in load_assets().items():
        if name.startswith("dashboards/") and config["slug"] not in ADMIN_ONLY_DASHBOARD_SLUGS:
            items = config["position"].values()
            out[config["slug"]] = sum(
                isinstance(i, dict) and i.get("type") == "CHART" for i in items
            )
    return out


def test_every_dashboard_renders_every_chart_without_error(browser_report):
    expected = _expected_charts()
    report = browser_report["dashboards"]
    assert set(report) == set(expected)
    for slug, result in report.items():
        assert result["charts"] == expected[slug], (slug, result)
        assert result["errors"] == {}, (slug, result["errors"])
        assert result["pending"] == [], (slug, result["pending"])
        assert result["rendered"] == expected[slug], slug
        shot = Path(result["screenshot"])
        assert shot.stat().st_size < 600_000, shot
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overview_in_the_browser_matches_the_marts(browser_report, pipeline_run):
    overview = browser_report["dashboards"]["inference-overview"]
    with pipeline_run.serving() as con:
        (total,) = con.execute("select sum(requests) from main.mart_inference_hourly").fetchone()
        by_endpoint = dict(
            con.execute(
                "select endpoint, sum(requests) from main.mart_inference_hourly group by 1"
            ).fetchall()
        )
    # big number in the metric's format (",d"): "149,152"
    shown = overview["big_numbers"]["Total requests"]
    assert int(shown.replace(",", "")) == total, shown
    rows = overview["tables"]["Top endpoints"]
    # columns: endpoint, requests (",d"), errors, error rate
    assert {row[0]: int(row[1].replace(",", "")) for row in rows} == by_endpoint

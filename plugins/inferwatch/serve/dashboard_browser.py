"""Open Superset dashboards in headless Chromium, wait for every chart, report, screenshot.

Runs in the **Superset** environment (Selenium is there; the pipeline's is not), as a script:
``.venv/superset/bin/python dashboard_browser.py < job.json > report.json``. It imports only
the standard library, Selenium and Pillow, never ``inferwatch``. The job (stdin, so that the
password is never in argv)::

    {"url": "http://127.0.0.1:8088", "username": "...", "password": "...",
     "dashboards": ["inference-overview", ...], "screenshot_dir": "docs/screenshots",
     "timeout": 180, "width": 1400, "screenshot_width": 1000}

The report (stdout) has, per dashboard slug: ``charts`` (chart holders found), ``rendered``,
``errors`` (text of every chart that shows an error), ``tables`` (the cell text of each table
chart, by chart title, for comparing figures with the marts), ``big_numbers`` (title → text),
``seconds`` and ``screenshot``. Chromium and chromedriver are Debian's (``chromium``,
``chromium-driver``); ``CHROMEDRIVER`` / ``CHROMIUM`` override their paths.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

HOLDER = '[data-test="dashboard-component-chart-holder"]'
# Anything Superset draws when a chart failed: its error alert, or a chart-level message.
ERROR_SELECTORS = (
    '[data-test="chart-error"]',
    '[role="alert"]',
    ".ant-alert-error",
    '[data-test="error-tooltip"]',
)
LOADING = '[data-test="loading-indicator"], .loading, [aria-label="Loading"]'
# What a chart shows once its query is back: a canvas/svg drawing, a table, a big number, or
# Superset's "No results" message (an empty result is not an error).
RENDERED = (
    "canvas, svg, table, .superset-legacy-chart-big-number, "
    '[data-test="big-number"], .big_number_total, [data-test="no-results"], '
    ".no-results, .empty-state, .ant-empty"
)


def _driver(width: int, height: int) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=options)


def _login(driver: webdriver.Chrome, url: str, username: str, password: str, timeout: float):
    driver.get(f"{url}/login/")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fields = driver.find_elements(By.CSS_SELECTOR, "input#username, input[name=username]")
        if fields:
            break
        time.sleep(0.3)
    else:
        raise RuntimeError("no login form at /login/")
    fields[0].send_keys(username)
    driver.find_element(By.CSS_SELECTOR, "input#password, input[name=password]").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    while time.monotonic() < deadline:
        cookies = {cookie["name"] for cookie in driver.get_cookies()}
        if "/login" not in driver.current_url and "session" in cookies:
            return
        time.sleep(0.3)
    raise RuntimeError(f"login as {username!r} did not complete (at {driver.current_url})")


def _text(element) -> str:
    try:
        return element.text.strip()
    except StaleElementReferenceException:
        return ""


def _holder_state(holder) -> tuple[str, str]:
    """('loading' | 'error' | 'rendered' | 'empty', detail) of one chart holder."""
    for selector in ERROR_SELECTORS:
        found = holder.find_elements(By.CSS_SELECTOR, selector)
        if found:
            return "error", " | ".join(_text(e) for e in found)[:500] or selector
    if holder.find_elements(By.CSS_SELECTOR, LOADING):
        return "loading", ""
    if holder.find_elements(By.CSS_SELECTOR, RENDERED):
        return "rendered", ""
    return "empty", ""


def _title(holder) -> str:
    for selector in ('[data-test="editable-title"]', ".header-title", '[data-test="slice-header"]'):
        found = holder.find_elements(By.CSS_SELECTOR, selector)
        if found and _text(found[0]):
            return _text(found[0]).splitlines()[0]
    return _text(holder).splitlines()[0] if _text(holder) else "?"


def _tables(holder) -> list[list[str]]:
    rows = []
    for row in holder.find_elements(By.CSS_SELECTOR, "table tbody tr"):
        cells = [_text(cell) for cell in row.find_elements(By.CSS_SELECTOR, "td")]
        if cells:
            rows.append(cells)
    return rows


def open_dashboard(driver, url: str, slug: str, timeout: float) -> dict:
    started = time.monotonic()
    driver.get(f"{url}/superset/dashboard/{slug}/?standalone=1")
    deadline = started + timeout
    states: list[tuple[str, str]] = []
    holders = []
    stable_since = None
    while time.monotonic() < deadline:
        try:
            holders = driver.find_elements(By.CSS_SELECTOR, HOLDER)
            states = [_holder_state(holder) for holder in holders]
        except StaleElementReferenceException:
            time.sleep(0.5)
            continue
        done = holders and all(state in ("rendered", "error") for state, _ in states)
        if done:
            # rendered twice in a row, 1 s apart: no chart still re-drawing
            if stable_since and time.monotonic() - stable_since >= 1.0:
                break
            stable_since = stable_since or time.monotonic()
        else:
            stable_since = None
        time.sleep(0.5)
    titles = [_title(holder) for holder in holders]
    report = {
        "charts": len(holders),
        "rendered": sum(state == "rendered" for state, _ in states),
        "errors": {
            title: detail
            for title, (state, detail) in zip(titles, states, strict=True)
            if state == "error"
        },
        "pending": [
            title
            for title, (state, _) in zip(titles, states, strict=True)
            if state not in ("rendered", "error")
        ],
        "tables": {},
        "big_numbers": {},
        "seconds": round(time.monotonic() - started, 1),
    }
    for title, holder in zip(titles, holders, strict=True):
        rows = _tables(holder)
        if rows:
            report["tables"][title] = rows
        elif not holder.find_elements(By.CSS_SELECTOR, "canvas, table"):
            lines = _text(holder).splitlines()
            if len(lines) >= 2:
                report["big_numbers"][title] = lines[1]
    return report


def screenshot(driver, path: Path, width: int) -> None:
    """Full-page PNG of the dashboard, scaled to ``width`` pixels, palette-quantised (small)."""
    height = driver.execute_script(
        "let b = 0; document.querySelectorAll(arguments[0]).forEach("
        "e => { b = Math.max(b, e.getBoundingClientRect().bottom + window.scrollY); });"
        "return b || document.documentElement.scrollHeight;",
        HOLDER,
    )
    size = driver.get_window_size()
    driver.set_window_size(size["width"], max(int(height) + 400, 600))
    time.sleep(1.0)
    raw = path.with_suffix(".raw.png")
    driver.save_screenshot(str(raw))
    driver.set_window_size(size["width"], size["height"])
    try:
        from PIL import Image

        with Image.open(raw) as image:
            scale = width / image.width
            small = image.convert("RGB").resize((width, int(image.height * scale)), Image.LANCZOS)
            small.quantize(colors=128).save(path, optimize=True)
        raw.unlink()
    except ImportError:  # no Pillow: keep the full-size capture
        raw.replace(path)


def main() -> int:
    job = json.loads(sys.stdin.read())
    out_dir = Path(job["screenshot_dir"]) if job.get("screenshot_dir") else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    timeout = float(job.get("timeout", 180))
    driver = _driver(int(job.get("width", 1400)), int(job.get("height", 2400)))
    report: dict = {"dashboards": {}}
    try:
        _login(driver, job["url"].rstrip("/"), job["username"], job["password"], timeout)
        for slug in job["dashboards"]:
            result = open_dashboard(driver, job["url"].rstrip("/"), slug, timeout)
            if out_dir:
                path = out_dir / f"{slug}.png"
                screenshot(driver, path, int(job.get("screenshot_width", 1000)))
                result["screenshot"] = str(path)
            report["dashboards"][slug] = result
    except (WebDriverException, RuntimeError) as error:
        report["error"] = f"{type(error).__name__}: {error}"
    finally:
        driver.quit()
    json.dump(report, sys.stdout, indent=1)
    return 0 if "error" not in report else 1


if __name__ == "__main__":
    sys.exit(main())

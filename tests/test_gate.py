"""The publishing gate, end to end through Airflow: a model losing lines or a run mostly
quarantined fails the run, leaves the served file byte for byte as it was, and says why in
ops.duckdb and the Data Docs; junk (lines naming no valid model) publishes with a warning and
an alert.

One good lake is built and published once; each case copies it (lake and state) and adds
one delivery, so the cases are independent and cost one pipeline run each.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from conftest import run_pipeline, settings_for
from inferwatch.lake import Lake


def line(i: int, hour: int, **changes) -> str:
    event = {
        "event_id": f"e-{hour}-{i}", "timestamp": f"2025-05-20T{hour:02d}:{i % 60:02d}:00Z",
        "model": "fraud_detector", "model_version": "v3", "endpoint": "/v1/fraud/score",
        "latency_ms": 40.0 + i, "confidence": 0.9, "status": "ok", "prediction": "false",
    }  # fmt: skip
    event.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del event[key]
    return json.dumps(event)


def good_object(hour: int, n: int = 40) -> bytes:
    return ("\n".join(line(i, hour) for i in range(n)) + "\n").encode()


def renamed_model_field(hour: int) -> bytes:
    """A producer renamed the required `model` field to `model_name`."""
    lines = []
    for i in range(40):
        event = json.loads(line(i, hour))
        event["model_name"] = event.pop("model")
        lines.append(json.dumps(event))
    return ("\n".join(lines) + "\n").encode()


def one_in_five_latency_as_text(hour: int) -> bytes:
    """A producer started writing latency as a string with its unit, on every fifth line: the
    model loses a fifth of its lines in the run (over the 10% ceiling), the run a fifth of its
    lines (under half)."""
    lines = [
        line(i, hour, latency_ms=f"{40 + i} ms") if i % 5 == 0 else line(i, hour) for i in range(40)
    ]
    return ("\n".join(lines) + "\n").encode()


#: A 27-line object of garbage: the lines name no valid model (no JSON, cut JSON, no model).
GARBAGE = (
    [f"\x00garbage {i} ###" for i in range(15)]
    + ['{"timestamp": "2025-05-20T12:00:00Z", "model": "fraud_det'] * 6
    + ['{"timestamp": "2025-05-20T12:00:00Z", "latency_ms": 3}'] * 6
)


CASES = {
    # every line of the run names no model (renamed field): junk, but all the run is quarantined
    "renamed_required_field": (renamed_model_field, {"quarantined_share"}, "missing field: model"),
    "wrong_type": (
        one_in_five_latency_as_text,
        {"model_quarantined_share"},
        "wrong type: latency_ms (number expected)",
    ),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """A good lake, run once and published: the state every case starts from."""
    root = tmp_path_factory.mktemp("gate-base")
    lake = Lake(str(root / "lake"))
    for hour in (9, 10, 11):
        lake.write_bytes(f"raw/fraud/2025/05/20/{hour:02d}.jsonl", good_object(hour))
    assert run_pipeline(settings_for(lake.url, root / "state")) == "success"
    return root


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_delivery_fails_the_gate_and_keeps_the_served_file(case, published, tmp_path):
    make_object, failing_checks, reason = CASES[case]
    shutil.copytree(published, tmp_path, dirs_exist_ok=True)
    lake = Lake(str(tmp_path / "lake"))
    settings = settings_for(lake.url, tmp_path / "state")
    served = sha256(settings.serving_path)
    bad_key = "raw/fraud/2025/05/20/12.jsonl"
    lake.write_bytes(bad_key, make_object(12))

    assert run_pipeline(settings) == "failed"

    assert sha256(settings.serving_path) == served
    with duckdb.connect(str(settings.serving_path), read_only=True) as serving:
        assert serving.sql("select count(*) from fct_inferences").fetchone() == (120,)
    with duckdb.connect(str(settings.ops_path), read_only=True) as ops:
        run_id, outcome, message = ops.sql(
            "select run_id, outcome, message from pipeline_runs order by finished_at desc limit 1"
        ).fetchone()
        rows = ops.sql(
            'select suite, "column", severity, details from mart_data_quality '
            "where run_id = ? and not success and severity = 'critical'",
            params=[run_id],
        ).fetchall()
        quarantined = dict(
            ops.sql(
                "select reason, count(*) from fct_quarantine where object_key = ? group by reason",
                params=[bad_key],
            ).fetchall()
        )
    assert outcome == "held_back"
    assert {(suite, column, severity) for suite, column, severity, _ in rows} == {
        ("quarantine", check, "critical") for check in failing_checks
    }
    for check in failing_checks:
        assert f"quarantine.{check}" in message
    assert "inferwatch quarantine acknowledge" in message  # and what to do about it
    details = " ".join(d for *_, d in rows)
    assert reason in details  # the dashboard says why, not only that
    assert reason in quarantined  # and the lines are kept, with their reason

    # Data Docs: the page of this run's quarantine suite names the failed checks.
    pages = [
        page
        for page in (settings.data_docs_dir / "validations" / "quarantine").rglob("*.html")
        if run_id in str(page)
    ]
    assert len(pages) == 1, pages
    html = pages[0].read_text()
    for check in failing_checks:
        assert f"{check}: " in html


def test_a_junk_object_publishes_with_a_warning_and_an_alert(published, tmp_path):
    """27 lines of garbage beside a good object: no model's figures are wrong, so the build
    publishes; the gate warns and the alert step says so."""
    shutil.copytree(published, tmp_path, dirs_exist_ok=True)
    lake = Lake(str(tmp_path / "lake"))
    settings = settings_for(lake.url, tmp_path / "state")
    lake.write_bytes("raw/fraud/2025/05/20/12.jsonl", good_object(12))
    junk_key = "raw/fraud/2025/05/20/garbage.jsonl"
    lake.write_bytes(junk_key, ("\n".join(GARBAGE) + "\n").encode())

    assert run_pipeline(settings) == "success"

    with duckdb.connect(str(settings.serving_path), read_only=True) as serving:
        assert serving.sql("select count(*) from fct_inferences").fetchone() == (160,)
    with duckdb.connect(str(settings.ops_path), read_only=True) as ops:
        run_id, outcome = ops.sql(
            "select run_id, outcome from pipeline_runs order by finished_at desc limit 1"
        ).fetchone()
        failed = ops.sql(
            'select suite, "column", severity, details from mart_data_quality '
            "where run_id = ? and not success and suite in ('quarantine', 'junk')",
            params=[run_id],
        ).fetchall()
        alerts = ops.sql(
            "select value, message from alerts where rule = 'junk_lines_published' and run_id = ?",
            params=[run_id],
        ).fetchall()
    assert outcome == "published"
    by_check = {(suite, column): (severity, json.loads(d)) for suite, column, severity, d in failed}
    assert set(by_check) == {("junk", "junk_lines"), ("junk", "object_quarantined_share")}
    severity, (junk,) = by_check["junk", "junk_lines"]
    assert severity == "warning"
    assert (junk["object_key"], junk["junk_lines"]) == (junk_key, len(GARBAGE))
    ((value, message),) = alerts
    assert value == len(GARBAGE) and junk_key in message

"""The publishing gate, end to end through Airflow: three broken lakes each fail the run,
leave the served file byte for byte as it was, and say why in ops.duckdb and the Data Docs.

One good lake is built and published once; each case copies it (lake and state) and adds
one bad delivery, so the cases are independent and cost one pipeline run each.
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


def latency_as_text(hour: int) -> bytes:
    """A producer started writing latency as a string with its unit."""
    return ("\n".join(line(i, hour, latency_ms=f"{40 + i} ms") for i in range(40)) + "\n").encode()


def one_in_five_truncated(hour: int) -> bytes:
    """Every fifth line cut short: 20% of the object, under the per-object ceiling, but enough
    to lift the lake's quarantined share over the 5% ceiling."""
    lines = [line(i, hour) for i in range(60)]
    lines = [text[: len(text) // 2] if i % 5 == 0 else text for i, text in enumerate(lines)]
    return ("\n".join(lines) + "\n").encode()


CASES = {
    "renamed_required_field": (
        renamed_model_field,
        {"object_quarantined_share", "quarantined_share"},
        "missing field: model",
    ),
    "wrong_type": (
        latency_as_text,
        {"object_quarantined_share", "quarantined_share"},
        "wrong type: latency_ms (number expected)",
    ),
    "quarantine_over_ceiling": (one_in_five_truncated, {"quarantined_share"}, "invalid JSON"),
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
        ("reconciliation", check, "critical") for check in failing_checks
    }
    for check in failing_checks:
        assert f"reconciliation.{check}" in message
    details = " ".join(d for *_, d in rows)
    assert reason in details  # the dashboard says why, not only that
    assert reason in quarantined  # and the lines are kept, with their reason

    # Data Docs: the page of this run's reconciliation suite names the failed checks.
    pages = [
        page
        for page in (settings.data_docs_dir / "validations" / "reconciliation").rglob("*.html")
        if run_id in str(page)
    ]
    assert len(pages) == 1, pages
    html = pages[0].read_text()
    for check in failing_checks:
        assert f"{check}: " in html

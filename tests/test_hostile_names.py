"""Hostile names and shapes (issue 18): a name from a log line can neither leave its lake
folder nor stop a later step, and a line too deep or too wide is quarantined at the door.

Each case runs on a few lines or a small warehouse table: older bronze, written before the
parser checked names, is imitated by inserting the hostile rows straight into the table."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from alert_sinks import smtp_sink, webhook_receiver
from conftest import free_port, settings_for
from inferwatch.ingest.lines import decompress, lines_table
from inferwatch.ingest.parse import parse, parse_labels
from inferwatch.lake import Lake

TS = '"timestamp": "2025-05-20T14:52:00Z"'
NAME_RULES = "(see the log contract's name rules)"


def _parsed(*lines: str, labels: bool = False) -> list[dict]:
    con = duckdb.connect()
    data = ("\n".join(lines) + "\n").encode()
    con.register("lines", lines_table([decompress("raw/x.jsonl", data)]))
    (parse_labels if labels else parse)(con)
    cursor = con.execute("select * from parsed order by line_number")
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _line(**fields) -> str:
    return json.dumps({"timestamp": "2025-05-20T14:52:00Z", **fields})


# ---------------------------------------------------------------- names at the door
BAD_NAMES = [
    ({"model": "../bronze/events", "model_version": "v1"}, "model"),
    ({"model": "../../outside"}, "model"),
    ({"model": "../../outside_v1"}, "model"),  # the stored model: ../../outside
    ({"model": "_v2"}, "model"),  # the stored model would be empty
    ({"model": ".."}, "model"),
    ({"model": "churn/eu"}, "model"),
    ({"model": "churn\nBcc: x@example.com"}, "model"),
    ({"model": "churn\\eu"}, "model"),
    ({"model": "churn\u0000"}, "model"),
    ({"model": "churn", "model_version": "batch=X"}, "model_version"),
    ({"model": "churn", "model_version": "../v1"}, "model_version"),
    ({"model": "churn", "model_version": "v1/x"}, "model_version"),
    ({"model": "churn", "endpoint": "/v1/pre dict"}, "endpoint"),
    ({"model": "churn", "endpoint": "/v1/x\r\nX-Injected: 1"}, "endpoint"),
    ({"model": "churn", "endpoint": "'; drop table x; --"}, "endpoint"),
    ({"model": "churn", "client_id": "acme\nX-Injected: 1"}, "client_id"),
    ({"model": "churn", "client_id": "a" * 257}, "client_id"),
    ({"model": "churn", "input_features": {"age": 3, "../x": 1}}, "input_features key"),
    ({"model": "churn", "input_features": {"a\nb": 1}}, "input_features key"),
    ({"model": "churn", "input_features": {"": 1}}, "input_features key"),
    ({"model": "churn", "input_features": {" padded ": 1}}, "input_features key"),
]


def test_a_bad_name_is_quarantined_with_its_reason():
    rows = _parsed(*(_line(**fields) for fields, _ in BAD_NAMES))  # one parse: it is planned once
    for row, (fields, field) in zip(rows, BAD_NAMES, strict=True):
        assert row["reason"] == f"invalid name: {field} {NAME_RULES}", fields


def test_producers_names_pass_the_door():
    """The simulator's, the adapters' and common model-server names are all accepted."""
    good = [
        {"model": "customer_churn_v2", "endpoint": "/v1/churn/predict",
         "input_features": {"age": 35, "tenure_months": 3, "monthly_charges": 9.5}},
        {"model": "gpt-4o-mini", "model_version": "2024-07-18", "endpoint": "chat"},
        {"model": "diabetes-endpoint", "model_version": "AllTraffic", "endpoint": "4747"},
        {"model": "fraud_detector", "model_version": 3, "endpoint": 4747},
        {"model": "llama3.1:8b", "model_version": "1.4.0+cu121"},
        {"model": "claude-3-5-sonnet@20240620", "endpoint": "projects/p/endpoints/123"},
        {"model": "iris", "input_features": {"sepal length (cm)": 5.1, "num:tenure": 2}},
        {"model": "m", "client_id": "Acme, Inc. (EU) 客户"}, {"model": "m", "client_id": ""},
        {"model": "m", "client_id": 42},
    ]  # fmt: skip
    rows = _parsed(*(_line(**fields) for fields in good))
    assert [row["reason"] for row in rows] == [None] * len(good)
    assert (rows[0]["model"], rows[0]["model_version"]) == ("customer_churn", "v2")


def test_the_label_contract_applies_the_same_model_rule():
    base = {"labeled_at": "2025-05-21T00:00:00Z", "event_id": "e1", "label": "churn"}
    rows = _parsed(
        json.dumps({**base, "model": "../../outside"}),
        json.dumps({**base, "model": "churn", "model_version": "batch=X"}),
        json.dumps({**base, "model": "churn", "model_version": "v2"}),
        labels=True,
    )
    assert [row["reason"] for row in rows] == [
        f"invalid name: model {NAME_RULES}",
        f"invalid name: model_version {NAME_RULES}",
        None,
    ]


def test_the_json_schema_states_the_same_name_rules():
    from importlib.resources import files

    from inferwatch import names

    schema = json.loads(files("inferwatch").joinpath("schemas/inference_log.v1.json").read_text())
    fields = schema["properties"]
    assert fields["model"]["pattern"] == f"^{names.MODEL_PATTERN}(_v[0-9]+)?$"
    assert fields["model_version"]["pattern"] == f"^{names.MODEL_VERSION_PATTERN}$"
    assert fields["endpoint"]["pattern"] == f"^{names.ENDPOINT_PATTERN}$"
    features = fields["input_features"]
    assert features["propertyNames"]["pattern"] == f"^({names.FEATURE_PATTERN})$"


def test_names_an_adapter_takes_from_object_keys_pass_the_same_door(tmp_path):
    """SageMaker's model and version come from the capture layout's folders: the adapted lines
    go through the parser, so a folder name that is no valid model is quarantined there."""
    from test_adapters import SAMPLES, land

    record = (SAMPLES / "sagemaker_capture.jsonl").read_text().splitlines()[0] + "\n"
    landed, report = land(tmp_path, {
        "raw/sagemaker/churn=eu/AllTraffic/2021/09/27/03/a.jsonl": record.encode(),
        "raw/sagemaker/churn-eu/All=Traffic/2021/09/27/03/b.jsonl": record.encode(),
        "raw/sagemaker/churn-eu/AllTraffic/2021/09/27/03/c.jsonl": record.encode(),
    })  # fmt: skip
    assert report.lines_quarantined == 2
    reasons = {row["object_key"].split("/")[2]: row["reason"] for row in landed.rows("quarantine")}
    assert reasons == {
        "churn=eu": f"invalid name: model {NAME_RULES}",
        "churn-eu": f"invalid name: model_version {NAME_RULES}",
    }
    (event,) = landed.rows("events")
    assert (event["model"], event["model_version"]) == ("churn-eu", "AllTraffic")


# ---------------------------------------------------------------- depth and width
def _depth(value) -> int:
    """Levels of nested objects and arrays (the line's own object is level 1), iteratively."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def _nested_line(levels: int) -> str:
    """A contract line whose deepest point is ``levels`` levels down (a string inside holds
    brackets too: only structure counts)."""
    inner = '"[[{{"'
    for _ in range(levels - 2):
        inner = f"[{inner}]"
    return "{" + TS + ', "model": "m", "input_features": {"x": ' + inner + "}}"


def test_a_5000_deep_line_is_quarantined_and_32_levels_pass():
    deep, limit, over = _nested_line(5000), _nested_line(32), _nested_line(33)
    assert len(deep.encode()) < 11_000
    assert [_depth(json.loads(line)) for line in (limit, over)] == [32, 33]
    rows = _parsed(deep, limit, over, '{"a": [' * 40 + "]}" * 40)
    reason = "nesting too deep (over 32 levels)"
    assert [row["reason"] for row in rows] == [reason, None, reason, reason]


def test_too_many_keys_are_quarantined(monkeypatch):
    def features(n: int) -> str:
        return _line(model="m", input_features={f"f{i}": i for i in range(n)})

    def unknown(n: int) -> str:
        return _line(model="m", **{f"x{i}": i for i in range(n)})

    rows = _parsed(features(1000), features(1001), unknown(1001), _line(model="m", usage={
        f"u{i}": i for i in range(1001)}))  # fmt: skip
    assert [row["reason"] for row in rows] == [
        None,
        "too many keys (over 1000 in input_features)",
        "too many keys (over 1000 in the JSON object)",
        "too many keys (over 1000 in usage)",
    ]
    monkeypatch.setenv("INFERWATCH_MAX_KEYS", "3")
    monkeypatch.setenv("INFERWATCH_MAX_NESTING", "4")
    rows = _parsed(features(3), features(4), _nested_line(4), _nested_line(5))
    assert [row["reason"] for row in rows] == [
        None, "too many keys (over 3 in input_features)", None, "nesting too deep (over 4 levels)"
    ]  # fmt: skip


# ---------------------------------------------------------------- one lake path function
@pytest.mark.parametrize(
    "parts",
    [
        ("reference", "..", "v1"),
        ("reference", ".", "v1"),
        ("reference", "", "v1"),
        ("reference", "../../outside", "v1"),
        ("reference", "a/b", "v1"),
        ("reference", "a\\b", "v1"),
        ("reference", "a\x00b", "v1"),
        ("/etc", "passwd"),
        ("reference", "/abs", "v1"),
        ("reference", None, "v1"),
    ],
)
def test_the_lake_path_function_refuses_every_hostile_part(parts):
    from inferwatch.lake import lake_key
    from inferwatch.names import InvalidName

    with pytest.raises(InvalidName):
        lake_key(*parts)


def test_the_lake_path_function_joins_ordinary_parts():
    from inferwatch.lake import lake_key

    assert lake_key("reference", "customer_churn", "v1") == "reference/customer_churn/v1"
    assert lake_key("reference", "customer_churn", "v1", folder=True) == (
        "reference/customer_churn/v1/"
    )


def test_encoded_names_are_file_name_safe_distinct_and_short():
    from inferwatch.names import encoded

    values = ["customer_churn", "eu/churn", "eu~2Fchurn", "..", "a\\b", "\u00e9t\u00e9", "x" * 300,
              "x" * 300 + "y"]  # fmt: skip
    out = [encoded(value) for value in values]
    assert out[:3] == ["customer_churn", "eu~2Fchurn", "eu~7E2Fchurn"]
    assert len(set(out)) == len(values)
    assert all(len(text) <= 100 and "/" not in text and "\\" not in text for text in out)


# ---------------------------------------------------------------- steps after older bronze
DAY = "2025-05-20"


def _files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def _reference(rows: int = 200) -> bytes:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.normal(40, 10, rows), "plan": rng.choice(["a", "b"], rows)})
    return frame.to_parquet(index=False)


def _warehouse(path: Path, rows: list[tuple[str, str, str, str | None]]) -> Path:
    """fct_inferences as an older bronze would leave it: (event_id, model, version, features)."""
    with duckdb.connect(str(path)) as con:
        con.execute(
            "create table fct_inferences (event_id varchar, model varchar, model_version varchar,"
            " event_day date, input_features varchar)"
        )
        con.executemany(
            "insert into fct_inferences values (?, ?, ?, cast(? as date), ?)",
            [(event_id, model, version, DAY, features) for event_id, model, version, features
             in rows],
        )  # fmt: skip
    return path


@pytest.fixture
def hostile_lake(tmp_path) -> tuple[Path, Lake]:
    """A lake with a real reference, a training reference planted beside the lake and a bronze
    file where ``reference/../bronze/events/batch=X/`` points."""
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bytes("reference/churn/v1/reference.parquet", _reference())
    (tmp_path / "outside" / "v1").mkdir(parents=True)
    (tmp_path / "outside" / "v1" / "reference.parquet").write_bytes(_reference())
    lake.write_bytes("bronze/events/batch=X/part-0.parquet", _reference())
    return tmp_path, lake


def test_the_scorer_never_leaves_its_folder_for_a_hostile_name(hostile_lake):
    from inferwatch.anomaly.score import score_days

    root, lake = hostile_lake
    ok = json.dumps({"age": 41, "plan": "a"})
    warehouse = _warehouse(root / "warehouse.duckdb", [
        ("e1", "churn", "v1", ok), ("e2", "../../outside", "v1", ok),
        ("e3", "../bronze/events", "batch=X", ok), ("e4", "churn/eu", "v1", ok),
    ])  # fmt: skip
    before = _files(root)
    summary = score_days(lake, warehouse, [DAY])
    new = _files(root) - before
    assert new == {f"lake/anomaly_scores/churn/v1/{DAY}.parquet"}
    assert summary["files"] == 1
    assert sorted(summary["skipped_names"]) == sorted(
        [["../../outside", "v1"], ["../bronze/events", "batch=X"], ["churn/eu", "v1"]]
    )


def test_the_scorer_survives_a_record_it_cannot_load(hostile_lake):
    from inferwatch.anomaly.score import score_days

    root, lake = hostile_lake
    deep = '{"x": ' + "[" * 5000 + "]" * 5000 + "}"
    rows = [(f"e{i}", "churn", "v1", json.dumps({"age": 30 + i, "plan": "a"})) for i in range(5)]
    rows += [("deep", "churn", "v1", deep), ("list", "churn", "v1", "[1, 2]"),
             ("cut", "churn", "v1", '{"age": 3')]  # fmt: skip
    summary = score_days(lake, _warehouse(root / "warehouse.duckdb", rows), [DAY])
    scores = pd.read_parquet(root / "lake" / "anomaly_scores" / "churn" / "v1" / f"{DAY}.parquet")
    assert sorted(scores["event_id"]) == [f"e{i}" for i in range(5)]
    assert summary["skipped_records"] == 3


def test_a_retraining_request_for_a_hostile_name_is_skipped_not_written(tmp_path):
    from inferwatch.alerts.retraining import write_requests

    lake = Lake(str(tmp_path / "lake"))
    requests = [
        {"model": model, "model_version": version, "reason": "drift", "day": DAY}
        for model, version in (("churn", "v1"), ("../../outside", "v1"), ("churn", "../../x"),
                               ("churn/eu", "v1"))
    ]  # fmt: skip
    written = write_requests(lake, requests, source="test")
    assert _files(tmp_path) == {f"lake/registry/retraining_requests/churn/v1/{DAY}__drift.json"}
    assert written == [f"registry/retraining_requests/churn/v1/{DAY}__drift.json"]


# ---------------------------------------------------------------- poison names in later steps
def test_a_model_name_with_a_slash_gets_its_data_docs_pages(tmp_path):
    from inferwatch.validate import validate
    from test_validate import build_warehouse

    suites = tmp_path / "expectations"
    suites.mkdir()
    (suites / "per_model.json").write_text(json.dumps({
        "name": "per_model", "table": "fct_inferences", "scope": "model", "severity": "critical",
        "description": "every event has an id",
        "expectations": [{"type": "expect_column_values_to_not_be_null",
                          "kwargs": {"column": "event_id"}}],
    }))  # fmt: skip
    warehouse = build_warehouse(
        tmp_path / "warehouse.duckdb",
        "update fct_inferences set model = 'eu/churn' where line_number % 2 = 0",
        "update fct_inferences set model = 'eu~2Fchurn' where line_number % 5 = 0",
    )
    docs = tmp_path / "docs"
    outcome = validate(warehouse, run_id="run-1", data_docs_dir=docs, expectations_dir=suites)
    assert outcome.passed_gate
    models = sorted(row["model"] for row in outcome.results)
    assert models == ["customer_churn", "eu/churn", "eu~2Fchurn"]
    pages = [p for p in (docs / "validations").rglob("*.html")]
    # one validation page per model, each inside the validations folder, none mixed up
    assert len(pages) == 3
    assert all(p.resolve().is_relative_to((docs / "validations").resolve()) for p in pages)
    assert len({p.parts[len((docs / "validations").parts)] for p in pages}) == 3


def _alert(model: str):
    from inferwatch.alerts.evaluate import Alert

    return Alert(
        rule="usage", model=model, model_version="v1", metric="requests",
        period_start=datetime(2025, 5, 20, 14), period_grain="hour", value=900.0,
        threshold=300.0, baseline_kind="same_hour_mean", message=f"usage of {model} spiked",
        severity="critical", current=True,
    )  # fmt: skip


def _alert_rows(settings) -> list[dict]:
    from inferwatch.alerts.log import read_log

    return read_log(settings)


def test_an_alert_for_a_model_with_a_newline_is_delivered_and_logged(tmp_path):
    from inferwatch.alerts.rules import load_rules
    from inferwatch.alerts.step import record_and_send

    hostile = "churn\r\nBcc: victim@example.com\nSubject: <!channel> & \u00e9t\u00e9"
    base = settings_for(str(tmp_path / "lake"), tmp_path / "state")
    with webhook_receiver() as (url, payloads), smtp_sink(port := free_port()) as mails:
        settings = replace(base, smtp_port=port, alert_webhook_url=url,
                           alert_emails=("oncall@example.com",))  # fmt: skip
        rules = load_rules(settings.alert_rules_path)
        summary = record_and_send(settings, rules, [_alert(hostile)], "run-1", datetime.now())
    assert summary["sent"] == 1
    (mail,) = mails
    assert "\n" not in mail["Subject"] and "\r" not in mail["Subject"]
    assert mail["Bcc"] is None and mail.get_all("Subject") == [mail["Subject"]]
    assert mail["Subject"].startswith("[InferWatch] usage: churn")
    assert "victim@example.com" in mail["Subject"]  # shown, escaped, not obeyed
    (payload,) = payloads
    attachment = payload["attachments"][0]
    assert "<!channel>" not in json.dumps(payload)
    assert "\n" not in attachment["title"] and "&lt;!channel&gt;" in attachment["title"]
    (row,) = _alert_rows(settings)
    assert row["model"] == hostile and row["status"] == "sent"


def test_a_delivery_that_fails_in_any_way_is_logged_as_failed(tmp_path):
    from inferwatch.alerts.rules import load_rules
    from inferwatch.alerts.step import record_and_send

    closed = free_port()  # nothing listens there
    settings = replace(
        settings_for(str(tmp_path / "lake"), tmp_path / "state"), smtp_port=closed,
        alert_emails=("oncall@example.com",), alert_webhook_url="hooks.example/no-scheme",
    )  # fmt: skip
    rules = load_rules(settings.alert_rules_path)
    summary = record_and_send(settings, rules, [_alert("churn")], "run-1", datetime.now())
    assert summary["failed"] == 1
    (row,) = _alert_rows(settings)
    assert row["status"] == "failed" and row["channels"] == ""


# ---------------------------------------------------------------- evidence that quotes a value
def test_validation_evidence_is_clipped_to_json_and_old_cut_records_still_publish(tmp_path):
    """A long logged value (a 10 KB prediction) quoted in a result's evidence was cut at 4,000
    characters mid-string; ``mart_data_quality.details`` is JSON, so ``publish_ops`` raised on
    that run's record and on every later run (found by tests/test_hostile_input.py)."""
    from inferwatch.publish import publish_ops, record_run
    from inferwatch.validate.results import MAX_DETAILS, clip_json

    value = {"partial_unexpected_list": ['"' + "x" * 9000, "y\n" * 3000]}
    clipped = clip_json(value)
    assert len(clipped) <= MAX_DETAILS
    assert json.loads(clipped)["clipped_from_chars"] == len(json.dumps(value))

    settings = settings_for(str(tmp_path / "lake"), tmp_path / "data")
    row = {"run_id": "r1", "suite": "contract", "expectation": "e", "success": False}
    cut = json.dumps(value)[:MAX_DETAILS]  # what main stored
    record_run(settings, "r1", {"run_id": "r1", "validation": [{**row, "details": cut}]})
    record_run(settings, "r2", {"run_id": "r2", "validation": [{**row, "run_id": "r2",
                                                                 "details": clipped}]})  # fmt: skip
    with duckdb.connect(str(publish_ops(settings)), read_only=True) as con:
        details = dict(con.execute("select run_id, details from mart_data_quality").fetchall())
    assert json.loads(details["r1"]) == cut  # kept, as a JSON string
    assert json.loads(details["r2"])["clipped_from_chars"] == len(json.dumps(value))

"""PII is scrubbed wherever it appears in a line, not only where the policy used to look.

Each case plants a known value (an e-mail, a phone number, an IP, a card number, or a name
under a PII-named key) in one field of one line, lands the lines in bronze through the real
ingest (adapters included), and searches the text of every stored column for the planted
string itself: the search does not use the scrubber's regular expressions, so a detector that
misses is caught. Ordinary client ids, endpoints, regions, ids and numbers must come through
unchanged (the scrubbing must not over-reach).
"""

from __future__ import annotations

import json

import duckdb
import pytest

from inferwatch.adapters import ProducerMap
from inferwatch.ingest import pii
from inferwatch.ingest.bronze import ingest
from inferwatch.ingest.lines import decompress, lines_table
from inferwatch.ingest.manifest import discover
from inferwatch.ingest.parse import parse
from inferwatch.lake import Lake

EMAIL, PHONE, IP, CARD = "alice@example.com", "+1 415 555 0100", "10.1.2.3", "4111 1111 1111 1111"
#: A UUID whose digit groups the phone pattern reads as a phone number.
DIGIT_UUID = "12345678-1234-5678-1234-567812345678"

#: name → (fields of the line, planted strings that must be absent from every stored column).
CASES: dict[str, tuple[dict, list[str]]] = {
    "client_id": ({"client_id": "client.alice@example.com"}, ["client.alice@example.com"]),
    "endpoint": ({"endpoint": "/v1/users/ep.alice@example.com/predict"}, ["ep.alice@example"]),
    "request_id": ({"request_id": "req-10.1.2.3-42"}, ["10.1.2.3"]),
    "event_id": ({"event_id": "ev.alice@example.com"}, ["ev.alice@example.com"]),
    "prediction_text": ({"prediction": f"call me on {PHONE}"}, [PHONE]),
    "prediction_object": (
        {"prediction": {"label": "x", "why": {"owner": {"first_name": "Pred Planted"}}}},
        ["Pred Planted"],
    ),
    "error_type": ({"status": "error", "error": {"type": CARD, "message": "x"}}, [CARD]),
    "geo_region": ({"geo": {"country": "US", "region": IP}}, [IP]),
    "geo_country": ({"geo": {"country": "cc.alice@example.com"}}, ["cc.alice@example.com"]),
    "usage_value": ({"usage": {"prompt_tokens": 5, "note": f"bill {EMAIL}"}}, [EMAIL]),
    "usage_key": ({"usage": {"prompt_tokens": 5, "full_name": "Usage Planted"}}, ["Usage Planted"]),
    "feature_key_ip": ({"input_features": {"age": 3, "10.9.8.7": 1}}, ["10.9.8.7"]),
    "feature_key_phone": ({"input_features": {"age": 3, PHONE: "mobile"}}, [PHONE]),
    "feature_key_card": ({"input_features": {"age": 3, CARD: 1}}, [CARD]),
    "resources_key": ({"resources": {"cpu_pct": 1.5, IP: "node"}}, [IP]),
    "depth2_features": (
        {"input_features": {"age": 3, "contact": {"email": "Depth Two Planted"}}},
        ["Depth Two Planted"],
    ),
    "depth2_resources": (
        {"resources": {"owner": {"phone": "Resource Owner Planted"}}},
        ["Resource Owner Planted"],
    ),
    "depth3_metadata": (
        {"model_metadata": {"team": {"lead": {"last_name": "Depth Three Planted"}}}},
        ["Depth Three Planted"],
    ),
    "depth3_array": (
        {"input_features": {"age": 3, "history": [{"who": {"passport": "P1234567 Planted"}}]}},
        ["P1234567 Planted"],
    ),
    "metadata_key": ({"model_metadata": {"owner": "ml", "10.7.7.7": "host"}}, ["10.7.7.7"]),
    "unknown_field_nested": (
        {"trace": {"caller": {"customer_name": "Extra Planted"}}},
        ["Extra Planted"],
    ),
    "unknown_field_key": ({"+4915112345678": "peer"}, ["+4915112345678"]),
}

ORDINARY = {
    "event_id": DIGIT_UUID,
    "request_id": "7f4e2c1a-5678-4321-9876-0123456789ab",
    "client_id": "acme-corp",
    "endpoint": "/v1/predict",
    "model": "customer_churn",
    "model_version": "1.4.0.2",  # an IPv4 address to the detector: a name, never scrubbed
    "geo": {"country": "CA", "region": "eu-west"},
    "prediction": "churn",
    "status": "error",
    "error": {"type": "timeout", "message": "upstream took 1200 ms"},
    "input_features": {"age": 42, "plan": "basic", "charges": 1.1, "num:tenure": 12},
    "usage": {"prompt_tokens": 1000, "completion_tokens": 20, "cost_usd": 0.25},
    "resources": {"cpu_pct": 28.5, "memory_mb": 1787, "pod": "churn-7d9f-x2"},
}
#: A suspect object (it holds PII): its ordinary entries survive exactly, in their order.
MIXED = {"age": 42, "plan": "basic", "email": EMAIL, "score": 0.5, "note": "ok", "ids": [1, 2]}

KSERVE_KEY = "raw/kserve/iris/2021/04/10/logger.jsonl"
SAGEMAKER_KEY = "raw/sagemaker/ep/AllTraffic/2021/09/27/03/capture.jsonl"
ADAPTER_PLANTED = [
    "kserve.user@example.com", "Kay Planted", "sage.user@example.com", "Sage Planted"
]  # fmt: skip


def _contract_lines() -> bytes:
    lines = []
    for i, (fields, _) in enumerate(CASES.values()):
        base = {"timestamp": "2025-05-20T14:52:00Z", "model": "m", "model_version": "v1",
                "event_id": f"ev-{i}", "client_id": "acme-corp"}  # fmt: skip
        lines.append(json.dumps({**base, **fields}))
    lines.append(json.dumps({"timestamp": "2025-05-20T14:53:00Z", **ORDINARY}))
    mixed = {"timestamp": "2025-05-20T14:54:00Z", "model": "m", "input_features": MIXED}
    lines.append(json.dumps(mixed))
    return ("\n".join(lines) + "\n").encode()


def _kserve() -> bytes:
    common = {"specversion": "1.0", "id": "ks-1", "source": "x", "inferenceservicename": "iris",
              "endpoint": "default", "datacontenttype": "application/json"}  # fmt: skip
    instance = {"x": 1.5, "note": "kserve.user@example.com", "who": {"full_name": "Kay Planted"}}
    request = {**common, "type": "org.kubeflow.serving.inference.request",
               "time": "2021-04-10T00:23:26Z", "data": {"instances": [instance]}}  # fmt: skip
    response = {**common, "type": "org.kubeflow.serving.inference.response",
                "time": "2021-04-10T00:23:27Z", "data": {"predictions": [1]}}  # fmt: skip
    return (json.dumps(request) + "\n" + json.dumps(response) + "\n").encode()


def _sagemaker() -> bytes:
    instance = {"glucose": 85, "contact": "sage.user@example.com", "p": {"dob": "Sage Planted"}}
    record = {
        "captureData": {
            "endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                              "data": json.dumps({"instances": [instance]}), "encoding": "JSON"},
            "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                               "data": '{"predictions": [1]}', "encoding": "JSON"},
        },
        "eventMetadata": {"eventId": "sm-1", "inferenceTime": "2021-09-27T03:47:25Z"},
        "eventVersion": "0",
    }  # fmt: skip
    return (json.dumps(record) + "\n").encode()


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> dict[str, list[dict]]:
    """Every stored row of events and quarantine, each column as Python values."""
    root = tmp_path_factory.mktemp("pii") / "lake"
    lake = Lake(str(root))
    lake.write_bytes("raw/app/events.jsonl", _contract_lines())
    lake.write_bytes(KSERVE_KEY, _kserve())
    lake.write_bytes(SAGEMAKER_KEY, _sagemaker())
    producers = ProducerMap.from_mapping(
        {"raw/kserve/": "kserve", "raw/sagemaker/": "sagemaker_capture"}
    )
    ingest(lake, discover(lake), batch_id="t", user_hash_key=b"k",
           work_dir=root.parent / "work", producers=producers)  # fmt: skip
    out = {}
    with duckdb.connect() as con:
        for name, folder in (("events", "bronze/events"), ("quarantine", "quarantine")):
            cursor = con.execute(
                f"select * from read_parquet('{root}/{folder}/*/*.parquet')"
                " order by object_key, line_number"
            )
            names = [c[0] for c in cursor.description]
            out[name] = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return out


def _event(landed, key: str, line_number: int) -> dict:
    (row,) = [
        r for r in landed["events"] if (r["object_key"], r["line_number"]) == (key, line_number)
    ]
    return row


def _text(row: dict) -> str:
    return " ".join(str(value) for value in row.values())


#: Cases whose planted value also breaks the feature-name rule (docs/contract.md, "Name rules"):
#: the line is quarantined at the door, and its kept raw text must be scrubbed all the same.
REFUSED_NAMES = {"feature_key_phone"}


def _stored(landed, key: str, line_number: int) -> dict:
    """The line's stored row: its event, or its quarantine row when the door refused it."""
    table = "quarantine" if list(CASES)[line_number - 1] in REFUSED_NAMES else "events"
    (row,) = [r for r in landed[table] if (r["object_key"], r["line_number"]) == (key, line_number)]
    return row


@pytest.mark.parametrize("case", list(CASES))
def test_planted_pii_is_absent_from_every_stored_column(landed, case):
    line_number = list(CASES).index(case) + 1
    row = _stored(landed, "raw/app/events.jsonl", line_number)
    for planted in CASES[case][1]:
        assert planted not in _text(row), (case, planted, row)


def test_no_planted_value_is_stored_anywhere(landed):
    planted = [p for _, values in CASES.values() for p in values] + ADAPTER_PLANTED
    for table, rows in landed.items():
        for row in rows:
            text = _text(row)
            assert not [p for p in planted if p in text], (table, row)
    # only the lines the name rule refuses are quarantined, each for its feature name
    refused = [list(CASES).index(case) + 1 for case in sorted(REFUSED_NAMES)]
    assert [r["line_number"] for r in landed["quarantine"]] == refused, landed["quarantine"]
    assert {r["reason"].split(" (")[0] for r in landed["quarantine"]} == {
        "invalid name: input_features key"
    }


def test_adapter_payloads_are_scrubbed(landed):
    kserve = [r for r in landed["events"] if r["object_key"] == KSERVE_KEY]
    sagemaker = [r for r in landed["events"] if r["object_key"] == SAGEMAKER_KEY]
    assert json.loads(kserve[0]["input_features"]) == {
        "x": 1.5, "note": "[redacted:email]", "who": {}
    }  # fmt: skip
    assert json.loads(sagemaker[0]["input_features"]) == {
        "glucose": 85, "contact": "[redacted:email]", "p": {}
    }  # fmt: skip


def test_ids_that_hold_pii_are_dropped_not_collided(landed):
    ids = list(CASES)
    event = _event(landed, "raw/app/events.jsonl", ids.index("event_id") + 1)
    request = _event(landed, "raw/app/events.jsonl", ids.index("request_id") + 1)
    # an event_id holding PII is treated as absent: the line's content hash, as for no id
    assert len(event["event_id"]) == 64 and int(event["event_id"], 16) >= 0
    assert request["request_id"] is None


def test_ordinary_values_survive_unchanged(landed):
    row = _event(landed, "raw/app/events.jsonl", len(CASES) + 1)
    for field in ("event_id", "request_id", "client_id", "endpoint", "model", "model_version"):
        assert row[field] == ORDINARY[field], field
    assert (row["geo_country"], row["geo_region"]) == ("CA", "eu-west")
    assert (row["prediction"], row["error_type"]) == ("churn", "timeout")
    assert row["error_message"] == "upstream took 1200 ms"
    for field in ("input_features", "usage", "resources"):
        assert json.loads(row[field]) == ORDINARY[field], field


def test_a_suspect_object_keeps_its_other_entries_in_order(landed):
    row = _event(landed, "raw/app/events.jsonl", len(CASES) + 2)
    kept = json.loads(row["input_features"])
    assert list(kept.items()) == [(k, v) for k, v in MIXED.items() if k != "email"]


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), keys
    return dict(pairs)


def test_every_stored_object_is_valid_json_without_repeated_keys(landed):
    columns = ("input_features", "resources", "model_metadata", "usage", "extra", "prediction")
    checked = 0
    for row in landed["events"]:
        for column in columns:
            value = row[column]
            if value is None or (column == "prediction" and not value.startswith(("{", "["))):
                continue
            json.loads(value, object_pairs_hook=_no_duplicates)
            checked += 1
    assert checked > len(CASES) // 2


@pytest.mark.parametrize(
    "text",
    [
        '{"a":{"b":{"c":{"email":"x"}}},"d":[{"e":{"10.0.0.1":1}},"f@g.io"],"n":1.10}',
        '{"k":"caf\\u00e9 \\"q\\" \\ud800","x.y@z.io":1,"x.y@z.io":2,"v":NaN,"w":-Infinity}',
        '[{"phone":1},{"ok":2}]',
    ],
)
def test_scrub_json_always_returns_json(text):
    scrubbed = pii.scrub_json(text)
    json.loads(scrubbed)
    for planted in ("f@g.io", "10.0.0.1", "x.y@z.io", '"email"', '"phone"'):
        assert planted not in scrubbed


def test_scrub_json_keeps_numbers_as_written():
    text = '{"a":1.10,"b":100000.0,"c":123456789012345678901234567890,"d":-0.0,"e":"f@g.io"}'
    assert pii.scrub_json(text) == (
        '{"a":1.10,"b":100000.0,"c":123456789012345678901234567890,"d":-0.0,"e":"[redacted:email]"}'
    )


def test_labels_scrub_ids_and_label_text(tmp_path):
    lines = [
        {"labeled_at": "2025-05-21T00:00:00Z", "event_id": "lab.alice@example.com",
         "request_id": DIGIT_UUID, "label": f"call {PHONE}"},
        {"labeled_at": "2025-05-21T00:00:00Z", "event_id": DIGIT_UUID, "label": "churn"},
    ]  # fmt: skip
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bytes("labels/l.jsonl", ("\n".join(map(json.dumps, lines)) + "\n").encode())
    ingest(lake, discover(lake), batch_id="t", user_hash_key=b"k", work_dir=tmp_path / "w")
    files = f"{tmp_path}/lake/bronze/labels/rows/*/*.parquet"
    rows = duckdb.sql(
        f"select event_id, request_id, label from read_parquet('{files}')"
        " order by labeled_at, event_id nulls first"
    ).fetchall()
    assert rows == [(None, DIGIT_UUID, "call [redacted:phone]"), (DIGIT_UUID, None, "churn")]


def test_scrub_json_is_bounded_in_depth():
    deep = '{"a":' * 5000 + '"x@y.io"' + "}" * 5000
    assert pii.scrub_json(deep) == "{}"


def test_objects_stay_json_typed_for_the_marts():
    """The marts cast input_features to MAP(VARCHAR, JSON): a VARCHAR column fails that cast."""
    con = duckdb.connect()
    line = json.dumps({"timestamp": 1, "model": "m", "input_features": {"email": EMAIL, "a": 1}})
    con.register("lines", lines_table([decompress("raw/x.jsonl", line.encode() + b"\n")]))
    parse(con)
    types = {c[0]: str(c[1]) for c in con.execute("select * from parsed").description}
    for column in ("input_features", "resources", "model_metadata", "usage", "extra"):
        assert types[column] == "JSON", column
    assert con.execute("select input_features::MAP(VARCHAR, JSON) from parsed").fetchone()

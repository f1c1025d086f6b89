"""Producer adapters: each sample lands with the right fields, bad records are quarantined
with the adapter's reason, and every raw line is accounted for (docs/producers.md)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from inferwatch.adapters import ProducerMap
from inferwatch.adapters.apply import prepare_lines
from inferwatch.config import Settings
from inferwatch.ingest.bronze import ingest
from inferwatch.ingest.lines import decompress, lines_table
from inferwatch.ingest.manifest import discover
from inferwatch.lake import Lake

SAMPLES = Path(__file__).resolve().parents[1] / "plugins/inferwatch/adapters/samples"
PRODUCERS = {
    "raw/sagemaker/": "sagemaker_capture",
    "raw/kserve/": "kserve",
    "raw/seldon/": "seldon",
    "raw/llm/": {"adapter": "openai_usage", "endpoint": "chat"},
    "raw/vertex/": "vertex_ai",
    "raw/vertex/churn/": {"adapter": "vertex_ai", "model": "customer_churn"},
    "raw/kserve/legacy/": "contract",
}
SAMPLE_KEYS = {
    "raw/sagemaker/diabetes-endpoint/AllTraffic/2021/09/27/03/capture.jsonl": "sagemaker_capture",
    "raw/kserve/iris/2021/04/10/logger.jsonl": "kserve",
    "raw/seldon/iris/logger.jsonl": "seldon",
    "raw/llm/2024/05/20/usage.jsonl": "openai_usage",
    "raw/vertex/export-000.jsonl": "vertex_ai",
}


SAMPLE_KEYS_BY_NAME = {name: key for key, name in SAMPLE_KEYS.items()}


def rewrite(objects: dict[str, Path], producers=PRODUCERS) -> dict[tuple[str, int], dict | None]:
    """The contract lines the adapters write for these objects, before the parser."""
    decoded = [decompress(key, path.read_bytes()) for key, path in objects.items()]
    con = duckdb.connect()
    con.register("raw_lines", lines_table(decoded))
    prepare_lines(con, list(objects), ProducerMap.from_mapping(producers))
    rows = con.execute("select object_key, line_number, decode(line) from lines").fetchall()
    return {(key, n): json.loads(text) if text.strip() else None for key, n, text in rows}


class Landed:
    def __init__(self, root: Path):
        self.root = root
        self.con = duckdb.connect()
        self.con.execute("set TimeZone = 'UTC'")

    def rows(
        self, what: str, where: str = "true", order: str = "object_key, line_number"
    ) -> list[dict]:
        sub = {"events": "bronze/events", "quarantine": "quarantine", "manifest": "bronze/manifest"}
        order = "object_key" if what == "manifest" else order
        cursor = self.con.execute(
            f"select * from read_parquet('{self.root}/{sub[what]}/*/*.parquet') where {where}"
            f" order by {order}"
        )
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def events(self, prefix: str) -> list[dict]:
        return self.rows("events", f"object_key like '{prefix}%'")


def land(tmp_path: Path, objects: dict[str, bytes], producers=PRODUCERS) -> tuple[Landed, object]:
    lake = Lake(str(tmp_path / "lake"))
    for key, data in objects.items():
        lake.write_bytes(key, data)
    report = ingest(
        lake, discover(lake), batch_id="t", user_hash_key=b"k", work_dir=tmp_path / "work",
        producers=ProducerMap.from_mapping(producers),
    )  # fmt: skip
    return Landed(tmp_path / "lake"), report


def lines(*records) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> tuple[Landed, object]:
    objects = {key: (SAMPLES / f"{name}.jsonl").read_bytes() for key, name in SAMPLE_KEYS.items()}
    objects["raw/plain/contract.jsonl"] = lines(
        {"timestamp": "2025-05-20T14:52:00Z", "model": "customer_churn_v2", "prediction": "churn"}
    )
    return land(tmp_path_factory.mktemp("samples"), objects)


def test_every_sample_line_is_accounted_for_and_none_is_quarantined(samples):
    landed, report = samples
    assert report.lines_quarantined == 0
    for row in landed.rows("manifest"):
        assert row["lines_read"] == (
            row["lines_loaded"]
            + row["lines_quarantined"]
            + row["lines_blank"]
            + row["lines_merged"]
        ), row["object_key"]
    merged = {r["object_key"]: r["lines_merged"] for r in landed.rows("manifest")}
    assert merged["raw/kserve/iris/2021/04/10/logger.jsonl"] == 2
    assert merged["raw/seldon/iris/logger.jsonl"] == 1
    assert merged["raw/plain/contract.jsonl"] == 0
    (plain,) = landed.events("raw/plain/")
    assert (plain["model"], plain["model_version"]) == ("customer_churn", "v2")


def test_sagemaker_capture_sample(samples):
    events = samples[0].events("raw/sagemaker/")
    # model and version from the capture layout <prefix>/<endpoint>/<variant>/yyyy/…; no latency
    assert {(e["model"], e["model_version"], e["endpoint"]) for e in events} == {
        ("diabetes-endpoint", "AllTraffic", "diabetes-endpoint")
    }
    assert [e["line_number"] for e in events] == [1, 2, 4]  # line 3 is blank
    assert [e["event_id"] for e in events] == [
        "4651a1bf-4b00-4248-a309-4a18b11e4277",
        "a3c2f1d0-6b1e-4c55-9d52-2f0e8c1b7a10",
        "e07a4d9c-55f4-4d0b-8d1e-b2f1a6c3d902",
    ]
    assert [str(e["event_ts"]) for e in events] == [
        "2021-09-27 03:47:25", "2021-09-27 03:48:02.250000", "2021-09-27 03:49:10",
    ]  # fmt: skip
    assert all(e["latency_ms"] is None for e in events)
    csv, js, b64 = events
    assert json.loads(csv["input_features"]) == {"f0": 6, "f1": 148, "f2": 72, "f3": 35}
    assert csv["prediction"] == "1"
    assert json.loads(js["input_features"]) == {"glucose": 85, "bmi": 26.6, "plan": "basic"}
    assert (js["prediction"], js["confidence"], js["request_id"]) == ("healthy", 0.91, "req-7")
    # BASE64: "1,85,66,29\n8,183,64,0" and {"predictions": [0, 1]}: two rows, two instances,
    # one line with a batch of two (its loading is the parser's)
    line = rewrite({SAMPLE_KEYS_BY_NAME["sagemaker_capture"]: SAMPLES / "sagemaker_capture.jsonl"})
    (b64_line,) = [v for (_, n), v in line.items() if n == b64["line_number"]]
    assert b64_line["batch"] == [
        {"input_features": {"f0": 1, "f1": 85, "f2": 66, "f3": 29}, "prediction": 0},
        {"input_features": {"f0": 8, "f1": 183, "f2": 64, "f3": 0}, "prediction": 1},
    ]
    assert "input_features" not in b64_line and b64_line["producer"]["batch_size"] == 2


def test_kserve_sample_joins_request_and_response(samples):
    events = samples[0].events("raw/kserve/")
    by_id = {e["event_id"]: e for e in events}
    assert len(events) == 2
    first = by_id["0009174a-24a8-4603-b098-09c8799950e9"]
    assert (first["model"], first["model_version"], first["endpoint"]) == (
        "sklearn-iris", "unknown", "default",
    )  # fmt: skip
    # timestamp = request time; latency = 00:23:26.1019529 - 00:23:26.0789529 = 23 ms
    assert str(first["event_ts"]) == "2021-04-10 00:23:26.078952"
    assert first["latency_ms"] == pytest.approx(23.0)
    assert json.loads(first["input_features"]) == {"f0": 6.8, "f1": 2.8, "f2": 4.8, "f3": 1.4}
    assert first["prediction"] == "1"
    assert first["line_number"] == 4  # the response's line carries the event
    canary = by_id["5b1f6a7e-0c3d-4e59-8a21-3f4d2c9b8e11"]
    assert canary["endpoint"] == "canary"
    assert canary["latency_ms"] == pytest.approx(42.0)  # 27.542 - 27.500
    producer = json.loads(canary["extra"])["producer"]
    assert producer["batch_size"] == 2 and producer["namespace"] == "default"
    # two instances: one line with a batch of two, instance i with prediction i
    line = rewrite({SAMPLE_KEYS_BY_NAME["kserve"]: SAMPLES / "kserve.jsonl"})[
        (SAMPLE_KEYS_BY_NAME["kserve"], canary["line_number"])
    ]
    assert line["batch"] == [
        {"input_features": {"f0": 5.1, "f1": 3.5, "f2": 1.4, "f3": 0.2}, "prediction": 0},
        {"input_features": {"f0": 6.2, "f1": 3.4, "f2": 5.4, "f3": 2.3}, "prediction": 2},
    ]


def test_seldon_sample(samples):
    (event,) = samples[0].events("raw/seldon/")
    assert (event["model"], event["model_version"], event["endpoint"]) == (
        "classifier", "unknown", "default",
    )  # fmt: skip
    assert str(event["event_ts"]) == "2022-03-14 09:26:53.589000"
    assert event["latency_ms"] == pytest.approx(15.0)  # 53.604 - 53.589
    assert json.loads(event["input_features"]) == {"sepal_length": 0.77, "sepal_width": 0.63}
    assert json.loads(event["prediction"]) == [0.3, 0.7]
    assert event["request_id"] == "b7c1e3a2-9f4d-4a1b-8e6f-0d2c5a7b9e31"


def test_openai_usage_sample(samples):
    chat, responses, failed = samples[0].events("raw/llm/")
    assert (chat["model"], chat["model_version"], chat["endpoint"]) == (
        "gpt-4o-mini", "2024-07-18", "chat",
    )  # fmt: skip
    assert str(chat["event_ts"]) == "2024-05-20 14:52:00"  # created 1716216720
    assert json.loads(chat["usage"])["prompt_tokens"] == 19
    assert json.loads(chat["usage"])["completion_tokens"] == 10
    assert chat["prediction"] == "stop" and chat["latency_ms"] is None
    assert chat["user_hash"] is not None and "user-4242" not in json.dumps(chat, default=str)
    # the Responses API's input_tokens / output_tokens become the contract's names
    usage = json.loads(responses["usage"])
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["cached_tokens"]) == (
        36,
        87,
        12,
    )
    assert (responses["model"], responses["model_version"]) == ("gpt-4o", "2024-08-06")
    assert str(responses["event_ts"]) == "2024-05-20 14:53:01"
    assert (failed["status"], failed["error_type"], failed["model_version"]) == (
        "error", "server_error", "unknown",
    )  # fmt: skip


def test_vertex_ai_sample(samples):
    old, new = samples[0].events("raw/vertex/")
    # the older export has no model name: deployed_model_id stands for model and version
    assert (old["model"], old["model_version"], old["endpoint"]) == ("8817", "8817", "4747")
    assert str(old["event_ts"]) == "2024-05-20 14:52:00.125000"  # BigQuery's "… UTC" form
    assert json.loads(old["input_features"]) == {"age": 35, "plan": "premium"}
    assert (old["prediction"], old["confidence"]) == ("churn", 0.87)
    assert old["event_id"] == "3108839141627830272" and old["latency_ms"] is None
    assert (new["model"], new["model_version"]) == ("customer_churn", "3")
    assert json.loads(new["input_features"]) == {"age": 52, "plan": "basic"}
    assert (new["prediction"], new["confidence"]) == ("stay", 0.64)


def ce(kind: str, ce_id: str, time: str, **attributes) -> dict:
    data = {"instances": [[1, 2]]} if kind == "request" else {"predictions": [1]}
    return {
        "specversion": "1.0", "type": f"org.kubeflow.serving.inference.{kind}", "id": ce_id,
        "time": time, "inferenceservicename": "iris", "endpoint": "default", "data": data,
        **attributes,
    }  # fmt: skip


def test_unmappable_records_are_quarantined_with_the_adapters_reason(tmp_path):
    sagemaker = "raw/sagemaker/ep/v1/2021/09/27/03/bad.jsonl"
    kserve = "raw/kserve/bad.jsonl"
    capture = {
        "endpointInput": {"observedContentType": "text/csv", "data": "1,2", "encoding": "CSV"}
    }
    when = {"inferenceTime": "2021-09-27T03:47:25Z"}
    landed, report = land(tmp_path, {
        sagemaker: lines(
            {"eventMetadata": when},
            {"captureData": {"endpointInput": {**capture["endpointInput"], "encoding": "BASE64",
                                               "data": "!!"}}, "eventMetadata": when},
            {"captureData": {"endpointInput": {**capture["endpointInput"], "encoding": "UTF16"}},
             "eventMetadata": when},
            {"captureData": capture, "eventMetadata": {}},
            {"captureData": capture, "eventMetadata": {}, "note": "mail ann@example.com"},
            "{not json",
            {"captureData": capture, "eventMetadata": when},
        ),
        kserve: lines(
            ce("request", "", "2021-04-10T00:00:00Z") | {"id": None},
            ce("request", "x", "2021-04-10T00:00:00Z") | {"type": "org.kubeflow.other"},
            ce("request", "y", "yesterday"),
            {"timestamp": "2021-04-10T00:00:00Z", "model": "m"},  # a contract line, wrong prefix
            ce("request", "neg", "2021-04-10T00:00:05Z"),
            ce("response", "neg", "2021-04-10T00:00:04Z"),
        ),
        "raw/llm/bad.jsonl": lines({"id": "c", "model": "gpt", "created": 1}, {"usage": {}}),
        "raw/vertex/bad.jsonl": lines({"request_id": "1"}),
    })  # fmt: skip
    reasons = {(r["object_key"], r["line_number"]): r["reason"] for r in landed.rows("quarantine")}
    assert reasons == {
        (sagemaker, 1): "sagemaker_capture: no captureData object",
        (sagemaker, 2): "sagemaker_capture: endpointInput.data is not valid base64",
        (sagemaker, 3): "sagemaker_capture: unknown endpointInput.encoding (CSV, JSON or BASE64)",
        (sagemaker, 4): "sagemaker_capture: no eventMetadata.inferenceTime",
        (sagemaker, 5): "sagemaker_capture: no eventMetadata.inferenceTime",
        (sagemaker, 6): "invalid JSON",  # not a record: the contract parser's own reason
        (kserve, 1): "kserve: no id (ce-id)",
        (kserve, 2): "kserve: type is neither a request nor a response: org.kubeflow.other",
        (kserve, 3): "kserve: unparseable time (ce-time)",
        (kserve, 4): "kserve: no id (ce-id)",
        (kserve, 5): "kserve: response time is before request time",
        (kserve, 6): "kserve: response time is before request time",
        ("raw/llm/bad.jsonl", 1): "openai_usage: no usage object",
        ("raw/llm/bad.jsonl", 2): "openai_usage: no created, created_at or timestamp",
        ("raw/vertex/bad.jsonl", 1): "vertex_ai: no logging_time",
    }
    # quarantine keeps the producer's original record (scrubbed), ready for a replay
    raw = {(r["object_key"], r["line_number"]): r["raw_line"] for r in landed.rows("quarantine")}
    assert raw[(kserve, 3)].startswith('{"specversion": "1.0"')
    assert "ann@example.com" not in raw[(sagemaker, 5)] and "[redacted" in raw[(sagemaker, 5)]
    assert (report.lines_read, report.lines_loaded, report.lines_quarantined) == (16, 1, 15)
    assert [(e["object_key"], e["line_number"]) for e in landed.rows("events")] == [(sagemaker, 7)]


def test_lone_requests_and_responses_become_events_and_a_split_pair_counts_once(tmp_path):
    landed, report = land(tmp_path, {
        "raw/kserve/a.jsonl": lines(
            ce("request", "lone", "2021-04-10T00:00:01Z"),
            ce("request", "split", "2021-04-10T00:00:02Z"),
            ce("request", "dup", "2021-04-10T00:00:03Z"),
            ce("request", "dup", "2021-04-10T00:00:03Z"),
            ce("response", "dup", "2021-04-10T00:00:03.250Z"),
        ),
        "raw/kserve/b.jsonl": lines(ce("response", "split", "2021-04-10T00:00:02.5Z")),
    })  # fmt: skip
    events = {(e["object_key"], e["event_id"]): e for e in landed.rows("events")}
    lone = events[("raw/kserve/a.jsonl", "lone")]
    assert lone["prediction"] is None and lone["latency_ms"] is None
    assert json.loads(lone["extra"])["producer"]["unmatched"] == "request"
    half = events[("raw/kserve/b.jsonl", "split")]
    assert half["prediction"] == "1" and half["input_features"] is None
    assert str(half["event_ts"]) == "2021-04-10 00:00:02.500000"
    # both halves of the split pair share the event id: de-duplication counts it once
    assert events[("raw/kserve/a.jsonl", "split")]["event_id"] == half["event_id"]
    assert events[("raw/kserve/a.jsonl", "dup")]["latency_ms"] == pytest.approx(250.0)
    (dup,) = landed.rows("quarantine")
    assert (dup["line_number"], dup["reason"]) == (
        4,
        "kserve: duplicate record for its id and type: dup",
    )
    manifest = {r["object_key"]: r for r in landed.rows("manifest")}
    a = manifest["raw/kserve/a.jsonl"]
    assert (a["lines_read"], a["lines_loaded"], a["lines_quarantined"], a["lines_merged"]) == (
        5,
        3,
        1,
        1,
    )
    assert report.lines_merged == 1


def test_a_merged_request_shares_the_fate_of_its_rejected_event(tmp_path):
    bad = {"inferenceservicename": " "}  # the contract rejects an empty model name
    landed, _ = land(tmp_path, {"raw/kserve/a.jsonl": lines(
        ce("request", "r", "2021-04-10T00:00:00Z", **bad),
        ce("response", "r", "2021-04-10T00:00:00.1Z", **bad),
    )})  # fmt: skip
    assert [(r["line_number"], r["reason"]) for r in landed.rows("quarantine")] == [
        (1, "empty field: model"), (2, "empty field: model"),
    ]  # fmt: skip
    (row,) = landed.rows("manifest")
    assert (row["lines_quarantined"], row["lines_merged"], row["lines_loaded"]) == (2, 0, 0)


def test_routes_longest_prefix_options_and_contract_opt_out(tmp_path):
    producers = ProducerMap.from_mapping(PRODUCERS)
    assert producers.route("raw/vertex/churn/x.jsonl").model == "customer_churn"
    assert producers.route("raw/vertex/x.jsonl").adapter == "vertex_ai"
    assert producers.route("raw/kserve/legacy/x.jsonl").adapter == "contract"
    assert producers.route("raw/other/x.jsonl").adapter == "contract"
    route = producers.route("raw/sagemaker/ep/AllTraffic/2021/09/27/03/x.jsonl")
    assert route.path_names("raw/sagemaker/ep/AllTraffic/2021/09/27/03/x.jsonl") == (
        "ep",
        "AllTraffic",
    )
    assert route.path_names("raw/sagemaker/2021/09/27/03/x.jsonl") == (None, None)
    for bad, message in [
        ({"raw/x/": "nope"}, "unknown adapter 'nope'"),
        ({"raw/x/": {"adapter": "kserve", "colour": 1}}, "unknown option"),
        ({"logs/": "kserve"}, "under raw/"),
    ]:
        with pytest.raises(ValueError, match=message):
            ProducerMap.from_mapping(bad)
    config = tmp_path / "producers.yml"
    config.write_text("raw/kserve/: kserve\nraw/llm/: {adapter: openai_usage, endpoint: chat}\n")
    loaded = ProducerMap.load(str(config))
    assert loaded.route("raw/llm/a.jsonl").endpoint == "chat"
    assert ProducerMap.load('{"raw/k/": "kserve"}').route("raw/k/a.jsonl").adapter == "kserve"
    assert ProducerMap.load(None).routes == ()


def test_ingest_reads_the_mapping_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERWATCH_PRODUCERS", json.dumps({"raw/kserve/": "kserve"}))
    assert Settings.from_env().producers == json.dumps({"raw/kserve/": "kserve"})
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bytes("raw/kserve/a.jsonl", (SAMPLES / "kserve.jsonl").read_bytes())
    report = ingest(lake, discover(lake), batch_id="e", user_hash_key=b"k", work_dir=tmp_path / "w")
    assert (report.lines_loaded, report.lines_merged, report.lines_quarantined) == (2, 2, 0)

"""Vendors' own record variants (samples in plugins/inferwatch/adapters/samples/, laid out as the
vendors write them): each maps onto the contract with default settings (docs/producers.md).

Records of one instance are checked end to end through ingest (bronze rows); records of several
instances at the level of the rewritten contract lines (``prepare_lines``): one line with a
``batch`` array, and end to end as one bronze event of n predictions (docs/contract.md).
Expected values are computed here from the samples' own payloads, not copied from the adapters'
output."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import duckdb
import pytest

from inferwatch.adapters import ProducerMap
from inferwatch.adapters.apply import prepare_lines
from inferwatch.ingest.lines import decompress, lines_table
from test_adapters import land, lines

SAMPLES = Path(__file__).resolve().parents[1] / "plugins/inferwatch/adapters/samples"
PRODUCERS = {
    "raw/sagemaker/": "sagemaker_capture",
    "raw/kserve/": "kserve",
    "raw/seldon/": "seldon",
    "raw/llm/": "openai_usage",
    "raw/vertex/": "vertex_ai",
}
DEEP = "raw/sagemaker/some/deep/prefix/fraud-ep/AllTraffic/2025/05/20/14/"
KEYS = {
    DEEP + "capture-csv.jsonl": "sagemaker_capture_csv",
    DEEP + "capture-json.jsonl": "sagemaker_capture_json",
    "raw/kserve/iris/2020/05/13/12/logger.jsonl": "kserve_spec02",
    "raw/seldon/income/2022/03/14/09/logger.jsonl": "seldon_requestid",
    "raw/llm/batch/batch_6701a2b3_output.jsonl": "openai_batch_output",
    "raw/llm/stream/2024/05/20/stream.jsonl": "openai_stream",
    "raw/vertex/export-000000000001.json": "vertex_ai_batch",
}


def sample(name: str) -> list[dict]:
    return [json.loads(t) for t in (SAMPLES / f"{name}.jsonl").read_text().splitlines()]


def key_of(name: str) -> str:
    return next(k for k, n in KEYS.items() if n == name)


@pytest.fixture(scope="module")
def landed(tmp_path_factory):
    objects = {key: (SAMPLES / f"{name}.jsonl").read_bytes() for key, name in KEYS.items()}
    return land(tmp_path_factory.mktemp("vendors"), objects, PRODUCERS)


@pytest.fixture(scope="module")
def rewritten() -> dict[tuple[str, int], dict]:
    """Every sample's contract lines as the adapters write them, before the parser."""
    decoded = [decompress(k, (SAMPLES / f"{n}.jsonl").read_bytes()) for k, n in KEYS.items()]
    con = duckdb.connect()
    con.register("raw_lines", lines_table(decoded))
    prepare_lines(con, list(KEYS), ProducerMap.from_mapping(PRODUCERS))
    rows = con.execute(
        "select object_key, line_number, decode(line), adapter_reason, merged_into from lines"
    ).fetchall()
    return {
        (key, n): {"line": json.loads(text) if text else None, "reason": reason, "merged": into}
        for key, n, text, reason, into in rows
    }


def csv_row(row: str) -> dict:
    return {f"f{i}": float(cell) for i, cell in enumerate(row.split(","))}


def payload(io: dict) -> str:
    data = io["data"]
    return base64.b64decode(data).decode() if io["encoding"] == "BASE64" else data


def by_line(landed, prefix: str) -> dict[int, dict]:
    return {e["line_number"]: e for e in landed[0].events(prefix)}


def test_no_sample_line_is_quarantined_and_every_line_is_accounted_for(landed):
    rows, report = landed
    assert [(q["object_key"], q["line_number"], q["reason"]) for q in rows.rows("quarantine")] == []
    manifest = {m["object_key"]: m for m in rows.rows("manifest")}
    for key, name in KEYS.items():
        m = manifest[key]
        assert m["lines_read"] == len(sample(name)), key
        assert m["lines_read"] == m["lines_loaded"] + m["lines_merged"], key
    assert report.lines_quarantined == 0


def test_sagemaker_endpoint_and_variant_are_the_two_folders_before_the_date(landed):
    route = ProducerMap.from_mapping(PRODUCERS).route(DEEP + "capture-csv.jsonl")
    assert route.path_names(DEEP + "capture-csv.jsonl") == ("fraud-ep", "AllTraffic")
    # a route whose prefix already holds the endpoint and variant reads them all the same
    narrow = ProducerMap.from_mapping({DEEP[: -len("2025/05/20/14/")]: "sagemaker_capture"})
    assert narrow.route(DEEP + "c.jsonl").path_names(DEEP + "c.jsonl") == ("fraud-ep", "AllTraffic")
    events = landed[0].events(DEEP)
    assert len(events) == 7
    assert {(e["model"], e["model_version"], e["endpoint"]) for e in events} == {
        ("fraud-ep", "AllTraffic", "fraud-ep")
    }


def test_sagemaker_csv_without_header_one_row_with_a_content_type_parameter(landed):
    records = sample("sagemaker_capture_csv")
    events = by_line(landed, key_of("sagemaker_capture_csv"))
    for n in (1, 3):
        inp, out = records[n - 1]["captureData"].values()
        assert inp["observedContentType"] == "text/csv; charset=utf-8"
        event = events[n]
        assert json.loads(event["input_features"]) == csv_row(inp["data"])
        assert float(event["prediction"]) == float(out["data"])
        assert event["event_id"] == records[n - 1]["eventMetadata"]["eventId"]
        assert event["latency_ms"] is None
    # the same request twice in the same second stays two inferences (two eventIds)
    assert events[1]["event_ts"] == events[3]["event_ts"]
    assert events[1]["input_features"] == events[3]["input_features"]
    assert events[1]["event_id"] != events[3]["event_id"]


def test_sagemaker_rows_are_instances_of_one_batch_line(rewritten):
    records = sample("sagemaker_capture_csv")
    for n in (2, 4):  # CSV, then BASE64 (no capture content-type header configured)
        inp, out = records[n - 1]["captureData"].values()
        rows = [r for r in payload(inp).splitlines() if r]
        preds = [float(r) for r in payload(out).splitlines() if r]
        line = rewritten[(key_of("sagemaker_capture_csv"), n)]["line"]
        assert {"input_features", "prediction", "confidence"}.isdisjoint(line)
        assert [e["input_features"] for e in line["batch"]] == [csv_row(r) for r in rows]
        assert [e["prediction"] for e in line["batch"]] == preds
        assert line["producer"]["batch_size"] == len(rows) > 1
        assert (line["model"], line["model_version"]) == ("fraud-ep", "AllTraffic")


def test_sagemaker_json_instances_base64_with_charset_and_json_lines(landed, rewritten):
    records = sample("sagemaker_capture_json")
    key = key_of("sagemaker_capture_json")
    inp, out = records[0]["captureData"].values()
    batch = rewritten[(key, 1)]["line"]["batch"]
    expected = json.loads(inp["data"])["instances"]
    assert [e["input_features"] for e in batch] == expected
    assert [(e["prediction"], e["confidence"]) for e in batch] == [
        (p["predicted_label"], p["score"]) for p in json.loads(out["data"])["predictions"]
    ]
    # one instance, base64, "application/json; charset=utf-8": a plain event, end to end
    event = by_line(landed, key)[2]
    inp, out = records[1]["captureData"].values()
    (instance,) = json.loads(payload(inp))["instances"]
    (pred,) = json.loads(payload(out))["predictions"]
    assert json.loads(event["input_features"]) == instance
    assert (event["prediction"], event["confidence"]) == (pred["predicted_label"], pred["score"])
    # application/jsonlines: one instance and one prediction a line
    inp, out = records[2]["captureData"].values()
    batch = rewritten[(key, 3)]["line"]["batch"]
    assert [e["input_features"] for e in batch] == [
        json.loads(r) for r in inp["data"].split("\n") if r
    ]
    assert [e["confidence"] for e in batch] == [
        json.loads(r)["score"] for r in out["data"].split("\n") if r
    ]


def test_kserve_spec_02_events_with_quoted_values(landed, rewritten):
    records = sample("kserve_spec02")
    assert records[1]["inferenceservice"] == '"iris"'
    key = key_of("kserve_spec02")
    (event,) = [e for e in landed[0].events(key) if e["event_id"] == records[1]["id"]]
    assert (event["model"], event["endpoint"]) == ("iris", "default")
    # latency = response time - request time: 56.220 - 56.201
    assert event["latency_ms"] == pytest.approx(19.0)
    assert json.loads(event["input_features"]) == {
        f"f{i}": v for i, v in enumerate(records[1]["data"]["instances"][0])
    }
    assert event["prediction"] == str(records[3]["data"]["predictions"][0])
    assert json.loads(event["extra"])["producer"]["namespace"] == "default"
    # three instances: one batch line at the response's line; the request is merged into it
    line = rewritten[(key, 3)]["line"]
    assert rewritten[(key, 1)]["merged"] == 3
    assert [e["input_features"] for e in line["batch"]] == [
        {f"f{i}": v for i, v in enumerate(row)} for row in records[0]["data"]["instances"]
    ]
    assert [e["prediction"] for e in line["batch"]] == records[2]["data"]["predictions"]
    assert line["latency_ms"] == pytest.approx(35.0)  # 56.158456 - 56.123456


def test_seldon_request_and_response_join_on_requestid(landed, rewritten):
    records = sample("seldon_requestid")
    key = key_of("seldon_requestid")
    assert records[1]["id"] != records[3]["id"]
    (row,) = [m for m in landed[0].rows("manifest") if m["object_key"] == key]
    assert (row["lines_loaded"], row["lines_merged"]) == (2, 2)
    events = landed[0].events(key)
    (single,) = [e for e in events if e["request_id"] == records[1]["requestid"]]
    names = records[1]["data"]["data"]["names"]
    assert json.loads(single["input_features"]) == dict(
        zip(names, records[1]["data"]["data"]["ndarray"][0], strict=True)
    )
    assert json.loads(single["prediction"]) == records[3]["data"]["data"]["ndarray"][0]
    assert single["latency_ms"] == pytest.approx(31.0)  # 53.631 - 53.600
    assert (single["model"], single["endpoint"]) == ("classifier", "default")
    # both halves of a pair carry the requestid: the event is known by it
    assert single["event_id"] == records[1]["requestid"]
    line = rewritten[(key, 3)]["line"]
    assert rewritten[(key, 1)]["merged"] == 3
    assert [e["input_features"] for e in line["batch"]] == [
        dict(zip(names, row, strict=True)) for row in records[0]["data"]["data"]["ndarray"]
    ]
    assert [e["prediction"] for e in line["batch"]] == records[2]["data"]["data"]["ndarray"]
    assert line["latency_ms"] == pytest.approx(15.0)  # 53.604 - 53.589


def test_openai_batch_output_lines_and_their_errors(landed):
    records = sample("openai_batch_output")
    events = by_line(landed, key_of("openai_batch_output"))
    assert len(events) == len(records)
    dated = records[0]["response"]["body"]["created"]
    for n in (1, 3):
        body = records[n - 1]["response"]["body"]
        usage = json.loads(events[n]["usage"])
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
            body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"],
        )  # fmt: skip
        assert (events[n]["model"], events[n]["model_version"]) == ("gpt-4o-mini", "2024-07-18")
        assert events[n]["request_id"] == records[n - 1]["custom_id"]
        assert events[n]["event_id"] == records[n - 1]["id"]
        assert events[n]["status"] == "ok" and events[n]["prediction"] == "stop"
        assert events[n]["event_ts"].timestamp() == body["created"]
    expired, invalid = events[2], events[4]
    assert records[1]["response"] is None
    assert (expired["status"], expired["error_type"]) == ("error", records[1]["error"]["code"])
    assert (invalid["status"], invalid["error_type"]) == (
        "error", records[3]["response"]["body"]["error"]["code"],
    )  # fmt: skip
    # an error line has no time or model of its own: those of its batch's output file
    for event in (expired, invalid):
        assert event["model"] == "gpt-4o-mini" and event["usage"] is None
        assert event["event_ts"].timestamp() == dated
        assert event["request_id"] == records[event["line_number"] - 1]["custom_id"]


def test_openai_streams_count_once_with_the_last_chunks_usage(landed):
    records = sample("openai_stream")
    key = key_of("openai_stream")
    (row,) = [m for m in landed[0].rows("manifest") if m["object_key"] == key]
    assert (row["lines_loaded"], row["lines_merged"], row["lines_quarantined"]) == (2, 5, 0)
    chat, responses = landed[0].events(key)
    last_chunk = records[3]
    assert last_chunk["choices"] == [] and all(r["usage"] is None for r in records[:3])
    usage = json.loads(chat["usage"])
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        last_chunk["usage"]["prompt_tokens"], last_chunk["usage"]["completion_tokens"],
    )  # fmt: skip
    assert chat["prediction"] == records[2]["choices"][0]["finish_reason"]
    assert chat["event_id"] == last_chunk["id"] and chat["line_number"] == 4
    # Responses API stream: usage (input_tokens / output_tokens) on response.completed
    completed = records[6]["response"]
    usage = json.loads(responses["usage"])
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        completed["usage"]["input_tokens"], completed["usage"]["output_tokens"],
    )  # fmt: skip
    assert (responses["model"], responses["model_version"]) == ("gpt-4.1", "2025-04-14")
    assert responses["prediction"] == "completed" and responses["event_id"] == completed["id"]


def test_vertex_ai_payloads_of_several_instances_are_one_batch_line(rewritten):
    old, new = sample("vertex_ai_batch")
    key = key_of("vertex_ai_batch")
    line = rewritten[(key, 1)]["line"]
    assert [e["input_features"] for e in line["batch"]] == [
        json.loads(p) for p in old["request_payload"]
    ]
    assert [(e["prediction"], e["confidence"]) for e in line["batch"]] == [
        (json.loads(p)["predicted_label"], json.loads(p)["confidence"])
        for p in old["response_payload"]
    ]
    line = rewritten[(key, 2)]["line"]
    assert [e["input_features"] for e in line["batch"]] == new["full_request"]["instances"]
    assert [e["prediction"] for e in line["batch"]] == [
        p["predicted_label"] for p in new["full_response"]["predictions"]
    ]
    assert (line["model"], line["producer"]["batch_size"]) == ("customer_churn", 3)


def test_records_without_an_id_in_one_second_stay_apart_and_replays_still_match(tmp_path):
    def completion(answer: str) -> dict:  # a gateway's log: no id, one-second time
        choice = {"index": 0, "message": {"content": answer}, "finish_reason": "stop"}
        usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
        return {"object": "chat.completion", "created": 1716216720, "model": "gpt-4o-mini",
                "choices": [choice], "usage": usage}  # fmt: skip

    first, second = completion("Yes."), completion("No.")
    landed, _ = land(tmp_path, {
        "raw/llm/a.jsonl": lines(first, second), "raw/llm/b.jsonl": lines(first),
    }, PRODUCERS)  # fmt: skip
    ids = {(e["object_key"], e["line_number"]): e["event_id"] for e in landed.rows("events")}
    # two answers are two inferences (de-duplication is by event_id) ...
    assert ids[("raw/llm/a.jsonl", 1)] != ids[("raw/llm/a.jsonl", 2)]
    # ... and the same record shipped twice is still one
    assert ids[("raw/llm/a.jsonl", 1)] == ids[("raw/llm/b.jsonl", 1)]


def test_vendor_records_that_cannot_be_mapped_get_the_adapters_reason(tmp_path):
    batch_error = sample("openai_batch_output")[1]
    delta = sample("openai_stream")[5]
    nameless = [{k: v for k, v in c.items() if k != "model"} for c in sample("openai_stream")[:4]]
    landed, _ = land(tmp_path, {
        "raw/llm/failed_output.jsonl": lines(batch_error),
        "raw/llm/cut_stream.jsonl": lines(delta),
        "raw/llm/nameless_stream.jsonl": lines(*nameless),
    }, PRODUCERS)  # fmt: skip
    quarantined = landed.rows("quarantine")
    # every chunk of a stream whose event is refused is quarantined with the event's reason
    assert [
        (r["line_number"], r["reason"]) for r in quarantined if "nameless" in r["object_key"]
    ] == [(n, "openai_usage: no model and none configured") for n in range(1, 5)]
    reasons = {
        r["object_key"]: r["reason"] for r in quarantined if "nameless" not in r["object_key"]
    }
    assert reasons == {
        "raw/llm/failed_output.jsonl": "openai_usage: batch output line with no time of its own"
        " and no successful line in its file to take it from",
        "raw/llm/cut_stream.jsonl": "openai_usage: stream event with no final response event"
        " after it in its file",
    }


def test_batched_vendor_records_land_as_one_request_of_n_predictions(landed, rewritten):
    """End to end: every adapted line with a ``batch`` of n elements is one bronze event with
    ``predictions`` = n and its n elements' features, in the order of the vendor's instances."""
    batched = {
        key_line: entry["line"]["batch"]
        for key_line, entry in rewritten.items()
        if entry["line"] and "batch" in entry["line"] and not entry["merged"]
    }
    assert len(batched) >= 5  # SageMaker CSV/BASE64/JSON/JSON Lines, KServe, Seldon, Vertex AI
    for (key, number), batch in batched.items():
        event = by_line(landed, key)[number]
        assert event["predictions"] == len(batch), (key, number)
        stored = [json.loads(e["input_features"]) for e in event["batch_elements"]]
        assert stored == [e.get("input_features") for e in batch], (key, number)
        confidences = [e["confidence"] for e in event["batch_elements"]]
        assert confidences == [e.get("confidence") for e in batch], (key, number)

"""The producer-side helper: contract lines from logging and loguru, rotated files, shipping,
and lines that ingest with zero quarantine (docs/producers.md)."""

from __future__ import annotations

import gzip
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import jsonschema
import pytest

from inferwatch.ingest.bronze import ingest
from inferwatch.ingest.manifest import discover
from inferwatch.ingest.parse import FIELDS
from inferwatch.lake import Lake
from inferwatch.producer_logging import (
    CONTRACT_FIELDS,
    ContractFileHandler,
    LoguruContractSink,
    ModelInfo,
    RotatingJsonlWriter,
    closed_files,
    ship,
)

SCHEMA = json.loads(
    (
        Path(__file__).resolve().parents[1] / "plugins/inferwatch/schemas/inference_log.v1.json"
    ).read_text()
)
META = {"git_commit": "abc123", "training_data_hash": "sha256:77", "deployed_at": "2025-05-01"}


def read_lines(paths: list[Path]) -> list[dict]:
    out = []
    for path in paths:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        out += [json.loads(line) for line in data.decode().splitlines()]
    return out


def ingest_lake(lake: Lake, tmp_path: Path):
    report = ingest(lake, discover(lake), batch_id="p", user_hash_key=b"k", work_dir=tmp_path / "w",
                    producers=None)  # fmt: skip
    con = duckdb.connect()
    events = con.execute(
        f"select * from read_parquet('{lake.root}/bronze/events/*/*.parquet') order by event_ts"
    )
    names = [c[0] for c in events.description]
    return report, [dict(zip(names, row, strict=True)) for row in events.fetchall()]


def test_the_helpers_field_list_is_the_contracts():
    assert set(CONTRACT_FIELDS) == set(FIELDS)


@pytest.fixture
def inference_logger(tmp_path):
    logger = logging.getLogger(f"inferences.{tmp_path.name}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = ContractFileHandler(
        tmp_path / "logs", model="customer_churn", model_version="v3", endpoint="/predict",
        model_metadata=META, compress=False,
    )  # fmt: skip
    logger.addHandler(handler)
    yield logger, handler
    logger.removeHandler(handler)
    handler.close()


def test_logging_handler_writes_contract_lines_with_metadata_filled_in_once(inference_logger):
    logger, handler = inference_logger
    logger.info("scored", extra={"inference": {
        "input_features": {"age": 35, "plan": "premium"}, "prediction": "churn",
        "confidence": 0.87, "latency_ms": 122, "user_id": "u-1",
        "usage": {"prompt_tokens": 3, "completion_tokens": 1}}})  # fmt: skip
    logger.info("scored", extra={"prediction": "stay", "latency_ms": 9.5, "client_id": "acme"})
    try:
        raise TimeoutError("model timed out")
    except TimeoutError:
        logger.exception("failed", extra={"inference": {"retry_count": 2}})
    first, second, failed = read_lines([handler.writer.rotate()])
    for line in (first, second, failed):
        jsonschema.validate(line, SCHEMA)
        assert line["schema_version"] == 1
        assert (line["model"], line["model_version"], line["endpoint"]) == (
            "customer_churn", "v3", "/predict",
        )  # fmt: skip
        assert line["model_metadata"] == META
        datetime.fromisoformat(line["timestamp"])  # RFC 3339, UTC
        assert line["timestamp"].endswith("Z")
    assert first["usage"] == {"prompt_tokens": 3, "completion_tokens": 1}
    assert (second["prediction"], second["client_id"]) == ("stay", "acme")
    assert failed["error"] == {"type": "TimeoutError", "message": "model timed out"}
    assert len({first["event_id"], second["event_id"], failed["event_id"]}) == 3


def test_files_rotate_by_size_and_by_time_and_only_closed_files_are_shipped(tmp_path):
    now = [datetime(2025, 5, 20, 14, 59, 58, tzinfo=UTC).timestamp()]
    line = json.dumps({"timestamp": "2025-05-20T14:59:58Z", "model": "m", "pad": "x" * 60})
    size = len(line) + 1
    writer = RotatingJsonlWriter(
        tmp_path, max_bytes=2 * size, interval_s=3600, clock=lambda: now[0]
    )
    writer.write(line)
    writer.write(line)
    writer.write(line)  # a third line would pass max_bytes: it opens a second file
    assert len(writer.closed_files) == 1
    now[0] += 5  # crosses 15:00: the next write closes the 14:59 file
    writer.write(line)
    assert len(writer.closed_files) == 2
    assert [p.name.endswith(".jsonl.gz") for p in writer.closed_files] == [True, True]
    assert len(list(tmp_path.glob("*.jsonl.open"))) == 1  # the 15:00 file is still being written
    assert closed_files(tmp_path) == writer.closed_files

    lake = Lake(str(tmp_path / "lake"))
    keys = ship(tmp_path, lake, "raw/customer_churn")
    assert [k.rsplit("/", 1)[0] for k in keys] == ["raw/customer_churn/2025/05/20/14"] * 2
    assert closed_files(tmp_path) == []  # shipped files are removed locally
    writer.close()
    (late,) = ship(tmp_path, str(tmp_path / "lake"), "raw/customer_churn")
    assert late.startswith("raw/customer_churn/2025/05/20/15/")
    assert sum(len(read_lines([Path(lake.path(k))])) for k in [*keys, late]) == 4
    with pytest.raises(ValueError, match="under raw/"):
        ship(tmp_path, lake, "bronze/x")


def test_a_crashed_writers_open_file_is_shipped_once_stale(tmp_path):
    writer = RotatingJsonlWriter(tmp_path)
    writer.write(json.dumps({"timestamp": 1, "model": "m"}))
    (stale,) = tmp_path.glob("*.open")
    writer._file.close()  # the process died: nobody closes it
    writer._file = None
    assert closed_files(tmp_path) == []
    (closed,) = closed_files(tmp_path, stale_after_s=0)
    assert not stale.exists() and closed.name.endswith(".jsonl.gz")


class _StandInMessage(str):
    """What loguru hands a sink (used when loguru is not installed)."""

    def __new__(cls, record: dict):
        message = super().__new__(cls, record["message"])
        message.record = record
        return message


def test_loguru_sink_writes_contract_lines(tmp_path):
    sink = LoguruContractSink(tmp_path, info=ModelInfo("ranker", "2025.05"), compress=False)
    try:
        from loguru import logger
    except ImportError:  # the same records loguru would pass, through the same sink code
        when = datetime(2025, 5, 20, 14, 52, tzinfo=UTC)
        for extra in ({"inference": {"prediction": 1, "latency_ms": 3}},
                      {"prediction": 0, "latency_ms": 4, "client_id": "acme"}):  # fmt: skip
            record = {"message": "scored", "time": when, "extra": extra, "exception": None}
            if LoguruContractSink.wants(record):
                sink(_StandInMessage(record))
    else:
        handler_id = logger.add(sink, filter=LoguruContractSink.wants)
        try:
            logger.info("scored", inference={"prediction": 1, "latency_ms": 3})
            logger.bind(prediction=0, latency_ms=4, client_id="acme").info("scored")
            logger.info("not an inference: filtered out")
        finally:
            logger.remove(handler_id)
    first, second = read_lines([sink.writer.rotate()])
    for line in (first, second):
        jsonschema.validate(line, SCHEMA)
        assert (line["model"], line["model_version"], line["schema_version"]) == (
            "ranker",
            "2025.05",
            1,
        )
    assert (first["prediction"], first["latency_ms"]) == (1, 3)
    assert (second["prediction"], second["client_id"]) == (0, "acme")


def test_helper_files_ingest_with_zero_quarantine(tmp_path, inference_logger):
    logger, handler = inference_logger
    for i in range(50):
        logger.info("scored", extra={"inference": {
            "input_features": {"age": 20 + i, "note": "line\nbreak \"quoted\" ü"},
            "prediction": "churn" if i % 3 else "stay", "confidence": (i % 10) / 10,
            "latency_ms": i * 1.5, "user_id": f"user-{i}", "status": "ok"}})  # fmt: skip
    handler.writer.rotate()
    lake = Lake(str(tmp_path / "lake"))
    ship(tmp_path / "logs", lake, "raw/customer_churn")
    report, events = ingest_lake(lake, tmp_path)
    assert (report.lines_read, report.lines_loaded, report.lines_quarantined) == (50, 50, 0)
    assert {(e["model"], e["model_version"]) for e in events} == {("customer_churn", "v3")}
    assert json.loads(events[0]["model_metadata"]) == META
    assert json.loads(events[0]["input_features"])["note"] == 'line\nbreak "quoted" ü'


def test_a_newer_schema_version_is_read_and_its_unknown_fields_kept(tmp_path):
    info = ModelInfo("customer_churn", "v3", static={"schema_version": 2})
    newer = info.record({"prediction": "churn", "explanation": {"top_feature": "tenure"},
                         "trace_id": "t-1"}, datetime(2025, 5, 20, 14, 52, tzinfo=UTC))  # fmt: skip
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bytes("raw/m/newer.jsonl", (json.dumps(newer) + "\n").encode())
    report, (event,) = ingest_lake(lake, tmp_path)
    assert report.lines_quarantined == 0
    assert event["schema_version"] == 2
    assert json.loads(event["extra"]) == {
        "explanation": {"top_feature": "tenure"},
        "trace_id": "t-1",
    }
    assert str(event["event_ts"]) == "2025-05-20 14:52:00"

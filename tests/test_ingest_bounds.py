"""Bounded ingest (README: Limits): memory that follows the data, not the number of objects
or the length of lines; size caps per object (a gzip bomb stops at the cap); cardinality
guards per run that quarantine with a reason and raise one alert instead of exploding.

Every test ingests a real lake in tmp_path with ``bronze.ingest`` (real DuckDB under a
memory limit) and checks the figures against counts made here, independently of the code.
"""

from __future__ import annotations

import gzip
import json
import os
import tracemalloc
import zlib
from datetime import UTC, datetime

import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from inferwatch.alerts import log as alert_log
from inferwatch.alerts.step import evaluate_and_deliver
from inferwatch.config import Settings
from inferwatch.ingest.bronze import ingest
from inferwatch.ingest.manifest import MANIFEST_PREFIX, discover, read_manifest
from inferwatch.lake import Lake
from inferwatch.maintain.replay import replay
from inferwatch.publish import record_run

LIMIT_ENV = (
    "INFERWATCH_MAX_OBJECT_BYTES", "INFERWATCH_MAX_INFLATED_BYTES",
    "INFERWATCH_MAX_MODELS_PER_RUN", "INFERWATCH_MAX_FEATURES_PER_MODEL",
)  # fmt: skip


@pytest.fixture(autouse=True)
def default_limits(monkeypatch):
    for name in LIMIT_ENV:
        monkeypatch.delenv(name, raising=False)


def event(o: int, i: int, model: str = "churn", features: dict | None = None, **extra) -> str:
    """An ordinary contract v1 event (~450 bytes)."""
    return json.dumps({
        "timestamp": f"2025-05-{1 + o % 14:02d}T{o % 24:02d}:{i % 60:02d}:00Z",
        "model": model, "model_version": "v1", "event_id": f"e-{o}-{i}",
        "request_id": f"r-{o}-{i}", "endpoint": "/predict", "client_id": f"c{i % 7}",
        "user_id": f"u{(o * 31 + i) % 997}",
        "input_features": features or {"age": 18 + i % 70, "income": 1000.5 * (i % 90),
                                       "tenure": i % 120, "plan": "gold", "region": "eu"},
        "prediction": "churn" if i % 3 else "stay", "confidence": (i % 100) / 100,
        "latency_ms": 10.0 + i % 200, "status": "ok", "geo": {"country": "DE", "region": "BY"},
        "resources": {"cpu": 0.2, "mem_mb": 512}, **extra,
    })  # fmt: skip


def write(lake: Lake, key: str, lines: list[str], *, gz: bool = True) -> int:
    data = ("\n".join(lines) + "\n").encode()
    lake.write_bytes(key, gzip.compress(data, compresslevel=1) if gz else data)
    return len(lines)


def run(lake: Lake, tmp_path, memory_limit: str = "1GB", batch: str = "b1"):
    return ingest(lake, discover(lake), batch_id=batch, user_hash_key=b"k",
                  work_dir=tmp_path / "work", memory_limit=memory_limit)  # fmt: skip


def bronze_rows(lake: Lake) -> int:
    files = [lake.path(o.key) for o in lake.list("bronze/events") if o.key.endswith(".parquet")]
    return pads.dataset(files, format="parquet").count_rows()


def manifest(lake: Lake) -> dict[str, dict]:
    return {row["object_key"]: row for row in read_manifest(lake).to_pylist()}


# ---------------------------------------------------------------- memory
def test_many_small_objects_ingest_within_a_small_memory_limit(tmp_path):
    """800 objects of 30 lines (~11 MB inflated) under a 160 MB DuckDB limit: before the fix
    one Arrow batch per object kept row groups per object (~0.6 MB each) and the run ran out
    of memory (the 1 GB default failed the same way at ~1,150 objects of 70 lines). The limit
    is the parse's fixed working memory plus a margin; it was 128 MB until the contract gained
    `batch`, one more field in the parse's one-pass extraction."""
    lake = Lake(str(tmp_path / "lake"))
    expected = sum(
        write(lake, f"raw/2025/05/o{o:05d}.jsonl.gz", [event(o, i) for i in range(30)])
        for o in range(800)
    )
    report = run(lake, tmp_path, memory_limit="160MB")
    assert (report.objects, report.lines_read, report.lines_loaded) == (800, expected, expected)
    assert report.lines_quarantined == report.lines_blank == 0
    rows = manifest(lake)
    assert len(rows) == 800 and sum(r["lines_read"] for r in rows.values()) == expected
    assert bronze_rows(lake) == expected


def test_long_lines_are_parsed_in_small_batches(tmp_path):
    """Lines of 60 KB (well under the 1 MB line cap): before the fix one 500-line Arrow batch
    (30 MB) made every JSON parse of the statement hold it whole, past a 256 MB limit."""
    lake = Lake(str(tmp_path / "lake"))
    expected = write(
        lake, "raw/long.jsonl", [event(0, i, note="x" * 60_000) for i in range(500)], gz=False
    )
    report = run(lake, tmp_path, memory_limit="256MB")
    assert (report.lines_read, report.lines_loaded) == (expected, expected)
    assert bronze_rows(lake) == expected


# ---------------------------------------------------------------- size caps per object
def gzip_bomb(megabytes: int) -> bytes:
    """One gzip member of ``megabytes`` MB of zeros (~4.5 KB stored per MB)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(megabytes)) + packer.flush()


def test_a_gzip_bomb_stops_at_the_inflated_cap(tmp_path, monkeypatch):
    """128 MB of zeros in ~600 KB of gzip, under an 8 MB inflated cap: inflation stops at the
    cap (Python's peak allocation stays far under the bomb; DuckDB's side is under its own
    128 MB limit), the object is recorded as stopped by the cap with its one over-long line
    quarantined, and the object beside it loads."""
    cap = 8 << 20
    monkeypatch.setenv("INFERWATCH_MAX_INFLATED_BYTES", str(cap))
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bytes("raw/bomb.jsonl.gz", gzip_bomb(128))
    write(lake, "raw/ok.jsonl", [event(0, 0)], gz=False)
    tracemalloc.start()
    try:
        report = run(lake, tmp_path, memory_limit="160MB")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # inflated whole, the bomb alone would be 128 MB, held twice while its pieces are joined
    assert peak < 48 << 20, peak
    assert report.objects_too_large == {"raw/bomb.jsonl.gz": "inflated_bytes"}
    assert (report.lines_read, report.lines_loaded, report.lines_quarantined) == (2, 1, 1)
    (trip,) = report.limits_tripped
    assert (trip["limit"], trip["cap"], trip["objects"]) == ("max_inflated_bytes", cap, 1)
    bomb = manifest(lake)["raw/bomb.jsonl.gz"]
    assert (bomb["limit_exceeded"], bomb["inflated_bytes"]) == ("inflated_bytes", cap)
    assert (bomb["lines_read"], bomb["lines_quarantined"]) == (1, 1)  # 8 MB of zeros, no newline
    assert discover(lake) == []  # with the same cap it is not read again on every run


def test_inflated_cap_keeps_the_lines_before_it_and_a_raised_cap_reads_the_rest(
    tmp_path, monkeypatch
):
    lake = Lake(str(tmp_path / "lake"))
    lines = [event(1, i) for i in range(400)]
    write(lake, "raw/big.jsonl.gz", lines)
    text = ("\n".join(lines) + "\n").encode()
    cap = len(text) // 2
    monkeypatch.setenv("INFERWATCH_MAX_INFLATED_BYTES", str(cap))
    report = run(lake, tmp_path)
    whole = text[:cap].count(b"\n")  # lines that end before the cap; one more is cut by it
    assert (report.lines_read, report.lines_loaded, report.lines_quarantined) == (
        whole + 1, whole, 1,
    )  # fmt: skip
    row = manifest(lake)["raw/big.jsonl.gz"]
    assert (row["limit_exceeded"], row["inflated_bytes"]) == ("inflated_bytes", cap)
    assert discover(lake) == []
    monkeypatch.setenv("INFERWATCH_MAX_INFLATED_BYTES", str(cap * 4))
    assert [o.key for o in discover(lake)] == ["raw/big.jsonl.gz"]
    report = run(lake, tmp_path, batch="b2")
    assert (report.lines_read, report.lines_loaded, report.objects_too_large) == (400, 400, {})


class ReadLog(Lake):
    """A local lake that notes which objects were read (to see what was never fetched)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.read: list[str] = []

    def read_bytes(self, key: str) -> bytes:
        self.read.append(key)
        return super().read_bytes(key)


def test_an_object_over_the_stored_size_cap_is_not_fetched_but_recorded(tmp_path, monkeypatch):
    lake = ReadLog(str(tmp_path / "lake"))
    small = write(lake, "raw/small.jsonl", [event(0, i) for i in range(10)], gz=False)
    write(lake, "raw/huge.jsonl", [event(1, i) for i in range(300)], gz=False)
    sizes = {o.key: o.size for o in lake.list("raw")}
    monkeypatch.setenv("INFERWATCH_MAX_OBJECT_BYTES", str(sizes["raw/small.jsonl"] * 2))
    report = run(lake, tmp_path)
    assert "raw/huge.jsonl" not in lake.read
    assert (report.objects, report.lines_read, report.lines_loaded) == (2, small, small)
    assert report.objects_too_large == {"raw/huge.jsonl": "object_bytes"}
    (trip,) = report.limits_tripped
    assert (trip["limit"], trip["objects"], trip["examples"]) == (
        "max_object_bytes", 1, ["raw/huge.jsonl"],
    )  # fmt: skip
    row = manifest(lake)["raw/huge.jsonl"]
    assert (row["limit_exceeded"], row["lines_read"], row["object_size"]) == (
        "object_bytes", 0, sizes["raw/huge.jsonl"],
    )  # fmt: skip
    assert discover(lake) == []  # the same cap: not fetched again on every run
    monkeypatch.setenv("INFERWATCH_MAX_OBJECT_BYTES", str(sizes["raw/huge.jsonl"]))
    assert [o.key for o in discover(lake)] == ["raw/huge.jsonl"]


def test_a_manifest_written_before_the_caps_still_reads(tmp_path):
    """Old manifest files (no limit_exceeded, no inflated_bytes) read as null: an existing
    lake upgrades in place."""
    lake = Lake(str(tmp_path / "lake"))
    write(lake, "raw/a.jsonl", [event(0, 0)], gz=False)
    run(lake, tmp_path)
    (old,) = [o.key for o in lake.list(MANIFEST_PREFIX)]
    table = pq.read_table(lake.path(old)).drop_columns(["limit_exceeded", "inflated_bytes"])
    pq.write_table(table, lake.path(old))
    row = manifest(lake)["raw/a.jsonl"]
    assert row["limit_exceeded"] is None and row["lines_loaded"] == 1
    assert discover(lake) == []


# ---------------------------------------------------------------- cardinality guards
def test_models_and_features_over_the_caps_are_quarantined_and_alerted(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERWATCH_MAX_MODELS_PER_RUN", "3")
    monkeypatch.setenv("INFERWATCH_MAX_FEATURES_PER_MODEL", "6")
    lake = Lake(str(tmp_path / "lake"))
    # object a: models m0..m4 (two too many), 5 lines each; object b: m0 again (admitted)
    write(lake, "raw/a.jsonl", [event(0, i, model=f"m{i // 5}") for i in range(25)], gz=False)
    write(lake, "raw/b.jsonl", [event(1, i, model="m0") for i in range(4)], gz=False)
    # object c, model m1 (5 features met in object a): f1 is its 6th name (admitted), f2 and
    # f3 would be its 7th and 8th (the line is quarantined), f1 again is known
    base = {"age": 1, "income": 2, "tenure": 3, "plan": "x", "region": "y"}
    write(lake, "raw/c.jsonl", [
        event(2, 0, model="m1", features={**base, "f1": 1}),
        event(2, 1, model="m1", features={**base, "f2": 2, "f3": 3}),
        event(2, 2, model="m1", features={"f1": 5}),
    ], gz=False)  # fmt: skip
    report = run(lake, tmp_path)

    refused_models = 10  # m3 and m4, the 4th and 5th models met (object a, lines 16..25)
    assert (report.lines_read, report.lines_quarantined) == (32, refused_models + 1)
    assert report.lines_loaded == 32 - refused_models - 1
    reasons = _quarantine(lake)
    model_reason = "too many distinct models in one run (over 3)"
    feature_reason = "too many distinct feature names for one model in one run (over 6)"
    assert reasons == {
        **{("raw/a.jsonl", n): model_reason for n in range(16, 26)},
        ("raw/c.jsonl", 2): feature_reason,
    }
    assert {t["limit"]: (t["lines"], t["examples"]) for t in report.limits_tripped} == {
        "max_models_per_run": (refused_models, ["m3", "m4"]),
        "max_features_per_model": (1, ["m1"]),
    }

    # the alert step turns the run's record into one ingest_limits alert
    settings = Settings.from_env({**os.environ, "INFERWATCH_DATA_DIR": str(tmp_path / "data"),
                                  "INFERWATCH_LAKE_URL": lake.url})  # fmt: skip
    started = datetime(2025, 6, 1, 12, tzinfo=UTC).isoformat()
    record_run(settings, "run-1", {"run_id": "run-1", "started_at": started,
                                   "ingest": report.as_dict()})  # fmt: skip
    outcome = evaluate_and_deliver(settings, "run-1")
    (alert,) = [a for a in alert_log.read_log(settings) if a["rule"] == "ingest_limits"]
    assert outcome["new"] == 1 and alert["status"] == "logged"
    assert (
        model_reason in alert["message"] and "INFERWATCH_MAX_MODELS_PER_RUN=3" in alert["message"]
    )
    assert evaluate_and_deliver(settings, "run-1")["new"] == 0  # once per run

    # the documented remedy: raise the cap, replay the lines it quarantined
    monkeypatch.setenv("INFERWATCH_MAX_MODELS_PER_RUN", "10")
    replayed = replay(lake, batch_id="r1", user_hash_key=b"k", work_dir=tmp_path / "replay",
                      reason="too many distinct models")  # fmt: skip
    assert (replayed.lines_replayed, replayed.lines_loaded) == (refused_models, refused_models)


def _quarantine(lake: Lake) -> dict[tuple[str, int], str]:
    files = [lake.path(o.key) for o in lake.list("quarantine") if o.key.endswith(".parquet")]
    rows = pads.dataset(files, format="parquet").to_table().to_pylist()
    for row in rows:  # a quarantined line keeps its (scrubbed) text and the hash of it
        assert row["raw_line"] and row["raw_sha256"]
    return {(r["object_key"], r["line_number"]): r["reason"] for r in rows}

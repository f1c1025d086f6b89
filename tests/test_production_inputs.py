"""Production inputs end to end on a tiny lake: empty objects, over-long lines, invalid UTF-8
and cut gzip reported per object; a quarantine replay after a fix; a raw object deleted after
ingest; compaction that changes no figure and keeps per-object replacement.

The steps run as the DAG's tasks call them (tests/pipeline_steps.py), with real DuckDB, dbt
and Great Expectations. Tests run in file order on one lake, as an operator would act.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import zlib
from datetime import UTC, datetime

import duckdb
import pytest

from inferwatch import pipeline
from inferwatch.config import Settings
from inferwatch.lake import Lake
from pipeline_steps import run_steps

CAP = 400  # INFERWATCH_MAX_LINE_BYTES during the first ingest
P = "raw/p/"


def event(event_id: str, ts: str, **extra) -> str:
    fields = {"model": "fraud_detector", "model_version": "v3", "endpoint": "/score"}
    return json.dumps(
        {"event_id": event_id, "timestamp": ts, **fields, "latency_ms": 20.0, **extra}
    )


def long_event(event_id: str) -> str:
    return event(event_id, "2025-05-21T10:00:00Z", note="x" * (CAP + 100))


CUT_EVENTS = [event(f"cut-{i}", f"2025-05-22T{i % 24:02d}:00:00Z", pad="y" * (i % 50))
              for i in range(3000)]  # fmt: skip
CUT_BLOB = gzip.compress(("\n".join(CUT_EVENTS) + "\n").encode())
CUT_BLOB = CUT_BLOB[: len(CUT_BLOB) * 3 // 5]

OBJECTS = {
    "ok.jsonl": "\n".join(event(f"ok-{i}", f"2025-05-20T0{i}:00:00Z") for i in range(5)).encode()
    + b"\n",
    "empty.jsonl": b"",
    "long.jsonl": "\n".join(
        [
            event("long-0", "2025-05-21T09:00:00Z"),
            long_event("long-1"),
            "",
            event("long-2", "2025-05-21T09:30:00Z"),
            long_event("long-3"),
            event("long-4", "2025-05-21T11:00:00Z"),
        ]
    ).encode()
    + b"\n",  # fmt: skip
    "utf8.jsonl": event("u-0", "2025-05-20T12:00:00Z").encode()
    + b"\n"
    + b'{"timestamp": 1747752720, "model": "m\xff\xfe"}\n{bad\n'
    + event("u-1", "2025-05-20T13:00:00Z").encode()
    + b"\n",
    "cut.jsonl.gz": CUT_BLOB,
    "allbad.jsonl": b"[1]\n[2]\n",
}
#: INFERWATCH_MAX_OBJECT_BYTES for the whole module (README: Limits): one object is over it.
MAX_OBJECT = max(len(data) for data in OBJECTS.values()) + 1
OBJECTS["huge.jsonl"] = b"\n".join(e.encode() for e in CUT_EVENTS[: MAX_OBJECT // 100]) + b"\n"
assert len(OBJECTS["huge.jsonl"]) > MAX_OBJECT


def cut_expectation() -> tuple[int, int, int]:
    """(read, loaded, quarantined) of the cut object, from Python's own zlib and json."""
    text = zlib.decompressobj(wbits=31).decompress(CUT_BLOB)
    lines = text.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    loaded = 0
    for line in lines:
        with contextlib.suppress(ValueError):
            loaded += isinstance(json.loads(line), dict)
    return len(lines), loaded, len(lines) - loaded


@pytest.fixture(scope="module")
def lake_and_settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("production-inputs")
    lake = Lake(str(root / "lake"))
    for name, data in OBJECTS.items():
        lake.write_bytes(P + name, data)
    # Bad lines are the point here: the gate's quarantine ceilings must not stop the run.
    thresholds = {"quarantine_share_ceiling": 0.9, "object_quarantine_share_ceiling": 1.0,
                  "model_quarantine_share_ceiling": 1.0}  # fmt: skip
    settings = Settings.from_env({**os.environ, "INFERWATCH_LAKE_URL": lake.url,
                                  "INFERWATCH_DATA_DIR": str(root / "state"),
                                  "INFERWATCH_THRESHOLDS": json.dumps(thresholds)})  # fmt: skip
    os.environ["INFERWATCH_MAX_LINE_BYTES"] = str(CAP)
    os.environ["INFERWATCH_MAX_OBJECT_BYTES"] = str(MAX_OBJECT)
    try:
        run_steps(settings, lake, "first")
    finally:
        del os.environ["INFERWATCH_MAX_LINE_BYTES"]
    try:
        yield lake, settings
    finally:
        del os.environ["INFERWATCH_MAX_OBJECT_BYTES"]


def ops(settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.ops_path), read_only=True) as con:
        return con.sql(sql).fetchall()


def serving(settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        return con.sql(sql).fetchall()


def ingestion(settings) -> dict[str, tuple]:
    rows = ops(settings, "select object_key, status, lines_read, lines_loaded, lines_quarantined, "
                         "lines_blank, reconciles from mart_ingestion")  # fmt: skip
    return {key.removeprefix(P): tuple(rest) for key, *rest in rows}


def fingerprints(settings) -> dict[str, tuple]:
    """Whole-row hashes of what readers see: any changed value changes them. The build-time
    watermark of day-incremental marts is left out (test_incremental_equals_full says why)."""
    out = {}
    for table in ("fct_inferences", "mart_inference_hourly", "mart_errors_hourly"):
        columns = "* exclude (source_watermark)" if table.startswith("mart") else "*"
        out[table] = serving(
            settings,
            f"select count(*), sum(hash(t)::hugeint) from (select {columns} from {table}) t",
        )[0]
    for table in ("mart_ingestion", "fct_quarantine"):
        out[table] = ops(settings, f"select count(*), sum(hash(t)::hugeint) from {table} t")[0]
    return out


def lake_files(lake: Lake) -> set[str]:
    return {o.key for prefix in ("bronze", "quarantine") for o in lake.list(prefix)}


def test_every_object_gets_a_status_and_exact_counts(lake_and_settings):
    _, settings = lake_and_settings
    read, loaded, quarantined = cut_expectation()
    assert 0 < loaded < len(CUT_EVENTS)  # the cut kept a part, and lost a part
    assert ingestion(settings) == {
        # status, read, loaded, quarantined, blank, reconciles
        "ok.jsonl": ("loaded", 5, 5, 0, 0, True),
        "empty.jsonl": ("empty", 0, 0, 0, 0, True),
        "long.jsonl": ("loaded_with_quarantine", 6, 3, 2, 1, True),
        "utf8.jsonl": ("loaded_with_quarantine", 4, 2, 2, 0, True),
        "cut.jsonl.gz": ("truncated", read, loaded, quarantined, 0, True),
        "allbad.jsonl": ("all_quarantined", 2, 0, 2, 0, True),
        "huge.jsonl": ("too_large", 0, 0, 0, 0, True),  # over the object cap: never fetched
    }
    reasons = dict(ops(settings, "select object_key, status_reason from mart_ingestion"))
    assert reasons[P + "huge.jsonl"] == (
        f"object is {len(OBJECTS['huge.jsonl'])} bytes stored, over "
        "INFERWATCH_MAX_OBJECT_BYTES; not read"
    )
    assert reasons[P + "empty.jsonl"] == "object is 0 bytes"
    assert (
        reasons[P + "long.jsonl"]
        == f"2 lines quarantined, mostly: line too long (over {CAP} bytes)"
    )
    assert reasons[P + "cut.jsonl.gz"].startswith(f"gzip stream cut or corrupt after line {read}")
    assert reasons[P + "ok.jsonl"] is None
    assert serving(settings, "select count(*) from fct_inferences") == [(5 + 3 + 2 + loaded,)]


def test_each_rejected_line_is_listed_with_its_reason(lake_and_settings):
    _, settings = lake_and_settings
    sql = ("select object_key, line_number, reason, raw_line is null from fct_quarantine "
           "where object_key not like '%cut%' order by 1, 2")  # fmt: skip
    rows = ops(settings, sql)
    assert [(k.removeprefix(P), n, r, no_text) for k, n, r, no_text in rows] == [
        ("allbad.jsonl", 1, "not a JSON object", False),
        ("allbad.jsonl", 2, "not a JSON object", False),
        # an over-long line keeps only its hash (README, Governance: scrubbing it cannot be trusted)
        ("long.jsonl", 2, f"line too long (over {CAP} bytes)", True),
        ("long.jsonl", 5, f"line too long (over {CAP} bytes)", True),
        ("utf8.jsonl", 2, "line is not valid UTF-8", False),
        ("utf8.jsonl", 3, "invalid JSON", False),
    ]


def test_replay_after_raising_the_cap_loads_the_long_lines_exactly_once(lake_and_settings):
    lake, settings = lake_and_settings
    before = serving(settings, "select count(*) from fct_inferences")[0][0]
    report = pipeline.replay_quarantine(settings, lake, "replay-1", reason="line too long")
    counts = ("lines_replayed", "lines_loaded", "lines_still_quarantined")
    assert [report[name] for name in counts] == [2, 2, 0]
    assert report["objects_changed"] == [P + "long.jsonl"] and report["days"] == ["2025-05-21"]
    run_steps(settings, lake, "after-replay")
    assert ingestion(settings)["long.jsonl"] == ("loaded", 6, 5, 0, 1, True)
    assert ops(settings, "select object_key from mart_ingestion where replayed") == [
        (P + "long.jsonl",)
    ]
    assert serving(settings, "select count(*) from fct_inferences")[0][0] == before + 2
    assert serving(settings, "select event_id, count(*) from fct_inferences where event_id like "
                             "'long-%' group by 1 order by 1") == [
        (f"long-{i}", 1) for i in range(5)
    ]  # fmt: skip
    assert serving(settings, "select sum(requests)::int from mart_inference_hourly "
                             "where hour::date = '2025-05-21'") == [(5,)]  # fmt: skip
    assert ops(settings, "select count(*) from fct_quarantine where object_key like '%long%'") == [
        (0,)
    ]


def test_a_second_replay_adds_nothing(lake_and_settings):
    lake, settings = lake_and_settings
    files = lake_files(lake)
    report = pipeline.replay_quarantine(settings, lake, "replay-2")  # every reason this time
    # the UTF-8, JSON and array lines are judged again, the same way: nothing is written
    assert report["objects_changed"] == [] and report["lines_loaded"] == 0
    assert report["lines_still_quarantined"] == report["lines_replayed"] > 0
    assert lake_files(lake) == files  # so no figure can move either


def test_compaction_changes_no_figure(lake_and_settings):
    lake, settings = lake_and_settings
    marts = fingerprints(settings)
    batch_files = {k for k in lake_files(lake) if "/batch=" in k}
    assert len(batch_files) == 6  # events, quarantine and manifest of 1 ingest and 1 replay
    report = pipeline.compact(settings, lake, "compact-1")
    files = lake_files(lake)
    assert not {k for k in files if "/batch=" in k}
    assert report["files_before"] == len(batch_files)
    assert sorted(k.split("/")[-2] for k in files if k.startswith("bronze/events/")) == [
        "day=2025-05-20", "day=2025-05-21", "day=2025-05-22"]  # fmt: skip
    month = "month=" + report["compaction_id"][:4] + "-" + report["compaction_id"][4:6]
    logs = ("quarantine/", "bronze/manifest/")
    assert {k.split("/")[-2] for k in files if k.startswith(logs)} == {month}
    # the strongest check: every mart rebuilt from nothing but the compacted files
    pipeline.transform(settings, lake, full_refresh=True)
    validation = pipeline.validate(settings, "rebuilt")
    pipeline.publish(settings, "rebuilt", validation, {}, datetime.now(UTC).isoformat())
    assert fingerprints(settings) == marts


def test_deleted_and_rewritten_objects_after_compaction(lake_and_settings, caplog):
    """A deleted raw object keeps its history and is reported; a rewritten one still replaces
    its rows (now spread over compacted files)."""
    lake, settings = lake_and_settings
    hours_of_ok = (
        "select sum(requests)::int from mart_inference_hourly where hour < '2025-05-20 05:00'"
    )
    assert serving(settings, hours_of_ok) == [(5,)]
    lake.remove(P + "ok.jsonl")
    # the producer re-uploads utf8.jsonl with its two bad lines fixed (same events, one more)
    fixed = [event(f"u-{i}", f"2025-05-20T1{2 + i}:00:00Z") for i in range(3)]
    lake.write_bytes(P + "utf8.jsonl", ("\n".join(fixed) + "\n").encode())
    with caplog.at_level(logging.WARNING, logger="inferwatch.ingest.missing"):
        run_steps(settings, lake, "after-delete")
    assert f"{P}ok.jsonl: ingested earlier, now gone from the lake" in caplog.text

    assert ingestion(settings)["ok.jsonl"] == ("missing_from_lake", 5, 5, 0, 0, True)
    ((present, why),) = ops(settings, "select raw_present, status_reason from mart_ingestion "
                                      f"where object_key = '{P}ok.jsonl'")  # fmt: skip
    assert not present and why.startswith("raw object gone from the lake since ")
    assert serving(settings, "select count(*) from fct_inferences where event_id like 'ok-%'") == [
        (5,)
    ]
    assert serving(settings, hours_of_ok) == [(5,)]
    assert pipeline.discover(lake) == []  # not re-ingested, not an error

    assert ingestion(settings)["utf8.jsonl"] == ("loaded", 3, 3, 0, 0, True)
    assert ops(settings, "select count(*) from fct_quarantine where object_key like '%utf8%'") == [
        (0,)
    ]
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        current = con.sql("select event_id, line_number from stg_inference_events "
                          "where object_key like '%utf8%' order by 1").fetchall()  # fmt: skip
    assert current == [("u-0", 1), ("u-1", 2), ("u-2", 3)]  # the old version's rows are gone
    assert serving(settings, "select count(*) from fct_inferences where event_id like 'u-%'") == [
        (3,)
    ]


def test_a_rewrite_that_drops_events_removes_them_from_facts_and_marts(lake_and_settings):
    """The producer re-uploads utf8.jsonl with only its first event: the two others leave
    fct_inferences and every hourly mart in the incremental run, exactly as a full rebuild."""
    lake, settings = lake_and_settings
    u_hours = "select sum(requests)::int from mart_inference_hourly where hour between " \
              "'2025-05-20 12:00' and '2025-05-20 14:00'"  # fmt: skip
    assert serving(settings, u_hours) == [(3,)]
    lake.write_bytes(P + "utf8.jsonl", (event("u-0", "2025-05-20T12:00:00Z") + "\n").encode())
    run_steps(settings, lake, "after-shrink")

    assert serving(settings, "select event_id from fct_inferences where event_id like 'u-%'") == [
        ("u-0",)
    ]
    assert serving(settings, u_hours) == [(1,)]
    assert ingestion(settings)["utf8.jsonl"][:4] == ("loaded", 1, 1, 0)
    (duplicates,) = ops(settings, "select min(lines_duplicate) from mart_ingestion")[0]
    assert duplicates >= 0
    incremental = fingerprints(settings)
    pipeline.transform(settings, lake, full_refresh=True)
    validation = pipeline.validate(settings, "rebuilt-after-shrink")
    now = datetime.now(UTC).isoformat()
    pipeline.publish(settings, "rebuilt-after-shrink", validation, {}, now)
    assert fingerprints(settings) == incremental

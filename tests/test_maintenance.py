"""Compaction and retention on bronze files, without dbt (the marts side is in
test_production_inputs.py): row counts, what goes, what stays, and interrupted swaps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from inferwatch.ingest.bronze import ingest
from inferwatch.ingest.manifest import discover
from inferwatch.ingest.missing import LAKE_STATE_PREFIX
from inferwatch.lake import Lake
from inferwatch.maintain import journal
from inferwatch.maintain.compact import compact
from inferwatch.maintain.retention import RetentionPolicy, apply_retention


def lines(day: str, count: int, bad: int = 0) -> bytes:
    good = [json.dumps({"event_id": f"{day}-{i}", "timestamp": f"{day}T{i % 24:02d}:00:00Z",
                        "model": "m"}) for i in range(count)]  # fmt: skip
    return ("\n".join(good + ["{bad"] * bad) + "\n").encode()


def ingest_all(lake: Lake, tmp_path, batch: str) -> None:
    ingest(lake, discover(lake), batch_id=batch, user_hash_key=b"k", work_dir=tmp_path / "w")


def rows(lake: Lake, prefix: str) -> int:
    files = [lake.path(o.key) for o in lake.list(prefix) if o.key.endswith(".parquet")]
    return duckdb.sql(
        f"select count(*) from read_parquet({files!r}, union_by_name=true)"
    ).fetchone()[0]


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bytes("raw/a.jsonl", lines("2025-05-01", 10, bad=1))
    lake.write_bytes("raw/b.jsonl", lines("2025-05-02", 5))
    ingest_all(lake, tmp_path, "b1")
    lake.write_bytes("raw/c.jsonl", lines("2025-05-02", 7) + lines("2025-05-20", 3))
    ingest_all(lake, tmp_path, "b2")
    return lake


def test_compaction_keeps_every_row_and_merges_later_batches_into_their_partition(lake, tmp_path):
    counts = {p: rows(lake, p) for p in ("bronze/events", "quarantine", "bronze/manifest")}
    assert counts == {"bronze/events": 25, "quarantine": 1, "bronze/manifest": 3}
    report = compact(lake, compaction_id="c1", work_dir=tmp_path / "w")
    assert report.files_before == 6 and report.rows == 29
    assert {p: rows(lake, p) for p in counts} == counts
    days = sorted(o.key.split("/")[2] for o in lake.list("bronze/events"))
    assert days == ["day=2025-05-01", "day=2025-05-02", "day=2025-05-20"]

    lake.write_bytes("raw/d.jsonl", lines("2025-05-02", 4))  # late data for a compacted day
    ingest_all(lake, tmp_path, "b3")
    compact(lake, compaction_id="c2", work_dir=tmp_path / "w")
    days = sorted(o.key.split("/")[2] for o in lake.list("bronze/events"))
    assert days == ["day=2025-05-01", "day=2025-05-02", "day=2025-05-20"]  # still one file a day
    assert rows(lake, "bronze/events") == 29
    assert compact(lake, compaction_id="c3", work_dir=tmp_path / "w").files_before == 0


@pytest.mark.parametrize("landed", [True, False])
def test_an_interrupted_swap_is_finished_or_undone(tmp_path, landed):
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bytes("bronze/events/batch=1/0.parquet", b"old-1")
    lake.write_bytes("bronze/events/batch=2/0.parquet", b"old-2")
    inputs = ["bronze/events/batch=1/0.parquet", "bronze/events/batch=2/0.parquet"]
    outputs = ["bronze/events/day=x/part-c.parquet", "bronze/events/day=y/part-c.parquet"]
    journal.begin(lake, "c", outputs, inputs)
    lake.write_bytes(outputs[0], b"new")  # the crash came after one output (or all of them)
    if landed:
        lake.write_bytes(outputs[1], b"new")
    assert journal.recover(lake) == 1
    left = {o.key for o in lake.list("bronze")}
    assert left == (set(outputs) if landed else set(inputs))  # never both, never neither


def test_retention_deletes_only_what_the_policy_says_and_reports_it(lake, tmp_path):
    today = datetime.now(UTC).date() + timedelta(days=10)
    lake.write_bytes("raw/new.jsonl", lines("2025-05-21", 2))  # listed, never ingested
    # bronze: keep the days from 2025-05-10 on; raw: ingested 10 days before `today`
    policy = RetentionPolicy(bronze_days=(today - datetime(2025, 5, 10).date()).days,
                             raw_days=5)  # fmt: skip
    dry = apply_retention(lake, policy, run_id="r0", work_dir=tmp_path / "w", today=today)
    assert dry.dry_run and dry.raw == {} and dry.bronze == {}  # raw not enabled; not compacted
    assert rows(lake, "bronze/events") == 25

    compact(lake, compaction_id="c1", work_dir=tmp_path / "w")
    dry = apply_retention(lake, policy, run_id="r1", work_dir=tmp_path / "w", today=today)
    assert sorted(k.split("/")[2] for k in dry.bronze) == ["day=2025-05-01", "day=2025-05-02"]
    assert rows(lake, "bronze/events") == 25  # a dry run deletes nothing

    enabled = RetentionPolicy(bronze_days=policy.bronze_days, raw_days=5, raw_enabled=True)
    done = apply_retention(lake, enabled, run_id="r2", work_dir=tmp_path / "w", dry_run=False,
                           today=today)  # fmt: skip
    assert done.bronze.keys() == dry.bronze.keys()
    assert rows(lake, "bronze/events") == 3  # only 2025-05-20 is young enough
    # a has a quarantined line (a replay needs it); new.jsonl was never ingested
    assert sorted(done.raw) == ["raw/b.jsonl", "raw/c.jsonl"]
    assert done.raw_kept == {"raw/a.jsonl": "has quarantined lines (replay needs the raw object)"}
    assert sorted(o.key for o in lake.list("raw")) == ["raw/a.jsonl", "raw/new.jsonl"]
    assert rows(lake, "bronze/manifest") == 3  # kept: expired objects are never ingested again
    assert [o.key for o in discover(lake)] == ["raw/new.jsonl"]
    state = [lake.path(o.key) for o in lake.list(LAKE_STATE_PREFIX)]
    recorded = duckdb.sql(f"select object_key, cause from read_parquet({state!r})").fetchall()
    assert sorted(recorded) == [
        ("raw/b.jsonl", "expired_by_retention"), ("raw/b.jsonl", "missing_from_lake"),
        ("raw/c.jsonl", "expired_by_retention"), ("raw/c.jsonl", "missing_from_lake"),
    ]  # fmt: skip


def test_missing_objects_replay_and_compaction_on_an_s3_lake(s3_endpoint, tmp_path, monkeypatch):
    """The same operations through a real S3 API server: nothing here is local-only."""
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing",
                 ).create_bucket(Bucket="maintenance")  # fmt: skip
    lake = Lake("s3://maintenance/lake", {
        "key": "testing", "secret": "testing",
        "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    })  # fmt: skip
    long_line = json.dumps({"event_id": "long", "timestamp": "2025-05-01T00:00:00Z",
                            "model": "m", "pad": "x" * 500})  # fmt: skip
    lake.write_bytes("raw/a.jsonl", lines("2025-05-01", 4) + long_line.encode() + b"\n")
    lake.write_bytes("raw/b.jsonl", lines("2025-05-02", 3))
    monkeypatch.setenv("INFERWATCH_MAX_LINE_BYTES", "300")
    ingest_all(lake, tmp_path, "b1")
    monkeypatch.delenv("INFERWATCH_MAX_LINE_BYTES")

    lake.remove("raw/b.jsonl")
    assert discover(lake) == []
    assert [o.key for o in lake.list(LAKE_STATE_PREFIX)] == [f"{LAKE_STATE_PREFIX}/missing.parquet"]

    from inferwatch.maintain.replay import replay

    first = replay(lake, batch_id="r1", user_hash_key=b"k", work_dir=tmp_path / "w")
    assert (first.lines_loaded, first.objects_changed) == (1, ["raw/a.jsonl"])
    assert (
        replay(lake, batch_id="r2", user_hash_key=b"k", work_dir=tmp_path / "w").objects_changed
        == []
    )

    report = compact(lake, compaction_id="c1", work_dir=tmp_path / "w")
    assert report.files_before == 6 and report.rows == 8 + 1 + 1 + 3  # events, quarantine, manifest
    assert not [o.key for o in lake.list("bronze") if "/batch=" in o.key]
    assert not list(lake.list(journal.JOURNAL_PREFIX))


def test_the_commands_are_documented_and_retention_defaults_to_a_dry_run(lake, tmp_path):
    from click.testing import CliRunner

    from inferwatch.cli import main

    runner = CliRunner()
    helps = {
        "replay-quarantine": "--reason",
        "compact": "Safe to interrupt",
        "retention": "--apply",
    }
    for command, words in helps.items():
        result = runner.invoke(main, [command, "--help"])
        assert result.exit_code == 0 and words in result.output.replace("\n", " ")
    compact(lake, compaction_id="c1", work_dir=tmp_path / "w")
    result = runner.invoke(main, ["retention", "--lake", lake.url, "--data-dir",
                                  str(tmp_path / "state"), "--bronze-days", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["dry_run"] and len(report["bronze"]) == 3  # every day is older than 0 days
    assert rows(lake, "bronze/events") == 25  # and nothing went


def test_replay_after_routing_a_producer_to_its_adapter_loads_each_record_once(tmp_path):
    """A SageMaker capture landed before INFERWATCH_PRODUCERS routed it: every record was
    quarantined (no timestamp, no model). Routed and replayed, each loads once, and the
    object's current bronze rows agree with its manifest counts."""
    from pathlib import Path

    from inferwatch.adapters import ProducerMap
    from inferwatch.ingest.manifest import current_rows, live_batches, read_manifest
    from inferwatch.maintain.replay import replay

    sample = Path(__file__).resolve().parents[1] / "plugins/inferwatch/adapters/samples"
    records = (sample / "sagemaker_capture.jsonl").read_bytes()
    lake = Lake(str(tmp_path / "lake"))
    key = "raw/sagemaker/endpoint/capture.jsonl"
    lake.write_bytes(key, records)
    ingest(lake, discover(lake), batch_id="b1", user_hash_key=b"k", work_dir=tmp_path / "w",
           producers=ProducerMap.from_mapping({}))  # fmt: skip
    before = current_rows(read_manifest(lake))[key]
    records_count = sum(1 for line in records.splitlines() if line.strip())
    assert (before["lines_loaded"], before["lines_quarantined"]) == (0, records_count)

    routed = ProducerMap.from_mapping({"raw/sagemaker/": "sagemaker_capture"})
    for batch in ("r1", "r2"):  # the second replay finds nothing left to do
        replay(lake, batch_id=batch, user_hash_key=b"k", work_dir=tmp_path / "w", producers=routed)
    manifest = read_manifest(lake)
    after = current_rows(manifest)[key]
    assert (after["batch_id"], after["base_batch_id"]) == ("r1", "b1")
    assert after["lines_read"] == after["lines_loaded"] + after["lines_quarantined"] + (
        after["lines_blank"] + after["lines_merged"]) == before["lines_read"]  # fmt: skip
    assert after["lines_loaded"] == records_count and after["lines_quarantined"] == 0
    live = sorted(b for k, b in live_batches(manifest) if k == key)
    assert live == ["b1", "r1"]
    files = [lake.path(o.key) for o in lake.list("bronze/events")]
    events = duckdb.sql(f"select batch_id, count(*), count(distinct line_number) from "
                        f"read_parquet({files!r}) group by 1 order by 1").fetchall()  # fmt: skip
    assert events == [("r1", records_count, records_count)]  # b1 had none; r2 wrote nothing


def test_an_object_deleted_between_listing_and_reading_is_skipped(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bytes("raw/a.jsonl", lines("2025-05-01", 3))
    lake.write_bytes("raw/b.jsonl", lines("2025-05-01", 2))
    listed = discover(lake)
    lake.remove("raw/b.jsonl")  # gone before ingest reads it
    report = ingest(lake, listed, batch_id="b1", user_hash_key=b"k", work_dir=tmp_path / "w")
    assert (report.objects, report.lines_loaded) == (1, 3)
    assert discover(lake) == []  # a was ingested; b is simply not there any more

"""Hour-grain incrementality: the hourly marts (and the daily marts merged from hourly partial
aggregates) built an hour at a time and in sub-hour batches, late and rewritten objects
included, equal one full rebuild; a run that brings one hour rebuilds that hour, not its day;
and a data dir built by the dbt project before hour grain upgrades in place."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from conftest import settings_for
from inferwatch import pipeline, transform
from inferwatch.ingest.manifest import discover
from inferwatch.lake import Lake
from inferwatch.simulate import simulate
from test_incremental_equals_full import assert_same, tables

#: The models whose work follows the hour, and what they read (dbt selection, upstream included).
HOUR_GRAIN = (
    "+mart_inference_hourly +mart_errors_hourly +mart_resource_usage_hourly "
    "+mart_latency_buckets_hourly +mart_latency_daily +mart_drift_daily "
    "+mart_repeated_inputs_daily +mart_client_usage_daily +mart_model_lineage"
    " +mart_fairness_daily +mart_model_performance_daily +mart_model_performance_class_daily"
)

#: The hourly partial aggregates the day-grain usage marts are merged from (issue 20): each
#: rebuilds only the hours new events touch.
HOURLY_PARTIALS = (
    "int_input_repeats_hourly",
    "int_client_usage_hourly",
    "int_client_users_hourly",
    "int_model_metadata_hourly",
)

#: The last commit whose dbt project rebuilt every touched day (before hour grain).
DAY_GRAIN_COMMIT = "2555661"

REPO = Path(__file__).resolve().parents[1]


def hour_of(key: str) -> str:
    """raw/<model>/YYYY/MM/DD/HH/part-n.jsonl → YYYY-MM-DD HH"""
    parts = key.split("/")
    return "-".join(parts[2:5]) + " " + parts[5]


def build(settings, lake, *, full_refresh: bool = False) -> None:
    transform.build(settings, lake, full_refresh=full_refresh, select=HOUR_GRAIN, data_tests=False)


def ingest(settings, lake, objects, run_id: str) -> None:
    pipeline.ingest(settings, lake, [o.__dict__ for o in objects], run_id)


def label_predictions_of(lake: Lake, warehouse: Path, hour: str) -> int:
    """A label object for 12 built predictions of `hour` (late ground truth): every third one
    wrong. Returns how many."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.sql(
            "select event_id, prediction from fct_inferences where prediction is not null "
            f"and strftime(event_ts, '%Y-%m-%d %H') = '{hour}' order by event_id limit 12"
        ).fetchall()
    lines = [
        json.dumps(
            {
                "event_id": event_id,
                "label": prediction if number % 3 else f"not-{prediction}",
                "labeled_at": "2025-05-02T02:00:00Z",
            }
        )
        for number, (event_id, prediction) in enumerate(rows)
    ]
    lake.write_bytes("labels/2025/05/02/part-0.jsonl", ("\n".join(lines) + "\n").encode())
    return len(rows)


def rewrite_shorter(lake: Lake, key: str, keep: int) -> None:
    """The object written again with only its first `keep` lines (a new version drops events)."""
    data = lake.read_bytes(key)
    zipped = key.endswith(".gz")
    lines = (gzip.decompress(data) if zipped else data).splitlines(keepends=True)
    kept = b"".join(lines[:keep])
    lake.write_bytes(key, gzip.compress(kept) if zipped else kept)


def plant_repeated_inputs(lake: Lake, hours: list[str]) -> None:
    """One more object per hour of the same few inputs sent again and again (the simulation
    repeats none in three hours): within an hour and across hours, in both key orders, by a few
    users, with ties in the counts and more inputs than the top 10 keeps."""
    base_key = next(o.key for o in lake.list("raw/support_llm/") if o.key.endswith(".jsonl"))
    base = json.loads(lake.read_bytes(base_key).splitlines()[0])
    for number, hour in enumerate(hours):
        day, hh = hour.split(" ")
        lines = []
        for item in range(14):
            features = {"prompt_chars": 100 + item, "language": "en", "channel": "web"}
            features["intent"] = ["billing", "other"][item % 2]
            for copy in range(1 + (item + number) % 3):
                event = base | {
                    "event_id": f"planted-{hour}-{item}-{copy}",
                    "timestamp": f"{day}T{hh}:{10 + item:02d}:{copy:02d}.000Z",
                    "user_id": f"u-9{(item + copy) % 4:05d}",
                    "input_features": dict(reversed(features.items())) if copy % 2 else features,
                }
                lines.append(json.dumps(event))
        key = f"raw/support_llm/{day.replace('-', '/')}/{hh}/part-7.jsonl"
        lake.write_bytes(key, ("\n".join(lines) + "\n").encode())


def watermarks_by_hour(warehouse: Path) -> dict[str, dict[str, set]]:
    """Per hourly table, its hours' watermarks (the build that wrote each hour's rows)."""
    hour_columns = {"mart_inference_hourly": "hour"} | dict.fromkeys(HOURLY_PARTIALS, "event_hour")
    out: dict[str, dict[str, set]] = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for table, column in hour_columns.items():
            rows = con.sql(
                f"select strftime({column}, '%Y-%m-%d %H'), source_watermark from {table}"
            ).fetchall()
            for hour, watermark in rows:
                out.setdefault(table, {}).setdefault(hour, set()).add(watermark)
    return out


def hour_watermarks(warehouse: Path, table: str) -> dict[str, set]:
    """One table's hours and their watermarks."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.sql(
            f"select strftime(hour, '%Y-%m-%d %H'), source_watermark from {table}"
        ).fetchall()
    out: dict[str, set] = {}
    for hour, watermark in rows:
        out.setdefault(hour, set()).add(watermark)
    return out


@pytest.fixture(scope="module")
def day_grain_project(tmp_path_factory) -> Path:
    """The dbt project as it was before hour grain, from git history (a full clone has it)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", DAY_GRAIN_COMMIT, "dbt_project"],
        capture_output=True,
    )
    if archive.returncode != 0:
        pytest.fail(
            f"the upgrade test needs commit {DAY_GRAIN_COMMIT} in this clone's history "
            f"(a shallow clone lacks it: `git fetch --unshallow`): {archive.stderr.decode()}"
        )
    root = tmp_path_factory.mktemp("day-grain-project")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as archived:
        archived.extractall(root, filter="data")
    return root / "dbt_project"


@pytest.fixture(scope="module")
def three_hours(tmp_path_factory, day_grain_project):
    """Three hours across midnight, built incrementally: hour 22 (one object held back), hour 23
    in two sub-hour batches (the second with hour 00, across midnight), the held-back object of
    hour 22 (late; watermarks recorded before and after it), then a rewrite of an object of
    hour 23 that drops most of its events. Then one full rebuild of the same lake.

    Beside it, a second data dir is built once by the dbt project before hour grain (after the
    first batch), and then, at the end, by this code (an upgrade in place)."""
    root = tmp_path_factory.mktemp("hour-grain")
    simulate(
        str(root / "lake"),
        truth_dir=root / "truth",
        start=datetime(2025, 5, 1, 22, tzinfo=UTC),
        end=datetime(2025, 5, 2, 1, tzinfo=UTC),
        events=900,
        seed=5,
        objects_per_hour=2,
    )
    lake = Lake(str(root / "lake"))
    hours = ["2025-05-01 22", "2025-05-01 23", "2025-05-02 00"]
    plant_repeated_inputs(lake, hours)
    objects = discover(lake)
    assert sorted({hour_of(o.key) for o in objects}) == hours
    first, second, third = ([o for o in objects if hour_of(o.key) == h] for h in hours)
    late = first[0]
    rewritten = second[0].key
    batches = [
        [o for o in first if o != late],
        [o for o in second if o.key.endswith("part-0.jsonl")],
        [o for o in second if not o.key.endswith("part-0.jsonl")] + third,
    ]
    incremental = settings_for(lake.url, root / "incremental")
    upgraded = settings_for(lake.url, root / "upgraded")
    for number, batch in enumerate(batches):
        assert batch, number
        ingest(incremental, lake, batch, f"batch-{number}")
        build(incremental, lake)
        if number == 0:  # the data dir of the code before hour grain, on the same bronze
            with pytest.MonkeyPatch.context() as patched:
                patched.setattr(transform, "DBT_PROJECT_DIR", day_grain_project)
                build(upgraded, lake)
    before = watermarks_by_hour(incremental.warehouse_path)
    ingest(incremental, lake, [late], "late")
    build(incremental, lake)
    after = watermarks_by_hour(incremental.warehouse_path)
    # late ground truth for predictions of hour 22, built long before
    fairness_before = hour_watermarks(incremental.warehouse_path, "int_fairness_counts_hourly")
    assert label_predictions_of(lake, incremental.warehouse_path, hours[0]) == 12
    ingest(incremental, lake, discover(lake), "labels")
    build(incremental, lake)
    fairness_after = hour_watermarks(incremental.warehouse_path, "int_fairness_counts_hourly")
    rewrite_shorter(lake, rewritten, keep=3)
    ingest(incremental, lake, [o for o in discover(lake) if o.key == rewritten], "rewrite")
    build(incremental, lake)
    assert discover(lake) == []

    built = tables(incremental.warehouse_path)
    build(upgraded, lake)  # this code's first build of the day-grain data dir: the rest
    upgraded_tables = tables(upgraded.warehouse_path)
    # the full rebuild in the same data dir: dbt's parse of the project is reused
    build(incremental, lake, full_refresh=True)
    return {
        "incremental": built,
        "upgraded": upgraded_tables,
        "full": tables(incremental.warehouse_path),
        "before": before,
        "after": after,
        "hour_of_late": hour_of(late.key),
        "fairness_before": fairness_before,
        "fairness_after": fairness_after,
        "labelled_hour": hours[0],
    }


def test_hour_and_sub_hour_batches_equal_full_rebuild(three_hours):
    incremental, rebuilt = three_hours["incremental"], three_hours["full"]
    assert set(incremental) >= {
        "fct_inferences",
        "mart_inference_hourly",
        "mart_errors_hourly",
        "mart_resource_usage_hourly",
        "mart_latency_buckets_hourly",
        "mart_latency_daily",
        "mart_feature_distribution_daily",
        "mart_drift_daily",
        "mart_repeated_inputs_daily",
        "mart_client_usage_daily",
        "mart_model_lineage",
        "mart_fairness_daily",
        "mart_model_performance_daily",
        "mart_model_performance_class_daily",
    }
    assert set(incremental) == set(rebuilt)
    for name in incremental:
        assert len(incremental[name]) > 0, name
        assert_same(incremental[name], rebuilt[name], name)


@pytest.mark.parametrize("table", ["mart_inference_hourly", *HOURLY_PARTIALS])
def test_an_hour_of_new_events_rebuilds_only_that_hour(three_hours, table):
    before, after = three_hours["before"].get(table), three_hours["after"].get(table)
    assert before is not None, f"{table} was not built"
    touched = three_hours["hour_of_late"]
    assert set(before) == set(after) == {"2025-05-01 22", "2025-05-01 23", "2025-05-02 00"}
    # the touched hour's rows were rebuilt, with the new watermark ...
    assert len(after[touched]) == 1
    assert after[touched] != before[touched]
    # ... and every other hour, the other hour of the same day included, was left as it was
    for hour in set(before) - {touched}:
        assert after[hour] == before[hour], hour


def test_late_labels_recount_only_their_prediction_hours(three_hours):
    """Labels arriving for an hour already built recount that hour's partial aggregates (and so
    the figures of its day) and leave every other hour's as they were."""
    before, after = three_hours["fairness_before"], three_hours["fairness_after"]
    labelled = three_hours["labelled_hour"]
    assert set(before) == set(after) == {"2025-05-01 22", "2025-05-01 23", "2025-05-02 00"}
    assert len(after[labelled]) == 1 and after[labelled] != before[labelled]
    for hour in set(before) - {labelled}:
        assert after[hour] == before[hour], hour
    performance = three_hours["incremental"]["mart_model_performance_daily"]
    assert performance["labelled_predictions"].sum() >= 12


def test_a_day_grain_data_dir_upgrades_in_place(three_hours):
    """A data dir the dbt project before hour grain built (one hour), then built by this code
    (the rest, the late object and the rewrite included): its marts equal a fresh build."""
    upgraded, rebuilt = three_hours["upgraded"], three_hours["full"]
    assert set(upgraded) == set(rebuilt)
    for name in upgraded:
        assert len(upgraded[name]) > 0, name
        assert_same(upgraded[name], rebuilt[name], name)

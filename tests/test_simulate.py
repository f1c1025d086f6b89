"""The simulator's truth must agree with a plain re-read of the files it wrote.

The checks here read the lake back with nothing but ``zlib`` and ``json`` and apply the raw log
contract (v1) themselves, so a bug in the generator's bookkeeping shows up as a mismatch.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from inferwatch.simulate import MALFORMED_KINDS, TRUNCATED_LINE, _period, simulate
from raw_reader import BOM, Reread, decompressed, is_number, read_lines, reread

START = datetime(2025, 5, 12, tzinfo=UTC)
END = datetime(2025, 5, 14, tzinfo=UTC)
EVENTS = 20_000
KEY_PATTERN = re.compile(
    r"raw/(customer_churn|fraud_detector|support_llm)/\d{4}/\d{2}/\d{2}/\d{2}/part-\d+\.jsonl(\.gz)?"
)


# ---------------------------------------------------------------- fixtures
@dataclass
class Run:
    lake: Path
    truth: Path
    summary: dict
    reread: Reread

    def csv(self, name: str) -> list[dict[str, str]]:
        return read_csv(self.truth / name)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def run_simulator(root: Path, seed: int = 42, **options: Any) -> tuple[Path, Path, dict]:
    lake, truth = root / "lake", root / "truth"
    arguments = {"start": START, "end": END, "events": EVENTS, "seed": seed, **options}
    summary = simulate(str(lake), truth_dir=truth, **arguments)
    return lake, truth, summary


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    lake, truth, summary = run_simulator(tmp_path_factory.mktemp("first"))
    return Run(lake, truth, summary, reread(lake))


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- (1) counts agree
def reparsed_daily(result: Reread) -> dict[tuple, tuple[int, int, float]]:
    groups: dict[tuple, list] = defaultdict(lambda: [0, 0, []])
    for event in result.events.values():
        group = groups[event["name"], event["version"], event["when"].date().isoformat()]
        group[0] += 1
        group[1] += event["status"] == "error"
        group[2].append(event["obj"]["latency_ms"])
    return {
        key: (requests, errors, float(np.percentile(latencies, 95)))
        for key, (requests, errors, latencies) in groups.items()
    }


def truth_daily(truth: Path) -> dict[tuple, tuple[int, int, float]]:
    return {
        (r["model"], r["model_version"], r["day"]): (
            int(r["requests"]),
            int(r["errors"]),
            float(r["latency_p95_ms"]),
        )
        for r in read_csv(truth / "daily.csv")
    }


def reparsed_hourly(result: Reread) -> dict[tuple, tuple[int, int]]:
    groups: dict[tuple, list] = defaultdict(lambda: [0, 0])
    for event in result.events.values():
        hour = event["when"].strftime("%Y-%m-%d %H:00:00")
        group = groups[event["name"], event["version"], event["obj"]["endpoint"], hour]
        group[0] += 1
        group[1] += event["status"] == "error"
    return {key: tuple(value) for key, value in groups.items()}


def truth_hourly(truth: Path) -> dict[tuple, tuple[int, int]]:
    return {
        (r["model"], r["model_version"], r["endpoint"], r["hour"]): (
            int(r["requests"]),
            int(r["errors"]),
        )
        for r in read_csv(truth / "hourly.csv")
    }


def assert_same_daily(truth: dict, reparsed: dict) -> None:
    assert set(truth) == set(reparsed)
    for key, (requests, errors, p95) in reparsed.items():
        assert truth[key][:2] == (requests, errors), key
        assert math.isclose(truth[key][2], p95, rel_tol=1e-12), key


def test_daily_truth_equals_a_plain_reparse(run: Run) -> None:
    truth = truth_daily(run.truth)
    assert_same_daily(truth, reparsed_daily(run.reread))
    assert sum(v[0] for v in truth.values()) == run.summary["events_accepted"]
    # Nearly every generated event is accepted: the rest are malformed or were truncated away.
    assert 0.98 * EVENTS < run.summary["events_accepted"] < EVENTS


def test_hourly_truth_equals_a_plain_reparse(run: Run) -> None:
    truth = truth_hourly(run.truth)
    assert truth == reparsed_hourly(run.reread)
    assert sum(requests for requests, _ in truth.values()) == run.summary["events_accepted"]


# ---------------------------------------------------------------- (2) quarantine
DEFECTS = {
    "json_array": lambda v: isinstance(v, list),
    "json_number": lambda v: is_number(v),
    "missing_timestamp": lambda v: isinstance(v, dict) and "timestamp" not in v,
    "missing_model": lambda v: isinstance(v, dict) and "model" not in v,
    "bad_timestamp": lambda v: v["timestamp"] == "yesterday",
    "confidence_out_of_range": lambda v: v["confidence"] == 1.7,
    "negative_latency": lambda v: v["latency_ms"] == -5,
    "latency_not_number": lambda v: v["latency_ms"] == "fast",
    "negative_retry_count": lambda v: v["retry_count"] == -1,
    "bad_status": lambda v: v["status"] == "maybe",
    "input_features_not_object": lambda v: isinstance(v["input_features"], str),
}


def test_malformed_truth_is_exactly_the_lines_that_fail_the_contract(run: Run) -> None:
    truth = {(r["object_key"], int(r["line_number"])): r["kind"] for r in run.csv("malformed.csv")}
    assert set(truth) == set(run.reread.rejected)
    for where, kind in truth.items():
        line = run.reread.rejected[where]
        if kind in ("not_json", TRUNCATED_LINE):
            with pytest.raises(ValueError):
                json.loads(line)
        else:
            assert DEFECTS[kind](json.loads(line)), (where, kind, line)
    counts = Counter(truth.values())
    assert set(counts) == {*MALFORMED_KINDS, TRUNCATED_LINE}
    assert counts[TRUNCATED_LINE] == 1
    assert 0.003 * EVENTS < len(truth) < 0.01 * EVENTS  # about 0.5%
    assert counts == Counter(run.summary["malformed_by_kind"])


# ---------------------------------------------------------------- (3) objects reconcile
def truth_objects(truth: Path) -> dict[str, tuple[int, ...]]:
    columns = ("lines_read", "lines_blank", "lines_malformed", "lines_valid")
    return {
        r["object_key"]: tuple(int(r[c]) for c in columns) for r in read_csv(truth / "objects.csv")
    }


def test_objects_truth_reconciles_with_the_files(run: Run) -> None:
    truth = truth_objects(run.truth)
    assert truth == run.reread.objects
    for key, (read, blank, malformed, valid) in truth.items():
        assert KEY_PATTERN.fullmatch(key), key
        assert read == blank + malformed + valid > 0, key
    assert len(truth) == run.summary["objects"] == 3 * 48


@pytest.mark.parametrize(
    ("events", "hours", "parts"),
    [(4000, 3, 4), (300, 1, 1), (0, 2, 1)],
    ids=["several-parts", "one-hour", "no-events"],
)
def test_small_runs_agree_too(tmp_path: Path, events: int, hours: int, parts: int) -> None:
    end = START + timedelta(hours=hours)
    lake, truth, summary = run_simulator(tmp_path, events=events, end=end, objects_per_hour=parts)
    result = reread(lake)
    assert_same_daily(truth_daily(truth), reparsed_daily(result))
    assert truth_hourly(truth) == reparsed_hourly(result)
    assert truth_objects(truth) == result.objects
    malformed = {
        (r["object_key"], int(r["line_number"])) for r in read_csv(truth / "malformed.csv")
    }
    assert malformed == set(result.rejected)
    assert len(result.objects) == summary["objects"] <= 3 * hours * parts
    if events:
        parts_seen = {re.search(r"part-(\d+)", key).group(1) for key in result.objects}
        assert parts_seen == {str(p) for p in range(parts)}


# ---------------------------------------------------------------- (4) determinism
def test_same_seed_same_bytes_other_seed_other_bytes(run: Run, tmp_path: Path) -> None:
    lake, truth, summary = run_simulator(tmp_path / "again")
    first = tree(run.lake)
    assert len(first) > 3 * 48  # raw objects plus references and registry entries
    assert tree(lake) == first
    assert tree(truth) == tree(run.truth)
    assert summary == run.summary

    other_lake, _, _ = run_simulator(tmp_path / "other", seed=7)
    other = tree(other_lake)
    raw = [key for key in first if key.startswith("raw/") and key in other]
    assert raw and all(first[key] != other[key] for key in raw)


# ---------------------------------------------------------------- (5) incidents and variety
def incident(run: Run, kind: str) -> dict:
    [found] = [i for i in run.summary["incidents"] if i["kind"] == kind]
    return found


def within(event: dict, window: dict) -> bool:
    start = datetime.fromisoformat(window["start"])
    return start <= event["when"] < datetime.fromisoformat(window["end"])


def events_of(run: Run, model: str) -> list[dict]:
    return [e for e in run.reread.events.values() if e["name"] == model]


def test_error_burst(run: Run) -> None:
    window = incident(run, "error_burst")
    assert datetime.fromisoformat(window["end"]) - datetime.fromisoformat(window["start"]) in (
        timedelta(hours=2),
        timedelta(hours=3),
    )
    inside, outside = [], []
    for event in events_of(run, window["model"]):
        (inside if within(event, window) else outside).append(event["status"] == "error")
    assert 0.2 < np.mean(inside) < 0.4
    assert np.mean(outside) < 0.05


def test_latency_spike(run: Run) -> None:
    window = incident(run, "latency_spike")
    inside, outside = [], []
    for event in events_of(run, window["model"]):
        if event["status"] == "ok":
            target = inside if within(event, window) else outside
            target.append(event["obj"]["latency_ms"])
    assert len(inside) > 50
    assert 3.5 < median(inside) / median(outside) < 7


def test_usage_spike(run: Run) -> None:
    window = incident(run, "usage_spike")
    start = datetime.fromisoformat(window["start"])
    per_hour = Counter(
        e["when"].replace(minute=0, second=0, microsecond=0) for e in events_of(run, "support_llm")
    )
    neighbours = [per_hour[start - timedelta(hours=1)], per_hour[start + timedelta(hours=1)]]
    assert per_hour[start] > 2.5 * np.mean(neighbours)


def test_feature_drift(run: Run) -> None:
    window = incident(run, "feature_drift")
    before, after = [], []
    for event in events_of(run, "customer_churn"):
        (after if within(event, window) else before).append(event["obj"]["input_features"])
    charges = [np.mean([f["monthly_charges"] for f in side]) for side in (before, after)]
    premium = [np.mean([f["plan"] == "premium" for f in side]) for side in (before, after)]
    assert 15 < charges[1] - charges[0] < 25  # ~1 std (20)
    assert 0.12 < premium[1] - premium[0] < 0.28  # 15% -> 35%
    reference = pq.read_table(run.lake / "reference/customer_churn/v2/reference.parquet")
    assert abs(np.mean(reference["monthly_charges"].to_numpy()) - charges[0]) < 3


def test_canary_rollout(run: Run) -> None:
    [deployment] = run.summary["deployments"]
    canary_day = datetime.fromisoformat(deployment["canary_start"]).date()
    share: dict[str, list[bool]] = defaultdict(list)
    for event in events_of(run, "customer_churn"):
        day = event["when"].date()
        phase = "canary" if day == canary_day else ("after" if day > canary_day else "before")
        share[phase].append(event["version"] == "v2")
    assert 0.05 < np.mean(share["canary"]) < 0.15
    assert np.mean(share["after"]) > 0.88
    assert not any(share["before"])


def test_duplicates_are_counted_once(run: Run) -> None:
    seen_twice = [key for key, count in run.reread.sightings.items() if count > 1]
    assert len(seen_twice) == run.summary["duplicates"] == 50
    assert all(count <= 2 for count in run.reread.sightings.values())
    copies = defaultdict(set)
    for row in run.csv("duplicates.csv"):
        copies[row["event_id"]].add(row["object_key"])
    assert set(copies) == set(seen_twice)
    assert all(len(keys) == 2 for keys in copies.values())  # two different objects
    assert all(len(run.reread.texts[key]) == 1 for key in seen_twice)  # identical lines


def test_object_forms(run: Run) -> None:
    raw = sorted(p for p in (run.lake / "raw").rglob("*") if p.is_file())
    contents = {p.relative_to(run.lake).as_posix(): decompressed(p) for p in raw}
    truncated = [key for key, (_, whole) in contents.items() if not whole]
    assert truncated == [run.summary["truncated_object"]["key"]]
    with_bom = sorted(key for key, (data, _) in contents.items() if data.startswith(BOM))
    assert with_bom == run.summary["objects_with_bom"] and 1 <= len(with_bom) <= 2
    assert 0.3 < sum(p.name.endswith(".gz") for p in raw) / len(raw) < 0.7
    assert any(b"\r\n" in data for data, _ in contents.values())
    assert any(not data.endswith(b"\n") for data, whole in contents.values() if whole)
    blanks = {line for p in raw for line in read_lines(p) if not line.strip()}
    assert "" in blanks and any(blanks - {""})


TIMESTAMP_SPELLINGS = {
    "iso_z": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"),
    "iso_fraction": re.compile(r".*T\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d)"),
    "offset_plus": re.compile(r".*\+0[25]:[03]0"),
    "offset_minus": re.compile(r".*-05:00"),
}


def test_field_variety_and_pii(run: Run) -> None:
    events = list(run.reread.events.values())
    stamps = [e["obj"]["timestamp"] for e in events]
    texts = [s for s in stamps if isinstance(s, str)]
    for name, pattern in TIMESTAMP_SPELLINGS.items():
        assert any(pattern.fullmatch(s) for s in texts), name
    numbers = [s for s in stamps if not isinstance(s, str)]
    assert any(isinstance(s, float) for s in numbers)  # epoch seconds with a fraction
    assert any(isinstance(s, int) and s < 1e11 for s in numbers)  # epoch seconds
    assert any(isinstance(s, int) and s >= 1e11 for s in numbers)  # epoch milliseconds

    objs = [e["obj"] for e in events]
    no_event_id = sum("event_id" not in o for o in objs) / len(objs)
    assert 0.03 < no_event_id < 0.07
    assert any(o["model"] == "customer_churn_v2" and "model_version" not in o for o in objs)
    assert any("status" not in o and "error" in o for o in objs)
    assert any("trace_id" in o for o in objs)  # an unknown field
    assert {o["error"]["type"] for o in objs if "error" in o} == {
        "invalid_input",
        "timeout",
        "model_error",
    }
    llm = [o for o in objs if o["model"] == "support_llm"]
    assert all({"prompt_tokens", "completion_tokens", "cost_usd"} <= set(o["usage"]) for o in llm)
    assert any(isinstance(o.get("prediction"), str) for o in llm)
    assert {o["client_id"] for o in objs} >= {"acme-corp", "globex", "initech"}
    assert sum("user_id" in o for o in objs) > 0.9 * len(objs)
    # PII the scrubber must find
    assert any("email" in o["input_features"] for o in objs)
    assert any(re.search(r"\+1-202-555-\d{4}", json.dumps(o["input_features"])) for o in objs)
    assert any("@" in o["error"]["message"] for o in objs if "error" in o)
    assert any("ip" in o.get("geo", {}) for o in objs)
    assert any("gpu_util_pct" in o.get("resources", {}) for o in objs)
    assert any("git_commit" in o.get("model_metadata", {}) for o in objs)


def test_reference_and_registry(run: Run) -> None:
    expected = {
        ("customer_churn", "v1"): {"age", "tenure_months", "monthly_charges", "plan", "country"},
        ("customer_churn", "v2"): {"age", "tenure_months", "monthly_charges", "plan", "country"},
        ("fraud_detector", "v3"): {"amount", "merchant_category", "country", "card_present"},
        ("support_llm", "v1"): {"prompt_chars", "language", "channel", "intent"},
    }
    for (model, version), features in expected.items():
        table = pq.read_table(run.lake / f"reference/{model}/{version}/reference.parquet")
        assert set(table.column_names) == features | {"prediction", "confidence"}
        assert table.num_rows == 5000
        confidence = table["confidence"].to_numpy()
        assert confidence.min() >= 0 and confidence.max() <= 1
        entry = json.loads((run.lake / f"registry/{model}/{version}.json").read_text())
        assert entry["model"] == model and entry["version"] == version
        assert re.fullmatch(r"[0-9a-f]{40}", entry["git_commit"])
        assert entry["training_metrics"] and entry["params"]
        lines_meta = [
            e["obj"]["model_metadata"]
            for e in run.reread.events.values()
            if (e["name"], e["version"]) == (model, version) and "model_metadata" in e["obj"]
        ]
        assert lines_meta and all(m["git_commit"] == entry["git_commit"] for m in lines_meta)


def test_default_period_is_two_weeks_to_the_previous_full_hour() -> None:
    start, end = _period(None, None)
    now = datetime.now(UTC)
    assert end.minute == end.second == end.microsecond == 0
    assert timedelta(0) <= now - end < timedelta(hours=1, seconds=5)
    assert end - start == timedelta(days=14)
    with pytest.raises(ValueError):
        _period(datetime(2025, 5, 12), None)  # naive datetimes are refused

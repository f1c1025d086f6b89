"""Batched requests: a line with ``batch`` is one request of len(batch) predictions.

A small lake of contract lines (single-prediction lines and batches of 3 and 2, plus one line
per quarantine reason of a batch) goes through ingest and dbt twice: first with its bronze
rewritten as bronze was before batches (no ``predictions``/``batch`` columns) and its warehouse
stripped of the new columns, as an upgraded deployment has them; then with batched lines added,
incrementally. Every expected figure is computed here with pandas from the lines written.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path

import duckdb
import jsonschema
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import settings_for
from inferwatch import pipeline
from inferwatch.ingest.manifest import EVENTS_PREFIX
from inferwatch.lake import Lake
from inferwatch.serve.superset_sync import load_assets

MODEL, VERSION = "batcher", "v1"
PLANS = ("basic", "pro", "premium")
LABELS = ("yes", "no")
DAY_OLD, DAY_NEW = datetime(2025, 5, 20, tzinfo=UTC), datetime(2025, 5, 21, tzinfo=UTC)
#: The marts a build here needs (everything upstream of them included).
MARTS = "+mart_inference_hourly +mart_client_usage_daily +mart_drift_daily +mart_model_lineage"
#: What a deployment had built before batches (the incremental tables that gain columns).
OLD_MARTS = "+mart_inference_hourly +mart_client_usage_daily"
RTOL = 1e-9


# ---------------------------------------------------------------- the lines
def _instance(n: int) -> dict:
    """Instance n's input features, prediction and confidence."""
    return {
        "input_features": {"age": 20 + (n * 7) % 50, "plan": PLANS[n % 3]},
        "prediction": LABELS[n % 2],
        "confidence": round(0.5 + (n % 10) / 20, 3),
    }


def _line(n: int, when: datetime, client: str, batch: int) -> dict:
    line = {
        "event_id": f"e{n}",
        "timestamp": (when + timedelta(minutes=n % 120)).isoformat(),
        "model": MODEL,
        "model_version": VERSION,
        "endpoint": "/score",
        "client_id": client,
        "latency_ms": 10 + n % 30,
    }
    if batch == 1:
        return {**line, **_instance(n)}
    return {**line, "batch": [_instance(n * 10 + i) for i in range(batch)]}


def old_lines() -> list[dict]:
    """Before batches: single-prediction lines only, on two days (the later batches arrive
    late on the second one only: the first keeps the marts it had)."""
    return [_line(n, DAY_OLD - timedelta(days=n % 2), f"c{n % 2}", 1) for n in range(40)]


def new_lines() -> list[dict]:
    """Batches of 3 and 2 among single lines (the second day, and late ones on the first)."""
    lines = []
    for n in range(100, 160):
        size = (1, 3, 1, 2)[n % 4]
        lines.append(_line(n, DAY_NEW if n < 150 else DAY_OLD, f"c{n % 3}", size))
    # PII inside an element is scrubbed like top-level input_features (the key is dropped)
    lines[1]["batch"][0]["input_features"]["email"] = "someone@example.com"
    return lines


#: One line per quarantine reason of a batch (README: The log contract, Batched requests).
BAD_BATCHES = {
    "batch is empty": {"batch": []},
    "wrong type: batch (array)": {"batch": {"prediction": "yes"}},
    "batch too large (over 1000 predictions)": {"batch": [{"prediction": "yes"}] * 1001},
    "batch with top-level input_features/prediction/confidence": {
        "batch": [{"prediction": "yes"}],
        "confidence": 0.5,
    },
    "wrong type: batch[1] (object)": {"batch": [{"prediction": "yes"}, "yes"]},
    "wrong type: batch[0].input_features (object)": {"batch": [{"input_features": [1, 2]}]},
    "out of range: batch[2].confidence (0..1)": {
        "batch": [{"confidence": 0.1}, {"confidence": 1}, {"confidence": 1.5}]
    },
    "wrong type: batch[1].confidence (number)": {
        "batch": [{"confidence": 0.1}, {"confidence": "high"}]
    },
    "invalid name: batch[1].input_features key (see the log contract's name rules)": {
        "batch": [{"input_features": {"age": 1}}, {"input_features": {"../x": 1}}]
    },
    "too many keys (over 1000 in batch[0].input_features)": {
        "batch": [{"input_features": {f"f{i}": i for i in range(1001)}}]
    },
    "too many keys (over 1000 in batch[0])": {"batch": [{f"k{i}": i for i in range(1001)}]},
}
#: Texts (not JSON objects): repeated keys cannot be written with json.dumps.
BAD_TEXTS = {
    "duplicate key in batch[0].input_features": '"batch": [{"input_features": {"a": 1, "a": 2}}]',
    "duplicate key in batch[1]": '"batch": [{}, {"prediction": "yes", "prediction": "no"}]',
}


def bad_lines() -> list[str]:
    head = {"timestamp": DAY_NEW.isoformat(), "model": MODEL, "model_version": VERSION}
    lines = [json.dumps({**head, "event_id": f"bad{i}", **fields})
             for i, fields in enumerate(BAD_BATCHES.values())]  # fmt: skip
    lines += [json.dumps({**head, "event_id": f"badtext{i}"})[:-1] + ", " + text + "}"
              for i, text in enumerate(BAD_TEXTS.values())]  # fmt: skip
    return lines


def write_object(lake_dir: Path, key: str, lines: list[str]) -> None:
    path = lake_dir / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_reference(lake_dir: Path) -> None:
    """A training reference for the model (its features and outputs), so that distributions
    and drift are computed for it."""
    rows = [_instance(n) for n in range(300)]
    frame = pd.DataFrame({
        "age": [r["input_features"]["age"] for r in rows],
        "plan": [r["input_features"]["plan"] for r in rows],
        "prediction": [r["prediction"] for r in rows],
        "confidence": [r["confidence"] for r in rows],
    })  # fmt: skip
    path = lake_dir / "reference" / MODEL / VERSION / "train.parquet"
    path.parent.mkdir(parents=True)
    frame.to_parquet(path, index=False)


# ---------------------------------------------------------------- the plain reading
def requests_frame(lines: list[dict]) -> pd.DataFrame:
    rows = []
    for line in lines:
        when = pd.Timestamp(line["timestamp"]).tz_convert("UTC").tz_localize(None)
        rows.append({"event_id": line["event_id"], "client_id": line["client_id"],
                     "hour": when.floor("h"), "event_day": when.normalize(),
                     "predictions": len(line.get("batch") or [line])})  # fmt: skip
    return pd.DataFrame(rows)


def predictions_frame(lines: list[dict]) -> pd.DataFrame:
    """One row per prediction: each batch element, or the line itself."""
    rows = []
    for line in lines:
        when = pd.Timestamp(line["timestamp"]).tz_convert("UTC").tz_localize(None)
        for element in line.get("batch") or [line]:
            features = element["input_features"]
            rows.append({"hour": when.floor("h"), "day": when.normalize(),
                         "age": features["age"], "plan": features["plan"],
                         "prediction": element["prediction"],
                         "confidence": element["confidence"]})  # fmt: skip
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the runs
def _strip_bronze(lake_dir: Path) -> None:
    """Rewrite every bronze events file as bronze was before batches."""
    for path in (lake_dir / EVENTS_PREFIX).rglob("*.parquet"):
        table = pq.read_table(path)
        new = [name for name in ("predictions", "batch_elements") if name in table.column_names]
        pq.write_table(table.drop_columns(new), path)


#: The columns a warehouse built before batches lacks (incremental tables keep their layout).
NEW_COLUMNS = {
    "fct_inferences": ("predictions", "batch_elements"),
    "mart_inference_hourly": ("predictions",),
    "mart_client_usage_daily": ("predictions",),
}


def _strip_warehouse(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse)) as con:
        for table, columns in NEW_COLUMNS.items():
            for column in columns:
                con.execute(f"alter table {table} drop column if exists {column}")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("batched")
    lake_dir = root / "lake"
    lake = Lake(str(lake_dir))
    settings = settings_for(lake.url, root / "data")
    write_reference(lake_dir)
    old = old_lines()
    write_object(lake_dir, "raw/batcher/2025/05/20/old.jsonl", [json.dumps(x) for x in old])
    pipeline.ingest(settings, lake, pipeline.discover(lake), "old")
    _strip_bronze(lake_dir)
    from inferwatch import transform

    transform.build(settings, lake, select=OLD_MARTS, data_tests=False)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        facts = con.sql("select * from fct_inferences").df()
    old_build = {"requests": len(facts), "predictions": facts.get("predictions", pd.Series()).sum()}
    _strip_warehouse(settings.warehouse_path)

    new = new_lines()
    write_object(lake_dir, "raw/batcher/2025/05/21/new.jsonl",
                 [json.dumps(x) for x in new] + bad_lines())  # fmt: skip
    report = pipeline.ingest(settings, lake, pipeline.discover(lake), "new")
    transform.build(settings, lake, select=MARTS, data_tests=False)
    return settings, old, old + new, old_build, report


def _query(settings, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.sql(sql).df()


# ---------------------------------------------------------------- the tests
def test_old_bronze_builds_with_one_prediction_per_request(built):
    _, old, _, old_build, _ = built
    assert old_build == {"requests": len(old), "predictions": len(old)}


def test_fct_inferences_counts_a_batch_as_one_request_of_its_predictions(built):
    settings, _, lines, _, _ = built
    want = requests_frame(lines).set_index("event_id")["predictions"].sort_index()
    got = _query(settings, "select event_id, predictions from fct_inferences")
    got = got.set_index("event_id")["predictions"].sort_index()
    assert (want == 3).any() and (want == 2).any() and (want == 1).any()
    pd.testing.assert_series_equal(got.astype("int64"), want.astype("int64"))


def test_hourly_and_client_usage_count_requests_and_predictions(built):
    settings, _, lines, _, _ = built
    frame = requests_frame(lines)
    for mart, keys in (("mart_inference_hourly", ["hour"]),
                       ("mart_client_usage_daily", ["client_id", "event_day"])):  # fmt: skip
        want = frame.groupby(keys).agg(requests=("event_id", "size"),
                                       predictions=("predictions", "sum"))  # fmt: skip
        got = _query(settings, f"select {', '.join(keys)}, requests, predictions from {mart}")
        got = got.set_index(keys).sort_index().astype("int64")
        pd.testing.assert_frame_equal(got, want.sort_index().astype("int64"), check_names=False)
        assert (got.predictions > got.requests).any(), mart
    lineage = _query(settings, "select requests, predictions from mart_model_lineage")
    assert lineage.values.tolist() == [[len(frame), frame.predictions.sum()]]


def test_mean_confidence_is_over_predictions(built):
    settings, _, lines, _, _ = built
    want = predictions_frame(lines).groupby("hour").confidence.mean().sort_index()
    got = _query(settings, "select hour, confidence_mean from mart_inference_hourly")
    got = got.set_index("hour").confidence_mean.sort_index()
    pd.testing.assert_series_equal(got, want, check_names=False, rtol=RTOL)


def test_distributions_count_every_batch_element(built):
    """Categories counted per prediction; numbers in the mart's own bins, counted by pandas."""
    settings, _, lines, _, _ = built
    frame = predictions_frame(lines)
    rows = _query(
        settings,
        f"""
        select day, feature, bin_kind, bin_label, bin_lower, bin_upper, production_count,
               production_total
        from mart_feature_distribution_daily where model = '{MODEL}'
    """,
    )
    for day, on_day in frame.groupby("day"):
        for feature in ("plan", "prediction"):
            got = rows[(rows.day == day) & (rows.feature == feature) & (rows.production_count > 0)]
            counts = dict(zip(got.bin_label, got.production_count, strict=True))
            assert counts == on_day[feature].value_counts().to_dict(), (day, feature)
        for feature in ("age", "confidence"):
            got = rows[(rows.day == day) & (rows.feature == feature) & (rows.bin_kind == "psi")]
            assert set(got.production_total) == {len(on_day)}
            for bin_row in got.itertuples():
                lower = -float("inf") if pd.isna(bin_row.bin_lower) else bin_row.bin_lower
                upper = float("inf") if pd.isna(bin_row.bin_upper) else bin_row.bin_upper
                inside = ((on_day[feature] > lower) & (on_day[feature] <= upper)).sum()
                assert bin_row.production_count == inside, (day, feature, bin_row.bin_label)
    drift = _query(settings, f"select distinct day from mart_drift_daily where model = '{MODEL}'")
    assert set(drift.day) == set(frame.day)


def test_every_batch_fault_is_quarantined_with_its_reason(built):
    settings, _, _, _, report = built
    assert report["lines_quarantined"] == len(BAD_BATCHES) + len(BAD_TEXTS)
    lake = Lake(settings.lake_url)
    reasons = set()
    for info in lake.list("quarantine/"):
        reasons |= set(pq.read_table(lake.path(info.key)).column("reason").to_pylist())
    assert reasons == set(BAD_BATCHES) | set(BAD_TEXTS)


def test_pii_in_a_batch_element_is_scrubbed(built):
    settings, _, _, _, _ = built
    features = _query(
        settings,
        """
        select element.input_features::varchar as features
        from (select unnest(batch_elements) as element from fct_inferences
              where batch_elements is not null)
    """,
    ).features
    assert len(features) > 0 and not features.str.contains("example.com|email").any()


def test_the_json_schema_agrees_on_batches():
    """The JSON Schema accepts the batched lines loaded here and refuses the quarantined ones
    (repeated keys aside: a JSON reader keeps one of them before the schema sees the line)."""
    schema = json.loads(files("inferwatch").joinpath("schemas/inference_log.v1.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    assert all(validator.is_valid(line) for line in new_lines())
    head = {"timestamp": DAY_NEW.isoformat(), "model": MODEL}
    for reason, fields in BAD_BATCHES.items():
        assert not validator.is_valid({**head, **fields}), reason


def test_the_overview_shows_predictions_beside_requests(built):
    """The Inference overview has a big number of predictions beside the one of requests; the
    metrics their datasets define give this lake's totals (the charts' SQL, without Superset)."""
    settings, _, lines, _, _ = built
    assets = load_assets()
    overview = assets["dashboards/inference_overview.yaml"]
    on_board = {n["meta"]["uuid"] for n in overview["position"].values()
                if isinstance(n, dict) and n.get("type") == "CHART"}  # fmt: skip
    datasets = {a["uuid"]: a for name, a in assets.items() if name.startswith("datasets/")}
    charts = [chart for name, chart in assets.items() if name.startswith("charts/")]
    big_numbers = [
        c for c in charts if c["uuid"] in on_board and c["viz_type"] == "big_number_total"
    ]
    totals = {}
    for chart in big_numbers:
        dataset = datasets[chart["dataset_uuid"]]
        (metric,) = [m for m in dataset["metrics"] if m["metric_name"] == chart["params"]["metric"]]
        sql = f"select {metric['expression']} as total from {dataset['table_name']}"
        totals[metric["metric_name"]] = _query(settings, sql).total[0]
    frame = requests_frame(lines)
    assert totals["sum_requests"] == len(frame)
    assert totals["sum_predictions"] == frame.predictions.sum() > len(frame)

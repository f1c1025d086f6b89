"""docs/onboarding.md ("Monitor your own model"), followed step by step on a fresh data dir and
lake, with a model the simulator does not know: `parcel_router`, a three-class classifier with
its own features (`weight_kg` numeric, `zone` categorical, `fragile` boolean).

The guide's steps: write the training sample (CSV here), register the version
(`inferwatch model register`), add its reference (`inferwatch model reference`), check both
(`inferwatch model check`), let logs and labels arrive, run the pipeline (the steps of
`inferwatch run`, called as the DAG's tasks call them: tests/pipeline_steps.py), check again.
Then every dashboard's published tables, filtered to the new model, are compared with figures
computed here from the lines this test wrote (pandas/numpy): the marts never supply an
expected value.

`parcel_router` v2 (traffic, never registered, no reference of its own) and `eta_scorer`
(traffic only) are what a team forgets: the Data quality dashboard's coverage table warns
about both, and not about v1.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from conftest import settings_for
from inferwatch.cli import main as cli
from inferwatch.config import SUPERSET_ASSETS_DIR
from inferwatch.lake import Lake
from pipeline_steps import run_steps

MODEL, OTHER = "parcel_router", "eta_scorer"
CLASSES = ("ground", "air", "sea")
ZONES = ("north", "south", "east", "west")
ENDPOINT = "/v1/route"
CLIENTS = ("shop-a", "shop-b", "warehouse-3")
START = datetime(2025, 5, 1, tzinfo=UTC)
HOURS = 48
REGISTRY = {
    "git_commit": "9f1c2e7a4b5d6e8f9a0b1c2d3e4f5a6b7c8d9e0f",
    "training_data_hash": "sha256:5e3b7c1d9a2f4e6b8c0d1e3f5a7b9c1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f1a3b",
    "deployed_at": "2025-04-30T12:00:00Z",
    "training_metrics": {"accuracy": 0.87, "f1_macro": 0.84},
}
FLOOR = 1e-4  # PSI's share floor (README: Marts)
TOP_K = 20


# ---------------------------------------------------------------- the team's own data
def features(rng: np.random.Generator, n: int, drifted: bool) -> pd.DataFrame:
    """Training distribution; `drifted` = heavier parcels and more western traffic."""
    weight = rng.lognormal(1.0 + (0.5 if drifted else 0.0), 0.5, n).round(2)
    zone_p = (0.2, 0.2, 0.2, 0.4) if drifted else (0.4, 0.3, 0.2, 0.1)
    return pd.DataFrame(
        {
            "weight_kg": weight,
            "zone": rng.choice(ZONES, n, p=zone_p),
            "fragile": rng.random(n) < 0.2,
        }
    )


def predict(rng: np.random.Generator, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    cls = np.where(frame["weight_kg"] > 6, 2, np.where(frame["fragile"], 1, 0))
    noisy = rng.random(len(frame)) < 0.1
    cls = np.where(noisy, rng.integers(0, 3, len(frame)), cls)
    return np.asarray(CLASSES)[cls], rng.uniform(0.4, 1.0, len(frame)).round(4)


def training_sample(path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    frame = features(rng, 3000, drifted=False)
    frame["predicted_mode"], frame["score"] = predict(rng, frame)
    frame.insert(0, "row_id", range(len(frame)))  # not a feature: left out with --features
    frame.to_csv(path, index=False)
    return frame


def production_events() -> pd.DataFrame:
    """One row per log line: v1 all along (drifted on day 2), v2 on day 2, eta_scorer."""
    rng = np.random.default_rng(12)
    parts = []
    for version, hours, per_hour in (("v1", range(HOURS), 50), ("v2", range(24, HOURS), 15)):
        for hour in hours:
            frame = features(rng, per_hour, drifted=hour >= 24)
            frame["prediction"], frame["confidence"] = predict(rng, frame)
            frame["model"], frame["model_version"], frame["hour"] = MODEL, version, hour
            parts.append(frame)
    events = pd.concat(parts, ignore_index=True)
    n = len(events)
    events["second"] = rng.integers(0, 3600, n)
    events["latency_ms"] = rng.lognormal(3.5, 0.6, n).round(2)
    events["client_id"] = rng.choice(CLIENTS, n)
    events["user_id"] = [f"user-{u}" for u in rng.integers(0, 40, n)]
    events["error_type"] = np.where(
        rng.random(n) < 0.05, rng.choice(["timeout", "invalid_input"], n), None
    )
    # a few identical inputs, resent by one client (the repeated-inputs table)
    repeat = rng.random(n) < 0.03
    events.loc[repeat, ["weight_kg", "zone", "fragile", "client_id"]] = [
        2.5, "north", False, "shop-a"
    ]  # fmt: skip
    other = pd.DataFrame(
        {
            "model": OTHER, "model_version": "v1", "hour": rng.integers(0, HOURS, 120),
            "second": rng.integers(0, 3600, 120), "weight_kg": rng.uniform(1, 9, 120).round(2),
            "latency_ms": rng.lognormal(2.5, 0.3, 120).round(2), "client_id": "shop-b",
            "user_id": "user-1", "prediction": "1.5", "confidence": 0.9, "error_type": None,
        }
    )  # fmt: skip
    events = pd.concat([events, other], ignore_index=True)
    events["event_id"] = [f"evt-{i:06d}" for i in range(len(events))]
    events["event_ts"] = [
        START + timedelta(hours=int(h), seconds=int(s))
        for h, s in zip(events["hour"], events["second"], strict=True)
    ]
    return events


def log_line(row) -> str:
    if row.model == MODEL:
        inputs = {"weight_kg": row.weight_kg, "zone": row.zone, "fragile": bool(row.fragile)}
    else:
        inputs = {"distance_km": row.weight_kg}
    line = {
        "timestamp": row.event_ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": row.model, "model_version": row.model_version, "event_id": row.event_id,
        "endpoint": ENDPOINT, "client_id": row.client_id, "user_id": row.user_id,
        "input_features": inputs, "prediction": row.prediction,
        "confidence": float(row.confidence), "latency_ms": float(row.latency_ms),
        "status": "error" if isinstance(row.error_type, str) else "ok",
    }  # fmt: skip
    if isinstance(row.error_type, str):
        line["error"] = {"type": row.error_type, "message": f"{row.error_type} upstream"}
    return json.dumps(line)


def write_logs(lake: Path, events: pd.DataFrame) -> None:
    """raw/<model>/YYYY/MM/DD/HH/part-0.jsonl, one object per model and hour."""
    for (model, hour), group in events.groupby(["model", "hour"]):
        when = START + timedelta(hours=int(hour))
        path = lake / "raw" / model / f"{when:%Y/%m/%d/%H}" / "part-0.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(log_line(row) + "\n" for row in group.itertuples()))


def write_label_file(lake: Path, model: str, labelled: pd.DataFrame) -> pd.DataFrame:
    """``labelled``'s event_id and label as one label file of ``model`` (docs/labels.md)."""
    path = lake / "labels" / model / "2025" / "05" / "03" / "part-0.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(
        "".join(
            json.dumps({"event_id": e, "label": lab, "labeled_at": "2025-05-03T06:00:00Z"}) + "\n"
            for e, lab in zip(labelled["event_id"], labelled["label"], strict=True)
        )
    )
    return labelled


def write_labels(lake: Path, events: pd.DataFrame) -> pd.DataFrame:
    """Ground truth for 60 % of parcel_router's events (docs/labels.md), right 85 % of the time."""
    rng = np.random.default_rng(13)
    mine = events[events["model"] == MODEL]
    labelled = mine[rng.random(len(mine)) < 0.6].copy()
    wrong = rng.random(len(labelled)) < 0.15
    shifted = [CLASSES[(CLASSES.index(p) + 1) % 3] for p in labelled["prediction"]]
    labelled["label"] = np.where(wrong, shifted, labelled["prediction"])
    return write_label_file(lake, MODEL, labelled)


def write_regressor_labels(lake: Path, events: pd.DataFrame) -> pd.DataFrame:
    """Ground truth (a number) for every other eta_scorer event."""
    labelled = events[events["model"] == OTHER].iloc[::2].copy()
    labelled["label"] = np.round(np.linspace(0.5, 3.5, len(labelled)), 3)
    return write_label_file(lake, OTHER, labelled)


# ---------------------------------------------------------------- independent figures
def psi(production: np.ndarray, reference: np.ndarray) -> float:
    p, q = np.maximum(production, FLOOR), np.maximum(reference, FLOOR)
    return float(np.sum((p - q) * np.log(p / q)))


def numeric_shares(reference: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shares in the reference's decile bins, right-closed, open at both ends."""
    edges = np.unique(np.quantile(reference, np.arange(1, 10) / 10))

    def share(x):
        return np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1) / len(
            x
        )

    return share(values), share(reference)


def categorical_shares(reference: list[str], values: list[str]) -> tuple[dict, dict]:
    """Shares by bin label: the top-20 reference categories, `__other__`, `__unseen__`."""
    ranked = sorted(Counter(reference).items(), key=lambda kv: (-kv[1], kv[0]))
    kept = {c for c, _ in ranked[:TOP_K]}

    def label(v):
        return v if v in kept else ("__other__" if v in set(reference) else "__unseen__")

    def share(xs):
        counts = Counter(map(label, xs))
        return {k: n / len(xs) for k, n in counts.items()}

    return share(values), share(reference)


def as_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(bool(value))


def expected_psi(sample: pd.DataFrame, production: pd.DataFrame, feature: str) -> float:
    if feature == "weight_kg":
        p, q = numeric_shares(sample[feature].to_numpy(), production[feature].to_numpy())
        return psi(p, q)
    p, q = categorical_shares(
        [as_text(v) for v in sample[feature]], [as_text(v) for v in production[feature]]
    )
    labels = sorted(set(p) | set(q) | {"__unseen__"})
    return psi(np.array([p.get(k, 0.0) for k in labels]), np.array([q.get(k, 0.0) for k in labels]))


# ---------------------------------------------------------------- the guide, step by step
def inferwatch(*args: str, env: dict) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory):
    root = tmp_path_factory.mktemp("onboarding")
    lake, data_dir = root / "lake", root / "data"
    lake.mkdir()
    env = {"INFERWATCH_LAKE_URL": str(lake), "INFERWATCH_DATA_DIR": str(data_dir)}
    out: dict = {"lake": lake, "env": env}

    # 1. the training sample, as the team has it (extra column, its own output names)
    sample_path = root / "parcel_router_training.csv"
    out["sample"] = training_sample(sample_path)

    # before anything is registered, check says so and fails
    out["check_before"] = inferwatch("model", "check", MODEL, "v1", env=env)

    # 2. register the version, 3. add its training reference
    register = (
        "model", "register", MODEL, "v1",
        "--git-commit", REGISTRY["git_commit"],
        "--training-data-hash", REGISTRY["training_data_hash"],
        "--deployed-at", REGISTRY["deployed_at"],
        "--metric", "accuracy=0.87", "--metric", "f1_macro=0.84",
        "--task", "classification",
    )  # fmt: skip
    out["register"] = inferwatch(*register, env=env)
    out["reference"] = inferwatch(
        "model", "reference", MODEL, "v1", "--from", str(sample_path),
        "--features", "weight_kg,zone,fragile",
        "--prediction-column", "predicted_mode", "--confidence-column", "score", env=env,
    )  # fmt: skip
    # registering the same entry again is a no-op; a different one needs --force
    out["register_same"] = inferwatch(*register, env=env)
    out["register_again"] = inferwatch(
        "model", "register", MODEL, "v1",
        "--git-commit", "0000000", "--training-data-hash", "x",
        "--deployed-at", REGISTRY["deployed_at"], env=env,
    )  # fmt: skip
    # 4. check: what the next run will do
    out["check"] = inferwatch("model", "check", MODEL, "v1", env=env)
    # eta_scorer's team registered an earlier version as a regressor (and forgot v1): the
    # registry's task is how the performance marts score the model (no seed row names it)
    out["register_regressor"] = inferwatch(
        "model", "register", OTHER, "v0", "--git-commit", "1a2b3c4",
        "--training-data-hash", "sha256:0", "--deployed-at", "2025-04-01T00:00:00Z",
        "--metric", "mae=0.4", "--task", "regression", env=env,
    )  # fmt: skip

    # 5. logs and labels arrive, 6. the pipeline runs
    out["events"] = events = production_events()
    write_logs(lake, events)
    out["labels"] = write_labels(lake, events)
    out["regressor_labels"] = write_regressor_labels(lake, events)
    # the guide's `inferwatch run`, as the DAG's tasks call the steps (tests/pipeline_steps.py)
    settings = settings_for(str(lake), data_dir)
    run_steps(settings, Lake(str(lake)), "onboarding")
    out["settings"] = settings
    out["check_after"] = inferwatch("model", "check", MODEL, env=env)
    return out


def serving(onboarded, sql: str) -> pd.DataFrame:
    import duckdb

    with duckdb.connect(str(onboarded["settings"].serving_path), read_only=True) as con:
        return con.sql(sql).df()


def ops(onboarded, sql: str) -> pd.DataFrame:
    import duckdb

    with duckdb.connect(str(onboarded["settings"].ops_path), read_only=True) as con:
        return con.sql(sql).df()


def ok_events(onboarded, model: str = MODEL) -> pd.DataFrame:
    events = onboarded["events"]
    return events[events["model"] == model]


# ---------------------------------------------------------------- the commands
def test_commands_write_what_the_pipeline_reads(onboarded):
    code, text = onboarded["check_before"]
    assert code != 0 and "no registry entry" in text and "no training reference" in text, text
    code, text = onboarded["register"]
    assert code == 0, text
    entry = json.loads((onboarded["lake"] / "registry" / MODEL / "v1.json").read_text())
    assert entry == {"model": MODEL, "version": "v1", **REGISTRY, "task": "classification"}
    code, text = onboarded["register_same"]
    assert code == 0 and "unchanged" in text, text
    code, text = onboarded["register_again"]
    assert code != 0 and "--force" in text, text
    code, text = onboarded["reference"]
    assert code == 0, text
    (written,) = (onboarded["lake"] / "reference" / MODEL / "v1").iterdir()
    reference = pd.read_parquet(written)
    sample = onboarded["sample"]
    assert list(reference.columns) == ["weight_kg", "zone", "fragile", "prediction", "confidence"]
    assert reference["weight_kg"].tolist() == sample["weight_kg"].tolist()
    assert (
        reference["fragile"].dtype == bool and reference["zone"].tolist() == sample["zone"].tolist()
    )
    assert reference["prediction"].tolist() == sample["predicted_mode"].tolist()


def test_check_says_what_the_next_run_will_do(onboarded):
    code, text = onboarded["check"]
    assert code == 0, text
    lines = text.splitlines()

    def line_of(word: str) -> str:
        return next(line for line in lines if word in line)

    assert "numeric" in line_of("weight_kg") and "decile" in line_of("weight_kg")
    assert "categorical" in line_of("zone") and "top" in line_of("zone")
    assert "boolean" in line_of("fragile")
    assert "3000 rows" in text and REGISTRY["git_commit"] in text
    assert "performance" in text and "classification" in text
    code, text = onboarded["check_after"]  # after the run: what bronze holds, v2 warned about
    assert code == 0, text
    v1 = len(ok_events(onboarded).query("model_version == 'v1'"))
    assert f"v1: {v1} events" in text, text
    assert any("v2" in line and "WARNING" in line for line in text.splitlines()), text


# ---------------------------------------------------------------- every dashboard's figures
def test_inference_overview_and_errors_hourly_figures(onboarded):
    hourly = serving(
        onboarded, f"select * from mart_inference_hourly where model = '{MODEL}' order by all"
    )
    events = ok_events(onboarded).copy()
    events["hour_ts"] = [START + timedelta(hours=int(h)) for h in events["hour"]]
    expected = events.groupby(["model_version", "hour_ts"])
    assert len(hourly) == expected.ngroups == HOURS + 24
    for row in hourly.itertuples():
        group = expected.get_group((row.model_version, row.hour.tz_localize(UTC)))
        assert row.requests == len(group)
        assert row.errors == group["error_type"].notna().sum()
        for q, got in ((0.5, row.latency_p50_ms), (0.95, row.latency_p95_ms),
                       (0.99, row.latency_p99_ms)):  # fmt: skip
            assert got == pytest.approx(np.quantile(group["latency_ms"], q), rel=1e-9)
        assert row.confidence_mean == pytest.approx(group["confidence"].mean())
        assert row.distinct_users == group["user_id"].nunique()
    # the mergeable buckets the latency charts read: every event, p95 within 1 %
    (merged,) = serving(
        onboarded,
        f"select sum(events) as n, latency_quantile(list(struct_pack(bucket := bucket, "
        f"events := events)), 0.95) as p95 from mart_latency_buckets_hourly "
        f"where model = '{MODEL}'",
    ).itertuples()
    assert merged.n == len(events)
    assert merged.p95 == pytest.approx(np.quantile(events["latency_ms"], 0.95), rel=0.011)
    resources = serving(
        onboarded,
        f"select sum(requests) as n from mart_resource_usage_hourly where model = '{MODEL}'",
    )
    assert resources["n"].item() == len(events)
    errors = serving(
        onboarded,
        f"select error_type, sum(errors) as n from mart_errors_hourly where model = '{MODEL}' "
        "and errors > 0 group by 1",
    )
    assert dict(zip(errors["error_type"], errors["n"], strict=True)) == dict(
        Counter(events["error_type"].dropna())
    )
    failed = serving(
        onboarded, f"select event_id from fct_failed_predictions where model = '{MODEL}'"
    )
    assert set(failed["event_id"]) == set(events.loc[events["error_type"].notna(), "event_id"])


def test_performance_figures(onboarded):
    rows = serving(
        onboarded,
        f"select * from mart_model_performance_daily where model = '{MODEL}' order by all",
    )
    events, labels = ok_events(onboarded), onboarded["labels"]
    events = events.assign(day=[t.date() for t in events["event_ts"]])
    labels = labels.assign(day=[t.date() for t in labels["event_ts"]])
    assert len(rows) == 3  # v1 on two days, v2 on one
    for row in rows.itertuples():
        day = row.day.date() if hasattr(row.day, "date") else row.day
        mine = labels[(labels["model_version"] == row.model_version) & (labels["day"] == day)]
        served = events[(events["model_version"] == row.model_version) & (events["day"] == day)]
        assert row.task == "classification"
        assert row.predictions == len(served)
        assert row.labelled_predictions == len(mine)
        assert row.accuracy == pytest.approx((mine["label"] == mine["prediction"]).mean())
        if row.model_version == "v1":
            assert row.training_accuracy == pytest.approx(0.87)


def test_a_regressor_registered_with_its_task_is_scored_as_one(onboarded):
    """No seed row names eta_scorer; its registry entry's `--task regression` makes the
    performance mart report MAE and RMSE for it, not accuracy."""
    code, text = onboarded["register_regressor"]
    assert code == 0, text
    rows = serving(
        onboarded,
        f"select * from mart_model_performance_daily where model = '{OTHER}' order by day",
    )
    labels = onboarded["regressor_labels"]
    labels = labels.assign(day=[t.date() for t in labels["event_ts"]])
    assert len(rows) == 2  # two days of traffic
    for row in rows.itertuples():
        day = row.day.date() if hasattr(row.day, "date") else row.day
        mine = labels[labels["day"] == day]
        errors = 1.5 - mine["label"].to_numpy()  # eta_scorer always predicts 1.5
        assert row.task == "regression"
        assert row.accuracy is None or np.isnan(row.accuracy)
        assert row.labelled_predictions == len(mine)
        assert row.mae == pytest.approx(np.abs(errors).mean())
        assert row.rmse == pytest.approx(np.sqrt((errors**2).mean()))


def test_inputs_and_outputs_distributions_and_psi(onboarded):
    sample = onboarded["sample"]
    drift = serving(
        onboarded, f"select * from mart_drift_daily where model = '{MODEL}' order by all"
    )
    shares = serving(
        onboarded,
        f"select * from mart_feature_distribution_daily where model = '{MODEL}' "
        "and bin_kind in ('psi', 'category')",
    )
    events = ok_events(onboarded).assign(day=lambda f: [t.date() for t in f["event_ts"]])
    checked = 0
    for (version, day), production in events.groupby(["model_version", "day"]):
        for feature in ("weight_kg", "zone", "fragile"):
            (row,) = drift[
                (drift["model_version"] == version)
                & (drift["feature"] == feature)
                & (drift["day"].dt.date == day)
            ].itertuples()
            assert row.reference_version == "v1"
            assert row.uses_fallback_reference == (version != "v1")
            assert row.production_count == len(production)
            assert row.reference_count == len(sample)
            assert row.psi == pytest.approx(expected_psi(sample, production, feature), abs=1e-9)
            assert row.feature_type == ("numeric" if feature == "weight_kg" else "categorical")
            checked += 1
            if feature != "weight_kg":
                got = shares[
                    (shares["model_version"] == version)
                    & (shares["feature"] == feature)
                    & (shares["day"].dt.date == day)
                ]
                p, _ = categorical_shares(
                    [as_text(v) for v in sample[feature]], [as_text(v) for v in production[feature]]
                )
                observed = dict(zip(got["bin_label"], got["production_share"], strict=True))
                assert {k: v for k, v in observed.items() if v} == pytest.approx(p)
    assert checked == 9
    # the injected shift shows on day 2 and not on day 1
    v1 = drift[(drift["model_version"] == "v1") & (drift["feature"] == "weight_kg")]
    assert list(v1.sort_values("day")["status"]) == ["stable", "drift"]


def test_models_and_lineage_row(onboarded):
    lineage = serving(
        onboarded, f"select * from mart_model_lineage where model = '{MODEL}' order by all"
    )
    v1, v2 = lineage.itertuples()
    events = ok_events(onboarded)
    assert (v1.git_commit, v1.training_data_hash) == (
        REGISTRY["git_commit"], REGISTRY["training_data_hash"]
    )  # fmt: skip
    assert v1.deployed_at == pd.Timestamp("2025-04-30 12:00:00")
    assert json.loads(v1.training_metrics) == REGISTRY["training_metrics"]
    assert v1.lineage_source == "registry"
    assert v1.requests == (events["model_version"] == "v1").sum()
    assert v1.traffic_share == pytest.approx((events["model_version"] == "v1").mean())
    assert v2.lineage_source == "none" and pd.isna(v2.git_commit)


def test_clients_usage_figures(onboarded):
    usage = serving(
        onboarded,
        f"select client_id, event_day, requests, errors from mart_client_usage_daily "
        f"where model = '{MODEL}'",
    )
    events = ok_events(onboarded).assign(day=lambda f: [t.date() for t in f["event_ts"]])
    expected = events.groupby(["client_id", "day"]).agg(
        requests=("event_id", "size"), errors=("error_type", "count")
    )
    got = usage.assign(day=usage["event_day"].dt.date).set_index(["client_id", "day"])
    assert got[["requests", "errors"]].sort_index().to_dict() == expected.sort_index().to_dict()
    repeated = serving(
        onboarded,
        f"select client_id, event_day, input_features, repeats from mart_repeated_inputs_daily "
        f"where model = '{MODEL}' and client_id = 'shop-a'",
    )
    assert len(repeated) > 0
    for row in repeated.itertuples():
        inputs = json.loads(row.input_features)
        same = events[
            (events["client_id"] == row.client_id)
            & (events["day"] == row.event_day.date())
            & (events["weight_kg"] == inputs["weight_kg"])
            & (events["zone"] == inputs["zone"])
            & (events["fragile"] == inputs["fragile"])
        ]
        assert row.repeats == len(same)


def test_fairness_has_no_segment_for_features_the_seed_does_not_name(onboarded):
    """dbt_project/seeds/fairness_segments.csv names the segment features (country, plan):
    parcel_router has neither, so its Fairness rows are none (the guide says how to add one)."""
    segments = pd.read_csv(
        SUPERSET_ASSETS_DIR.parent / "dbt_project" / "seeds" / "fairness_segments.csv"
    )
    assert not set(segments["segment_feature"]) & {"weight_kg", "zone", "fragile"}
    rows = serving(onboarded, f"select * from mart_fairness_daily where model = '{MODEL}'")
    assert len(rows) == 0


def test_data_quality_ingestion_and_coverage_warnings(onboarded):
    events = onboarded["events"]
    ingestion = ops(
        onboarded,
        "select object_key, lines_read, lines_loaded from mart_ingestion "
        f"where object_key like 'raw/{MODEL}/%'",
    )
    assert (
        ingestion["lines_read"].sum()
        == ingestion["lines_loaded"].sum()
        == len(ok_events(onboarded))
    )
    checks = ops(onboarded, f"select distinct suite from mart_data_quality where model = '{MODEL}'")
    assert {"freshness", "volume", "drift"} <= set(checks["suite"])
    coverage = serving(onboarded, "select * from mart_model_coverage order by all")
    seen = {(m, v) for m, v in zip(events["model"], events["model_version"], strict=True)}
    assert set(zip(coverage["model"], coverage["model_version"], strict=True)) == seen
    rows = {(r.model, r.model_version): r for r in coverage.itertuples()}
    v1, v2, other = rows[MODEL, "v1"], rows[MODEL, "v2"], rows[OTHER, "v1"]
    assert (v1.has_reference, v1.has_registry_entry, v1.status) == (True, True, "ok")
    assert pd.isna(v1.warning)
    assert (v2.has_reference, v2.has_registry_entry) == (False, False)
    assert "registry" in v2.warning and "v1" in v2.warning  # compared with v1's reference
    assert (other.has_reference, other.has_registry_entry) == (False, False)
    assert "no training reference" in other.warning and "registry" in other.warning
    # the coverage table is on the Data quality dashboard
    dashboard = yaml.safe_load(
        (SUPERSET_ASSETS_DIR / "dashboards" / "data_quality.yaml").read_text()
    )
    chart = yaml.safe_load(
        (SUPERSET_ASSETS_DIR / "charts" / "data_quality" / "model_coverage.yaml").read_text()
    )
    uuids = [i["meta"]["uuid"] for i in dashboard["position"].values()
             if isinstance(i, dict) and i.get("type") == "CHART"]  # fmt: skip
    assert chart["uuid"] in uuids


# ---------------------------------------------------------------- refusals, with their reason
@pytest.mark.parametrize(
    ("frame", "options", "reason"),
    [
        (pd.DataFrame({"x": pd.Series([], dtype=float)}), [], "no rows"),
        (pd.DataFrame({"x": [1.0]}), ["--features", "x,y"], "no column 'y'"),
        (pd.DataFrame({"../x": [1.0]}), [], "feature-key rule"),
        (pd.DataFrame({"model": ["a"]}), [], "reserved"),
        (pd.DataFrame({"when": pd.to_datetime(["2025-05-01"])}), [], "numeric, categorical"),
        (pd.DataFrame({"x": [1.0], "empty": [None]}).astype({"empty": float}), [], "no value"),
    ],
)
def test_reference_refuses_what_the_pipeline_would_misread(tmp_path, frame, options, reason):
    sample = tmp_path / "sample.parquet"
    frame.to_parquet(sample)
    env = {"INFERWATCH_LAKE_URL": str(tmp_path / "lake"), "INFERWATCH_DATA_DIR": str(tmp_path)}
    code, text = inferwatch("model", "reference", MODEL, "v1", "--from", str(sample), *options,
                            env=env)  # fmt: skip
    assert code == 1 and reason in text, text
    assert not (tmp_path / "lake" / "reference").exists()


def test_register_refuses_bad_names_and_times_and_replaces_only_with_force(tmp_path):
    env = {"INFERWATCH_LAKE_URL": str(tmp_path / "lake"), "INFERWATCH_DATA_DIR": str(tmp_path)}
    base = ["--git-commit", "abc", "--training-data-hash", "h", "--deployed-at"]
    code, text = inferwatch("model", "register", "eu/churn", "v1", *base, "2025-05-01", env=env)
    assert code == 1 and "invalid model name" in text
    code, text = inferwatch("model", "register", MODEL, "v1", *base, "yesterday", env=env)
    assert code == 1 and "ISO 8601" in text
    code, text = inferwatch("model", "register", MODEL, "v1", *base, "2025-05-01T14:00+02:00",
                            "--metric", "accuracy=high", env=env)  # fmt: skip
    assert code == 1 and "number" in text
    assert inferwatch("model", "register", MODEL, "v1", *base, "2025-05-01T14:00+02:00",
                      env=env)[0] == 0  # fmt: skip
    path = tmp_path / "lake" / "registry" / MODEL / "v1.json"
    assert json.loads(path.read_text())["deployed_at"] == "2025-05-01T12:00:00Z"
    code, _ = inferwatch("model", "register", MODEL, "v1", *base, "2025-05-02", "--force", env=env)
    assert code == 0 and json.loads(path.read_text())["deployed_at"] == "2025-05-02T00:00:00Z"

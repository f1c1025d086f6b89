"""The feedback loop: the pipeline's drift alerts emit the retraining signal (an Airflow Asset
event), and the retraining_trigger DAG writes one request per (model, version, reason, day)
into the lake's registry, once, however often it runs."""

from __future__ import annotations

import json

import pandas as pd

from conftest import AIRFLOW_HOME
from inferwatch import airflow_env
from inferwatch.alerts.retraining import PREFIX
from inferwatch.lake import Lake
from inferwatch.runner import load_dag


def _requests(lake: Lake) -> dict[str, tuple[str, dict]]:
    return {
        info.key: (info.version, json.loads(lake.read_bytes(info.key)))
        for info in lake.list(f"{PREFIX}/")
    }


def test_pipeline_emitted_the_retraining_signal(pipeline_run):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "inferwatch_retraining_signal")
            .where(AssetEvent.source_dag_id == "inferwatch_pipeline")
        ).all()  # fmt: skip
        extras = [event.extra for event in events]
    assert extras, "signal_retraining emitted no asset event"
    requests = [r for extra in extras for r in extra.get("requests", [])]
    assert {(r["model"], r["reason"]) for r in requests} >= {("customer_churn", "drift")}


def test_retraining_requests_once_per_model_version_reason_day(pipeline_run):
    settings = pipeline_run.settings
    airflow_env.apply(settings, AIRFLOW_HOME)
    lake = Lake(settings.lake_url)
    summary = json.loads((pipeline_run.truth_dir / "summary.json").read_text())
    drift = next(i for i in summary["incidents"] if i["kind"] == "feature_drift")
    drift_days = {str(d.date()) for d in pd.date_range(drift["start"][:10], drift["end"][:10],
                                                       freq="D", inclusive="left")}  # fmt: skip
    dag = load_dag("retraining_trigger")

    assert str(getattr(dag.test(), "state", "")) == "success"
    first = _requests(lake)
    assert str(getattr(dag.test(), "state", "")) == "success"
    second = _requests(lake)

    assert first == second  # nothing rewritten, nothing added: same keys, versions, content
    drift_requests = [doc for _, doc in first.values() if doc["reason"] == "drift"]
    assert {doc["day"] for doc in drift_requests} == drift_days
    assert {doc["model"] for doc in drift_requests} == {drift["model"]}
    keys = [(d["model"], d["model_version"], d["reason"], d["day"]) for _, d in first.values()]
    assert len(keys) == len(set(keys))
    for doc in drift_requests:
        assert doc["evidence"]["metric"] == "psi"
        assert doc["evidence"]["value"] > doc["evidence"]["threshold"]
        assert drift["numeric"]["feature"] in doc["evidence"]["message"]

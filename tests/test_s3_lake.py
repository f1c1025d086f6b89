"""The same lake served by a real S3 API server (moto) gives an identical fct_inferences."""

from __future__ import annotations

import json
import os

import boto3
import pytest

from conftest import run_pipeline, settings_for

BUCKET = "inferwatch-test"
COMPARED = """
    event_id, request_id, model, model_version, endpoint, client_id, user_hash, event_ts,
    status, error_type, error_message, retry_count, fallback, latency_ms, confidence, prediction,
    input_features, geo_country, geo_region, object_key, line_number
"""


@pytest.fixture(scope="module")
def s3_run(sim_lake, s3_endpoint, tmp_path_factory):
    lake_dir, _ = sim_lake
    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    uploaded = 0
    for path in sorted((lake_dir / "raw").rglob("*")):
        if path.is_file():
            key = "lake/" + path.relative_to(lake_dir).as_posix()
            client.upload_file(str(path), BUCKET, key)
            uploaded += 1
    assert uploaded > 0
    # What a user configures: the lake URL and an Airflow connection with an endpoint_url.
    os.environ["AIRFLOW_CONN_INFERWATCH_LAKE"] = json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    })  # fmt: skip
    settings = settings_for(f"s3://{BUCKET}/lake", tmp_path_factory.mktemp("s3-state"))
    try:
        state = run_pipeline(settings)
    finally:
        del os.environ["AIRFLOW_CONN_INFERWATCH_LAKE"]
    return settings, state, client


def test_s3_run_succeeds_and_writes_bronze_to_the_bucket(s3_run):
    _, state, client = s3_run
    assert state == "success"
    keys = [
        o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="lake/bronze/")["Contents"]
    ]
    assert any(k.startswith("lake/bronze/events/") for k in keys)
    assert any(k.startswith("lake/bronze/manifest/") for k in keys)


def test_s3_lake_gives_identical_fct_inferences(s3_run, pipeline_run):
    import duckdb

    settings, _, _ = s3_run
    query = f"select {COMPARED} from fct_inferences order by event_id"
    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        from_s3 = con.sql(query).fetchall()
    with pipeline_run.serving() as con:
        local = con.sql(query).fetchall()
    assert len(from_s3) == len(local) > 100_000
    assert from_s3 == local

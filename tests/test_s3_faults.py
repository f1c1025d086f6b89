"""Storage faults on a real S3 API server (moto) behind a fault-injecting proxy, both on
127.0.0.1: errors, reads cut mid-body and a stopped endpoint either are retried away or fail
the run naming the object, land nothing partial, and the next run completes the work with
marts identical to an undisturbed run.

The pipeline's steps are called as the Airflow tasks call them (``inferwatch.pipeline``), so a
failure surfaces here exactly as the task's exception would.
"""

from __future__ import annotations

import logging
from pathlib import Path

import boto3
import pytest

from conftest import settings_for
from inferwatch import pipeline
from inferwatch.lake import Lake, LakeError
from pipeline_steps import LINES, OBJECTS, key_of, marts, raw_object, run_steps
from s3_faults import FaultyS3Proxy

BUCKET = "inferwatch-faults"
CREDENTIALS = {"key": "testing", "secret": "testing"}


@pytest.fixture(scope="module")
def proxy(s3_endpoint):
    proxy = FaultyS3Proxy(s3_endpoint).start()
    boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    ).create_bucket(Bucket=BUCKET)  # fmt: skip
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory) -> dict:
    """The same objects in a local lake, run once without any fault: the expected marts."""
    root = tmp_path_factory.mktemp("faults-reference")
    lake = Lake(str(root / "lake"))
    for n in range(OBJECTS):
        lake.write_bytes(key_of(n), raw_object(n))
    settings = settings_for(lake.url, root / "state")
    run_steps(settings, lake, "reference")
    return marts(settings)


def s3_lake(proxy: FaultyS3Proxy, tmp_path: Path, name: str):
    """A fresh lake root in the bucket, reached through the proxy; its own state dir."""
    lake = Lake(
        f"s3://{BUCKET}/{name}",
        {**CREDENTIALS, "client_kwargs": {"endpoint_url": proxy.url, "region_name": "us-east-1"}},
        attempts=3,
        backoff_s=0.05,
    )
    for n in range(OBJECTS):
        lake.write_bytes(key_of(n), raw_object(n))
    return lake, settings_for(lake.url, tmp_path / "state")


def landed(lake: Lake) -> list[str]:
    return [o.key for o in lake.list("bronze")] + [o.key for o in lake.list("quarantine")]


@pytest.fixture(autouse=True)
def healthy(proxy):
    proxy.faults.clear()
    if proxy._server is None:
        proxy.start()
    yield
    proxy.faults.clear()
    if proxy._server is None:
        proxy.start()


def test_transient_errors_and_cut_reads_are_retried_away(proxy, undisturbed, tmp_path, caplog):
    lake, settings = s3_lake(proxy, tmp_path, "transient")
    proxy.faults.errors[key_of(1)] = 2  # two 503s, then fine
    proxy.faults.cuts[key_of(4)] = 1  # one read cut in half, then fine
    with caplog.at_level(logging.WARNING, logger="inferwatch.lake"):
        run_steps(settings, lake, "transient")
    assert marts(settings) == undisturbed
    retried = " ".join(r.getMessage() for r in caplog.records)
    assert key_of(1) in retried and key_of(4) in retried
    assert proxy.faults.errors[key_of(1)] == 0 and proxy.faults.cuts[key_of(4)] == 0


def test_persistently_failing_objects_fail_the_run_naming_one(proxy, undisturbed, tmp_path):
    lake, settings = s3_lake(proxy, tmp_path, "persistent")
    proxy.faults.errors[key_of(3)] = -1  # every GET answered 503
    proxy.faults.cuts[key_of(5)] = -1  # every GET cut in half
    with pytest.raises(LakeError, match="after 3 attempts") as failure:
        run_steps(settings, lake, "broken")
    assert key_of(3) in str(failure.value) or key_of(5) in str(failure.value)
    assert landed(lake) == []  # nothing partial: not one bronze, quarantine or manifest file
    assert not settings.serving_path.exists()

    proxy.faults.clear()
    run_steps(settings, lake, "after-the-fault")
    assert marts(settings) == undisturbed


def test_a_stopped_endpoint_fails_the_run_and_the_next_run_completes(proxy, undisturbed, tmp_path):
    lake, settings = s3_lake(proxy, tmp_path, "stopped")
    # A first run over half the objects publishes; then the store goes away mid-run.
    for n in range(OBJECTS // 2, OBJECTS):
        lake.fs.rm(lake.path(key_of(n)))
    run_steps(settings, lake, "first-half")
    published = settings.serving_path.read_bytes()
    for n in range(OBJECTS // 2, OBJECTS):
        lake.write_bytes(key_of(n), raw_object(n))

    objects = pipeline.discover(lake)
    assert [o["key"] for o in objects] == [key_of(n) for n in range(OBJECTS // 2, OBJECTS)]
    proxy.stop()
    with pytest.raises(LakeError, match="failed after 3 attempts"):
        pipeline.ingest(settings, lake, objects, "while-stopped")
    assert settings.serving_path.read_bytes() == published  # readers still see the last build

    proxy.start()
    run_steps(settings, lake, "after-restart")
    assert marts(settings) == undisturbed


def test_the_undisturbed_run_loaded_every_line(undisturbed):
    # The yardstick itself: every line loaded once, every object accounted for.
    count, distinct, _ = undisturbed["fct_inferences"]
    assert count == distinct == OBJECTS * LINES
    assert undisturbed["mart_ingestion"][0] == OBJECTS

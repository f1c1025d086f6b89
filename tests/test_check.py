"""Configuration checks (issue 19, "fail fast on configuration"): `inferwatch check` and the
pipeline's first task, check_config, on real lakes (a local folder, moto's S3 server), a real
SMTP server (aiosmtpd) and closed ports."""

from __future__ import annotations

import json
import os
import socket

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from alert_sinks import smtp_sink
from conftest import AIRFLOW_HOME, free_port, run_pipeline, settings_for
from inferwatch.cli import main

#: What a test's environment must not inherit: every setting that switches a check on.
QUIET = {
    name: None
    for name in (
        "INFERWATCH_SUPERSET_URL", "SUPERSET_ADMIN_PASSWORD", "INFERWATCH_SMTP_HOST",
        "INFERWATCH_SMTP_PORT", "INFERWATCH_ALERT_EMAILS", "INFERWATCH_REPORT_EMAILS",
        "INFERWATCH_PRODUCERS", "AIRFLOW_CONN_INFERWATCH_LAKE", "INFERWATCH_LAKE_CONN_ID",
    )
}  # fmt: skip
BUCKET = "check-lake"


def check(lake, data_dir, *args: str, **env: str | None) -> tuple[int, list[str]]:
    """`inferwatch check` in this process: its exit code and its problem lines (the summary
    line left out)."""
    result = CliRunner().invoke(
        main, ["check", "--lake", str(lake), "--data-dir", str(data_dir), *args],
        env={**QUIET, **env},
    )  # fmt: skip
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    lines = [line for line in result.output.splitlines() if line.startswith(("error", "warning"))]
    return result.exit_code, lines


def errors(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("error")]


@pytest.fixture
def lake(tmp_path):
    """A valid local lake: one raw log, one registry entry, a Parquet and a CSV reference."""
    root = tmp_path / "lake"
    (root / "raw" / "2025" / "05" / "01").mkdir(parents=True)
    (root / "raw" / "2025" / "05" / "01" / "part-0.jsonl").write_text(
        json.dumps({"timestamp": "2025-05-01T10:00:00Z", "model": "churn"}) + "\n"
    )
    (root / "registry" / "churn").mkdir(parents=True)
    (root / "registry" / "churn" / "v1.json").write_text(json.dumps({
        "model": "churn", "version": "v1", "git_commit": "abc1234",
        "deployed_at": "2025-04-30T12:00:00Z", "training_metrics": {"accuracy": 0.9},
    }))  # fmt: skip
    (root / "reference" / "churn" / "v1").mkdir(parents=True)
    pq.write_table(pa.table({"tenure": [1.0, 2.0], "plan": ["a", "b"]}),
                   root / "reference" / "churn" / "v1" / "sample.parquet")  # fmt: skip
    (root / "reference" / "churn" / "v1" / "more.csv").write_text("tenure,plan\n3.0,c\n")
    return root


def test_a_valid_local_lake_passes(lake, tmp_path):
    code, lines = check(lake, tmp_path / "data")
    assert (code, lines) == (0, [])


def test_a_missing_lake_folder_is_an_error_naming_the_setting(tmp_path):
    typo = tmp_path / "lake-typo"
    code, lines = check(typo, tmp_path / "data")
    assert code == 1
    assert errors(lines) == [
        f"error   INFERWATCH_LAKE_URL: the lake folder {typo} does not exist (a typo? "
        "`inferwatch simulate` creates a sample lake)"
    ]
    assert not typo.exists()  # the check writes nothing


def test_a_run_over_a_missing_lake_fails_at_once_with_that_line(tmp_path):
    """`inferwatch run` (the DAG through dag.test()): check_config fails on its first try with
    the line above as its error, nothing after it ingests, builds or writes into the lake."""
    from airflow.utils.session import create_session

    typo = tmp_path / "lake-typo"
    settings = settings_for(str(typo), tmp_path / "data")
    assert run_pipeline(settings) == "failed"
    with create_session() as session:
        from airflow.models import TaskInstance

        rows = session.query(TaskInstance.task_id, TaskInstance.state, TaskInstance.try_number) \
            .filter(TaskInstance.dag_id == "inferwatch_pipeline") \
            .order_by(TaskInstance.start_date.desc().nulls_last()).all()  # fmt: skip
    latest = {}
    for task_id, state, tries in rows:
        latest.setdefault(task_id, (str(state), tries))
    assert latest["check_config"] == ("failed", 1)
    for task_id in ("discover", "ingest", "transform", "publish", "audit"):
        assert latest[task_id][0] == "upstream_failed", (task_id, latest[task_id])
    assert not typo.exists()  # not even the audit teardown created it
    log = max((AIRFLOW_HOME / "logs" / "dag_test").glob("*.log"), key=os.path.getmtime)
    assert f"INFERWATCH_LAKE_URL: the lake folder {typo} does not exist" in log.read_text()


def test_an_s3_lake_without_its_connection_is_an_error_at_once(tmp_path, s3_endpoint, monkeypatch):
    """The check names the connection variable; the task fails without a retry."""
    from airflow.sdk.exceptions import AirflowFailException

    from inferwatch.runner import load_dag

    _bucket(s3_endpoint)
    code, lines = check(f"s3://{BUCKET}/lake", tmp_path / "data")
    assert code == 1
    assert len(errors(lines)) == 1
    assert errors(lines)[0].startswith(
        "error   AIRFLOW_CONN_INFERWATCH_LAKE: the Airflow connection 'inferwatch_lake' is not "
        "defined"
    )
    task = load_dag().get_task("check_config")
    assert task.retries == 0 and task.downstream_task_ids >= {"discover"}
    for name in QUIET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INFERWATCH_LAKE_URL", f"s3://{BUCKET}/lake")
    monkeypatch.setenv("INFERWATCH_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(AirflowFailException) as failed:
        task.python_callable()
    assert "AIRFLOW_CONN_INFERWATCH_LAKE: the Airflow connection" in str(failed.value)


def test_an_s3_lake_with_its_connection_passes(tmp_path, s3_endpoint):
    client = _bucket(s3_endpoint)
    client.put_object(Bucket=BUCKET, Key="lake/raw/2025/05/01/part-0.jsonl", Body=b"{}\n")
    connection = json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    })  # fmt: skip
    code, lines = check(f"s3://{BUCKET}/lake", tmp_path / "data",
                        AIRFLOW_CONN_INFERWATCH_LAKE=connection)  # fmt: skip
    assert (code, lines) == (0, [])
    code, lines = check("s3://no-such-bucket/lake", tmp_path / "data",
                        AIRFLOW_CONN_INFERWATCH_LAKE=connection)  # fmt: skip
    assert code == 1 and errors(lines) == [
        "error   INFERWATCH_LAKE_URL: the bucket 'no-such-bucket' does not exist at the endpoint "
        "of connection 'inferwatch_lake'"
    ]


def test_bad_registry_and_reference_files_are_named(lake, tmp_path):
    (lake / "registry" / "churn" / "v2.json").write_text('{"model": "churn", "version": ')
    (lake / "reference" / "churn" / "v2").mkdir()
    (lake / "reference" / "churn" / "v2" / "sample.parquet").write_bytes(b"not parquet at all")
    code, lines = check(lake, tmp_path / "data")
    assert code == 1  # dbt reads every reference file in one query: a bad one fails the build
    assert [line.split(":", 1)[0] for line in lines] == [
        "error   reference/churn/v2/sample.parquet",
        "warning registry/churn/v2.json",  # the build reads it as an entry without lineage
    ]
    assert "cannot be read as PARQUET" in lines[0] and "not valid JSON" in lines[1]


def test_producers_that_do_not_parse_are_an_error(lake, tmp_path):
    code, lines = check(lake, tmp_path / "data",
                        INFERWATCH_PRODUCERS='{"raw/sm/": "no_such_adapter"}')  # fmt: skip
    assert code == 1
    assert errors(lines)[0].startswith(
        "error   INFERWATCH_PRODUCERS: ValueError: INFERWATCH_PRODUCERS['raw/sm/']: unknown "
        "adapter 'no_such_adapter'"
    )


def test_superset_at_a_closed_port_is_an_error(lake, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    code, lines = check(lake, tmp_path / "data", INFERWATCH_SUPERSET_URL=url)
    assert code == 1
    assert [line.split(" (", 1)[0] for line in lines] == [
        f"error   INFERWATCH_SUPERSET_URL: Superset does not answer at {url}/health"
    ]


def test_a_stopped_local_superset_only_warns(lake, tmp_path):
    """A data dir that has a Superset (`inferwatch superset start` made its home) but none set
    on purpose: not answering is a warning; the generated admin password alone is no sign."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8088)) == 0:
            pytest.skip("something listens on Superset's default port 8088 here")
    data = tmp_path / "data"
    data.mkdir()
    (data / "secrets.env").write_text("SUPERSET_ADMIN_PASSWORD=generated\n")
    assert check(lake, data) == (0, [])
    (data / "superset").mkdir()
    code, lines = check(lake, data)
    assert code == 0
    assert [line.split(" (", 1)[0] for line in lines] == [
        "warning INFERWATCH_SUPERSET_URL: Superset does not answer at http://127.0.0.1:8088/health"
    ]


def test_smtp_is_checked_when_configured(lake, tmp_path):
    port = free_port()
    smtp = {"INFERWATCH_SMTP_PORT": str(port), "INFERWATCH_ALERT_EMAILS": "ops@example.org"}
    code, lines = check(lake, tmp_path / "data", **smtp)
    assert code == 1
    assert [line.split(" (", 1)[0] for line in lines] == [
        f"error   INFERWATCH_SMTP_HOST/INFERWATCH_SMTP_PORT: no SMTP server answers at "
        f"127.0.0.1:{port}"
    ]
    with smtp_sink(port) as received:
        code, lines = check(lake, tmp_path / "data", **smtp)
    assert (code, lines) == (0, [])
    assert received == []  # connect and EHLO only: nothing is sent


def test_json_output(tmp_path):
    result = CliRunner().invoke(
        main, ["check", "--json", "--lake", str(tmp_path / "nope"), "--data-dir", str(tmp_path)],
        env=QUIET,
    )  # fmt: skip
    assert result.exit_code == 1
    problems = json.loads(result.output)
    assert [(p["severity"], p["setting"]) for p in problems] == [("error", "INFERWATCH_LAKE_URL")]


def _bucket(endpoint: str):
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    return client

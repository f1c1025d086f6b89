"""Every DAG imports through a DagBag, and importing a DAG file does no I/O."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from inferwatch.config import DAGS_DIR


def test_every_dag_imports_without_errors():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}
    assert "inferwatch_pipeline" in bag.dag_ids
    dag = bag.get_dag("inferwatch_pipeline")
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert [t.task_id for t in dag.topological_sort()] == [
        "check_config", "discover", "ingest", "transform", "score_anomalies", "validate",
        "publish", "refresh_superset", "audit", "alert", "signal_retraining",
    ]  # fmt: skip
    # A configuration error fails the run at once: no retry, and no audit teardown after it.
    check = dag.get_task("check_config")
    assert check.retries == 0 and check.is_setup and "audit" in check.downstream_task_ids
    assert all(task.doc_md for task in dag.tasks)
    trigger = bag.get_dag("retraining_trigger")
    assert trigger is not None and all(task.doc_md for task in trigger.tasks)
    assert [outlet.name for outlet in dag.get_task("signal_retraining").outlets] == [
        "inferwatch_retraining_signal"
    ]


def test_dag_files_do_no_io_at_import(tmp_path):
    """Import each DAG file under an audit hook: no socket, no subprocess, no file of the lake
    or the data dir is touched (the lake is even an unreachable S3 URL)."""
    probe = textwrap.dedent(
        f"""
        import importlib.util, json, pathlib, sys
        import airflow.sdk  # Airflow's own imports are not the DAG file's doing
        events = []
        watched = ({str(tmp_path)!r},)
        def hook(event, args):
            if event in ("socket.connect", "socket.getaddrinfo"):
                events.append([event, repr(args)[:200]])
            # croniter (imported lazily by Airflow) runs `file` via platform.architecture()
            elif event == "subprocess.Popen" and args[0] != "file":
                events.append([event, repr(args[:2])[:200]])
            elif event == "open" and isinstance(args[0], str) and args[0].startswith(watched):
                events.append([event, args[0]])
        sys.addaudithook(hook)
        for path in sorted(pathlib.Path({str(DAGS_DIR)!r}).glob("*.py")):
            spec = importlib.util.spec_from_file_location(path.stem, path)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        print(json.dumps(events))
        """
    )
    env = {
        **os.environ,
        "INFERWATCH_DATA_DIR": str(tmp_path / "data"),
        "INFERWATCH_LAKE_URL": "s3://no-such-bucket/lake",
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    events = json.loads(out.stdout.strip().splitlines()[-1])
    assert events == []
    assert not (tmp_path / "data").exists()


def test_schedule_setting_reaches_the_timetable(monkeypatch):
    """INFERWATCH_SCHEDULE, read when the DAG file is parsed, is the pipeline DAG's timetable:
    each value gives the timetable Airflow builds from the schedule it stands for."""
    from datetime import timedelta

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import DAG

    dag_file = str(DAGS_DIR / "inferwatch_pipeline.py")
    cases = {
        None: timedelta(hours=1),  # unset: hourly, as before the setting
        "continuous": "@continuous",
        "5m": timedelta(minutes=5),
        "*/5 * * * *": "*/5 * * * *",
        "none": None,  # only triggered runs
    }
    for value, schedule in cases.items():
        if value is None:
            monkeypatch.delenv("INFERWATCH_SCHEDULE", raising=False)
        else:
            monkeypatch.setenv("INFERWATCH_SCHEDULE", value)
        bag = DagBag(dag_folder=dag_file)
        assert bag.import_errors == {}, value
        dag = bag.get_dag("inferwatch_pipeline")
        expected = DAG("expected", schedule=schedule, max_active_runs=1).timetable
        assert _timetable(dag.timetable) == _timetable(expected), value
        assert dag.max_active_runs == 1
    monkeypatch.setenv("INFERWATCH_SCHEDULE", "every five minutes")
    bag = DagBag(dag_folder=dag_file)
    assert "INFERWATCH_SCHEDULE" in "".join(bag.import_errors.values())


def _timetable(timetable) -> tuple:
    """A timetable's class and fields (ContinuousTimetable has no fields and no __eq__)."""
    import attrs

    fields = attrs.asdict(timetable) if attrs.has(type(timetable)) else {}
    return type(timetable), fields

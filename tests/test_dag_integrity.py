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

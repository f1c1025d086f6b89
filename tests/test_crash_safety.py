"""kill -9 during each pipeline step, then re-run: the marts equal an uninterrupted run's, no
event twice, and the served file readers had stayed the last published one throughout.

Each case starts from a copy of one published first half, adds the rest, starts a run in a
child process and SIGKILLs it a moment into the chosen step (the child announces each step on
stdout).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from conftest import settings_for
from inferwatch.lake import Lake
from pipeline_steps import OBJECTS, key_of, marts, raw_object, run_steps

DRIVER = Path(__file__).with_name("crash_driver.py")
#: How long into the step the kill comes: inside each step's work on this small lake (ingest
#: runs one tiny chunk per object; dbt, GX and publishing take seconds here).
KILL_AFTER_S = {"ingest": 0.3, "transform": 3.0, "validate": 1.5, "publish": 0.05}


@pytest.fixture(scope="module")
def first_half(tmp_path_factory) -> Path:
    """A lake with half the objects, built and published once: each case starts from a copy."""
    root = tmp_path_factory.mktemp("crash-first-half")
    lake = Lake(str(root / "lake"))
    for n in range(OBJECTS // 2):
        lake.write_bytes(key_of(n), raw_object(n))
    run_steps(settings_for(lake.url, root / "state"), lake, "first-half")
    return root


def copy_of(first_half: Path, root: Path):
    """The first-half lake and state copied under ``root``. The copied catalog's views read
    the first half's files (absolute paths) until the copy's next publish, which serves its own
    copies (README: Publishing)."""
    shutil.copytree(first_half, root, dirs_exist_ok=True)
    lake = Lake(str(root / "lake"))
    return settings_for(lake.url, root / "state"), lake


def add_second_half(lake: Lake) -> None:
    for n in range(OBJECTS // 2, OBJECTS):
        lake.write_bytes(key_of(n), raw_object(n))


@pytest.fixture(scope="module")
def uninterrupted(first_half, tmp_path_factory) -> dict:
    """The same second run as each case, without a kill."""
    settings, lake = copy_of(first_half, tmp_path_factory.mktemp("crash-reference"))
    add_second_half(lake)
    run_steps(settings, lake, "second-half")
    return marts(settings)


def served(settings) -> tuple:
    with duckdb.connect(str(settings.serving_path), read_only=True) as con:
        return con.sql(
            "select count(*), sum(hash(event_id)::hugeint) from fct_inferences"
        ).fetchone()


@pytest.mark.parametrize("step", sorted(KILL_AFTER_S))
def test_kill_9_during_a_step_then_rerun_gives_the_same_marts(
    step, first_half, uninterrupted, tmp_path
):
    settings, lake = copy_of(first_half, tmp_path / "case")
    before = served(settings)
    add_second_half(lake)

    env = {
        **os.environ,
        "INFERWATCH_LAKE_URL": lake.url,
        "INFERWATCH_DATA_DIR": str(settings.data_dir),
        "INFERWATCH_INGEST_CHUNK_BYTES": "1",  # one chunk per object: a kill lands between
        "PYTHONPATH": str(DRIVER.parent),
    }
    child = subprocess.Popen(
        [sys.executable, str(DRIVER), f"killed-in-{step}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    for line in child.stdout:
        if line.strip() == f"STEP {step}":
            break
    time.sleep(KILL_AFTER_S[step])
    assert child.poll() is None, f"{step} finished before the kill: make KILL_AFTER_S shorter"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL

    # Readers saw the last published build the whole time, and it still opens.
    assert served(settings) == before
    # The lock died with the process: the re-run does not wait for it.
    run_steps(settings, lake, "rerun")
    assert marts(settings) == uninterrupted

"""Run the pipeline's steps in this process, announcing each on stdout before it starts, so a
test can kill -9 the process while a chosen step is under way.

Usage: python crash_driver.py RUN_ID   (lake and state from INFERWATCH_LAKE_URL/DATA_DIR)
"""

from __future__ import annotations

import sys

from inferwatch.config import Settings
from inferwatch.lake import Lake
from pipeline_steps import run_steps

if __name__ == "__main__":
    settings = Settings.from_env()
    run_steps(
        settings, Lake(settings.lake_url), sys.argv[1],
        announce=lambda step: print(f"STEP {step}", flush=True),
    )  # fmt: skip

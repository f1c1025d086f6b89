"""Run the pipeline's steps in this process, announcing each on stdout before it starts, so a
test can kill -9 the process while a chosen step is under way.

Usage: python crash_driver.py RUN_ID   (lake and state from INFERWATCH_LAKE_URL/DATA_DIR)
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from inferwatch import pipeline
from inferwatch.config import Settings
from inferwatch.lake import Lake


def main(run_id: str) -> None:
    settings = Settings.from_env()
    lake = Lake(settings.lake_url)
    started = datetime.now(UTC).isoformat()

    def announce(step: str) -> None:
        print(f"STEP {step}", flush=True)

    announce("discover")
    objects = pipeline.discover(lake)
    announce("ingest")
    report = pipeline.ingest(settings, lake, objects, run_id)
    announce("transform")
    pipeline.transform(settings, lake)
    announce("validate")
    validation = pipeline.validate(settings, run_id)
    announce("publish")
    pipeline.publish(settings, run_id, validation, report, started)
    announce("done")


if __name__ == "__main__":
    main(sys.argv[1])

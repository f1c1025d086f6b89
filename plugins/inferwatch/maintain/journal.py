"""A redo log that makes a file swap in the lake atomic for readers that hold the lock.

Compaction and retention replace sets of bronze files by others. The lake has no multi-file
transaction, so the swap is journalled: the plan (``outputs`` that will exist, ``inputs`` that
will go) is written first; outputs are moved in; inputs are removed; the journal is removed.
After a crash, :func:`recover` finishes the swap when every output landed (the inputs' rows are
all in the outputs) or undoes it when not (the inputs are all still there): either way, readers
never see a row twice or lose one. The pipeline's transform step and every maintenance command
call it under the pipeline lock before reading bronze.
"""

from __future__ import annotations

import json
import logging

from inferwatch.lake import Lake

log = logging.getLogger(__name__)

JOURNAL_PREFIX = "bronze/_journal"


def begin(lake: Lake, name: str, outputs: list[str], inputs: list[str]) -> str:
    key = f"{JOURNAL_PREFIX}/{name}.json"
    lake.write_bytes(key, json.dumps({"outputs": outputs, "inputs": inputs}).encode())
    return key


def finish(lake: Lake, key: str, inputs: list[str]) -> None:
    for item in inputs:
        lake.remove(item)
    lake.remove(key)


def recover(lake: Lake) -> int:
    """Finish or undo every swap a crash interrupted; returns how many there were."""
    journals = [o.key for o in lake.list(JOURNAL_PREFIX) if o.key.endswith(".json")]
    for key in journals:
        plan = json.loads(lake.read_bytes(key))
        if all(lake.exists(item) for item in plan["outputs"]):
            log.warning("%s: finishing an interrupted file swap", key)
            finish(lake, key, plan["inputs"])
        else:
            log.warning("%s: undoing an interrupted file swap", key)
            for item in plan["outputs"]:
                lake.remove(item)
            lake.remove(key)
    return len(journals)

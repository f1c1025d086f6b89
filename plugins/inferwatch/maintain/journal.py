"""A redo log that makes a file swap in the lake atomic for readers that hold the lock.

Compaction and retention replace sets of bronze files by others. The lake has no multi-file
transaction, so the swap is journalled: the plan (``outputs`` that will exist, ``inputs`` that
will go) is written first; outputs are moved in; inputs are removed; the journal is removed.
After a crash, :func:`recover` finishes the swap when every output landed (the inputs' rows are
all in the outputs) or undoes it when not (the inputs are all still there): either way, readers
never see a row twice or lose one. The pipeline's transform step and every maintenance command
call it under the pipeline lock before reading bronze.

The pipeline lock is a ``flock`` on one host's data dir; hosts that share a lake do not see each
other's. So a journal names its owner (host, boot, pid and the pid's start time) and a lease
(``INFERWATCH_JOURNAL_LEASE_S``, default one hour), and :func:`recover` touches only swaps whose
owner is provably dead (this host, its process gone) or whose lease has expired; a swap that
may still be running elsewhere is left alone with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from inferwatch.lake import Lake

log = logging.getLogger(__name__)

JOURNAL_PREFIX = "bronze/_journal"
LEASE_ENV = "INFERWATCH_JOURNAL_LEASE_S"
DEFAULT_LEASE_S = 3600.0


def lease_seconds() -> float:
    """How long a swap may take before another host may finish or undo it."""
    return float(os.environ.get(LEASE_ENV) or DEFAULT_LEASE_S)


def boot_id() -> str:
    """This machine's boot: with the host name, it tells a pid of this boot from another's."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (a reused pid has another one)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def _owner() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot_id": boot_id(), "pid": pid,
            "pid_start": _process_start(pid)}  # fmt: skip


def begin(lake: Lake, name: str, outputs: list[str], inputs: list[str]) -> str:
    key = f"{JOURNAL_PREFIX}/{name}.json"
    started = datetime.now(UTC)
    plan = {
        "outputs": outputs,
        "inputs": inputs,
        "owner": _owner(),
        "started_at": started.isoformat(),
        "lease_until": (started + timedelta(seconds=lease_seconds())).isoformat(),
    }
    lake.write_bytes(key, json.dumps(plan).encode())
    return key


def finish(lake: Lake, key: str, inputs: list[str]) -> None:
    for item in inputs:
        lake.remove(item)
    lake.remove(key)


def _may_still_run(plan: dict, now: datetime) -> str | None:
    """Why the swap's owner may still be at work, or None when it provably is not."""
    owner = plan.get("owner")
    if not owner:
        return None  # written before journals named their owner: recovered as always
    lease_until = datetime.fromisoformat(plan["lease_until"])
    if now >= lease_until:
        return None
    same_machine = owner.get("host") == socket.gethostname() and owner.get("boot_id") == boot_id()
    if not same_machine:
        return f"owned by {owner.get('host')} pid {owner.get('pid')}, lease until {lease_until}"
    pid = int(owner["pid"])
    if pid == os.getpid():
        return None  # our own swap: it failed before we got the lock back, it is not running
    start = _process_start(pid)
    if start is None or (owner.get("pid_start") and start != owner["pid_start"]):
        return None  # the process is gone (or its pid now belongs to another)
    return f"owned by pid {pid} on this host, still running"


def recover(lake: Lake, *, now: datetime | None = None) -> int:
    """Finish or undo every swap a crash interrupted; returns how many there were. A swap whose
    owner may still be running (another host within its lease) is left alone."""
    now = now or datetime.now(UTC)
    journals = [o.key for o in lake.list(JOURNAL_PREFIX) if o.key.endswith(".json")]
    recovered = 0
    for key in journals:
        plan = json.loads(lake.read_bytes(key))
        busy = _may_still_run(plan, now)
        if busy:
            log.warning("%s: a file swap in progress (%s): left alone", key, busy)
            continue
        recovered += 1
        if all(lake.exists(item) for item in plan["outputs"]):
            log.warning("%s: finishing an interrupted file swap", key)
            finish(lake, key, plan["inputs"])
        else:
            log.warning("%s: undoing an interrupted file swap", key)
            for item in plan["outputs"]:
                lake.remove(item)
            lake.remove(key)
    return recovered

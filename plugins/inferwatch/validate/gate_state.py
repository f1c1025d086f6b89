"""What the quarantine checks judge: the runs not yet passed, less the acknowledged objects.

A run's lines are those of one ingest (lines a replay loaded count in the ingest they came
from). The checks judge every ingest since the last build that passed the gate, each on its
own: a build held back stays held back (its ingest is judged again, undiluted by later clean
runs) until its lines are replayed or its objects acknowledged, and what passed is never
judged again. Both facts are small owner-only JSON files under ``INFERWATCH_DATA_DIR/gate/``:

- ``state.json``: ``passed_through``, the newest ``ingested_at`` the last passing gate saw;
- ``acknowledged.json``: the objects an operator acknowledged (``inferwatch quarantine
  acknowledge``), each with its reason, who and when; the gate leaves out their quarantined
  lines judged before the acknowledgement (a rewritten object is judged again).

A run-scoped suite's table needs ``object_key`` and ``ingested_at``; its batch gets a column
``acknowledged`` (README.md, "Validation: the publishing gate").
"""

from __future__ import annotations

import getpass
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from inferwatch.state_file import read_json, write_json

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
ACKNOWLEDGED_FILE = "acknowledged.json"
#: The table the quarantine checks read (dbt: mart_ingestion_by_model).
RUN_TABLE = "mart_ingestion_by_model"


@dataclass(frozen=True)
class Acknowledgement:
    object_key: str
    reason: str
    acknowledged_at: datetime  # naive UTC, like ingested_at
    actor: str
    lines_quarantined: int

    @classmethod
    def from_json(cls, raw: dict) -> Acknowledgement:
        return cls(**{**raw, "acknowledged_at": datetime.fromisoformat(raw["acknowledged_at"])})

    def as_json(self) -> dict:
        return {**asdict(self), "acknowledged_at": self.acknowledged_at.isoformat()}


@dataclass(frozen=True)
class RunWindow:
    """Rows ingested after ``passed_through`` (all when None), with acknowledgements by key."""

    passed_through: datetime | None = None
    acknowledged: dict[str, Acknowledgement] = field(default_factory=dict)

    def query(self, table: str) -> str:
        """The run's rows of ``table``, with ``acknowledged`` (its object was, after them)."""
        where = ""
        if self.passed_through is not None:
            where = f" where run_rows.ingested_at > {_timestamp(self.passed_through)}"
        acknowledged = self._acknowledged_sql()
        return f"select run_rows.*, {acknowledged} as acknowledged from {table} as run_rows{where}"

    def touched_query(
        self, table: str, key: str | None, columns: list[str] | None = None
    ) -> str | None:
        """The rows of ``table`` ingested since the last build that passed, plus, with ``key``,
        the rows sharing a ``key`` value with one of them; only ``columns`` when given (GX
        runs a query batch once whole to learn its columns: whole rows of the semi-join cost
        seconds at 10M events a day). None (the whole table) without a window."""
        if self.passed_through is None:
            return None
        since = f"ingested_at > {_timestamp(self.passed_through)}"
        selected = ", ".join(columns) if columns else "*"
        if key is None:
            return f"select {selected} from {table} where {since}"
        inner = f"select {key} from {table} where {since}"
        return f"select {selected} from {table} where {key} in ({inner})"

    def _acknowledged_sql(self) -> str:
        if not self.acknowledged:
            return "false"
        cases = " ".join(
            f"when {_literal(key)} then {_timestamp(ack.acknowledged_at)}"
            for key, ack in sorted(self.acknowledged.items())
        )
        return f"coalesce(run_rows.ingested_at <= (case run_rows.object_key {cases} end), false)"


def load_window(gate_dir: Path | None) -> RunWindow:
    """The window of the next validation (everything, with nothing acknowledged, without a dir)."""
    if gate_dir is None:
        return RunWindow()
    state = read_json(gate_dir / STATE_FILE, {})
    passed = state.get("passed_through")
    return RunWindow(
        passed_through=datetime.fromisoformat(passed) if passed else _last_published(gate_dir),
        acknowledged=acknowledgements(gate_dir),
    )


def _last_published(gate_dir: Path) -> datetime | None:
    """A data dir from before this state existed: what the last published run had ingested
    passed the gate of its day, so it is not judged again (the run records sit beside the
    gate's folder, ``INFERWATCH_DATA_DIR/runs``; see ``Settings.runs_dir``)."""
    runs = gate_dir.parent / "runs"
    finished = []
    for path in runs.glob("*.json") if runs.is_dir() else []:
        record = read_json(path, {})
        if record.get("gate_passed") and record.get("finished_at"):
            at = datetime.fromisoformat(record["finished_at"])
            finished.append(at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at)
    return max(finished, default=None)


def acknowledgements(gate_dir: Path) -> dict[str, Acknowledgement]:
    """The newest acknowledgement of each object."""
    raw = read_json(gate_dir / ACKNOWLEDGED_FILE, [])
    listed = [Acknowledgement.from_json(entry) for entry in raw]
    return {ack.object_key: ack for ack in sorted(listed, key=lambda a: a.acknowledged_at)}


def newest_ingested(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """Where the window starts once this build passes: the newest batch it judged."""
    return con.execute(f"select max(ingested_at) from {RUN_TABLE}").fetchone()[0]


def acknowledged_in_run(con: duckdb.DuckDBPyConnection, window: RunWindow) -> list[dict]:
    """The acknowledged objects whose quarantined lines the run leaves out, with how many."""
    if not window.acknowledged:
        return []
    rows = con.execute(
        f"select object_key, sum(lines_quarantined) from ({window.query(RUN_TABLE)}) "
        "where acknowledged and lines_quarantined > 0 group by object_key order by object_key"
    ).fetchall()
    return [
        {**window.acknowledged[key].as_json(), "lines_left_out": int(lines)} for key, lines in rows
    ]


def record_pass(gate_dir: Path, passed_through: datetime | None, run_id: str) -> None:
    """The gate passed: what it judged is no longer the run's."""
    if passed_through is None:
        return
    state = {"passed_through": passed_through.isoformat(), "run_id": run_id}
    write_json(gate_dir / STATE_FILE, state)
    log.info("gate passed through batches ingested at %s", state["passed_through"])


def acknowledge(
    warehouse_path: Path,
    gate_dir: Path,
    object_key: str,
    reason: str,
    *,
    actor: str | None = None,
    duckdb_config: dict[str, str] | None = None,
) -> Acknowledgement:
    """Record that ``object_key``'s quarantined lines are known and should not hold the build.

    Refuses an object with no quarantined line in the warehouse (a typo must not pass
    silently) and an empty reason.
    """
    if not reason.strip():
        raise ValueError("say why (--reason): it goes to the audit log")
    lines = _quarantined_lines(warehouse_path, object_key, duckdb_config or {})
    ack = Acknowledgement(
        object_key=object_key,
        reason=reason.strip(),
        acknowledged_at=datetime.now(UTC).replace(tzinfo=None),
        actor=actor or getpass.getuser(),
        lines_quarantined=lines,
    )
    listed = read_json(gate_dir / ACKNOWLEDGED_FILE, [])
    write_json(gate_dir / ACKNOWLEDGED_FILE, [*listed, ack.as_json()])
    return ack


def record_in_audit_log(settings, ack: Acknowledgement) -> None:
    """One row in the audit log (``mart_audit_log``), through the ledger's own append."""
    from inferwatch.audit import collect

    event = {
        "source": "inferwatch_cli",
        "source_id": f"quarantine_acknowledge:{ack.object_key}:{ack.acknowledged_at.isoformat()}",
        "event_ts": ack.acknowledged_at,
        "actor": ack.actor,
        "action": "quarantine_acknowledge",
        "object_type": "raw_object",
        "object_id": ack.object_key,
        "details": json.dumps({"reason": ack.reason, "lines_quarantined": ack.lines_quarantined}),
    }
    # Under the collector's lock, keyed, anchored in the lake, and published to audit.duckdb.
    collect.record(settings, [event])


def _quarantined_lines(warehouse_path: Path, object_key: str, config: dict[str, str]) -> int:
    if not warehouse_path.is_file():
        raise ValueError(f"no warehouse at {warehouse_path}: nothing is quarantined yet")
    with duckdb.connect(str(warehouse_path), read_only=True, config=config) as con:
        (lines,) = con.execute(
            f"select coalesce(sum(lines_quarantined), 0) from {RUN_TABLE} where object_key = ?",
            [object_key],
        ).fetchone()
        if lines:
            return int(lines)
        held = con.execute(
            f"select object_key from {RUN_TABLE} where lines_quarantined > 0 "
            "group by object_key order by max(ingested_at) desc, object_key limit 5"
        ).fetchall()
    known = ", ".join(key for (key,) in held) or "none"
    raise ValueError(
        f"no quarantined line of {object_key!r} in the warehouse; newest objects with "
        f"quarantined lines: {known}"
    )


def _timestamp(value: datetime) -> str:
    return f"timestamp '{value.isoformat(sep=' ')}'"


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"

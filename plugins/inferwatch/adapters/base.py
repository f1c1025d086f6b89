"""What an adapter is: one DuckDB query that maps a producer's records onto contract v1 lines.

An adapter reads the relation ``records`` (one row per raw line that is a JSON object, from the
objects routed to it) with the columns

- ``object_key``, ``line_number``, ``rec`` (the record as JSON),
- ``opt_model``, ``opt_model_version``, ``opt_endpoint`` (from configuration, may be NULL),
- ``path_model``, ``path_version`` (the two folders before the key's ``yyyy/mm/…`` partition,
  else the first two under the configured prefix: ``registry.Route.path_names``),

and returns exactly one row per record: ``object_key``, ``line_number`` and one of

- ``out_line``: the contract v1 JSON line the record becomes;
- ``adapter_reason``: why the record cannot be mapped (it is quarantined with this reason);
- ``merged_into``: the line number, in the same object, of the record whose event this record
  was folded into (a request joined to its response, a stream's earlier chunks); it is counted
  as ``lines_merged``, or quarantined with that event's reason when the event is refused.

A record of several instances becomes one line with the contract's ``batch`` array
(``sql.batch`` / ``sql.with_batch``). A line without ``event_id`` gets the hash of the original
record's text (``apply``), so that records differing only in fields the rewrite drops stay apart.

Lines that are blank, not UTF-8, not JSON or not an object never reach an adapter: they go to
the contract parser as they are and get its reasons, so every line is accounted for once.
"""

from __future__ import annotations

from typing import ClassVar


class Adapter:
    #: The name used in the INFERWATCH_PRODUCERS mapping and in quarantine reasons.
    name: ClassVar[str]

    def select(self, records: str) -> str:
        """SQL over ``records``: one output row per input row (see the module docstring)."""
        raise NotImplementedError

    def reason(self, text: str) -> str:
        """A quarantine reason as a SQL literal, prefixed by the adapter's name."""
        return "'" + f"{self.name}: {text}".replace("'", "''") + "'"

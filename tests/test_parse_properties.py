"""Property: whatever bytes arrive, the line parser never crashes and accounts for every line.

Each example is one batch of lines parsed in one DuckDB statement (as ingest does), so a few
hundred examples take seconds. Expectations are computed here, from the bytes, independently
of the SQL: how many lines there are, which are over the size cap, which are not UTF-8.
"""

from __future__ import annotations

import json

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferwatch.ingest.lines import Decoded, lines_table
from inferwatch.ingest.parse import FIELDS, parse

CAP = 400  # bytes, small so that some generated lines exceed it
WHITESPACE = b" \t\r\n\f\v"

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.text(max_size=20)
    | (st.floats(allow_nan=False, allow_infinity=False))
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
timestamps = (
    st.integers(0, 2_000_000_000_000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.datetimes().map(lambda d: d.isoformat() + "Z")
    | st.text(max_size=30)
)
# Objects shaped like the contract: its field names with random (often wrong) types.
contract_like = st.fixed_dictionaries(
    {"timestamp": timestamps | json_values, "model": st.text(max_size=12) | json_values},
    optional={name: json_values for name in FIELDS if name not in ("timestamp", "model")},
).map(json.dumps)
any_json = json_values.map(json.dumps)
raw_bytes = st.binary(max_size=600).map(lambda b: b.replace(b"\n", b""))
line = st.one_of(contract_like, any_json, st.text(max_size=80), raw_bytes).map(
    lambda x: x.encode() if isinstance(x, str) else x
)
line_ends = st.sampled_from([b"\n", b"\r\n"])


def python_lines(text: bytes) -> list[bytes]:
    """The lines as the log contract counts them: a final empty piece after a newline is no line."""
    pieces = text.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    return pieces


def objects(count: int) -> list[bytes]:
    """``count`` generated objects. Planning the parse statement costs ~0.7 s, so examples are
    drawn first and then parsed together, one object each, in a single statement."""
    drawn: list[bytes] = []

    @settings(max_examples=count, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.lists(st.tuples(line, line_ends), max_size=25), st.booleans())
    def draw(lines, final_newline):
        text = b"".join(body + end for body, end in lines)
        if not final_newline and text.endswith(b"\n"):
            text = text[:-1]
        drawn.append(text)

    draw()
    return drawn


def test_every_line_is_loaded_quarantined_or_blank():
    texts = objects(200)
    con = duckdb.connect()
    con.register(
        "lines", lines_table([Decoded(f"raw/{i}.jsonl", t, False) for i, t in enumerate(texts)])
    )
    parse(con, max_line_bytes=CAP)
    rows: dict[str, list[tuple]] = {}
    for row in con.execute(
        "select object_key, line_number, is_blank, reason, event_id, event_ts, model, "
        "model_version, status from parsed order by object_key, line_number"
    ).fetchall():
        rows.setdefault(row[0], []).append(row[1:])
    assert len(texts) >= 150  # hypothesis drew (nearly) what was asked
    for index, text in enumerate(texts):
        check_object(text, rows.get(f"raw/{index}.jsonl", []))


def check_object(text: bytes, rows: list[tuple]) -> None:
    expected = python_lines(text)
    assert [r[0] for r in rows] == list(range(1, len(expected) + 1)), text
    loaded = quarantined = blank = 0
    for number, (raw, row) in enumerate(zip(expected, rows, strict=True), start=1):
        _, is_blank, reason, event_id, event_ts, model, version, status = row
        # the newline is part of the line's bytes as read (the last line may have none)
        size = len(raw) + (1 if number < len(expected) or text.endswith(b"\n") else 0)
        if is_blank:
            blank += 1
            assert reason is None and raw.strip(WHITESPACE) == b"", raw
        elif reason is not None:
            quarantined += 1
            assert reason.strip(), raw
        else:
            loaded += 1
            assert event_id and model is not None and version and event_ts is not None, raw
            assert status in ("ok", "error"), raw
            assert isinstance(json.loads(raw.decode()), dict), raw
        if size > CAP:
            assert reason is not None and reason.startswith("line too long"), raw
        elif not _utf8(raw):
            assert reason == "line is not valid UTF-8", raw
    assert loaded + quarantined + blank == len(expected)


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True

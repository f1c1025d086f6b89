"""The parser's fast path stores exactly what the full statement stores (issue 20).

Each test parses the same lines twice in one DuckDB connection, once with the full statement
alone (``fast=False``, today's parser) and once with the fast path in front of it, and compares
every column of every row of ``parsed`` (bronze rows, quarantine reasons, scrubbed raw lines)
with ``EXCEPT ALL`` both ways. The lines come from a simulated lake, the property-test corpus,
the hostile-input grammar and the hostile suites' own edge cases (imported, not copied).
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

import hostile_grammar as grammar
import test_hostile_names
import test_ingest
import test_parse_properties
import test_pii_everywhere
from inferwatch.ingest import fast_path
from inferwatch.ingest.bronze import ZSTD_LEVEL_ENV, ingest
from inferwatch.ingest.lines import Decoded, decompress, lines_table
from inferwatch.ingest.manifest import discover
from inferwatch.ingest.parse import parse
from inferwatch.lake import Lake, is_raw_log
from inferwatch.simulate import simulate
from test_batched_predictions import _line as batched_line

START = datetime(2025, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim_lake(tmp_path_factory) -> Path:
    """Four hours of simulated logs (valid lines and the simulator's malformed ones)."""
    root = tmp_path_factory.mktemp("fast")
    simulate(str(root / "lake"), truth_dir=root / "truth", start=START,
             end=START + timedelta(hours=4), events=2000, seed=11)  # fmt: skip
    return root / "lake"


def _lines(decoded: list[Decoded]):
    con = duckdb.connect()
    con.register("lines", lines_table(decoded))
    return con


def _sim_decoded(lake: Path) -> list[Decoded]:
    store = Lake(str(lake))
    return [
        decompress(o.key, store.read_bytes(o.key)) for o in store.list("raw") if is_raw_log(o.key)
    ]


def _text_decoded(key: str, lines: list[str | bytes]) -> Decoded:
    data = b"".join((line.encode() if isinstance(line, str) else line) + b"\n" for line in lines)
    return decompress(key, data)


def same_rows_both_ways(con: duckdb.DuckDBPyConnection, **kwargs) -> int:
    """Parse ``lines`` with the full statement, then with the fast path; assert the two
    ``parsed`` tables hold the same rows (all columns); return the lines the fast path took."""
    assert parse(con, fast=False, **kwargs) == 0
    con.execute("create or replace temp table full_parsed as select * from parsed")
    taken = parse(con, fast=True, **kwargs)
    schema = "select column_name, column_type from (describe {})"
    assert (
        con.execute(schema.format("parsed")).fetchall()
        == con.execute(schema.format("full_parsed")).fetchall()
    )
    for a, b in (("parsed", "full_parsed"), ("full_parsed", "parsed")):
        extra = con.execute(f"select * from {a} except all select * from {b} limit 5").fetchall()
        assert extra == [], f"in {a} but not in {b}: {extra}"
    (lines,) = con.execute("select count(*) from lines").fetchone()
    assert con.execute("select count(*) from parsed").fetchone() == (lines,)
    return taken


def test_a_simulated_lake_parses_the_same_and_mostly_on_the_fast_path(sim_lake):
    con = _lines(_sim_decoded(sim_lake))
    taken = same_rows_both_ways(con)
    loaded, quarantined, lines = con.execute(
        "select count(*) filter (reason is null and not is_blank),"
        " count(*) filter (reason is not null), count(*) from parsed"
    ).fetchone()
    assert quarantined > 0  # the simulator's malformed lines went the full statement's way
    # the fast path takes only lines that load, and most of them (the rest: PII, batches)
    assert 0.8 * loaded <= taken <= loaded
    assert taken > lines / 2


def test_the_setting_turns_the_fast_path_off(sim_lake, monkeypatch):
    con = _lines(_sim_decoded(sim_lake)[:3])
    monkeypatch.setenv(fast_path.FAST_PATH_ENV, "0")
    assert parse(con) == 0
    monkeypatch.setenv(fast_path.FAST_PATH_ENV, "1")
    assert parse(con) > 0
    monkeypatch.setenv(fast_path.FAST_PATH_ENV, "maybe")
    with pytest.raises(ValueError, match=fast_path.FAST_PATH_ENV):
        parse(con)


def test_ingest_writes_the_same_files_either_way(sim_lake, tmp_path, monkeypatch):
    """Bronze rows, quarantine rows and manifests (line accounting, batch ids, object keys):
    the same with the fast path on as off (but the time they were ingested)."""
    tables = {}
    for setting in ("0", "1"):
        lake = tmp_path / f"lake{setting}"
        shutil.copytree(sim_lake, lake)
        monkeypatch.setenv(fast_path.FAST_PATH_ENV, setting)
        store = Lake(str(lake))
        report = ingest(store, discover(store), batch_id="b1", user_hash_key=b"k",
                        work_dir=tmp_path / f"work{setting}", threads=2)  # fmt: skip
        assert report.lines_read == report.lines_loaded + report.lines_quarantined + (
            report.lines_blank + report.lines_merged
        )
        tables[setting] = {
            kind: pq.read_table(lake / "bronze" / kind).drop_columns(["ingested_at"])
            for kind in ("events", "manifest")
        } | {"quarantine": pq.read_table(lake / "quarantine").drop_columns(["ingested_at"])}
    con = duckdb.connect()
    for kind in ("events", "manifest", "quarantine"):
        con.register("fast_off", tables["0"][kind])
        con.register("fast_on", tables["1"][kind])
        assert con.execute("select count(*) from fast_off").fetchone()[0] > 0
        for a, b in (("fast_off", "fast_on"), ("fast_on", "fast_off")):
            diff = con.execute(f"select * from {a} except all select * from {b}").fetchall()
            assert diff == [], (kind, a, diff[:3])


def test_the_property_corpus_parses_the_same():
    texts = test_parse_properties.objects(40)
    con = _lines([Decoded(f"raw/{i}.jsonl", t, False) for i, t in enumerate(texts)])
    same_rows_both_ways(con, max_line_bytes=test_parse_properties.CAP)


def test_the_hostile_grammar_parses_the_same():
    """Every case of the hostile-input grammar (names, traversals, depth, width, size around
    the cap, PII in every place, encodings, junk, blanks), each object as the reader sees it."""
    cap = 64 << 10
    (plan,) = grammar.draw_lakes(1, hostile_lines=0, extra_objects=0, bomb_bytes=0,
                                 budget={"customer_churn": 40}, cap=cap)  # fmt: skip
    decoded = [decompress(o.key, o.materialize("/abs", "/tmp")) for o in plan.objects]
    con = _lines(decoded)
    taken = same_rows_both_ways(con, max_line_bytes=cap)
    assert taken > 0  # the grammar's valid lines


def test_the_hostile_suites_edge_cases_parse_the_same():
    violations = test_ingest.test_contract_violations_are_quarantined_with_their_reason
    (marks,) = [m for m in violations.pytestmark if m.name == "parametrize"]
    edge = [
        *(line for line, _ in marks.args[1]),
        *(test_hostile_names._line(**fields) for fields, _ in test_hostile_names.BAD_NAMES),
        test_hostile_names._nested_line(32),
        test_hostile_names._nested_line(33),
        test_ingest.GOOD,
    ]
    when = datetime(2025, 5, 20, tzinfo=UTC)
    batched = [json.dumps(batched_line(n, when, "c1", (1, 3, 2)[n % 3])) for n in range(12)]
    decoded = [
        _text_decoded("raw/edge.jsonl", edge),
        decompress("raw/pii.jsonl", test_pii_everywhere._contract_lines()),
        _text_decoded("raw/batched.jsonl", batched),
        decompress("raw/crlf.jsonl", b"\xef\xbb\xbf" + test_ingest.GOOD.encode() + b"\r\n \n"),
    ]
    con = _lines(decoded)
    assert same_rows_both_ways(con) > 0


def test_tight_caps_hold_on_the_fast_path(sim_lake, monkeypatch):
    """Width and depth caps far below what simulated lines carry: the fast path must leave
    every line they quarantine to the full statement."""
    monkeypatch.setenv("INFERWATCH_MAX_KEYS", "6")
    monkeypatch.setenv("INFERWATCH_MAX_NESTING", "2")
    con = _lines(_sim_decoded(sim_lake)[:6])
    same_rows_both_ways(con)
    reasons = dict(con.execute("select reason, count(*) from parsed group by all").fetchall())
    assert reasons.get("too many keys (over 6 in the JSON object)", 0) > 0


def test_ingest_reports_where_its_time_went(sim_lake, tmp_path, caplog):
    """The ingest report times each step of the chunk loop (``phase_seconds``, logged too):
    the figures ``benchmarks/bench_ingest.py --profile`` prints."""
    lake = tmp_path / "lake"
    shutil.copytree(sim_lake, lake)
    store = Lake(str(lake))
    with caplog.at_level(logging.INFO, logger="inferwatch.ingest.bronze"):
        report = ingest(store, discover(store), batch_id="b1", user_hash_key=b"k",
                        work_dir=tmp_path / "work", threads=2)  # fmt: skip
    steps = report.phase_seconds
    for step in (
        "parse: fast statement, every line",
        "parse: full statement, lines the fast path left",
        "write bronze rows (sorted, zstd)",
        "write quarantine",
        "hash user ids",
        "wait for fetch + inflate",
        "inflate (fetch pool, overlaps the chunks)",
    ):
        assert steps.get(step, -1) >= 0, step
    # the chunk loop's steps are parts of the whole (the pool's inflating runs beside them)
    inline = sum(v for k, v in steps.items() if "fetch pool" not in k)
    assert 0 < inline <= report.seconds
    assert report.as_dict()["phase_seconds"] == steps
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ingest steps")]
    assert logged and "parse: fast statement, every line" in logged[0]


def test_the_zstd_level_is_a_setting(sim_lake, tmp_path, monkeypatch):
    """``INFERWATCH_INGEST_ZSTD_LEVEL`` picks the level bronze is written with (the same rows
    at any level); a level zstd does not have is refused before anything is written."""
    monkeypatch.setenv(ZSTD_LEVEL_ENV, "23")
    store = Lake(str(tmp_path / "refused"))
    shutil.copytree(sim_lake, tmp_path / "refused")
    with pytest.raises(ValueError, match=ZSTD_LEVEL_ENV):
        ingest(store, discover(store), batch_id="b1", user_hash_key=b"k",
               work_dir=tmp_path / "w0", threads=2)  # fmt: skip
    assert not (tmp_path / "refused" / "bronze").exists()
    rows = {}
    for level in ("1", "19"):
        monkeypatch.setenv(ZSTD_LEVEL_ENV, level)
        lake = tmp_path / f"lake{level}"
        shutil.copytree(sim_lake, lake)
        store = Lake(str(lake))
        ingest(store, discover(store), batch_id="b1", user_hash_key=b"k",
               work_dir=tmp_path / f"w{level}", threads=2)  # fmt: skip
        rows[level] = pq.read_table(lake / "bronze" / "events").drop_columns(["ingested_at"])
    assert rows["1"].num_rows > 0
    order = [("object_key", "ascending"), ("line_number", "ascending")]
    assert rows["1"].sort_by(order).equals(rows["19"].sort_by(order))

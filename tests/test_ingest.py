"""Parsing, validation and scrubbing of raw lines, without Airflow or dbt."""

from __future__ import annotations

import gzip
import json

import duckdb
import pytest

from inferwatch.ingest.bronze import EVENT_COLUMNS, ingest
from inferwatch.ingest.lines import decompress, lines_table, split_lines
from inferwatch.ingest.manifest import discover, read_manifest
from inferwatch.ingest.parse import parse
from inferwatch.ingest.pii import hash_user_id, scrub_text
from inferwatch.lake import Lake

GOOD = '{"timestamp": "2025-05-20T14:52:00Z", "model": "m", "model_version": "v1"}'


def parsed(*lines: str, raw: bytes | None = None) -> list[dict]:
    data = raw if raw is not None else ("\n".join(lines) + "\n").encode()
    con = duckdb.connect()
    con.register("lines", lines_table([decompress("raw/x.jsonl", data)]))
    parse(con)
    cursor = con.execute("select * from parsed order by line_number")
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_split_lines_keeps_every_line_and_drops_only_the_final_empty_piece():
    assert split_lines(b"a\nb\n").to_pylist() == [b"a\n", b"b\n"]
    assert split_lines(b"a\n\nb").to_pylist() == [b"a\n", b"\n", b"b"]
    assert split_lines(b"").to_pylist() == []


def test_cut_gzip_keeps_the_lines_before_the_cut():
    body = "".join(json.dumps({"timestamp": 1716216720 + i, "model": "m", "pad": "x" * (i % 97)})
                   + "\n" for i in range(5000)).encode()  # fmt: skip
    blob = gzip.compress(body)
    decoded = decompress("raw/cut.jsonl.gz", blob[: len(blob) * 2 // 3])
    assert decoded.truncated
    assert 0 < len(decoded.text) < len(body)
    assert body.startswith(decoded.text)


def test_multi_member_gzip_is_read_whole():
    decoded = decompress("raw/m.jsonl.gz", gzip.compress(b"a\n") + gzip.compress(b"b\n"))
    assert decoded.text == b"a\nb\n" and not decoded.truncated


def test_bom_crlf_and_blank_lines_are_normal_input():
    rows = parsed(
        raw=b"\xef\xbb\xbf" + GOOD.encode() + b"\r\n \t\r\n\r\n" + GOOD.encode() + b"\r\n"
    )
    assert [r["is_blank"] for r in rows] == [False, True, True, False]
    assert rows[0]["reason"] is None and rows[3]["reason"] is None
    # the same line with and without BOM/CRLF gets the same content hash as event_id
    assert rows[0]["event_id"] == rows[3]["event_id"]


@pytest.mark.parametrize(
    "line,reason",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"model": "m"}', "missing field: timestamp"),
        ('{"timestamp": "2025-05-20T14:52:00Z"}', "missing field: model"),
        ('{"timestamp": "yesterday", "model": "m"}', "unparseable timestamp"),
        ('{"timestamp": 1716216720, "model": "m", "confidence": 1.7}', "out of range: confidence (0..1)"),
        ('{"timestamp": 1716216720, "model": "m", "latency_ms": -5}', "out of range: latency_ms (>= 0)"),
        ('{"timestamp": 1716216720, "model": "m", "latency_ms": "fast"}', "wrong type: latency_ms (number expected)"),
        ('{"timestamp": 1716216720, "model": "m", "retry_count": -1}', "out of range: retry_count (>= 0)"),
        ('{"timestamp": 1716216720, "model": "m", "status": "maybe"}', "invalid value: status (ok or error)"),
        ('{"timestamp": 1716216720, "model": "m", "input_features": "x"}', "wrong type: input_features (object expected)"),
    ],
)  # fmt: skip
def test_contract_violations_are_quarantined_with_their_reason(line, reason):
    (row,) = parsed(line)
    assert row["reason"] == reason


def test_keys_named_twice_quarantine_the_line_and_never_fail_the_chunk():
    """DuckDB cannot cast an object with a repeated key to a MAP (the unknown-field and PII
    paths do): such a line once failed the whole chunk, for ever. Now it alone is quarantined."""
    rows = parsed(
        '{"timestamp": 1716216720, "model": "m", "model": "n"}',
        '{"timestamp": 1716216720, "model": "m", "team": "a", "team": "b"}',
        '{"timestamp": 1716216720, "model": "m", "input_features": {"email": "a@b.co", "email": "c@d.co"}}',
        '{"timestamp": 1716216720, "model": "m", "resources": {"note": "x@y.io", "note": 1}}',
        '{"timestamp": 1716216720, "model": "m", "input_features": {"age": 3}, "team": "a"}',
        # no PII, but the drift and repeated-input marts split input_features into entries
        '{"timestamp": 1716216720, "model": "m", "input_features": {"age": 3, "age": 4}}',
        '{"timestamp": 1716216720, "model": "m", "resources": {"gpu": 1, "gpu": 2}}',
    )  # fmt: skip
    assert [r["reason"] for r in rows] == [
        "duplicate key in the JSON object",
        "duplicate key in the JSON object",
        "duplicate key in input_features",
        "duplicate key in resources",
        None,
        "duplicate key in input_features",
        None,
    ]
    assert json.loads(rows[4]["extra"]) == {"team": "a"}
    # quarantined lines keep their (scrubbed) text: nothing is lost, no PII kept
    assert "a@b.co" not in rows[2]["raw_line"] and '"age"' not in rows[2]["raw_line"]


def test_invalid_utf8_is_quarantined_not_a_crash():
    (row,) = parsed(raw=b'{"timestamp": 1, "model": "\xff\xfe"}\n')
    assert row["reason"] == "line is not valid UTF-8"


def test_timestamps_in_every_accepted_form_become_utc():
    rows = parsed(
        '{"timestamp": "2025-05-20T16:52:00+02:00", "model": "m"}',
        '{"timestamp": "2025-05-20T14:52:00.250Z", "model": "m"}',
        '{"timestamp": 1747752720, "model": "m"}',
        '{"timestamp": 1747752720250, "model": "m"}',
    )
    stamps = [str(r["event_ts"]) for r in rows]
    assert stamps == [
        "2025-05-20 14:52:00", "2025-05-20 14:52:00.250000",
        "2025-05-20 14:52:00", "2025-05-20 14:52:00.250000",
    ]  # fmt: skip


def test_model_version_comes_from_the_name_only_when_absent():
    rows = parsed(
        '{"timestamp": 1, "model": "customer_churn_v2"}',
        '{"timestamp": 1, "model": "customer_churn_v2", "model_version": "v9"}',
        '{"timestamp": 1, "model": "ranker"}',
    )
    assert [(r["model"], r["model_version"]) for r in rows] == [
        ("customer_churn", "v2"), ("customer_churn_v2", "v9"), ("ranker", "unknown"),
    ]  # fmt: skip


def test_status_defaults_from_error_and_error_types_are_kept():
    rows = parsed(
        '{"timestamp": 1, "model": "m", "error": {"type": "timeout", "message": "slow"}}',
        '{"timestamp": 1, "model": "m", "error": "invalid_input"}',
        '{"timestamp": 1, "model": "m"}',
    )
    assert [(r["status"], r["error_type"]) for r in rows] == [
        ("error", "timeout"), ("error", "invalid_input"), ("ok", None),
    ]  # fmt: skip


def test_pii_is_scrubbed_from_features_errors_unknown_fields_and_quarantine():
    rows = parsed(
        json.dumps({
            "timestamp": 1, "model": "m", "user_id": "u-1",
            "input_features": {"email": "ann@example.com", "note": "call +1 415 555 0100", "age": 3},
            "error": {"type": "model_error", "message": "failed for bob@example.org"},
            "geo": {"ip": "203.0.113.7", "country": "DE"},
            "custom": {"contact": "eve@example.net"},
        }),
        '{"timestamp": "soon", "model": "m", "user_id": "carol@example.com", "ip": "198.51.100.9"}',
    )  # fmt: skip
    good, bad = rows
    # user_id lives only inside the parse step; bronze gets its keyed hash (EVENT_COLUMNS)
    assert "user_id," not in EVENT_COLUMNS.replace(" ", "") and "user_hash" in EVENT_COLUMNS
    stored = [{k: v for k, v in row.items() if k != "user_id"} for row in rows]
    everything = json.dumps(stored, default=str)
    for secret in ("ann@", "bob@", "eve@", "carol@", "203.0.113.7", "198.51.100.9", "555 0100"):
        assert secret not in everything
    assert json.loads(good["input_features"]) == {"note": "call [redacted:phone]", "age": 3}
    assert good["geo_country"] == "DE"
    assert bad["reason"] == "unparseable timestamp" and "[redacted]" in bad["raw_line"]


def test_scrub_text_and_user_hash():
    assert scrub_text("mail a.b@c.io from 10.0.0.1") == "mail [redacted:email] from [redacted:ipv4]"
    assert hash_user_id("u", b"k1") != hash_user_id("u", b"k2")
    assert len(hash_user_id("u", b"k1")) == 64


def test_ingest_is_accounted_and_rerun_safe(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    lake.write_bytes("raw/a.jsonl", (GOOD + "\n\nnot json\n").encode())
    lake.write_bytes("raw/b.jsonl.gz", gzip.compress((GOOD.replace("v1", "v2") + "\n").encode()))
    lake.write_bytes("raw/notes.txt", b"ignored: not a log file")
    new = discover(lake)
    assert sorted(o.key for o in new) == ["raw/a.jsonl", "raw/b.jsonl.gz"]
    report = ingest(lake, new, batch_id="b1", user_hash_key=b"k", work_dir=tmp_path / "w")
    assert (
        report.lines_read,
        report.lines_loaded,
        report.lines_quarantined,
        report.lines_blank,
    ) == (4, 2, 1, 1)
    assert discover(lake) == []
    # a rewritten object is discovered again
    lake.write_bytes("raw/a.jsonl", (GOOD + "\n").encode() * 2)
    assert [o.key for o in discover(lake)] == ["raw/a.jsonl"]
    assert len(read_manifest(lake)) == 2


def test_scrubbing_never_rewrites_numbers_or_breaks_json():
    (row,) = parsed(json.dumps({
        "timestamp": 1, "model": "m",
        "input_features": {"monthly_charges": 35.12345678, "card_like": 4111111111111111,
                           "note": "card 4111 1111 1111 1111", "nested": {"to": "x@y.io", "n": 1.5}},
    }))  # fmt: skip
    features = json.loads(row["input_features"])
    assert features["monthly_charges"] == 35.12345678
    assert features["note"] == "card [redacted:card]"
    assert features["nested"] == {"to": "[redacted:email]", "n": 1.5}

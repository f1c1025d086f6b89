"""The PII policy (plugins/inferwatch/ingest/pii_policy.yml): every kind is caught, in DuckDB and
in Python alike, look-alikes that are not PII survive, and a policy file can replace it."""

from __future__ import annotations

import duckdb
import pytest

from inferwatch.ingest import pii

CAUGHT = [
    ("mail jane.doe42@example.com now", "email"),
    ("IBAN DE89 3704 0044 0532 0130 00 paid", "iban"),
    ("iban GB82WEST12345698765432", "iban"),
    ("card 4111 1111 1111 1111 declined", "card"),
    ("card 4111-1111-1111-1111", "card"),
    ("amex 378282246310005", "card"),
    ("ssn 123-45-6789 on file", "ssn"),
    ("from 2001:db8::1 today", "ipv6"),
    ("from fe80::1:2:3 today", "ipv6"),
    ("from 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "ipv6"),
    ("loopback ::1 here", "ipv6"),
    ("prefix 2001:db8:: here", "ipv6"),
    ("from 192.0.2.17 today", "ipv4"),
    ("call +1-202-555-0143", "phone"),
    ("call (202) 555-0143", "phone"),
    ("call +4915112345678", "phone"),
]

KEPT = [
    "order 4111111111111112 (fails Luhn)",
    "at 2025-05-20T14:52:00Z took 122 ms",
    "epoch 1747752720000 and 1747752720",
    "std::vector out of range",
    "CUDA error: out of memory",
    "predict() raised ValueError: Input contains NaN",
    "git 3f1c2a9e8b7d6c5b4a39281706f5e4d3c2b1a0f9",
]


@pytest.fixture(scope="module")
def con():
    with duckdb.connect() as connection:
        yield connection


def _sql(con, text: str, line: bool = False) -> str:
    expr = pii.sql_scrub_line("t") if line else pii.sql_scrub_text("t")
    return con.execute(f"select {expr} from (select ?::VARCHAR as t)", [text]).fetchone()[0]


@pytest.mark.parametrize(("text", "kind"), CAUGHT)
def test_each_kind_is_redacted_in_duckdb_and_python(con, text, kind):
    expected = pii.scrub_text(text)
    assert f"[redacted:{kind}]" in expected, expected
    assert _sql(con, text) == expected
    # nothing of the value's digits or address survives next to the token
    assert not any(ch.isdigit() for ch in expected.split(f"[redacted:{kind}]")[-1][:2])


@pytest.mark.parametrize("text", KEPT)
def test_look_alikes_survive(con, text):
    assert pii.scrub_text(text) == text
    assert _sql(con, text) == text


def test_luhn():
    assert pii.luhn_ok("4111 1111 1111 1111")
    assert pii.luhn_ok("79927398713")
    assert not pii.luhn_ok("79927398710")
    assert not pii.luhn_ok("")


def test_unparseable_line_loses_known_keys_and_patterns(con):
    line = (
        '{"user_id": "u-000123", "Email": "x@example.org", "geo": {"ip": "203.0.113.9"}, '
        '"note": "ssn 123-45-6789'
    )
    scrubbed = pii.scrub_line(line)
    assert _sql(con, line, line=True) == scrubbed
    for value in ("u-000123", "x@example.org", "203.0.113.9", "123-45-6789"):
        assert value not in scrubbed
    assert '"user_id": "[redacted]"' in scrubbed


def test_policy_file_override(tmp_path, monkeypatch):
    path = tmp_path / "policy.yml"
    path.write_text(
        "keys: [badge]\npatterns:\n  badge_no:\n    regex: 'B-[0-9]{5}'\n"
        "  card:\n    regex: '\\b[0-9]{16}\\b'\n    check: luhn\n"
    )
    monkeypatch.setenv(pii.POLICY_ENV, str(path))
    policy = pii.load_policy()
    assert policy.keys == ("badge",)
    scrubbed = pii.scrub_text("B-12345 4111111111111111", policy)
    assert scrubbed == "[redacted:badge_no] [redacted:card]"
    assert pii.scrub_text("jane@example.com", policy) == "jane@example.com"  # not in this policy
    bad = tmp_path / "bad.yml"
    bad.write_text("keys: [x]\npatterns:\n  card: {regex: 'x', check: mod97}\n")
    with pytest.raises(ValueError, match="unknown check"):
        pii.load_policy(bad)

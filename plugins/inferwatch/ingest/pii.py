"""PII policy: what counts as personal data, as regular expressions both DuckDB and Python run.

Applied before bronze (DESIGN.md: governance). The same patterns scrub input features, error
messages, unknown fields and whole quarantined lines, so one policy covers every path.
The patterns are written in the common subset of RE2 (DuckDB) and Python's ``re``.
"""

from __future__ import annotations

import hashlib
import hmac
import re

#: Feature or field names that are personal data whatever their value looks like.
PII_KEY_PATTERN = (
    r"^(e_?mail|email_address|phone|phone_number|mobile|msisdn|ip|ip_address|ipv4|ipv6|"
    r"ssn|social_security_number|card|card_number|credit_card|iban|user_id|username|"
    r"full_name|first_name|last_name|address|street)$"
)

#: Value patterns, most specific first; each match is replaced by ``[redacted:<kind>]``.
PII_VALUE_PATTERNS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "ipv4": r"\b(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\b",
    "ipv6": r"\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b",
    # 15-19 digits: a 13-digit run is far more often an epoch in milliseconds than a card.
    "card": r"\b[0-9](?:[ -]?[0-9]){14,18}\b",
    # Separators or a leading + are required, so that plain counters and epochs survive.
    "phone": r"(?:\+[0-9]{1,3}[ .-]?)?\(?[0-9]{2,4}\)?[ .-][0-9]{3,4}[ .-]?[0-9]{3,4}\b|\+[0-9]{8,15}\b",
}

#: A cheap first test on an object's JSON text: could anything in it be PII?
PII_ANY_PATTERN = (
    r'(?i)"' + PII_KEY_PATTERN.strip("^$") + r'"\s*:|' + "|".join(PII_VALUE_PATTERNS.values())
)

#: In a raw (possibly unparseable) line: the value of a known PII key, quoted or not.
PII_KEY_VALUE_IN_TEXT = (
    r'"(user_id|email|e_mail|phone|ip|ip_address|ssn|card_number|credit_card)"\s*:\s*'
    r'("(?:[^"\\]|\\.)*"|[^,}\]]*)'
)


def sql_scrub_text(expr: str) -> str:
    """A DuckDB expression that redacts every PII value pattern in the text ``expr``."""
    out = expr
    for kind, pattern in PII_VALUE_PATTERNS.items():
        out = f"regexp_replace({out}, {sql_literal(pattern)}, '[redacted:{kind}]', 'g')"
    return out


def sql_scrub_line(expr: str) -> str:
    """Scrub a whole raw line: known PII keys' values first, then value patterns."""
    keyed = (
        f"regexp_replace({expr}, {sql_literal(PII_KEY_VALUE_IN_TEXT)}, "
        "'\"\\1\": \"[redacted]\"', 'g')"
    )
    return sql_scrub_text(keyed)


def scrub_text(text: str) -> str:
    """Python twin of :func:`sql_scrub_text` (for log messages and tests)."""
    for kind, pattern in PII_VALUE_PATTERNS.items():
        text = re.sub(pattern, f"[redacted:{kind}]", text)
    return text


def hash_user_id(user_id: str, key: bytes) -> str:
    """Keyed hash (HMAC-SHA256, hex) of a user id: stable per key, useless without it."""
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

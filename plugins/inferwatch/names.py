"""The patterns that names from log lines must match before they are trusted.

A model name, a version, an endpoint or a feature name arrives in a log line written by
someone else, and later becomes a lake path (``reference/<model>/<version>/``), a Data Docs
key, an alert's e-mail subject, a SQL value and a chart label. Checking them once, at the
door (the parser quarantines a line whose names do not match), is what lets every later step
use them as they are. docs/contract.md ("Name rules") documents the patterns for producers.

Every pattern is written in the subset that Python's ``re`` and DuckDB's RE2 read alike, so
the parser (SQL) and the Python steps apply the very same rule.
"""

from __future__ import annotations

import hashlib
import re

#: ``customer_churn``, ``fraud-detector.eu``, ``llama3.1:8b`` (Ollama, Bedrock's ``…-v1:0``),
#: ``claude-3-5-sonnet@20240620`` (Vertex AI): starts with a letter or digit (never ``.`` or
#: ``..``), no separator, no ``=`` (a Hive partition in a path), no space or control character.
MODEL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}"
#: ``v2``, ``1.4.0``, ``2025-05-01``, ``3f2a9c1``.
MODEL_VERSION_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}"
#: ``/v1/predict``, ``churn-endpoint``, ``projects/p/endpoints/123``: slashes allowed (an
#: endpoint never becomes a lake path), no space, quote or control character.
ENDPOINT_PATTERN = r"[A-Za-z0-9_./:@+-]{1,256}"
#: ``age``, ``plan``, ``amount.log``, ``num:tenure``, ``sepal length (cm)`` (scikit-learn's
#: own data sets): spaces allowed inside (not at the ends).
FEATURE_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.:+() -]{0,126}[A-Za-z0-9_.:+()-]|[A-Za-z0-9_]"

#: ``acme-corp``, ``tenant 42``, ``Acme, Inc.``: any printable text up to 256 characters. A
#: client id is a chart label and an alert's text, never a path: only control characters (a
#: newline that splits a label or a header) and runaway lengths are refused.
CLIENT_ID_PATTERN = r"[^\x00-\x1f\x7f]{0,256}"

PATTERNS = {
    "model": MODEL_PATTERN,
    "model_version": MODEL_VERSION_PATTERN,
    "endpoint": ENDPOINT_PATTERN,
    "feature": FEATURE_PATTERN,
    "client_id": CLIENT_ID_PATTERN,
}
_COMPILED = {kind: re.compile(pattern) for kind, pattern in PATTERNS.items()}


def is_valid(kind: str, value: object) -> bool:
    """Does ``value`` match the whole pattern of ``kind`` (``model``, ``model_version``, …)?"""
    return isinstance(value, str) and _COMPILED[kind].fullmatch(value) is not None


class InvalidName(ValueError):
    """A name that should have been refused at the door reached a step that uses it."""


def sql_valid_model(column: str = "model", reason: str = "reason") -> str:
    """SQL: the line's model when it is a valid name, else NULL (junk, a bad name, a number).

    Quarantine rows carry it so the gate can tell a model losing lines (its figures mislead)
    from lines that name no model at all (nothing to mislead about): README.md, "Validation".
    A number's text (``42``) matches the pattern, so a line refused for that type names none.
    """
    return (
        f"case when regexp_full_match({column}, '{MODEL_PATTERN}') and {reason} is distinct "
        f"from 'wrong type: model (string expected)' then {column} end"
    )


def require(kind: str, value: object) -> str:
    """``value`` itself when it is a valid ``kind`` name; else InvalidName (the steps' check for
    names an older bronze let in before the parser checked them)."""
    if not is_valid(kind, value):
        raise InvalidName(f"invalid {kind} name: {value!r}")
    return value  # type: ignore[return-value]  # is_valid checked it is a str


#: Characters a name keeps as they are in a file name it becomes (``encoded``).
_KEPT = re.compile(r"[A-Za-z0-9_.-]")
#: Longer encodings are cut and end in ``~~`` and a hash (a file name has at most 255 bytes).
_MAX_ENCODED = 100


def encoded(value: object) -> str:
    """``value`` as one file-name-safe piece, whatever it holds: every character outside
    ``[A-Za-z0-9_.-]`` becomes ``~`` and its UTF-8 bytes in hex (``eu/churn`` →
    ``eu~2Fchurn``; ``~`` itself → ``~7E``), so distinct values stay distinct. For keys that
    name one model in a store that refuses separators (Data Docs), even names an older bronze
    let in."""
    text = str(value)
    out = "".join(
        char if _KEPT.fullmatch(char) else "".join(f"~{byte:02X}" for byte in char.encode())
        for char in text
    )
    if len(out) > _MAX_ENCODED:  # "~~" never comes out of the encoding above
        out = out[: _MAX_ENCODED - 18] + "~~" + hashlib.sha256(text.encode()).hexdigest()[:16]
    return out

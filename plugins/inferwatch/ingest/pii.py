"""PII policy: what counts as personal data, as regular expressions both DuckDB and Python run.

Applied before bronze (README: Governance). The same policy scrubs every stored field (texts,
ids, and JSON objects at any depth, keys included) and whole quarantined lines, so one policy
covers every path. The policy is a YAML file: ``pii_policy.yml`` beside this module by
default, or the file that ``INFERWATCH_PII_POLICY`` names (read once, when this module is
imported). It lists

- ``keys``: field names that are personal data whatever their value (dropped from objects at
  any depth; their values blanked in a line that does not parse);
- ``patterns``: kind → regular expression, in the common subset of RE2 (DuckDB) and Python's
  ``re``; a kind may add ``check: luhn`` (card numbers): a match is then redacted only when its
  digits pass the Luhn check, which no regular expression can decide. In DuckDB the check is an
  SQL expression over the candidates ``regexp_extract_all`` finds; in Python, a function.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import yaml

DEFAULT_POLICY_PATH = Path(__file__).with_name("pii_policy.yml")
POLICY_ENV = "INFERWATCH_PII_POLICY"
CHECKS = ("luhn",)


@dataclass(frozen=True)
class PiiPolicy:
    keys: tuple[str, ...]
    #: kind → (regex, check or None), in the order they are applied.
    patterns: tuple[tuple[str, str, str | None], ...]
    source: str = ""

    @functools.cached_property
    def key_pattern(self) -> str:
        """Whole-name match of a lower-cased key."""
        return "^(" + "|".join(re.escape(k) for k in self.keys) + ")$"

    @functools.cached_property
    def any_pattern(self) -> str:
        """A cheap first test on a JSON text: could anything in it be PII? Key names are
        matched in any case, values as the patterns say (a case-blind IBAN pattern would take
        one hex id in six)."""
        keys = "|".join(re.escape(k) for k in self.keys)
        return r'"(?i:' + keys + r')"\s*:|' + self.value_pattern

    @functools.cached_property
    def value_pattern(self) -> str:
        """Any value pattern (a cheap first test on a text: could a scrub change it?)."""
        return "|".join(f"(?:{p})" for _, p, _ in self.patterns)

    @functools.cached_property
    def key_value_in_text(self) -> str:
        """In a raw (possibly unparseable) line: the value of a known PII key, quoted or not."""
        keys = "|".join(re.escape(k) for k in self.keys)
        return r'"(' + keys + r')"\s*:\s*("(?:[^"\\]|\\.)*"|[^,}\]]*)'


def load_policy(path: str | Path | None = None) -> PiiPolicy:
    """Read a policy file (default: ``$INFERWATCH_PII_POLICY`` or the packaged one)."""
    path = Path(path or os.environ.get(POLICY_ENV) or DEFAULT_POLICY_PATH)
    doc = yaml.safe_load(path.read_text()) or {}
    keys = tuple(dict.fromkeys(str(k).strip().lower() for k in doc.get("keys") or []))
    patterns = []
    for kind, spec in (doc.get("patterns") or {}).items():
        spec = {"regex": spec} if isinstance(spec, str) else dict(spec)
        regex, check = spec["regex"], spec.get("check")
        if check is not None and check not in CHECKS:
            raise ValueError(f"{path}: pattern {kind!r}: unknown check {check!r} (known: {CHECKS})")
        if not re.fullmatch(r"[a-z0-9_]+", kind):
            raise ValueError(f"{path}: pattern kind {kind!r} must be lower-case snake_case")
        re.compile(regex)  # fails early on a pattern Python cannot run
        patterns.append((kind, regex, check))
    if not keys or not patterns:
        raise ValueError(f"{path}: a PII policy needs both keys and patterns")
    return PiiPolicy(keys=keys, patterns=tuple(patterns), source=str(path))


#: The policy in force for this process.
POLICY = load_policy()
#: Compatibility names (parse.py and the adapters use them).
PII_KEY_PATTERN = POLICY.key_pattern
PII_ANY_PATTERN = POLICY.any_pattern
PII_KEY_VALUE_IN_TEXT = POLICY.key_value_in_text
PII_VALUE_PATTERNS: dict[str, str] = {kind: regex for kind, regex, _ in POLICY.patterns}
#: A text that is a UUID holds no PII, but the phone pattern reads its digit groups as a number
#: (about one random UUID in 70): ids of this shape are kept as they are.
UUID_PATTERN = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"


# ---------- Luhn
def luhn_ok(candidate: str) -> bool:
    """Whether the digits of ``candidate`` pass the Luhn (mod 10) check."""
    digits = [int(c) for c in candidate if c.isdigit()]
    if not digits:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        total += (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d
    return total % 10 == 0


def sql_luhn_ok(expr: str) -> str:
    """DuckDB expression: whether the digits of the text ``expr`` pass the Luhn check."""
    return (
        "(list_sum(list_transform(list_reverse(string_split("
        f"regexp_replace({expr}, '[^0-9]', '', 'g'), '')), "
        "(iw_d, iw_i) -> case when iw_i % 2 = 0 then (iw_d::INTEGER * 2) % 10 + "
        "(iw_d::INTEGER * 2) // 10 else iw_d::INTEGER end)) % 10 = 0)"
    )


# ---------- DuckDB
def _sql_replace_checked(expr: str, kind: str, regex: str, check: str) -> str:
    """Replace only the matches of ``regex`` that pass ``check`` (the text bound once)."""
    assert check == "luhn"
    return (
        f"list_transform([{expr}], iw_t -> list_reduce(list_prepend(iw_t, list_filter("
        f"regexp_extract_all(iw_t, {sql_literal(regex)}), iw_c -> {sql_luhn_ok('iw_c')})), "
        f"(iw_a, iw_c) -> replace(iw_a, iw_c, '[redacted:{kind}]')))[1]"
    )


def sql_scrub_text(expr: str, policy: PiiPolicy | None = None) -> str:
    """A DuckDB expression that redacts every PII value pattern in the text ``expr``."""
    out = expr
    for kind, regex, check in (policy or POLICY).patterns:
        if check:
            out = _sql_replace_checked(out, kind, regex, check)
        else:
            out = f"regexp_replace({out}, {sql_literal(regex)}, '[redacted:{kind}]', 'g')"
    return out


def sql_scrub_line(expr: str, policy: PiiPolicy | None = None) -> str:
    """Scrub a whole raw line: known PII keys' values first, then value patterns."""
    policy = policy or POLICY
    keyed = (
        f"regexp_replace({expr}, {sql_literal('(?i)' + policy.key_value_in_text)}, "
        "'\"\\1\": \"[redacted]\"', 'g')"
    )
    return sql_scrub_text(keyed, policy)


# ---------- Python twins (log messages, the audit trail, tests)
_CHECK_FUNCTIONS: dict[str, Callable[[str], bool]] = {"luhn": luhn_ok}


@functools.lru_cache(maxsize=8)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def scrub_text(text: str, policy: PiiPolicy | None = None) -> str:
    """Python twin of :func:`sql_scrub_text`."""
    policy = policy or POLICY
    if not _compiled(policy.value_pattern).search(text):
        return text  # most texts: one search instead of one substitution per kind
    for kind, regex, check in policy.patterns:
        token = f"[redacted:{kind}]"
        if check:
            ok = _CHECK_FUNCTIONS[check]
            text = re.sub(regex, lambda m, ok=ok, token=token: token if ok(m[0]) else m[0], text)
        else:
            text = re.sub(regex, token, text)
    return text


def scrub_line(text: str, policy: PiiPolicy | None = None) -> str:
    """Python twin of :func:`sql_scrub_line`."""
    policy = policy or POLICY
    keyed = re.sub("(?i)" + policy.key_value_in_text, r'"\1": "[redacted]"', text)
    return scrub_text(keyed, policy)


# ---------- JSON values, keys included, at any depth (Python; a DuckDB function in the parser)
#: The DuckDB name of :func:`scrub_json` over a list of JSON texts (``register_functions``).
SCRUB_JSON_FUNCTION = "iw_scrub_json"


class _Number(str):
    """A JSON number (or NaN, Infinity) kept as written: re-printing it could change it."""


class _Object(list):
    """A JSON object as its (key, value) pairs, in order and repeated keys included."""


def scrub_json(text: str, policy: PiiPolicy | None = None) -> str:
    """A JSON value (minified text) with PII removed at any depth; always valid JSON.

    An entry whose key is a PII name, or holds a PII value (``{"alice@example.com": 1}``), is
    dropped whatever its value; string values are scrubbed by pattern; numbers are never
    rewritten. A repeated key keeps its first value (as DuckDB reads it), so the result has
    none. A text Python cannot read (nested too deep for its parser) becomes an empty object
    or array (a string, ``"[redacted]"``): nothing of it is kept rather than something unscrubbed.
    """
    policy = policy or POLICY
    if not _compiled(policy.any_pattern).search(text):
        return text  # most fields of a suspect line: one search, no parse
    try:
        value = json.loads(text, object_pairs_hook=_Object, parse_float=_Number,
                           parse_int=_Number, parse_constant=_Number)  # fmt: skip
        scrubbed = _scrub_node(value, policy, _compiled(policy.key_pattern))
        out: list[str] = []
        _dump(scrubbed, out, _quote)
        text = "".join(out)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (\ud800) cannot be written as UTF-8
            out.clear()
            _dump(scrubbed, out, _quote_ascii)
            text = "".join(out)
        return text
    except (ValueError, RecursionError):
        return {"[": "[]", "{": "{}"}.get(text.lstrip()[:1], '"[redacted]"')


def _scrub_node(node: object, policy: PiiPolicy, key_re: re.Pattern[str]) -> object:
    if isinstance(node, _Object):
        kept: dict[str, object] = {}
        for key, value in node:
            if key in kept or key_re.match(key.lower()) or scrub_text(key, policy) != key:
                continue
            kept[key] = _scrub_node(value, policy, key_re)
        return _Object(kept.items())
    if isinstance(node, list):
        return [_scrub_node(item, policy, key_re) for item in node]
    if isinstance(node, str) and not isinstance(node, _Number):
        return scrub_text(node, policy)
    return node


_quote = json.encoder.encode_basestring  # type: ignore[attr-defined]
_quote_ascii = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def _dump(node: object, out: list[str], quote: Callable[[str], str]) -> None:
    """Minified JSON, as DuckDB prints it (UTF-8 kept, numbers as read)."""
    if isinstance(node, _Object):
        out.append("{")
        for i, (key, value) in enumerate(node):
            out.append("," if i else "")
            out.append(quote(key) + ":")
            _dump(value, out, quote)
        out.append("}")
    elif isinstance(node, list):
        out.append("[")
        for i, item in enumerate(node):
            out.append("," if i else "")
            _dump(item, out, quote)
        out.append("]")
    elif isinstance(node, _Number):
        out.append(str.__str__(node))
    elif isinstance(node, str):
        out.append(quote(node))
    else:
        out.append({True: "true", False: "false", None: "null"}[node])


def _scrub_lists(lists: pa.Array) -> pa.Array:
    """:func:`scrub_json` on each text of each list; the parser hands it one list per suspect
    line (all of that line's fields at once: one call per vector, not one per field) and NULL
    for every other line."""
    kind = pa.list_(pa.string())
    if lists.null_count == len(lists):
        return pa.nulls(len(lists), kind)
    return pa.array(
        [
            None if row is None else [None if text is None else scrub_json(text) for text in row]
            for row in lists.to_pylist()
        ],
        type=kind,
    )


def register_functions(con: duckdb.DuckDBPyConnection) -> None:
    """Create :data:`SCRUB_JSON_FUNCTION` (VARCHAR[] → VARCHAR[]) on ``con``, once."""
    exists = con.execute(
        "select count(*) from duckdb_functions() where function_name = ?", [SCRUB_JSON_FUNCTION]
    ).fetchone()[0]
    if not exists:
        texts = duckdb.list_type(duckdb.sqltype("VARCHAR"))
        con.create_function(SCRUB_JSON_FUNCTION, _scrub_lists, [texts], texts,
                            type="arrow", null_handling="special")  # fmt: skip


def hash_user_id(user_id: str, key: bytes) -> str:
    """Keyed hash (HMAC-SHA256, hex) of a user id: stable per key, useless without it.

    Rotating the key changes every hash: the same user before and after the rotation counts
    as two distinct users in any count that spans it (README: Governance).
    """
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

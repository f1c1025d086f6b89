"""PII policy: what counts as personal data, as regular expressions both DuckDB and Python run.

Applied before bronze (DESIGN.md: governance). The same policy scrubs input features, error
messages, unknown fields and whole quarantined lines, so one policy covers every path. The
policy is a YAML file: ``pii_policy.yml`` beside this module by default, or the file that
``INFERWATCH_PII_POLICY`` names (read once, when this module is imported). It lists

- ``keys``: field names that are personal data whatever their value (dropped from objects;
  their values blanked in a line that does not parse);
- ``patterns``: kind → regular expression, in the common subset of RE2 (DuckDB) and Python's
  ``re``; a kind may add ``check: luhn`` (card numbers): a match is then redacted only when its
  digits pass the Luhn check, which no regular expression can decide. In DuckDB the check is an
  SQL expression over the candidates ``regexp_extract_all`` finds; in Python, a function.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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

    @property
    def key_pattern(self) -> str:
        """Whole-name match of a lower-cased key."""
        return "^(" + "|".join(re.escape(k) for k in self.keys) + ")$"

    @property
    def any_pattern(self) -> str:
        """A cheap first test on an object's JSON text: could anything in it be PII?"""
        keys = "|".join(re.escape(k) for k in self.keys)
        return r'(?i)"(' + keys + r')"\s*:|' + "|".join(p for _, p, _ in self.patterns)

    @property
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


def scrub_text(text: str, policy: PiiPolicy | None = None) -> str:
    """Python twin of :func:`sql_scrub_text`."""
    for kind, regex, check in (policy or POLICY).patterns:
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


def hash_user_id(user_id: str, key: bytes) -> str:
    """Keyed hash (HMAC-SHA256, hex) of a user id: stable per key, useless without it.

    Rotating the key changes every hash: the same user before and after the rotation counts
    as two distinct users in any count that spans it (README: Governance).
    """
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

"""Parse, validate and scrub numbered raw lines in one DuckDB pass (log contract v1).

Input: a relation ``lines(object_key, line_number, line BLOB)``. Output: a table ``parsed`` with
one row per line carrying either the typed, PII-scrubbed event columns or a quarantine
``reason`` (or ``is_blank``).

What it costs is mostly how often each line is parsed as JSON: ``json_valid``, then one
``json_transform`` pulls every contract field (as minified JSON text, so the first character
gives its type with no further parse) and ``json_keys`` the line's keys. Only the few lines
with an unknown key, or whose objects look like PII, take the costly map-of-entries paths.
DuckDB's optimizer may hoist a sub-expression out of the CASE around it and compute it for every
row (EXPLAIN showed it for the casts to MAP): costly sub-expressions are therefore handed NULL
wherever they are not needed, or are columns of their own."""

from __future__ import annotations

import os

import duckdb

from inferwatch import names
from inferwatch.config import IngestLimits
from inferwatch.ingest.lines import bounded_batches
from inferwatch.ingest.phases import Phases
from inferwatch.ingest.pii import (
    PII_ANY_PATTERN,
    SCRUB_JSON_FUNCTION,
    UUID_PATTERN,
    register_functions,
    sql_literal,
    sql_scrub_line,
)

SCHEMA_VERSION = 1
INTEGER = "('UBIGINT', 'BIGINT')"

#: Lines longer than this (bytes, before decoding) are quarantined unread: a runaway producer
#: writing one giant line must not cost a JSON parse and a regex scrub of megabytes per line.
#: ``INFERWATCH_MAX_LINE_BYTES`` overrides it, read at each parse (a raised cap plus
#: ``inferwatch replay-quarantine`` loads the lines it quarantined).
DEFAULT_MAX_LINE_BYTES = 1 << 20


def _configured_cap() -> int:
    return int(os.environ.get("INFERWATCH_MAX_LINE_BYTES") or DEFAULT_MAX_LINE_BYTES)


#: Levels of nested objects and arrays a line may have (its own object is level 1): a deeper
#: line is quarantined, since later readers (Python's ``json``, pandas) recurse per level and
#: one 5,000-deep line made every later run fail. ``INFERWATCH_MAX_NESTING`` overrides it
#: (at most ``MAX_NESTING_LIMIT``), read at each parse.
DEFAULT_MAX_NESTING = 32
MAX_NESTING_LIMIT = 512
#: Keys one object may have (the line, input_features and the other contract objects): each
#: feature becomes a row per event in the marts. ``INFERWATCH_MAX_KEYS`` overrides it.
DEFAULT_MAX_KEYS = 1000
#: Where a name rule is explained (docs/contract.md, "Name rules").
NAME_RULES = "(see the log contract's name rules)"


def _configured_nesting() -> int:
    levels = int(os.environ.get("INFERWATCH_MAX_NESTING") or DEFAULT_MAX_NESTING)
    if not 1 <= levels <= MAX_NESTING_LIMIT:
        raise ValueError(f"INFERWATCH_MAX_NESTING must be 1..{MAX_NESTING_LIMIT}, not {levels}")
    return levels


def _configured_keys() -> int:
    return max(1, int(os.environ.get("INFERWATCH_MAX_KEYS") or DEFAULT_MAX_KEYS))


def _configured_batch() -> int:
    """Predictions one batched line may carry (``INFERWATCH_MAX_BATCH``, read at each parse)."""
    return max(1, IngestLimits.from_env(dict(os.environ)).max_batch)


#: Contract fields (the ``j`` struct's fields below).
FIELDS = [
    "timestamp", "model", "model_version", "event_id", "request_id", "endpoint", "client_id",
    "user_id", "input_features", "prediction", "confidence", "latency_ms", "status", "error",
    "retry_count", "fallback", "geo", "resources", "model_metadata", "usage", "schema_version",
    "batch",
]  # fmt: skip
#: What a batched line carries per element (``batch``) instead of at the top level.
PER_PREDICTION = ("input_features", "prediction", "confidence")


# ---------------------------------------------------------------- typing a field
# ``json_transform`` extracts every contract field in one parse of the line, each as minified
# JSON text, and a JSON null as SQL NULL (the contract counts a null as an absent field). The
# text's first character then tells the JSON type without parsing it again: only the number
# kinds need ``json_type`` (retry_count: integer or not).
def _f(field: str) -> str:
    return f'j."{field}"'


def _present(field: str) -> str:
    return f"{_f(field)} is not null"


def _is_string(expr: str) -> str:
    return f"starts_with({expr}, '\"')"


def _is_object(expr: str) -> str:
    return f"starts_with({expr}, '{{')"


def _is_array(expr: str) -> str:
    return f"starts_with({expr}, '[')"


def _is_boolean(expr: str) -> str:
    return f"{expr} in ('true', 'false')"


def _is_number(expr: str) -> str:
    """Present and none of the other kinds (NaN and Infinity are numbers to DuckDB's reader)."""
    return (
        f"({expr} is not null and not ({_is_string(expr)} or {_is_object(expr)}"
        f" or {_is_array(expr)} or {_is_boolean(expr)}))"
    )


def _is_container(expr: str) -> str:
    return f"({_is_object(expr)} or {_is_array(expr)})"


def _is_scalar(expr: str) -> str:
    return f"not ({_is_object(expr)} or {_is_array(expr)})"


def _text(field: str) -> str:
    """The field as text: strings unquoted, numbers and booleans as written."""
    return f"{_f(field)} ->> '$'"


# ---------------------------------------------------------------- PII, wherever it is
# Every stored field but the model's names, numbers and the (hashed) user id is scrubbed. One
# regular-expression test per line (``pii_suspect``, over the texts of exactly those fields)
# finds the few lines that may hold PII; in those, the same test on each field finds the
# suspect fields, and only those go to the scrubber (pii.scrub_json, a Python function: JSON
# of any depth, keys included), called once per vector with one list per suspect line and
# NULL for every other line, so that however DuckDB plans the CASE clean lines pay nothing.
PII = sql_literal(PII_ANY_PATTERN)


class Scrubbed:
    """The fields of one contract that are scrubbed: name → JSON expression, in order."""

    def __init__(self, inputs: dict[str, str]):
        self.inputs = inputs

    def texts(self) -> str:
        return ", ".join(f"({expr})::VARCHAR" for expr in self.inputs.values())

    def suspect(self) -> str:
        """Could any of the fields hold PII (one test of all their texts)?"""
        return f"regexp_matches(concat_ws(chr(1), {self.texts()}), {PII})"

    def ctes(self, source: str) -> str:
        """``screened`` (``pii_suspect``) and ``scrubbed`` (``clean``) over ``source``."""
        texts = self.texts()
        # a lambda: its pattern is compiled once, not once per field
        suspect_only = f"t -> case when regexp_matches(t, {PII}) then t end"
        return f"""screened as (
    select *, {self.suspect()} as pii_suspect
    from {source}
),
scrubbed as (
    select *, {SCRUB_JSON_FUNCTION}(case when pii_suspect
        then list_transform([{texts}], {suspect_only}) end) as clean
    from screened
)"""

    def clean(self, name: str) -> str:
        """The scrubbed JSON text of ``name``; NULL unless the field is suspect."""
        return f"clean[{list(self.inputs).index(name) + 1}]"

    def text(self, name: str, text: str | None = None) -> str:
        """A text with PII values redacted (``[redacted:<kind>]``); ``text`` (default: the
        field's own text) is what a field that is not suspect keeps."""
        text = text or _text(name)
        clean = self.clean(name)
        return f"case when {clean} is not null then ({clean} ->> '$') else ({text}) end"

    def id(self, name: str) -> str:
        """An id as text; a string id that holds PII is NULL, as if absent: redacted in place,
        two ids could become one (then be de-duplicated, or join the wrong label). A UUID is
        kept whatever the patterns say (the phone pattern reads the digits of one in 70)."""
        text, clean = f"({_text(name)})", self.clean(name)
        return f"""case
        when {clean} is null or not {_is_string(_f(name))}
            or regexp_full_match({text}, {sql_literal(UUID_PATTERN)}) then {text}
        when ({clean} ->> '$') = {text} then {text}
        end"""

    def json(self, name: str, test=None) -> str:
        """A JSON value (JSON, as bronze stores it) that passes ``test`` (default: an object),
        PII removed at any depth, keys included; NULL when it fails ``test``."""
        expr = self.inputs[name]
        test = test or _is_object
        return f"""case
        when {expr} is null or not {test(expr)} then null
        else coalesce(({self.clean(name)})::JSON, {expr}) end"""


def _json_struct(fields: list[str]) -> str:
    """The ``json_transform`` structure: every field as JSON."""
    return sql_literal("{" + ", ".join(f'"{name}": "JSON"' for name in fields) + "}")


def _has_duplicate_keys(keys: str) -> str:
    """A JSON object that names a key twice is valid JSON with no agreed meaning (which value
    counts?), and DuckDB refuses to cast it to a MAP: such a line is quarantined, never read."""
    return f"len({keys}) > len(list_distinct({keys}))"


def _suspect(expr: str) -> str:
    """Does the object's text look like it may hold PII (the test ``Scrubbed`` runs per line)?"""
    return f"regexp_matches({expr}::VARCHAR, {sql_literal(PII_ANY_PATTERN)})"


def _unknown_fields(fields: list[str]) -> str:
    """Unknown fields as a JSON object (kept, never a reason to reject), NULL when there are
    none. Most lines have none: when a line has no more keys than non-null contract fields,
    every key is one of them; only the other lines test each key by name, and only lines with
    an unknown key build the (costly) map of their entries.

    It is a column of its own (``_extra`` scrubs it) so that the test runs once per line."""
    known = ", ".join(sql_literal(name) for name in fields)
    non_null = " + ".join(f"({_f(name)} is not null)::INTEGER" for name in fields)
    has_unknown = (
        f"j is not null and len(keys) > {non_null}"
        f" and len(list_filter(keys, k -> k not in ({known}))) > 0"
        f" and not {_has_duplicate_keys('keys')}"
    )
    # NULL in, NULL out: the cast to MAP runs (ahead of any CASE) only on lines that need it.
    return f"""to_json(map_from_entries(list_filter(
        map_entries((case when {has_unknown} then txt end)::JSON::MAP(VARCHAR, JSON)),
        e -> e.key not in ({known}))))"""


def _extra(scrub: Scrubbed) -> str:
    """The ``extra`` column: unknown fields, PII-scrubbed, NULL when there are none."""
    return f"nullif({scrub.json('unknown_fields')}, '{{}}')"


def _reason(cap: int, max_batch: int) -> str:
    checks = [
        *_line_checks(cap),
        # before any check that reads an object's keys one by one
        *_width_checks(("input_features", "error", "geo", "resources", "model_metadata", "usage")),
        *_field_checks(),
    ]
    # The other objects are split only when they look like PII (see Scrubbed.json), so only
    # then is a repeated key a problem.
    for field in ("resources", "model_metadata"):
        obj = _f(field)
        checks.append((
            f"duplicate key in {field}",
            f"{_is_object(obj)} and {_suspect(obj)} and {_has_duplicate_keys(f'json_keys({obj})')}",
        ))  # fmt: skip
    checks += _batch_checks(max_batch)
    return _case(checks)


def _field_checks(feature_keys: str | None = None) -> list[tuple[str, str]]:
    """The checks of the contract's fields, in order (after the line's own checks): the fast
    path (ingest/fast_path.py) accepts a line only when none of them holds. ``feature_keys``:
    a column holding the keys of input_features when it is an object (else NULL), to split
    it once; by default each check splits it."""

    def wrong(field: str, allowed: str) -> str:
        return f"{_present(field)} and not ({allowed})"

    def kind(field: str, test) -> str:
        return test(_f(field))

    checks = [
        ("missing field: timestamp", f"not {_present('timestamp')}"),
        ("missing field: model", f"not {_present('model')}"),
        ("wrong type: model (string expected)", f"not {kind('model', _is_string)}"),
        ("empty field: model", "trim(model_text) = ''"),
        ("wrong type: timestamp",
         f"not ({kind('timestamp', _is_string)} or {kind('timestamp', _is_number)})"),
        ("unparseable timestamp", "event_ts is null"),
    ]  # fmt: skip
    for field in ("model_version", "event_id", "request_id", "endpoint", "client_id", "user_id"):
        checks.append(
            (f"wrong type: {field} (scalar expected)", wrong(field, kind(field, _is_scalar)))
        )
    checks += _name_checks(feature_keys)
    conf, lat, retry = _f("confidence"), _f("latency_ms"), _f("retry_count")
    checks += [
        ("wrong type: input_features (object expected)", wrong("input_features", kind("input_features", _is_object))),
        ("wrong type: confidence (number expected)", wrong("confidence", _is_number(conf))),
        ("out of range: confidence (0..1)", f"{_present('confidence')} and not (try_cast({conf} as DOUBLE) between 0 and 1)"),
        ("wrong type: latency_ms (number expected)", wrong("latency_ms", _is_number(lat))),
        ("out of range: latency_ms (>= 0)", f"{_present('latency_ms')} and try_cast({lat} as DOUBLE) < 0"),
        ("wrong type: retry_count (integer expected)",
         f"{_present('retry_count')} and not ({_is_number(retry)} and json_type({retry}) in {INTEGER})"),
        ("out of range: retry_count (>= 0)", f"{_present('retry_count')} and try_cast({retry} as HUGEINT) < 0"),
        ("wrong type: fallback (boolean expected)", wrong("fallback", kind("fallback", _is_boolean))),
        ("wrong type: status (string expected)", wrong("status", kind("status", _is_string))),
        ("invalid value: status (ok or error)", f"{_present('status')} and ({_text('status')}) not in ('ok', 'error')"),
        ("wrong type: error (string or object expected)",
         wrong("error", f"{kind('error', _is_string)} or {kind('error', _is_object)}")),
    ]  # fmt: skip
    for field in ("geo", "resources", "model_metadata", "usage"):
        checks.append(
            (f"wrong type: {field} (object expected)", wrong(field, kind(field, _is_object)))
        )
    # The marts split input_features into entries (MAP casts: drift, repeated inputs), so any
    # repeated key there is refused.
    features = _f("input_features")
    checks.append((
        "duplicate key in input_features",
        f"{_is_object(features)} and {_has_duplicate_keys(feature_keys or f'json_keys({features})')}",
    ))  # fmt: skip
    return checks


# ---------------------------------------------------------------- batched requests
# A line with ``batch`` is one request of len(batch) predictions (README: The log contract).
# Its elements are checked by the rules of the top-level fields they stand for, each fault
# naming the first element that has it; lines without ``batch`` (nearly all) meet NULL
# everywhere here.
#: The column (of ``timed``) holding the raw elements as JSON texts; NULL without ``batch``.
_ELEMENTS = "batch_raw"
#: The element a lambda over ``_ELEMENTS`` reads.
_E = "iw_e"


def _member(name: str) -> str:
    """An element's member as JSON, NULL when absent or a JSON null (as for top-level fields)."""
    return f"nullif({_E} -> '$.{name}', 'null'::JSON)"


def _element_check(condition: str, before: str, after: str) -> tuple[str, str]:
    """A check failing when ``condition`` holds for an element: ``before[i]after`` names the
    first such element (0-based)."""
    index = (
        f"list_position(list_transform({_ELEMENTS}, {_E} -> coalesce({condition}, false)),"
        " true) - 1"
    )
    reason = _Sql(f"{sql_literal(before + '[')} || ({index}) || {sql_literal(']' + after)}")
    return reason, f"({index}) is not null"


def _batch_checks(max_batch: int) -> list[tuple[str, str]]:
    batch, max_keys = _f("batch"), _configured_keys()
    features, confidence = _member("input_features"), _member("confidence")
    feature_keys = f"json_keys(case when {_is_object(features)} then {features} end)"
    top_level = " or ".join(_present(name) for name in PER_PREDICTION)
    return [
        ("wrong type: batch (array)", f"{_present('batch')} and not {_is_array(batch)}"),
        ("batch is empty", f"{_is_array(batch)} and json_array_length({batch}) = 0"),
        (f"batch too large (over {max_batch} predictions)",
         f"{_is_array(batch)} and json_array_length({batch}) > {max_batch}"),
        ("batch with top-level input_features/prediction/confidence",
         f"{_present('batch')} and ({top_level})"),
        _element_check(f"not {_is_object(_E)}", "wrong type: batch", " (object)"),
        # only lines long enough to hold that many keys are looked into (see _width_checks)
        _element_check(f"strlen(txt) > {4 * max_keys} and len(json_keys({_E})) > {max_keys}",
                       f"too many keys (over {max_keys} in batch", ")"),
        _element_check(f"strlen(txt) > {4 * max_keys} and len({feature_keys}) > {max_keys}",
                       f"too many keys (over {max_keys} in batch", ".input_features)"),
        _element_check(_has_duplicate_keys(f"json_keys({_E})"), "duplicate key in batch", ""),
        _element_check(_has_duplicate_keys(feature_keys),
                       "duplicate key in batch", ".input_features"),
        _element_check(f"{features} is not null and not {_is_object(features)}",
                       "wrong type: batch", ".input_features (object)"),
        _element_check(f"len(list_filter({feature_keys}, k -> {_invalid('feature', 'k')})) > 0",
                       "invalid name: batch", f".input_features key {NAME_RULES}"),
        _element_check(f"{confidence} is not null and not {_is_number(confidence)}",
                       "wrong type: batch", ".confidence (number)"),
        _element_check(
            f"{confidence} is not null and not (try_cast({confidence} as DOUBLE) between 0 and 1)",
            "out of range: batch", ".confidence (0..1)"),
    ]  # fmt: skip


def _batch_raw() -> str:
    """The ``batch_raw`` column: the raw elements as JSON texts (what the checks read)."""
    batch = _f("batch")
    return f"""case when {_is_array(batch)} then json_transform({batch}, '["JSON"]') end"""


def _batch_column(scrub: Scrubbed) -> str:
    """The ``batch_elements`` column bronze stores (not ``batch``: DuckDB reads the folder
    ``batch=<id>/`` as a column of that name): the PII-scrubbed elements as a list of structs
    (input_features as JSON, prediction spelled as the top-level column spells it, confidence,
    and the element's other keys as JSON in ``extra``); NULL without ``batch``."""
    features, prediction = _member("input_features"), _member("prediction")
    others = "{" + ", ".join(f'"{name}": null' for name in PER_PREDICTION) + "}"
    element = f"""struct_pack(
        input_features := case when {_is_object(features)} then {features} end,
        prediction := case when {_is_string(prediction)} then {prediction} ->> '$'
                           else {prediction}::VARCHAR end,
        confidence := try_cast({_member("confidence")} as DOUBLE),
        extra := nullif(json_merge_patch({_E}, '{others}'), '{{}}'::JSON)
    )"""
    return f"""case when {_present("batch")} then list_transform(
        json_transform({scrub.json("batch", _is_array)}, '["JSON"]'), {_E} -> {element}) end"""


def _predictions() -> str:
    """Predictions the line stands for: one per batch element, else one."""
    batch = _f("batch")
    return f"case when {_present('batch')} then json_array_length({batch}) else 1 end::INTEGER"


def _line_checks(cap: int) -> list[tuple[str, str]]:
    """The first checks of both contracts: the line itself, before any field."""
    levels, max_keys = _configured_nesting(), _configured_keys()
    return [
        (f"line too long (over {cap} bytes)", "too_long"),
        ("line is not valid UTF-8", "txt is null"),
        ("invalid JSON", "not is_json"),
        (f"nesting too deep (over {levels} levels)", _too_deep("txt", levels)),
        ("not a JSON object", "j is null"),
        (f"too many keys (over {max_keys} in the JSON object)", f"len(keys) > {max_keys}"),
        ("duplicate key in the JSON object", _has_duplicate_keys("keys")),
    ]


# ---------------------------------------------------------------- depth, width and names
#: A JSON string (valid JSON: it starts at a quote outside any string): removed before
#: brackets are counted, so that ``"[[["`` counts for nothing.
_JSON_STRING = r'"(?:[^"\\]|\\.)*"'
#: Levels one pass of ``_too_deep`` removes.
_LEVELS_PER_PASS = 8


def _balanced(levels: int) -> str:
    """A regular expression for one bracket group (brackets only, all ``[ ]``) at most
    ``levels`` deep: ``[]`` for one level, ``[(?:[])*]`` for two, and so on."""
    pattern = r"\[\]"
    for _ in range(levels - 1):
        pattern = rf"\[(?:{pattern})*\]"
    return pattern


def _too_deep(text: str, levels: int) -> str:
    """Is the valid JSON ``text`` nested more than ``levels`` deep?

    A line with no more than ``levels`` opening brackets anywhere cannot be (one cheap pass;
    nearly every line stops here). The others are reduced to their brackets outside strings,
    and each pass of ``regexp_replace`` removes every group at most ``_LEVELS_PER_PASS`` deep,
    so lowering the whole line by that many levels: after ``levels`` levels something is left
    exactly when it was deeper (linear in the line, about 0.3 s for a hostile 1 MB line)."""
    # string_split is the cheapest count DuckDB has (a third of replace(), a fifth of a regex)
    opening = f"len(string_split({text}, '[')) + len(string_split({text}, '{{')) - 2"
    # NULL for the other lines, so the costly part below never runs on them, wherever the
    # optimizer evaluates it
    brackets = f"""translate(regexp_replace(regexp_replace(
        case when {opening} > {levels} then {text} end, {sql_literal(_JSON_STRING)}, '', 'g'),
        '[^\\[\\]{{}}]', '', 'g'), '{{}}', '[]')"""
    remaining = levels
    while remaining:
        step = min(remaining, _LEVELS_PER_PASS)
        brackets = f"regexp_replace({brackets}, {sql_literal(_balanced(step))}, '', 'g')"
        remaining -= step
    return f"{brackets} <> ''"


def _width_checks(fields: tuple[str, ...]) -> list[tuple[str, str]]:
    """Objects with more than INFERWATCH_MAX_KEYS keys. An object of n distinct keys takes at
    least 4n bytes (``"k":0,``), so only lines longer than 4 × the cap are looked into."""
    max_keys = _configured_keys()
    checks = []
    for field in fields:
        obj = _f(field)
        wide = f"strlen(txt) > {4 * max_keys} and {_is_object(obj)}"
        checks.append((
            f"too many keys (over {max_keys} in {field})",
            f"len(json_keys(case when {wide} then {obj} end)) > {max_keys}",
        ))  # fmt: skip
    return checks


def _invalid(kind: str, text: str) -> str:
    """``text`` is not NULL and not a valid ``kind`` name (:mod:`inferwatch.names`)."""
    return f"not regexp_full_match({text}, {sql_literal(names.PATTERNS[kind])})"


def _name_checks(feature_keys: str | None = None) -> list[tuple[str, str]]:
    """Model, version, endpoint, client and feature names against the patterns of
    :mod:`inferwatch.names`: they become lake folders, Data Docs keys, e-mail subjects and chart
    labels. The model and version are checked as stored, after a ``_v<digits>`` suffix of the
    model is split off as the version (the same split as the ``model`` column)."""
    split = f"{_f('model_version')} is null and regexp_matches(model_text, '_v[0-9]+$')"
    stored_model = f"""case when {split}
        then regexp_extract(model_text, '^(.*)_(v[0-9]+)$', 1) else model_text end"""
    split_version = f"case when {split} then regexp_extract(model_text, '^(.*)_(v[0-9]+)$', 2) end"
    features = _f("input_features")
    keys = feature_keys or f"json_keys(case when {_is_object(features)} then {features} end)"
    bad_feature = f"len(list_filter({keys}, k -> {_invalid('feature', 'k')})) > 0"
    return [
        (f"invalid name: model {NAME_RULES}", _invalid("model", stored_model)),
        (f"invalid name: model_version {NAME_RULES}",
         f"{_invalid('model_version', _text('model_version'))}"
         f" or {_invalid('model_version', split_version)}"),
        (f"invalid name: endpoint {NAME_RULES}", _invalid("endpoint", _text("endpoint"))),
        (f"invalid name: client_id {NAME_RULES}", _invalid("client_id", _text("client_id"))),
        (f"invalid name: input_features key {NAME_RULES}", bad_feature),
    ]  # fmt: skip


class _Sql(str):
    """A reason computed in SQL (one that names the batch element at fault), not a literal."""


def _case(checks: list[tuple[str, str]]) -> str:
    """The first failing check's reason (NULL conditions count as passing, as in CASE)."""
    whens = "\n".join(
        f"when {cond} then {reason if isinstance(reason, _Sql) else sql_literal(reason)}"
        for reason, cond in checks
    )
    return f"case {whens} end"


def _decoded_ctes(source: str, cap: int) -> str:
    """``sized`` and ``decoded``: the size cap and UTF-8 decoding (``txt``), shared with the
    fast path so that both read the same text from the same bytes."""
    return f"""sized as (
    select object_key::VARCHAR as object_key, line_number, line,
           octet_length(line) > {cap} as too_long
    from {source}
),
decoded as (
    select object_key, line_number, too_long, line,
           case when too_long then null
                -- the common line end (one LF) is cut as bytes: rtrim() on text costs far more
                when line[-1:] = '\\x0A'::BLOB and line[-2:-2] not in ('\\x0A'::BLOB, '\\x0D'::BLOB)
                    then try(decode(line[:-2]))
                when line[-1:] not in ('\\x0A'::BLOB, '\\x0D'::BLOB) then try(decode(line))
                else rtrim(try(decode(line)), chr(13) || chr(10)) end as txt
    from sized
)"""


def _line_ctes(source: str, cap: int, fields: list[str]) -> str:
    """The CTEs every contract shares: size cap, UTF-8 decoding, blank lines, and one
    ``json_transform`` of ``fields`` into the struct ``j`` (NULL unless the line is a JSON
    object) beside the line's top-level ``keys``."""
    return f"""{_decoded_ctes(source, cap)},
classified as (
    select * exclude (line),
        -- a line with no text (too long, not UTF-8) is identified by the hash of its bytes
        case when txt is null then sha256(line) end as bytes_sha256,
        coalesce(regexp_full_match(txt, '\\s*'), false) as is_blank
    from decoded
),
validated as (
    select *, not is_blank and txt is not null and json_valid(txt) as is_json
    from classified
),
transformed as (
    select *,
        case when is_json and (starts_with(txt, '{{') or json_type(txt) = 'OBJECT')
             then json_transform(txt, {_json_struct(fields)}) end as j
    from validated
),
extracted as (
    select *, case when j is not null then json_keys(txt) end as keys
    from transformed
)"""


def _timestamp_sql(ts: str) -> str:
    """An RFC 3339 string (any offset) or epoch number (s or ms) as a naive UTC timestamp."""
    return f"""case
            when {_is_string(ts)}
                then try_cast({ts} ->> '$' as TIMESTAMPTZ) at time zone 'UTC'
            -- epoch seconds and milliseconds told apart by size (README)
            when {_is_number(ts)} and abs(try_cast({ts} as DOUBLE)) >= 1e11
                then try(to_timestamp(try_cast({ts} as DOUBLE) / 1000)) at time zone 'UTC'
            when {_is_number(ts)}
                then try(to_timestamp(try_cast({ts} as DOUBLE))) at time zone 'UTC'
        end"""


def _quarantined_line() -> str:
    """The raw_line and raw_sha256 columns of both contracts: a rejected line keeps only
    scrubbed text (README: governance), an over-long one only its hash (scrubbing megabytes
    per line cannot be trusted to be cheap or complete)."""
    return f"""case when reason is not null and not too_long
         then {sql_scrub_line("coalesce(txt, '')")} end as raw_line,
    case when reason is not null then coalesce(bytes_sha256, sha256(txt)) end as raw_sha256"""


def _error_and_geo() -> str:
    """What is stored of ``error`` (its type and message) and ``geo`` (country and region;
    geo.ip is dropped, not scrubbed), as four columns."""
    error, geo = _f("error"), _f("geo")
    error_text = (
        f"case when {_is_object(error)} then {error} ->> '$.message'"
        f" when {_is_string(error)} then {error} ->> '$' end"
    )
    error_type = f"""case when {_is_object(error)} then coalesce({error} ->> '$.type', 'unspecified')
         when {_is_string(error)} and regexp_full_match({error} ->> '$', '[A-Za-z_]+')
         then {error} ->> '$'
         when {_is_string(error)} then 'unspecified' end"""
    return f"""{error_type} as error_type, {error_text} as error_message,
        {geo} ->> '$.country' as geo_country, {geo} ->> '$.region' as geo_region"""


def _model_columns() -> str:
    """``model`` and ``model_version``: a ``_v<digits>`` suffix of the model is its version
    when the line names none."""
    has_version = "model_text is not null and regexp_matches(model_text, '_v[0-9]+$')"
    return f"""case when {_present("model_version")} or not ({has_version}) then model_text
         else regexp_extract(model_text, '^(.*)_(v[0-9]+)$', 1) end as model,
    case when {_present("model_version")} then {_text("model_version")}
         when {has_version} then regexp_extract(model_text, '^(.*)_(v[0-9]+)$', 2)
         else 'unknown' end as model_version"""


STORED_ERROR_AND_GEO = _error_and_geo()
MODEL_COLUMNS = _model_columns()
#: The fields scrubbed before bronze (name → JSON expression): every stored field but the
#: model's names, numbers and the (hashed) user id.
SCRUBBED_INPUTS = {
    **{f: _f(f) for f in ("event_id", "request_id", "endpoint", "client_id", "prediction",
                          "input_features", "resources", "model_metadata", "usage", "batch")},
    "unknown_fields": "unknown_fields",
    # only what is stored of error and geo (geo.ip is dropped, not scrubbed)
    **{f: f"to_json({f})" for f in ("error_type", "error_message", "geo_country", "geo_region")},
}  # fmt: skip


def parse_sql(
    source: str = "lines",
    max_line_bytes: int | None = None,
    max_batch: int | None = None,
    target: str = "parsed",
) -> str:
    cap = int(max_line_bytes if max_line_bytes is not None else _configured_cap())
    max_batch = int(max_batch if max_batch is not None else _configured_batch())
    scrub = Scrubbed(SCRUBBED_INPUTS)
    return f"""
create or replace temp table {target} as
with {_line_ctes(source, cap, FIELDS)},
timed as (
    select *, {_timestamp_sql(_f("timestamp"))} as event_ts, {_text("model")} as model_text,
        {_unknown_fields(FIELDS)} as unknown_fields, {_batch_raw()} as {_ELEMENTS}
    from extracted
),
judged as (
    select *, case when is_blank then null else {_reason(cap, max_batch)} end as reason
    from timed
),
stored as (
    select *, {STORED_ERROR_AND_GEO}
    from judged
),
{scrub.ctes("stored")}
select
    object_key, line_number, is_blank, reason,
    -- ids (one holding PII counts as absent: an event_id falls back to the content hash)
    coalesce({scrub.id("event_id")}, sha256(txt)) as event_id,
    {scrub.id("request_id")} as request_id,
    -- names the operator chose, checked at the door: never scrubbed (a version such as
    -- 1.4.0.2 reads as an IPv4 address)
    {MODEL_COLUMNS},
    -- PII redacted: the dashboards group by these
    {scrub.text("endpoint")} as endpoint,
    {scrub.text("client_id")} as client_id,
    -- replaced by its keyed hash before bronze (bronze.parse_lines)
    {_text("user_id")} as user_id,
    -- time
    event_ts,
    -- outcome
    case when {_present("status")} then {_text("status")}
         when {_present("error")} then 'error' else 'ok' end as status,
    {scrub.text("error_type", "error_type")} as error_type,
    {scrub.text("error_message", "error_message")} as error_message,
    try_cast({_f("retry_count")} as BIGINT) as retry_count,
    try_cast({_f("fallback")} as BOOLEAN) as fallback,
    -- numerics
    try_cast({_f("latency_ms")} as DOUBLE) as latency_ms,
    try_cast({_f("confidence")} as DOUBLE) as confidence,
    case when {_is_string(_f("prediction"))} then {scrub.text("prediction")}
         when {_is_container(_f("prediction"))}
             then ({scrub.json("prediction", _is_container)})::VARCHAR
         else {_f("prediction")}::VARCHAR end as prediction,
    -- nested, PII-scrubbed
    {scrub.json("input_features")} as input_features,
    -- batched requests: one prediction per element (NULL batch: the line is one prediction)
    {_predictions()} as predictions,
    {_batch_column(scrub)} as batch_elements,
    {scrub.text("geo_country", "geo_country")} as geo_country,
    {scrub.text("geo_region", "geo_region")} as geo_region,
    {scrub.json("resources")} as resources,
    {scrub.json("model_metadata")} as model_metadata,
    -- a JSON null is kept as written
    case when {_present("usage")} then {scrub.json("usage")}
         when list_contains(keys, 'usage') then 'null'::JSON end as usage,
    coalesce(try_cast({_text("schema_version")} as INTEGER), {SCHEMA_VERSION}) as schema_version,
    {_extra(scrub)} as extra,
    {_quarantined_line()}
from scrubbed
"""  # noqa: E501


def parse(
    con: duckdb.DuckDBPyConnection,
    source: str = "lines",
    max_line_bytes: int | None = None,
    max_batch: int | None = None,
    fast: bool | None = None,
    phases: Phases | None = None,
) -> int:
    """Create the temp table ``parsed`` from the relation ``source``; return how many lines the
    fast path took (``fast``: default ``INFERWATCH_INGEST_FAST_PATH``, on).

    The fast path (ingest/fast_path.py) parses the common line once and stores it as this
    module's statement would; the lines it does not take go through that statement, whole."""
    from inferwatch.ingest import fast_path  # it builds on this module's pieces

    phases = phases or Phases()
    con.execute("set TimeZone = 'UTC'")
    register_functions(con)
    if not (fast_path.enabled() if fast is None else fast):
        with phases("parse: full statement, every line"):
            con.execute(parse_sql(source, max_line_bytes, max_batch))
        return 0
    cap = int(max_line_bytes if max_line_bytes is not None else _configured_cap())
    # ``parsed`` as the fast path fills it (every line; its own columns last), then the lines
    # it did not take replaced by what the full statement makes of them
    with phases("parse: fast statement, every line"):
        con.execute(fast_path.fast_sql(source, cap))
    with phases("parse: full statement, lines the fast path left"):
        return _parse_rejected(con, cap, max_batch)


def _parse_rejected(con: duckdb.DuckDBPyConnection, cap: int, max_batch: int | None) -> int:
    """Replace the rows of ``parsed`` the fast path did not take by the full statement's."""
    # Arrow batches bounded in bytes, as ingest hands them (lines.bounded_batches): every JSON
    # parse holds its whole vector, so a vector of long lines could outgrow the memory limit;
    # and a filtered scan of ``parsed`` would hand the full statement, which pays per vector,
    # a few rows per vector.
    rejected = bounded_batches(
        con.execute(
            "select object_key, line_number, line from parsed where not fast_ok"
        ).to_arrow_table()
    )
    con.execute("alter table parsed drop column line")
    con.register("fast_rejected", rejected)
    con.execute(parse_sql("fast_rejected", cap, max_batch, target="slow_parsed"))
    con.unregister("fast_rejected")
    con.execute("delete from parsed where not fast_ok")
    (taken,) = con.execute("select count(*) from parsed").fetchone()
    con.execute("alter table parsed drop column fast_ok")
    con.execute("insert into parsed by name select * from slow_parsed")
    con.execute("drop table slow_parsed")
    return taken


# ---------------------------------------------------------------- ground-truth labels
#: Label contract v1 (docs/labels.md).
LABEL_FIELDS = [
    "labeled_at", "event_id", "request_id", "label", "model", "model_version", "source",
    "comment", "schema_version",
]  # fmt: skip


def _label_reason(cap: int) -> str:
    def wrong(field: str) -> str:
        return f"{_present(field)} and not {_is_scalar(_f(field))}"

    at = _f("labeled_at")
    checks = [
        *_line_checks(cap),
        ("missing field: labeled_at", f"not {_present('labeled_at')}"),
        ("wrong type: labeled_at", f"not ({_is_string(at)} or {_is_number(at)})"),
        ("unparseable timestamp", "labeled_at is null"),
        ("missing field: event_id or request_id",
         f"not {_present('event_id')} and not {_present('request_id')}"),
        ("wrong type: event_id (scalar expected)", wrong("event_id")),
        ("wrong type: request_id (scalar expected)", wrong("request_id")),
        ("missing field: label", f"not {_present('label')}"),
        ("wrong type: label (string, number or boolean expected)", wrong("label")),
    ]  # fmt: skip
    for field in ("model", "model_version", "source", "comment"):
        checks.append((f"wrong type: {field} (scalar expected)", wrong(field)))
    for field in ("model", "model_version"):  # the inference log's rule (no suffix split here)
        checks.append((f"invalid name: {field} {NAME_RULES}", _invalid(field, _text(field))))
    return _case(checks)


def parse_labels_sql(source: str = "lines", max_line_bytes: int | None = None) -> str:
    """Ground-truth label lines → the temp table ``parsed`` (same line rules, quarantine
    reasons and PII scrubbing as the inference log; the columns of the label contract)."""
    cap = int(max_line_bytes if max_line_bytes is not None else _configured_cap())
    scrub = Scrubbed({
        **{f: _f(f) for f in ("event_id", "request_id", "label", "source", "comment")},
        "unknown_fields": "unknown_fields",
    })  # fmt: skip
    return f"""
create or replace temp table parsed as
with {_line_ctes(source, cap, LABEL_FIELDS)},
timed as (
    select *, {_timestamp_sql(_f("labeled_at"))} as labeled_at,
        {_unknown_fields(LABEL_FIELDS)} as unknown_fields
    from extracted
),
judged as (
    select *, case when is_blank then null else {_label_reason(cap)} end as reason
    from timed
),
{scrub.ctes("judged")}
select
    object_key, line_number, is_blank, reason,
    false as is_merged,  -- no adapter folds label lines together
    -- the prediction it labels: by event_id, else by request_id
    {scrub.id("event_id")} as event_id,
    {scrub.id("request_id")} as request_id,
    {_text("model")} as model,
    {_text("model_version")} as model_version,
    -- the label, spelled as bronze spells a prediction (strings unquoted, others as written)
    case when {_is_string(_f("label"))} then {scrub.text("label")}
         else {_f("label")}::VARCHAR end as label,
    labeled_at,
    -- free text, PII-scrubbed by pattern
    {scrub.text("source")} as label_source,
    {scrub.text("comment")} as comment,
    coalesce(try_cast({_text("schema_version")} as INTEGER), {SCHEMA_VERSION}) as schema_version,
    {_extra(scrub)} as extra,
    {_quarantined_line()}
from scrubbed
"""  # noqa: E501


def parse_labels(
    con: duckdb.DuckDBPyConnection, source: str = "lines", max_line_bytes: int | None = None
) -> None:
    """Create the temp table ``parsed`` of label lines from the relation ``source``."""
    con.execute("set TimeZone = 'UTC'")
    register_functions(con)
    con.execute(parse_labels_sql(source, max_line_bytes))

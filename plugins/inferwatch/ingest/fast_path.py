"""The line parser's fast path: the common line, parsed once, judged by the same rules.

Nearly every line is a well-formed contract event: a JSON object of known fields, each of the
right type, no cap near, no PII in the fields bronze stores. The full statement
(:func:`inferwatch.ingest.parse.parse_sql`) pays for the rare line on every line: the reason
CASE with its batch, width and duplicate-key checks, the map of unknown fields, the scrubber.
The fast path reads each line with one ``json_valid``, one ``json_transform`` and one
``json_keys``, and takes a line only when the full statement, given the same line, would load
it with nothing scrubbed: then it stores exactly what the full statement would. Every other
line goes through the full statement unchanged (:func:`inferwatch.ingest.parse.parse`), so a
quarantined line gets the very reason it always got.

A line is taken when all of these hold (each implies the full statement's check passes):

- not over the size cap, valid UTF-8, a valid JSON text that starts with ``{`` (so not blank
  and an object), no more opening brackets than ``INFERWATCH_MAX_NESTING`` (so not too deep),
  and no longer than 4 × ``INFERWATCH_MAX_KEYS`` bytes (an object of n keys takes at least
  4n bytes, so no object of the line is too wide);
- no top-level key named twice (unknown fields are kept in ``extra``, by the full statement's
  own expression);
- no ``batch`` (batched lines are checked element by element);
- none of the field checks holds (``parse._field_checks``: the same conditions, types,
  ranges and name rules, evaluated on the same ``json_transform`` struct);
- the PII screen of the stored fields finds nothing (the same test as the full statement's
  ``pii_suspect``): nothing is scrubbed, so each field is stored as read.
"""

from __future__ import annotations

import os

from inferwatch.ingest.parse import (
    FIELDS,
    MODEL_COLUMNS,
    SCHEMA_VERSION,
    SCRUBBED_INPUTS,
    STORED_ERROR_AND_GEO,
    Scrubbed,
    _configured_keys,
    _configured_nesting,
    _decoded_ctes,
    _f,
    _field_checks,
    _has_duplicate_keys,
    _is_object,
    _is_string,
    _json_struct,
    _present,
    _text,
    _timestamp_sql,
    _unknown_fields,
)
from inferwatch.ingest.pii import UUID_PATTERN, sql_literal

#: ``INFERWATCH_INGEST_FAST_PATH``: ``1`` (default) or ``0``, read at each parse. Off, every
#: line takes the full statement (the results are the same; only the time differs).
FAST_PATH_ENV = "INFERWATCH_INGEST_FAST_PATH"
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
#: The table the fast path writes: every line in the columns of ``parsed``, then ``fast_ok``
#: and, for the lines it did not take, the raw ``line`` the full statement reads.
TABLE = "parsed"
#: The type of the ``batch_elements`` column (NULL on every line the fast path takes).
BATCH_ELEMENTS = "STRUCT(input_features JSON, prediction VARCHAR, confidence DOUBLE, extra JSON)[]"
UUID = sql_literal(UUID_PATTERN)


def enabled() -> bool:
    value = (os.environ.get(FAST_PATH_ENV) or "1").strip().lower()
    if value not in _ON + _OFF:
        raise ValueError(f"{FAST_PATH_ENV} must be 1 or 0, not {value!r}")
    return value in _ON


def _object(expr: str) -> str:
    """An object as stored: itself, NULL when absent (the field checks refuse any other type
    on a line the fast path takes)."""
    return f"case when {_is_object(expr)} then {expr} end"


def _objects(*fields: str) -> str:
    return ",\n    ".join(f"{_object(_f(name))} as {name}" for name in fields)


def _non_null() -> str:
    return " + ".join(f"({_present(name)})::INTEGER" for name in FIELDS)


def _accepted(max_keys: int) -> str:
    """Does the full statement load this line, scrubbing nothing? (NULL counts as no.)"""
    failing = " or ".join(f"({condition})" for _, condition in _field_checks("feature_keys"))
    # as many keys as non-null fields: each key names one of them, once (the common line;
    # the others pay for list_distinct)
    repeated = f"""case when len(keys) = {_non_null()} then false
        else {_has_duplicate_keys("keys")} end"""
    return f"""coalesce(candidate and not ({repeated}) and len(keys) <= {max_keys}
        and not {_present("batch")} and ({failing}) is not true and not pii_suspect, false)"""


def fast_sql(source: str, cap: int) -> str:
    """Create :data:`TABLE` from the numbered raw lines of ``source`` (the columns of
    ``parse_sql``'s, in its order, then ``fast_ok`` and ``line``)."""
    levels, max_keys = _configured_nesting(), _configured_keys()
    opening = "len(string_split(txt, '[')) + len(string_split(txt, '{')) - 2"
    # The fields the full statement screens for PII but batch (a taken line has none) and an
    # id that is a UUID: the full statement keeps such an id as it is whatever the screen says
    # (Scrubbed.id), and the phone pattern reads one UUID in 70. No match in the concatenated
    # texts means no match in any one of them: nothing would be scrubbed.
    inputs = {k: v for k, v in SCRUBBED_INPUTS.items() if k != "batch"}
    for name in ("event_id", "request_id"):
        uuid = f"{_is_string(_f(name))} and regexp_full_match({_text(name)}, {UUID})"
        inputs[name] = f"case when {uuid} then null else {_f(name)} end"
    screen = Scrubbed(inputs)
    unknown = "unknown_fields"
    prediction, features = _f("prediction"), _f("input_features")
    return f"""
create or replace temp table {TABLE} as
with {_decoded_ctes(source, cap)},
candidates as (
    select object_key, line_number, line, txt,
        coalesce(not too_long and strlen(txt) <= {4 * max_keys} and starts_with(txt, '{{')
            and {opening} <= {levels} and json_valid(txt), false) as candidate
    from decoded
),
extracted as (
    select *,
        case when candidate then json_transform(txt, {_json_struct(FIELDS)}) end as j,
        case when candidate then json_keys(txt) end as keys
    from candidates
),
timed as (
    select *, {_timestamp_sql(_f("timestamp"))} as event_ts, {_text("model")} as model_text,
        -- split once for the two checks of feature names
        case when {_is_object(features)} then json_keys({features}) end as feature_keys,
        -- NULL wherever every key is a non-null field (the CASE spares them the test)
        case when len(keys) > {_non_null()} then {_unknown_fields(FIELDS)} end as unknown_fields
    from extracted
),
stored as (
    select *, {STORED_ERROR_AND_GEO}
    from timed
),
judged as (
    select *, {screen.suspect()} as pii_suspect
    from stored
)
select
    object_key, line_number, false as is_blank, null::VARCHAR as reason,
    coalesce({_text("event_id")}, sha256(txt)) as event_id,
    {_text("request_id")} as request_id,
    {MODEL_COLUMNS},
    {_text("endpoint")} as endpoint,
    {_text("client_id")} as client_id,
    {_text("user_id")} as user_id,
    event_ts,
    case when {_present("status")} then {_text("status")}
         when {_present("error")} then 'error' else 'ok' end as status,
    error_type, error_message,
    try_cast({_f("retry_count")} as BIGINT) as retry_count,
    try_cast({_f("fallback")} as BOOLEAN) as fallback,
    try_cast({_f("latency_ms")} as DOUBLE) as latency_ms,
    try_cast({_f("confidence")} as DOUBLE) as confidence,
    -- a container as its JSON text, as the full statement stores it when nothing is scrubbed
    case when {_is_string(prediction)} then {_text("prediction")}
         else {prediction}::VARCHAR end as prediction,
    {_objects("input_features")},
    1::INTEGER as predictions,
    null::{BATCH_ELEMENTS} as batch_elements,
    geo_country, geo_region,
    {_objects("resources", "model_metadata")},
    -- a JSON null is kept as written
    case when {_present("usage")} then {_object(_f("usage"))}
         when list_contains(keys, 'usage') then 'null'::JSON end as usage,
    coalesce(try_cast({_text("schema_version")} as INTEGER), {SCHEMA_VERSION}) as schema_version,
    nullif({_object(unknown)}, '{{}}') as extra,
    null::VARCHAR as raw_line, null::VARCHAR as raw_sha256,
    -- the fast path's own columns: was the line taken, and if not, what the full statement reads
    {_accepted(max_keys)} as fast_ok,
    case when not fast_ok then line end as line
from judged
"""

"""Parse, validate and scrub numbered raw lines in one DuckDB pass (log contract v1).

Input: a relation ``lines(object_key, line_number, line BLOB)``. Output: a table ``parsed`` with
one row per line carrying either the typed, PII-scrubbed event columns or a quarantine
``reason`` (or ``is_blank``). Every field is pulled with one ``json_extract`` over a list of
paths, so each line is parsed once, by DuckDB's C++ JSON reader.
"""

from __future__ import annotations

import os

import duckdb

from inferwatch.ingest.pii import (
    PII_ANY_PATTERN,
    PII_KEY_PATTERN,
    sql_literal,
    sql_scrub_line,
    sql_scrub_text,
)

SCHEMA_VERSION = 1

#: Lines longer than this (bytes, before decoding) are quarantined unread: a runaway producer
#: writing one giant line must not cost a JSON parse and a regex scrub of megabytes per line.
#: ``INFERWATCH_MAX_LINE_BYTES`` overrides it, read at each parse (a raised cap plus
#: ``inferwatch replay-quarantine`` loads the lines it quarantined).
DEFAULT_MAX_LINE_BYTES = 1 << 20


def _configured_cap() -> int:
    return int(os.environ.get("INFERWATCH_MAX_LINE_BYTES") or DEFAULT_MAX_LINE_BYTES)


#: Contract fields, in the order of the ``f`` list below (1-based in SQL).
FIELDS = [
    "timestamp", "model", "model_version", "event_id", "request_id", "endpoint", "client_id",
    "user_id", "input_features", "prediction", "confidence", "latency_ms", "status", "error",
    "retry_count", "fallback", "geo", "resources", "model_metadata", "usage", "schema_version",
]  # fmt: skip
F = {name: f"f[{i}]" for i, name in enumerate(FIELDS, start=1)}
T = {name: f"json_type(f[{i}])" for i, name in enumerate(FIELDS, start=1)}

NUMBER = "('UBIGINT', 'BIGINT', 'DOUBLE')"
INTEGER = "('UBIGINT', 'BIGINT')"
SCALAR = "('VARCHAR', 'UBIGINT', 'BIGINT', 'DOUBLE', 'BOOLEAN')"
# A JSON null counts as an absent field.
ABSENT = "(NULL, 'NULL')"


def _present(field: str) -> str:
    return f"coalesce({T[field]}, 'NULL') <> 'NULL'"


def _wrong_type(field: str, allowed: str) -> str:
    return f"{_present(field)} and {T[field]} not in {allowed}"


def _text(field: str) -> str:
    """The field as text: strings unquoted, numbers and booleans as written."""
    return f"case when {_present(field)} then {F[field]} ->> '$' end"


def _scrub_object(expr: str) -> str:
    """Drop PII-named keys from a JSON object and redact PII-looking values in the rest.

    Most objects hold no PII: one regular-expression test sends only the suspect ones down the
    (costly) per-entry path. Numbers are never rewritten, so the result stays valid JSON.
    """
    scrubbed_value = f"""case
        when json_type(e.value) = 'VARCHAR' then to_json({sql_scrub_text("(e.value ->> '$')")})
        when json_type(e.value) in ('OBJECT', 'ARRAY')
            then coalesce(try_cast({sql_scrub_text("e.value::VARCHAR")} as JSON), '"[redacted]"')
        else e.value end"""
    return f"""case
        when json_type({expr}) <> 'OBJECT' then null
        when not regexp_matches({expr}::VARCHAR, {sql_literal(PII_ANY_PATTERN)})
            then {expr}::VARCHAR
        else to_json(map_from_entries(list_transform(
            list_filter(map_entries(({expr})::JSON::MAP(VARCHAR, JSON)),
                        e -> not regexp_matches(lower(e.key), {sql_literal(PII_KEY_PATTERN)})),
            e -> struct_pack(key := e.key, value := ({scrubbed_value})::JSON))))
        end"""


def _reason(cap: int) -> str:
    checks = [
        (f"line too long (over {cap} bytes)", "too_long"),
        ("line is not valid UTF-8", "txt is null"),
        ("invalid JSON", "not json_valid(txt)"),
        ("not a JSON object", "json_type(txt) <> 'OBJECT'"),
        ("missing field: timestamp", f"not {_present('timestamp')}"),
        ("missing field: model", f"not {_present('model')}"),
        ("wrong type: model (string expected)", f"{T['model']} <> 'VARCHAR'"),
        ("empty field: model", f"trim({F['model']} ->> '$') = ''"),
        (
            "wrong type: timestamp",
            f"{T['timestamp']} not in ('VARCHAR', 'UBIGINT', 'BIGINT', 'DOUBLE')",
        ),
        ("unparseable timestamp", "event_ts is null"),
    ]
    for field in ("model_version", "event_id", "request_id", "endpoint", "client_id", "user_id"):
        checks.append((f"wrong type: {field} (scalar expected)", _wrong_type(field, SCALAR)))
    checks += [
        ("wrong type: input_features (object expected)", _wrong_type("input_features", "('OBJECT')")),
        ("wrong type: confidence (number expected)", _wrong_type("confidence", NUMBER)),
        ("out of range: confidence (0..1)", f"{_present('confidence')} and not (try_cast({F['confidence']} as DOUBLE) between 0 and 1)"),
        ("wrong type: latency_ms (number expected)", _wrong_type("latency_ms", NUMBER)),
        ("out of range: latency_ms (>= 0)", f"{_present('latency_ms')} and try_cast({F['latency_ms']} as DOUBLE) < 0"),
        ("wrong type: retry_count (integer expected)", _wrong_type("retry_count", INTEGER)),
        ("out of range: retry_count (>= 0)", f"{_present('retry_count')} and try_cast({F['retry_count']} as HUGEINT) < 0"),
        ("wrong type: fallback (boolean expected)", _wrong_type("fallback", "('BOOLEAN')")),
        ("wrong type: status (string expected)", _wrong_type("status", "('VARCHAR')")),
        ("invalid value: status (ok or error)", f"{_present('status')} and ({F['status']} ->> '$') not in ('ok', 'error')"),
        ("wrong type: error (string or object expected)", _wrong_type("error", "('VARCHAR', 'OBJECT')")),
    ]  # fmt: skip
    for field in ("geo", "resources", "model_metadata", "usage"):
        checks.append((f"wrong type: {field} (object expected)", _wrong_type(field, "('OBJECT')")))
    whens = "\n".join(f"when {cond} then {sql_literal(reason)}" for reason, cond in checks)
    return f"case {whens} end"


def _line_ctes(source: str, cap: int, fields: list[str]) -> str:
    """The CTEs every contract shares: size cap, UTF-8 decoding, blank lines, and one
    ``json_extract`` of ``fields`` into the list ``f`` (so each line is parsed once)."""
    paths = ", ".join(sql_literal(f"$.{name}") for name in fields)
    return f"""sized as (
    select object_key::VARCHAR as object_key, line_number, line,
           octet_length(line) > {cap} as too_long
    from {source}
),
decoded as (
    select object_key, line_number, too_long, line,
           case when not too_long then rtrim(try(decode(line)), chr(13) || chr(10)) end as txt
    from sized
),
classified as (
    select * exclude (line),
        -- a line with no text (too long, not UTF-8) is identified by the hash of its bytes
        case when txt is null then sha256(line) end as bytes_sha256,
        coalesce(regexp_full_match(txt, '\\s*'), false) as is_blank
    from decoded
),
extracted as (
    select *,
        case when not is_blank and txt is not null and json_valid(txt)
                  and json_type(txt) = 'OBJECT'
             then json_extract(txt, [{paths}]) end as f
    from classified
)"""


def _timestamp_sql(ts: str) -> str:
    """An RFC 3339 string (any offset) or epoch number (s or ms) as a naive UTC timestamp."""
    return f"""case
            when json_type({ts}) = 'VARCHAR'
                then try_cast({ts} ->> '$' as TIMESTAMPTZ) at time zone 'UTC'
            -- epoch seconds and milliseconds told apart by size (DESIGN.md)
            when json_type({ts}) in {NUMBER} and abs(try_cast({ts} as DOUBLE)) >= 1e11
                then try(to_timestamp(try_cast({ts} as DOUBLE) / 1000)) at time zone 'UTC'
            when json_type({ts}) in {NUMBER}
                then try(to_timestamp(try_cast({ts} as DOUBLE))) at time zone 'UTC'
        end"""


def _quarantined_line() -> str:
    """The raw_line and raw_sha256 columns of both contracts: a rejected line keeps only
    scrubbed text (DESIGN.md: governance), an over-long one only its hash (scrubbing megabytes
    per line cannot be trusted to be cheap or complete)."""
    return f"""case when reason is not null and not too_long
         then {sql_scrub_line("coalesce(txt, '')")} end as raw_line,
    case when reason is not null then coalesce(bytes_sha256, sha256(txt)) end as raw_sha256"""


def parse_sql(source: str = "lines", max_line_bytes: int | None = None) -> str:
    known = ", ".join(sql_literal(name) for name in FIELDS)
    ts = F["timestamp"]
    cap = int(max_line_bytes if max_line_bytes is not None else _configured_cap())
    # Unknown fields are kept as JSON (scrubbed like the rest), never a reason to reject.
    unknown = (
        "to_json(map_from_entries(list_filter(map_entries(txt::JSON::MAP(VARCHAR, JSON)),"
        f" e -> e.key not in ({known}))))"
    )
    extra = _scrub_object(unknown)
    error_text = (
        f"case when {T['error']} = 'OBJECT' then {F['error']} ->> '$.message'"
        f" when {T['error']} = 'VARCHAR' then {F['error']} ->> '$' end"
    )
    return f"""
create or replace temp table parsed as
with {_line_ctes(source, cap, FIELDS)},
timed as (
    select *, {_timestamp_sql(ts)} as event_ts
    from extracted
),
judged as (
    select *, case when is_blank then null else {_reason(cap)} end as reason
    from timed
)
select
    object_key, line_number, is_blank, reason,
    -- ids
    coalesce({_text("event_id")}, sha256(txt)) as event_id,
    {_text("request_id")} as request_id,
    case when {_present("model_version")} or not regexp_matches({F["model"]} ->> '$', '_v[0-9]+$')
         then {F["model"]} ->> '$'
         else regexp_extract({F["model"]} ->> '$', '^(.*)_(v[0-9]+)$', 1) end as model,
    case when {_present("model_version")} then {_text("model_version")}
         when regexp_matches({F["model"]} ->> '$', '_v[0-9]+$')
         then regexp_extract({F["model"]} ->> '$', '^(.*)_(v[0-9]+)$', 2)
         else 'unknown' end as model_version,
    {_text("endpoint")} as endpoint,
    {_text("client_id")} as client_id,
    {_text("user_id")} as user_id,
    -- time
    event_ts,
    -- outcome
    case when {_present("status")} then {F["status"]} ->> '$'
         when {_present("error")} then 'error' else 'ok' end as status,
    case when {T["error"]} = 'OBJECT' then coalesce({F["error"]} ->> '$.type', 'unspecified')
         when {T["error"]} = 'VARCHAR' and regexp_full_match({F["error"]} ->> '$', '[A-Za-z_]+')
         then {F["error"]} ->> '$'
         when {T["error"]} = 'VARCHAR' then 'unspecified' end as error_type,
    {sql_scrub_text(error_text)} as error_message,
    try_cast({F["retry_count"]} as BIGINT) as retry_count,
    try_cast({F["fallback"]} as BOOLEAN) as fallback,
    -- numerics
    try_cast({F["latency_ms"]} as DOUBLE) as latency_ms,
    try_cast({F["confidence"]} as DOUBLE) as confidence,
    case when {T["prediction"]} = 'VARCHAR' then {F["prediction"]} ->> '$'
         when {_present("prediction")} then {F["prediction"]}::VARCHAR end as prediction,
    -- nested, PII-scrubbed
    {_scrub_object(F["input_features"])} as input_features,
    {F["geo"]} ->> '$.country' as geo_country,
    {F["geo"]} ->> '$.region' as geo_region,
    {_scrub_object(F["resources"])} as resources,
    {_scrub_object(F["model_metadata"])} as model_metadata,
    {F["usage"]} as usage,
    coalesce(try_cast({F["schema_version"]} ->> '$' as INTEGER), {SCHEMA_VERSION}) as schema_version,
    case when f is not null then nullif({extra}, '{{}}') end as extra,
    {_quarantined_line()}
from judged
"""  # noqa: E501


def parse(
    con: duckdb.DuckDBPyConnection, source: str = "lines", max_line_bytes: int | None = None
) -> None:
    """Create the temp table ``parsed`` from the relation ``source``."""
    con.execute("set TimeZone = 'UTC'")
    con.execute(parse_sql(source, max_line_bytes))


# ---------------------------------------------------------------- ground-truth labels
#: Label contract v1 (docs/labels.md), in the order of the ``f`` list below (1-based in SQL).
LABEL_FIELDS = [
    "labeled_at", "event_id", "request_id", "label", "model", "model_version", "source",
    "comment", "schema_version",
]  # fmt: skip
LF = {name: f"f[{i}]" for i, name in enumerate(LABEL_FIELDS, start=1)}
LT = {name: f"json_type(f[{i}])" for i, name in enumerate(LABEL_FIELDS, start=1)}


def _label_present(field: str) -> str:
    return f"coalesce({LT[field]}, 'NULL') <> 'NULL'"


def _label_text(field: str) -> str:
    return f"case when {_label_present(field)} then {LF[field]} ->> '$' end"


def _label_reason(cap: int) -> str:
    def wrong(field: str, allowed: str) -> str:
        return f"{_label_present(field)} and {LT[field]} not in {allowed}"

    checks = [
        (f"line too long (over {cap} bytes)", "too_long"),
        ("line is not valid UTF-8", "txt is null"),
        ("invalid JSON", "not json_valid(txt)"),
        ("not a JSON object", "json_type(txt) <> 'OBJECT'"),
        ("missing field: labeled_at", f"not {_label_present('labeled_at')}"),
        ("wrong type: labeled_at", f"{LT['labeled_at']} not in ('VARCHAR', 'UBIGINT', 'BIGINT', 'DOUBLE')"),
        ("unparseable timestamp", "labeled_at is null"),
        ("missing field: event_id or request_id",
         f"not {_label_present('event_id')} and not {_label_present('request_id')}"),
        ("wrong type: event_id (scalar expected)", wrong("event_id", SCALAR)),
        ("wrong type: request_id (scalar expected)", wrong("request_id", SCALAR)),
        ("missing field: label", f"not {_label_present('label')}"),
        ("wrong type: label (string, number or boolean expected)", wrong("label", SCALAR)),
    ]  # fmt: skip
    for field in ("model", "model_version", "source", "comment"):
        checks.append((f"wrong type: {field} (scalar expected)", wrong(field, SCALAR)))
    whens = "\n".join(f"when {cond} then {sql_literal(reason)}" for reason, cond in checks)
    return f"case {whens} end"


def parse_labels_sql(source: str = "lines", max_line_bytes: int | None = None) -> str:
    """Ground-truth label lines → the temp table ``parsed`` (same line rules, quarantine
    reasons and PII scrubbing as the inference log; the columns of the label contract)."""
    cap = int(max_line_bytes if max_line_bytes is not None else _configured_cap())
    known = ", ".join(sql_literal(name) for name in LABEL_FIELDS)
    unknown = (
        "to_json(map_from_entries(list_filter(map_entries(txt::JSON::MAP(VARCHAR, JSON)),"
        f" e -> e.key not in ({known}))))"
    )
    return f"""
create or replace temp table parsed as
with {_line_ctes(source, cap, LABEL_FIELDS)},
timed as (
    select *, {_timestamp_sql(LF["labeled_at"])} as labeled_at
    from extracted
),
judged as (
    select *, case when is_blank then null else {_label_reason(cap)} end as reason
    from timed
)
select
    object_key, line_number, is_blank, reason,
    false as is_merged,  -- no adapter folds label lines together
    -- the prediction it labels: by event_id, else by request_id
    {_label_text("event_id")} as event_id,
    {_label_text("request_id")} as request_id,
    {_label_text("model")} as model,
    {_label_text("model_version")} as model_version,
    -- the label, spelled as bronze spells a prediction (strings unquoted, others as written)
    case when {LT["label"]} = 'VARCHAR' then {LF["label"]} ->> '$'
         when {_label_present("label")} then {LF["label"]}::VARCHAR end as label,
    labeled_at,
    -- free text, PII-scrubbed by pattern
    {sql_scrub_text(_label_text("source"))} as label_source,
    {sql_scrub_text(_label_text("comment"))} as comment,
    coalesce(try_cast({LF["schema_version"]} ->> '$' as INTEGER), {SCHEMA_VERSION}) as schema_version,
    case when f is not null then nullif({_scrub_object(unknown)}, '{{}}') end as extra,
    {_quarantined_line()}
from judged
"""  # noqa: E501


def parse_labels(
    con: duckdb.DuckDBPyConnection, source: str = "lines", max_line_bytes: int | None = None
) -> None:
    """Create the temp table ``parsed`` of label lines from the relation ``source``."""
    con.execute("set TimeZone = 'UTC'")
    con.execute(parse_labels_sql(source, max_line_bytes))

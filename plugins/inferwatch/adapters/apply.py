"""The ingest hook: adapt a chunk's raw lines before parsing, then settle what adapters decided.

``prepare_lines`` turns the raw relation into ``lines`` for the parser: objects routed to an
adapter get their records rewritten into contract v1 lines one for one (the line numbers are the
raw ones); everything else passes through untouched. ``settle`` runs after the parser and adds
``is_merged`` to ``parsed``: a record an adapter could not map becomes a quarantined line with
the adapter's reason, a request folded into its response's event is merged (or quarantined with
its partner's reason when that event was rejected), and every quarantined line of an adapted
object keeps its original raw text (scrubbed), not the rewritten one, so that it can be replayed.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from inferwatch.adapters.registry import ADAPTERS, CONTRACT, ProducerMap
from inferwatch.ingest.pii import sql_literal, sql_scrub_line

_OPTIONS_SCHEMA = pa.schema(
    [(name, pa.string()) for name in (
        "object_key", "adapter", "opt_model", "opt_model_version", "opt_endpoint",
        "path_model", "path_version",
    )]
)  # fmt: skip


def prepare_lines(
    con: duckdb.DuckDBPyConnection,
    keys: list[str],
    producers: ProducerMap | None,
    *,
    source: str = "raw_lines",
    target: str = "lines",
) -> bool:
    """Create ``target`` from ``source``; True when any object of the chunk was adapted."""
    routes = {key: producers.route(key) for key in keys} if producers else {}
    adapted = {key: route for key, route in routes.items() if route.adapter != CONTRACT}
    if not adapted:
        con.execute(f"create or replace temp view {target} as select * from {source}")
        return False

    rows = []
    for key, route in adapted.items():
        path_model, path_version = route.path_names(key)
        rows.append((key, route.adapter, route.model, route.model_version, route.endpoint,
                     path_model, path_version))  # fmt: skip
    options = pa.Table.from_pylist(
        [dict(zip(_OPTIONS_SCHEMA.names, row, strict=True)) for row in rows], schema=_OPTIONS_SCHEMA
    )
    con.register("adapter_objects", options)
    con.execute(f"""
        create or replace temp table adapter_source as
        with decoded as (
            select object_key::VARCHAR as object_key, line_number, line,
                   rtrim(try(decode(line)), chr(13) || chr(10)) as txt
            from {source}
            where object_key::VARCHAR in (select object_key from adapter_objects)
        )
        select decoded.*, adapter_objects.* exclude (object_key),
               case when txt is not null and json_valid(txt) and json_type(txt) = 'OBJECT'
                    then txt::JSON end as rec
        from decoded join adapter_objects using (object_key)
    """)
    mapped = " union all ".join(
        f"select object_key, line_number, out_line::VARCHAR as out_line,"
        f" adapter_reason::VARCHAR as adapter_reason, merged_into::BIGINT as merged_into"
        f" from ({ADAPTERS[name].select(_records(name))})"
        for name in sorted({route.adapter for route in adapted.values()})
    )
    con.execute(f"""
        create or replace temp table {target} as
        with mapped as ({mapped})
        select
            src.object_key, src.line_number,
            case when mapped.merged_into is not null and mapped.adapter_reason is null then ''::BLOB
                 when mapped.out_line is not null and mapped.adapter_reason is null
                     then encode({_with_own_event_id("mapped.out_line", "src.txt")})
                 else src.line end as line,
            case when src.rec is not null and mapped.out_line is null
                      and mapped.merged_into is null
                 then coalesce(mapped.adapter_reason, src.adapter || ': record not mapped')
            end as adapter_reason,
            case when mapped.adapter_reason is null then mapped.merged_into end as merged_into,
            true as adapted,
            src.txt as original_txt
        from adapter_source as src
        left join mapped using (object_key, line_number)
        union all
        select object_key::VARCHAR, line_number, line, null, null, false, null
        from {source}
        where object_key::VARCHAR not in (select object_key from adapter_objects)
    """)
    return True


def _with_own_event_id(out_line: str, original: str) -> str:
    """A record that names no event id is known by the hash of its own raw text, not of the
    rewritten line: a rewrite keeps only some fields, so two distinct records (two answers in
    the same second) could otherwise share one line, one id and be de-duplicated into one
    inference. The same record shipped twice keeps one id and still counts once."""
    return f"""case when json_extract({out_line}, '$.event_id') is null
        or json_type({out_line}, '$.event_id') = 'NULL'
        then json_merge_patch({out_line}, json_object('event_id', sha256({original})))::VARCHAR
        else {out_line} end"""


def _records(adapter: str) -> str:
    return (
        f"(select * from adapter_source where adapter = {sql_literal(adapter)} and rec is not null)"
    )


def settle(con: duckdb.DuckDBPyConnection, adapted: bool, *, target: str = "lines") -> None:
    """Add ``is_merged`` to ``parsed`` and apply the adapters' reasons and merges."""
    con.execute("alter table parsed add column is_merged boolean default false")
    if not adapted:
        return
    con.execute(f"""
        update parsed set is_blank = false, reason = l.adapter_reason
        from {target} as l
        where l.adapter_reason is not null
          and parsed.object_key = l.object_key and parsed.line_number = l.line_number
    """)
    # A merged record (a request, a stream's earlier chunks) shares the fate of the event it
    # was folded into, whether the adapter or the parser rejected that event.
    con.execute(f"""
        create or replace temp table merged_fate as
        select l.object_key, l.line_number, carrier.reason
        from {target} as l
        join parsed as carrier
            on carrier.object_key = l.object_key and carrier.line_number = l.merged_into
        where l.merged_into is not null
    """)
    con.execute("""
        update parsed set is_blank = false, is_merged = m.reason is null, reason = m.reason
        from merged_fate as m
        where parsed.object_key = m.object_key and parsed.line_number = m.line_number
    """)
    original = "coalesce(l.original_txt, '')"
    con.execute(f"""
        update parsed set raw_line = {sql_scrub_line(original)}, raw_sha256 = sha256({original})
        from {target} as l
        where l.adapted and parsed.reason is not null
          and parsed.object_key = l.object_key and parsed.line_number = l.line_number
    """)

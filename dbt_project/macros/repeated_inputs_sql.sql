{# What mart_repeated_inputs_daily needs of a JSON object that DuckDB and Spark spell
   differently: its entries' hashes (an order-independent fingerprint, a prefilter whose exact
   value may differ per engine), the fingerprint (their sum) and the canonical text (keys
   sorted, compact; the same text on both engines). Non-objects have no entries: null. #}

{# One hash per top-level entry (key and value); null when the text is not a JSON object. #}
{% macro json_entry_hashes(json_column) -%}
    {{ return(adapter.dispatch('json_entry_hashes', 'inferwatch')(json_column)) }}
{%- endmacro %}

{% macro duckdb__json_entry_hashes(json_column) -%}
    list_transform(
        map_entries({{ json_column }}::map (varchar, json)),
        entry -> hash(entry.key, coalesce(entry.value::varchar, 'null'))::hugeint
    )
{%- endmacro %}

{# strings unquoted and other values as JSON text (from_json's map<string,string>): a string
   and the number it spells hash alike, which a prefilter allows #}
{% macro spark__json_entry_hashes(json_column) -%}
    transform(
        map_entries(from_json({{ json_column }}, 'map<string,string>')),
        entry -> cast(xxhash64(entry.key, coalesce(entry.value, 'null')) as decimal(38, 0))
    )
{%- endmacro %}


{# The sum of json_entry_hashes (0 for an empty object): the same whatever the key order. #}
{% macro hash_sum(hashes) -%}
    {{ return(adapter.dispatch('hash_sum', 'inferwatch')(hashes)) }}
{%- endmacro %}

{% macro duckdb__hash_sum(hashes) -%}
    coalesce(list_sum({{ hashes }}), 0)
{%- endmacro %}

{% macro spark__hash_sum(hashes) -%}
    aggregate({{ hashes }}, cast(0 as decimal(38, 0)), (total, entry_hash) -> total + entry_hash)
{%- endmacro %}


{# A JSON object as compact text with its top-level keys sorted (nested values as written),
   values spelled as DuckDB writes JSON: the same input whatever the key order. #}
{% macro canonical_json_object(json_column) -%}
    {{ return(adapter.dispatch('canonical_json_object', 'inferwatch')(json_column)) }}
{%- endmacro %}

{% macro duckdb__canonical_json_object(json_column) -%}
    '{' || array_to_string(
        list_transform(
            list_sort(map_entries({{ json_column }}::map (varchar, json))),
            entry -> to_json(entry.key) || ':' || coalesce(entry.value::varchar, 'null')
        ),
        ','
    ) || '}'
{%- endmacro %}

{# from_json's map<string,string> gives strings unquoted and other values as JSON text (Jackson
   writes them: numbers as Java does, so a number Java spells with an exponent, from 1e7 or
   below 1e-3, reads otherwise than DuckDB's). A string is quoted again (to_json of a
   one-element array, brackets cut off); a value whose text could be either (35, true, an
   object or array) is a string when the raw text has the key followed by a quote. #}
{% macro spark__canonical_json_object(json_column) -%}
    {%- set key_json = "substring(to_json(array(entry.key)), 2, length(to_json(array(entry.key))) - 2)" -%}
    {%- set value_json = "substring(to_json(array(entry.value)), 2, length(to_json(array(entry.value))) - 2)" -%}
    concat('{', array_join(
        transform(
            array_sort(map_entries(from_json({{ json_column }}, 'map<string,string>'))),
            entry -> concat(
                {{ key_json }},
                ':',
                case
                    when entry.value is null then 'null'
                    when not (
                        entry.value rlike '^(-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?|true|false)$'
                        or left(entry.value, 1) in ('{', '[')
                    ) then {{ value_json }}
                    when {{ json_column }} rlike concat('\\Q', {{ key_json }}, '\\E\\s*:\\s*"')
                        then {{ value_json }}
                    else entry.value
                end
            )
        ),
        ','
    ), '}')
{%- endmacro %}


{# SHA-256 of a text, as 64 lowercase hex digits. #}
{% macro sha256_hex(text) -%}
    {{ return(adapter.dispatch('sha256_hex', 'inferwatch')(text)) }}
{%- endmacro %}

{% macro duckdb__sha256_hex(text) -%}
    sha256({{ text }})
{%- endmacro %}

{% macro spark__sha256_hex(text) -%}
    sha2({{ text }}, 256)
{%- endmacro %}

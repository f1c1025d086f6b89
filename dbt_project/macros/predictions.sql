{# Batched requests (README: The log contract). A line with `batch` is one request of
   len(batch) predictions; bronze keeps its elements (input_features, prediction, confidence,
   extra) in the list column `batch_elements`, null for a line of one prediction. #}

{# The type of bronze's `batch_elements` column, for files older than it (with_optional_columns). #}
{% macro batch_elements_type() -%}
    {{ return(adapter.dispatch('batch_elements_type', 'inferwatch')()) }}
{%- endmacro %}

{% macro duckdb__batch_elements_type() -%}
    {{ return('struct(input_features json, prediction varchar, confidence double, extra json)[]') }}
{%- endmacro %}

{% macro spark__batch_elements_type() -%}
    {{ return('array<struct<input_features:string,prediction:string,confidence:double,extra:string>>') }}
{%- endmacro %}


{# One row per element of the list `column`: DuckDB's unnest, Spark's explode. #}
{% macro explode_list(column) -%}
    {{ return(adapter.dispatch('explode_list', 'inferwatch')(column)) }}
{%- endmacro %}

{% macro duckdb__explode_list(column) -%}
    unnest({{ column }})
{%- endmacro %}

{% macro spark__explode_list(column) -%}
    explode({{ column }})
{%- endmacro %}


{# One row per prediction of `events` (a relation or parenthesised query of fct_inferences
   rows): a request without `batch_elements` is its own prediction, a batched one gives one row
   per element, with the element's input_features, prediction and confidence beside the
   request's `columns`. `events` is read twice: give a relation or query, not a CTE read
   elsewhere too (DuckDB would materialise it), so that day filters reach each scan. #}
{% macro predictions_of(events, columns) -%}
    select
        {%- for column in columns %}
        {{ column }},
        {%- endfor %}
        input_features,
        prediction,
        confidence
    from {{ events }} as single_requests
    where batch_elements is null
    union all
    select
        {%- for column in columns %}
        {{ column }},
        {%- endfor %}
        batch_element.input_features,
        batch_element.prediction,
        batch_element.confidence
    from (
        select
            {%- for column in columns %}
            {{ column }},
            {%- endfor %}
            {{ explode_list('batch_elements') }} as batch_element
        from {{ events }} as batched_requests
        where batch_elements is not null
    ) as batch_elements
{%- endmacro %}


{# Columns added to an incremental model's table built before them: added in place before the
   build (DuckDB; a before_begin pre-hook), rows built earlier filled with `backfill`
   ({name: [type, backfill expression or none]}),
   which is exact because those rows were built from bronze without batches. Spark's Parquet
   tables cannot be updated: a Spark warehouse older than them needs one full refresh. #}
{% macro add_columns_in_place(columns) -%}
    {{ return(adapter.dispatch('add_columns_in_place', 'inferwatch')(columns)) }}
{%- endmacro %}

{% macro duckdb__add_columns_in_place(columns) -%}
    {%- set existing = load_relation(this) if execute else none -%}
    {%- if existing is not none -%}
        {%- set present = adapter.get_columns_in_relation(existing) | map(attribute='name') | list -%}
        {#- every alter before any update: DuckDB cannot commit an alter that follows an update
            of the same table in one transaction #}
        {%- for name, spec in columns.items() if name not in present %}
    alter table {{ this }} add column {{ name }} {{ spec[0] }};
        {%- endfor %}
        {%- for name, spec in columns.items() if name not in present and spec[1] is not none %}
    update {{ this }} set {{ name }} = {{ spec[1] }};
        {%- endfor %}
    {%- endif -%}
{%- endmacro %}

{% macro spark__add_columns_in_place(columns) %}{% endmacro %}

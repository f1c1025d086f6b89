{# Feature values in long form, as CTEs ending in `feature_values` / `reference_values` (model,
   version, feature, value_num, value_cat; production values once per `keys` (the day, or the
   hour and its day) and distinct value, with their `value_count`). DuckDB turns each row or
   input_features object into JSON entries and types them by JSON type (macros/json_scalars.sql). Spark 3.5 has no JSON
   type function: production values are typed by their JSON text (a number's text is a JSON
   number), reference columns by their column type. One difference follows: on Spark a JSON
   string that spells a number ("35") counts as the number 35. #}

{% macro unpivot_inference_features(events, keys=['event_day']) -%}
    {{ return(adapter.dispatch('unpivot_inference_features', 'inferwatch')(events, keys)) }}
{%- endmacro %}

{% macro duckdb__unpivot_inference_features(events, keys) -%}
entries as (

    select
        {%- for key in keys %}
        {{ key }},
        {%- endfor %}
        model,
        model_version,
        unnest(list_concat(
            list_filter(
                map_entries(json_transform(input_features, '"MAP(VARCHAR, JSON)"')),
                input_entry -> input_entry.key not in ('prediction', 'confidence')
            ),
            [
                -- fct_inferences keeps a text label as is and other predictions as JSON text
                struct_pack(
                    key := 'prediction',
                    value := case
                        when json_valid(prediction) then cast(prediction as json) else to_json(prediction)
                    end
                ),
                struct_pack(key := 'confidence', value := to_json(confidence))
            ]
        )) as entry
    from {{ events }}

),

-- values repeat (categories, rounded numbers): each distinct JSON text is typed once
value_counts as (

    select
        {%- for key in keys %}
        {{ key }},
        {%- endfor %}
        model,
        model_version,
        entry.key as feature,
        entry.value,
        count(*) as value_count
    from entries
    group by {% for key in keys %}{{ key }}, {% endfor %}model, model_version, entry.key, entry.value

),

typed_entries as (

    select
        *,
        json_type(value) as value_type
    from value_counts

),

feature_values as (

    select
        ---------- ids
        {%- for key in keys %}
        {{ key }},
        {%- endfor %}
        model,
        model_version,
        feature,
        ---------- value
        {{ json_scalar_number('value', 'value_type') }} as value_num,
        {{ json_scalar_text('value', 'value_type') }} as value_cat,
        value_count
    from typed_entries
    where value_type != 'NULL'

)
{%- endmacro %}

{% macro spark__unpivot_inference_features(events, keys) -%}
entries as (

    select
        {%- for key in keys %}
        {{ key }},
        {%- endfor %}
        model,
        model_version,
        -- JSON values as text: strings unquoted, numbers, booleans and nested values as written
        explode(map_concat(
            map_filter(
                from_json(coalesce(input_features, '{}'), 'map<string,string>'),
                (input_key, input_value) -> input_key not in ('prediction', 'confidence')
            ),
            map('prediction', prediction, 'confidence', cast(confidence as string))
        )) as (feature, value)
    from {{ events }}

),

value_counts as (

    select
        {%- for key in keys %}
        {{ key }},
        {%- endfor %}
        model,
        model_version,
        feature,
        value,
        count(*) as value_count
    from entries
    where value is not null
    group by {% for key in keys %}{{ key }}, {% endfor %}model, model_version, feature, value

),

feature_values as (

    select
        ---------- ids
        {%- for key in keys %}
        {{ key }},
        {%- endfor %}
        model,
        model_version,
        feature,
        ---------- value
        {{ spark_json_number('value') }} as value_num,
        value as value_cat,
        value_count
    from value_counts

)
{%- endmacro %}


{% macro unpivot_reference_values(reference_rows, reference_relation) -%}
    {{ return(adapter.dispatch('unpivot_reference_values', 'inferwatch')(reference_rows, reference_relation)) }}
{%- endmacro %}

{% macro duckdb__unpivot_reference_values(reference_rows, reference_relation) -%}
entries as (

    select
        {{ reference_rows }}.model,
        {{ reference_rows }}.model_version as reference_version,
        unnest(
            map_entries(json_transform(to_json({{ reference_rows }}), '"MAP(VARCHAR, JSON)"'))
        ) as entry
    from {{ reference_rows }}

),

typed_entries as (

    select
        model,
        reference_version,
        entry.key as feature,
        entry.value,
        json_type(entry.value) as value_type
    from entries
    where entry.key not in ('model', 'model_version', 'reference_file')

),

reference_values as (

    select
        model,
        reference_version,
        feature,
        {{ json_scalar_number('value', 'value_type') }} as value_num,
        {{ json_scalar_text('value', 'value_type') }} as value_cat
    from typed_entries
    where value_type != 'NULL'

)
{%- endmacro %}

{% macro spark__unpivot_reference_values(reference_rows, reference_relation) -%}
    {%- set features = [] -%}
    {%- if execute -%}
        {%- for column in adapter.get_columns_in_relation(reference_relation) -%}
            {%- if column.name not in ('model', 'model_version', 'reference_file') -%}
                {%- do features.append(column) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif %}
reference_values as (

    select
        model,
        model_version as reference_version,
        feature,
        value_num,
        value_cat
    from {{ reference_rows }}
    {%- if features %}
        lateral view stack(
            {{ features | length }}
            {%- for column in features %},
            '{{ column.name }}',
            {% if spark_is_number_type(column.dtype) -%}
                cast({{ adapter.quote(column.name) }} as double)
            {%- else -%}
                cast(null as double)
            {%- endif %},
            cast({{ adapter.quote(column.name) }} as string)
            {%- endfor %}
        ) reference_entries as feature, value_num, value_cat
    where value_cat is not null
    {%- else %}
        lateral view stack(1, cast(null as string), cast(null as double), cast(null as string))
        reference_entries as feature, value_num, value_cat
    where false
    {%- endif %}

)
{%- endmacro %}


{# A JSON value's text as a double when it is a JSON number, else null. #}
{% macro spark_json_number(text) -%}
    case
        when {{ text }} rlike '^-?(0|[1-9][0-9]*)([.][0-9]+)?([eE][+-]?[0-9]+)?$'
            then cast({{ text }} as double)
    end
{%- endmacro %}


{% macro spark_is_number_type(dtype) -%}
    {%- set base = dtype | lower -%}
    {{ return(base in ('tinyint', 'smallint', 'int', 'integer', 'bigint', 'float', 'double') or base.startswith('decimal')) }}
{%- endmacro %}

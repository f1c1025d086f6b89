{# Days whose events arrived since `relation` was last built (late data recomputes only these),
   plus days whose events a rewritten object dropped since then. #}
{% macro touched_days(relation, events, watermark='source_watermark') %}
    select distinct event_day
    from {{ events }}
    where ingested_at > (
        select coalesce(max({{ watermark }}), timestamp '1970-01-01') from {{ relation }}
    )
    union
    select event_day
    from {{ ref('int_superseded_event_days') }}
    where superseded_at > (
        select coalesce(max({{ watermark }}), timestamp '1970-01-01') from {{ relation }}
    )
{% endmacro %}


{# The events a day-incremental mart reads: all of them on a full build, else the touched days. #}
{% macro events_of_touched_days() %}
    select * from {{ ref('fct_inferences') }}
    {% if is_incremental() %}
        where event_day in ({{ touched_days(this, ref('fct_inferences')) }})
    {% endif %}
{% endmacro %}


{# The watermark a day-incremental mart stores in every row it builds (see touched_days). #}
{% macro events_watermark() %}
    select max(ingested_at) as source_watermark from {{ ref('fct_inferences') }}
{% endmacro %}


{# The watermark a labelled model stores in every row it builds: every event and label ingested
   so far is in this build (see touched_prediction_days, touched_prediction_hours). #}
{% macro events_and_labels_watermark() %}
    select
        greatest(
            coalesce(
                (select max(ingested_at) from {{ ref('fct_inferences') }}), timestamp '1970-01-01'
            ),
            coalesce(
                (select max(ingested_at) from {{ ref('stg_bronze__labels') }}),
                timestamp '1970-01-01'
            )
        ) as source_watermark
{% endmacro %}


{# How fct_inferences grows. DuckDB: the events ingested since the last build are inserted
   (delete+insert by event_id) and a post-hook deletes rows a rewritten object dropped. Spark's
   Parquet tables cannot delete rows: the build rewrites whole day partitions (insert_overwrite)
   from the current bronze rows of every day touched since the last build, which drops them too. #}
{% macro incremental_events_config() %}
    {{ return(adapter.dispatch('incremental_events_config', 'inferwatch')()) }}
{% endmacro %}

{% macro duckdb__incremental_events_config() %}
    {{ return({
        'materialized': 'incremental',
        'unique_key': 'event_id',
        'incremental_strategy': 'delete+insert',
        'post_hook': [
            "
            -- rows of a rewritten object's older version that its new version dropped
            delete from {{ this }} as fact
            where not exists (
                select 1
                from {{ ref('stg_bronze__object_batches') }} as current_batch
                where current_batch.object_key = fact.object_key
                    and current_batch.batch_id = fact.batch_id
            )
            "
        ],
    }) }}
{% endmacro %}

{% macro spark__incremental_events_config() %}
    {{ return(incremental_by_day('event_day')) }}
{% endmacro %}


{# The stg_inference_events rows an incremental fct_inferences build reads. #}
{% macro events_since_last_build(events) %}
    {{ return(adapter.dispatch('events_since_last_build', 'inferwatch')(events)) }}
{% endmacro %}

{# DuckDB: the events ingested since, and every current copy of an event whose row here came
   from an object rewritten since (that row goes: post-hook), so that the copy a full build
   would keep (the earliest arrival among current rows) takes its place. #}
{% macro duckdb__events_since_last_build(events) -%}
    (
        ingested_at > (select coalesce(max(ingested_at), timestamp '1970-01-01') from {{ this }})
        or event_id in (
            select superseded.event_id
            from {{ this }} as superseded
            where superseded.object_key in (
                    select object_key from {{ ref('int_superseded_event_days') }}
                    where superseded_at > (
                        select coalesce(max(ingested_at), timestamp '1970-01-01') from {{ this }}
                    )
                )
                and not {{ is_current_batch('superseded') }}
        )
    )
{%- endmacro %}


{# The row of `alias` (object_key, batch_id) belongs to its object's current version. #}
{% macro is_current_batch(alias) -%}
    exists (
        select 1
        from {{ ref('stg_bronze__object_batches') }} as current_batch
        where current_batch.object_key = {{ alias }}.object_key
            and current_batch.batch_id = {{ alias }}.batch_id
    )
{%- endmacro %}

{% macro spark__events_since_last_build(events) %}
    event_day in ({{ touched_days(this, events, 'ingested_at') }})
{% endmacro %}


{# Rows of the built fct_inferences that this build keeps (an event seen there under another
   object is not taken again): on DuckDB those of current object versions; on Spark, those of
   days not rewritten. #}
{% macro kept_by_this_build(existing, events) -%}
    {{ return(adapter.dispatch('kept_by_this_build', 'inferwatch')(existing, events)) }}
{%- endmacro %}

{# DuckDB: the rows of current object versions (the others are deleted by the post-hook). #}
{% macro duckdb__kept_by_this_build(existing, events) %}
    and {{ is_current_batch(existing) }}
{% endmacro %}

{% macro spark__kept_by_this_build(existing, events) %}
    and {{ existing }}.event_day not in ({{ touched_days(this, events, 'ingested_at') }})
{% endmacro %}


{# The prediction days a labelled mart rebuilds: the touched days of the events, and the days
   whose predictions received labels since `relation` was last built (late ground truth). #}
{% macro touched_prediction_days(relation) %}
    {{ touched_days(relation, ref('fct_inferences')) }}
    union
    select event_day from {{ ref('int_labels_joined_to_inferences') }}
    where label_ingested_at > (
        select coalesce(max(source_watermark), timestamp '1970-01-01') from {{ relation }}
    )
{% endmacro %}


{# The prediction hours a labelled partial aggregate rebuilds (touched_prediction_days at hour
   grain): the touched hours of the events, and the hours whose predictions received labels
   since `relation` was last built (late ground truth). #}
{% macro touched_prediction_hours(relation) %}
    {{ touched_hours(relation, ref('fct_inferences')) }}
    union
    select date_trunc('hour', event_ts) as event_hour
    from {{ ref('int_labels_joined_to_inferences') }}
    where label_ingested_at > (
        select coalesce(max(source_watermark), timestamp '1970-01-01') from {{ relation }}
    )
{% endmacro %}


{# touched_prediction_hours of this model, as timestamps known when the SQL is written (so that
   DuckDB prunes fct_inferences by day range, see in_hours). #}
{% macro touched_prediction_hour_values() %}
    {{ return(query_values(
        'select event_hour from (' ~ touched_prediction_hours(this)
        ~ ') as touched where event_hour is not null order by event_hour'
    )) }}
{% endmacro %}


{# Hours whose events arrived since `relation` was last built, plus hours whose events a
   rewritten object dropped since then: what an hour-incremental mart rebuilds. #}
{% macro touched_hours(relation, events, watermark='source_watermark') %}
    select distinct date_trunc('hour', event_ts) as event_hour
    from {{ events }}
    where ingested_at > (
        select coalesce(max({{ watermark }}), timestamp '1970-01-01') from {{ relation }}
    )
    union
    select event_hour
    from {{ ref('int_superseded_event_days') }}
    where superseded_at > (
        select coalesce(max({{ watermark }}), timestamp '1970-01-01') from {{ relation }}
    )
{% endmacro %}


{# The events an hour-incremental mart reads: all of them on a full build, else the events of
   the touched hours (listed before the query runs, see in_hours). `where` is an extra
   condition on the events. #}
{% macro events_of_touched_hours(where=none) %}
    select * from {{ ref('fct_inferences') }}
    where {{ where or 'true' }}
    {% if is_incremental() %}
        and {{ in_hours("date_trunc('hour', event_ts)", 'event_day', touched_hour_values()) }}
    {% endif %}
{% endmacro %}


{# The touched hours of this model (touched_hours), as timestamps known when the SQL is written. #}
{% macro touched_hour_values() %}
    {{ return(query_values(
        'select event_hour from (' ~ touched_hours(this, ref('fct_inferences'))
        ~ ') as touched where event_hour is not null order by event_hour'
    )) }}
{% endmacro %}


{# A row falls in one of `hours` (hour starts, sorted, known when the SQL is written). DuckDB:
   a constant range of days first, which skips row groups by their min/max, then the hours.
   Spark's hour-incremental tables are day partitions (incremental_by_hour): the whole days
   of those hours. #}
{% macro in_hours(hour_expression, day_column, hours) -%}
    {%- if not hours -%}
        false
    {%- else -%}
        {{ adapter.dispatch('in_hours', 'inferwatch')(hour_expression, day_column, hours) }}
    {%- endif -%}
{%- endmacro %}

{% macro duckdb__in_hours(hour_expression, day_column, hours) -%}
    {%- set literals = [] -%}
    {%- for hour in hours -%}
        {%- do literals.append("timestamp '" ~ hour ~ "'") -%}
    {%- endfor -%}
    ({{ day_column }} between date '{{ (hours[0] | string)[:10] }}'
        and date '{{ (hours[-1] | string)[:10] }}'
        and {{ hour_expression }} in ({{ literals | join(', ') }}))
{%- endmacro %}

{% macro spark__in_hours(hour_expression, day_column, hours) -%}
    {%- set days = [] -%}
    {%- for hour in hours -%}
        {%- set day = "date '" ~ (hour | string)[:10] ~ "'" -%}
        {%- if day not in days -%}{%- do days.append(day) -%}{%- endif -%}
    {%- endfor -%}
    {{ day_column }} in ({{ days | join(', ') }})
{%- endmacro %}


{# A list of days as SQL date literals for an `in (...)` list; `null` (matches nothing) when
   empty. #}
{% macro date_literals(days) -%}
    {%- if days -%}
        date '{{ days | join("', date '") }}'
    {%- else -%}
        null
    {%- endif -%}
{%- endmacro %}

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

{% macro duckdb__events_since_last_build(events) -%}
    ingested_at > (select coalesce(max(ingested_at), timestamp '1970-01-01') from {{ this }})
{%- endmacro %}

{% macro spark__events_since_last_build(events) %}
    event_day in ({{ touched_days(this, events, 'ingested_at') }})
{% endmacro %}


{# Rows of the built fct_inferences that this build keeps (an event seen there under another
   object is not taken again): all of them on DuckDB; on Spark, those of days not rewritten. #}
{% macro kept_by_this_build(existing, events) -%}
    {{ return(adapter.dispatch('kept_by_this_build', 'inferwatch')(existing, events)) }}
{%- endmacro %}

{% macro duckdb__kept_by_this_build(existing, events) %}{% endmacro %}

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

-- depends_on: {{ ref('int_superseded_event_days') }}  (events_since_last_build, when incremental)
{#- a table built before batched requests gains their columns in place (macros/predictions.sql),
    outside the build's transaction -#}
{%- set add_columns = "{{ add_columns_in_place({
    'predictions': ['integer', '1'], 'batch_elements': [batch_elements_type(), none],
}) }}" %}
{{ config(pre_hook={"sql": add_columns, "transaction": false}, **incremental_events_config()) }}
{%- set kept_rows = kept_by_this_build('existing', ref('stg_inference_events')) %}

-- One row per distinct event. The first object an event arrived in owns it; a rewritten
-- object (same key, new batch) replaces its own earlier rows, and those its new version no
-- longer holds are deleted (their days are rebuilt through touched_days): see
-- incremental_events_config for how each engine does it.
with new_events as (

    select * from {{ ref('stg_inference_events') }}
    {% if is_incremental() %}
        where {{ events_since_last_build(ref('stg_inference_events')) }}
    {% endif %}

),

-- Duplicates are ranked on the narrow key columns only, then their later arrivals are
-- anti-joined away: the wide rows (JSON columns included) stream through once instead of
-- being sorted by a window (or materialised as a CTE read three times) over all of them.
-- (object_key, batch_id, line_number) names one line.
new_event_keys as (

    select
        event_id,
        object_key,
        batch_id,
        line_number,
        ingested_at
    from {{ ref('stg_inference_events') }}
    {% if is_incremental() %}
        where {{ events_since_last_build(ref('stg_inference_events')) }}
    {% endif %}

),

repeated_event_ids as (

    select event_id
    from new_event_keys
    group by event_id
    having count(*) > 1

),

ranked_repeats as (

    select
        new_event_keys.event_id,
        new_event_keys.object_key,
        new_event_keys.batch_id,
        new_event_keys.line_number,
        row_number() over (
            partition by new_event_keys.event_id
            order by new_event_keys.ingested_at, new_event_keys.object_key, new_event_keys.line_number
        ) as arrival_rank
    from new_event_keys
    inner join repeated_event_ids
        on new_event_keys.event_id = repeated_event_ids.event_id

),

later_arrivals as (

    select * from ranked_repeats
    where arrival_rank > 1

),

deduplicated as (

    select new_events.*
    from new_events
    where not exists (
            select 1
            from later_arrivals
            where later_arrivals.event_id = new_events.event_id
                and later_arrivals.object_key = new_events.object_key
                and later_arrivals.batch_id = new_events.batch_id
                and later_arrivals.line_number = new_events.line_number
        )

),

not_seen_elsewhere as (

    select deduplicated.*
    from deduplicated
    {% if is_incremental() %}
        where not exists (
                select 1
                from {{ this }} as existing
                where existing.event_id = deduplicated.event_id
                    and existing.object_key <> deduplicated.object_key{{ kept_rows }}
            )
    {% endif %}

)

select * from not_seen_elsewhere

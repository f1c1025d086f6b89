{{ config(**incremental_events_config()) }}
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

ranked as (

    select
        *,
        row_number() over (
            partition by event_id order by ingested_at, object_key, line_number
        ) as arrival_rank
    from new_events

),

deduplicated as (

    select {{ star_except('ranked', ['arrival_rank'], ref('stg_inference_events')) }}
    from ranked
    where arrival_rank = 1

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

-- One row per raw object: every line read is loaded, quarantined, blank or merged (an adapter
-- folded it into another line's event), and a status that says what, if anything, went wrong.
with objects as (

    select * from {{ ref('stg_bronze__objects') }}

),

owned_events as (

    select
        object_key,
        count(*) as events_owned
    from {{ ref('fct_inferences') }}
    group by object_key

),

lake_state as (

    select * from {{ ref('stg_bronze__lake_state') }}

),

quarantine_reasons as (

    select
        object_key,
        reason,
        count(*) as lines
    from {{ ref('stg_quarantine') }}
    group by object_key, reason

),

top_reasons as (

    select
        object_key,
        -- a tie goes to the alphabetically last reason, so every rebuild gives the same text
        {{ arg_max('reason', ['lines', 'reason']) }} as top_reason
    from quarantine_reasons
    group by object_key

),

reconciled as (

    select
        objects.object_key,
        objects.object_size,
        objects.lines_read,
        objects.lines_loaded,
        objects.lines_quarantined,
        objects.lines_blank,
        objects.lines_merged,
        -- events this object delivered that another object (or an earlier line) already had
        objects.lines_loaded - coalesce(owned_events.events_owned, 0) as lines_duplicate,
        objects.lines_read
        = objects.lines_loaded + objects.lines_quarantined + objects.lines_blank
        + objects.lines_merged
            as reconciles,
        objects.truncated,
        objects.limit_exceeded,
        not coalesce(lake_state.missing_from_lake or expired.object_key is not null, false)
            as raw_present,
        objects.replayed,
        -- the first that applies: the raw object's fate, then what reading it showed
        case
            when expired.object_key is not null then 'raw_expired'
            when lake_state.missing_from_lake then 'missing_from_lake'
            else {{ object_read_status('objects') }}
        end as status,
        case
            when expired.object_key is not null
                then 'raw object deleted by the retention policy; its bronze rows are kept'
            when lake_state.missing_from_lake
                then 'raw object gone from the lake since '
                    || {{ format_timestamp('lake_state.missing_since', '%Y-%m-%d %H:%M') }}
                    || ' UTC; its bronze rows are kept and it is not re-ingested'
            when objects.limit_exceeded = 'object_bytes'
                then 'object is ' || objects.object_size
                    || ' bytes stored, over INFERWATCH_MAX_OBJECT_BYTES; not read'
            when objects.limit_exceeded = 'inflated_bytes'
                then 'inflated past INFERWATCH_MAX_INFLATED_BYTES ('
                    || objects.inflated_bytes || ' bytes) after line ' || objects.lines_read
                    || '; the rest was not read'
            when objects.truncated
                then 'gzip stream cut or corrupt after line ' || objects.lines_read
                    || '; the rest was never readable'
            when objects.object_size = 0 then 'object is 0 bytes'
            when objects.lines_read = 0 then 'object holds no lines'
            when objects.lines_quarantined > 0
                then objects.lines_quarantined || ' lines quarantined, mostly: '
                    || coalesce(top_reasons.top_reason, 'unknown')
        end as status_reason,
        objects.batch_id,
        objects.ingested_at
    from objects
    left join owned_events on objects.object_key = owned_events.object_key
    left join lake_state on objects.object_key = lake_state.object_key
    -- expired after its current version was ingested (a re-uploaded object is live again)
    left join lake_state as expired
        on objects.object_key = expired.object_key
            and objects.ingested_at < expired.expired_at
    left join top_reasons on objects.object_key = top_reasons.object_key

)

select * from reconciled

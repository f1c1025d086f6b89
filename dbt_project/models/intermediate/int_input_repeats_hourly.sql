-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{{ config(**incremental_by_hour('event_hour', 'event_day')) }}

-- The mergeable partial aggregate of mart_repeated_inputs_daily: per client, model, UTC hour,
-- input (SHA-256 of the canonical text: top-level keys sorted) and user, the events, first and
-- last time, and one event to read the input's text from. Counts add up and times merge by
-- min/max across the hours of a day, and users stay exact (one row per user), so the daily
-- mart merges its touched days' hours instead of reading and canonicalising every event of
-- the day again. Inputs that are not JSON objects have no hash (and no user): they only count
-- in the client's requests. Incremental by UTC hour, like mart_inference_hourly.
with events as (

    {{ events_of_touched_hours() }}

),

watermark as (

    {{ events_watermark() }}

),

entry_hashes as (

    select
        coalesce(client_id, 'unknown') as client_id,
        event_day,
        date_trunc('hour', event_ts) as event_hour,
        model,
        user_hash,
        event_ts,
        event_id,
        input_features,
        -- null for inputs that are not JSON objects (they have no canonical text)
        {{ json_entry_hashes('input_features') }} as entry_hashes
    from events

),

canonical as (

    select
        client_id,
        event_day,
        event_hour,
        model,
        event_ts,
        event_id,
        case when entry_hashes is not null then user_hash end as user_hash,
        -- keys sorted, values as DuckDB writes JSON: the same input whatever the key order
        case
            when entry_hashes is not null then {{ canonical_json_object('input_features') }}
        end as input_canonical
    from entry_hashes

),

hourly as (

    select
        ---------- grain
        client_id,
        event_day,
        event_hour,
        model,
        {{ sha256_hex('input_canonical') }} as input_hash,
        user_hash,
        ---------- how often, when
        count(*) as events,
        min(event_ts) as first_seen,
        max(event_ts) as last_seen,
        -- any event of the input will do: they all have the same canonical text
        min(event_id) as sample_event_id
    from canonical
    group by client_id, event_day, event_hour, model, {{ sha256_hex('input_canonical') }}, user_hash

),

final as (

    select
        hourly.*,
        watermark.source_watermark
    from hourly
    cross join watermark

)

select * from final

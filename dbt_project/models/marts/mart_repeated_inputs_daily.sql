-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
{{
    config(
        materialized='incremental',
        unique_key='event_day',
        incremental_strategy='delete+insert',
    )
}}

{%- set top_n = var('repeated_inputs_top_n', 10) -%}
{%- set min_repeats = var('repeated_inputs_min_repeats', 2) -%}

-- Misuse patterns: per client and UTC day, the inputs sent most often (identical scrubbed
-- input_features, top-level key order ignored), top N kept. Incremental by UTC day.
with events as (

    {{ events_of_touched_days() }}

),

watermark as (

    {{ events_watermark() }}

),

inputs as (

    select
        coalesce(client_id, 'unknown') as client_id,
        event_day,
        model,
        user_hash,
        event_ts,
        input_features
    from events

),

client_days as (

    select
        client_id,
        event_day,
        count(*) as client_day_requests
    from inputs
    group by client_id, event_day

),

-- Most inputs are sent once. An order-independent fingerprint (a sum of the entries' hashes)
-- is far cheaper than the sorted text below and equal whenever that text is, so only inputs
-- whose fingerprint repeats are spelled out. Inputs that are not JSON objects have no entries
-- (and no text): they are left out here.
entry_hashes as (

    select
        *,
        list_transform(
            map_entries(input_features::map (varchar, json)),
            entry -> hash(entry.key, coalesce(entry.value::varchar, 'null'))::hugeint
        ) as entry_hashes
    from inputs

),

fingerprinted as (

    select
        client_id,
        event_day,
        model,
        user_hash,
        event_ts,
        input_features,
        coalesce(list_sum(entry_hashes), 0) as input_fingerprint
    from entry_hashes
    where entry_hashes is not null

),

repeated_fingerprints as (

    select
        client_id,
        event_day,
        model,
        input_fingerprint
    from fingerprinted
    group by client_id, event_day, model, input_fingerprint
    having count(*) >= {{ min_repeats }}

),

canonical as (

    select
        fingerprinted.client_id,
        fingerprinted.event_day,
        fingerprinted.model,
        fingerprinted.user_hash,
        fingerprinted.event_ts,
        -- keys sorted, values as DuckDB writes JSON: the same input whatever the key order
        '{' || array_to_string(
            list_transform(
                list_sort(map_entries(fingerprinted.input_features::map (varchar, json))),
                entry -> to_json(entry.key) || ':' || coalesce(entry.value::varchar, 'null')
            ),
            ','
        ) || '}' as input_canonical
    from fingerprinted
    inner join repeated_fingerprints  -- one row per fingerprint: a semi-join
        on fingerprinted.client_id = repeated_fingerprints.client_id
            and fingerprinted.event_day = repeated_fingerprints.event_day
            and fingerprinted.model = repeated_fingerprints.model
            and fingerprinted.input_fingerprint = repeated_fingerprints.input_fingerprint

),

repeats as (

    select
        client_id,
        event_day,
        model,
        input_canonical,
        sha256(input_canonical) as input_hash,
        count(*) as repeats,
        count(distinct user_hash) as distinct_users,
        min(event_ts) as first_seen,
        max(event_ts) as last_seen
    from canonical  -- never null: fingerprinted keeps JSON objects only
    group by client_id, event_day, model, input_canonical
    having count(*) >= {{ min_repeats }}

),

ranked as (

    select
        repeats.*,
        row_number() over (
            partition by client_id, event_day order by repeats desc, input_hash asc, model asc
        ) as repeat_rank
    from repeats
    qualify repeat_rank <= {{ top_n }}

),

final as (

    select
        ---------- grain
        ranked.client_id,
        ranked.event_day,
        ranked.repeat_rank,
        ---------- the input
        ranked.model,
        ranked.input_hash,
        ranked.input_canonical as input_features,
        ---------- how often
        ranked.repeats,
        client_days.client_day_requests,
        ranked.repeats / client_days.client_day_requests as traffic_share,
        ranked.distinct_users,
        ranked.first_seen,
        ranked.last_seen,
        watermark.source_watermark
    from ranked
    inner join client_days
        on ranked.client_id = client_days.client_id
            and ranked.event_day = client_days.event_day
    cross join watermark

)

select * from final

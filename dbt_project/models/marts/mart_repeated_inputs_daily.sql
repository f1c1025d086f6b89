-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
{{ config(**incremental_by_day('event_day')) }}

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
        {{ json_entry_hashes('input_features') }} as entry_hashes
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
        {{ hash_sum('entry_hashes') }} as input_fingerprint
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
        {{ canonical_json_object('fingerprinted.input_features') }} as input_canonical
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
        {{ sha256_hex('input_canonical') }} as input_hash,
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

),

top_repeats as (

    select *
    from ranked
    where repeat_rank <= {{ top_n }}

),

final as (

    select
        ---------- grain
        top_repeats.client_id,
        top_repeats.event_day,
        top_repeats.repeat_rank,
        ---------- the input
        top_repeats.model,
        top_repeats.input_hash,
        top_repeats.input_canonical as input_features,
        ---------- how often
        top_repeats.repeats,
        client_days.client_day_requests,
        top_repeats.repeats / client_days.client_day_requests as traffic_share,
        top_repeats.distinct_users,
        top_repeats.first_seen,
        top_repeats.last_seen,
        watermark.source_watermark
    from top_repeats
    inner join client_days
        on top_repeats.client_id = client_days.client_id
            and top_repeats.event_day = client_days.event_day
    cross join watermark

)

select * from final

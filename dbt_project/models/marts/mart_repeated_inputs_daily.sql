-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
{{ config(**incremental_by_day('event_day')) }}

{%- set top_n = var('repeated_inputs_top_n', 10) -%}
{%- set min_repeats = var('repeated_inputs_min_repeats', 2) -%}

-- Misuse patterns: per client and UTC day, the inputs sent most often (identical scrubbed
-- input_features, top-level key order ignored), top N kept. Incremental by UTC day: a touched
-- day is merged from its hours' partial aggregates (int_input_repeats_hourly, which hashed
-- each event's input once, when its hour was built); only the kept inputs' text is read back.
with partials as (

    select * from {{ ref('int_input_repeats_hourly') }}
    {% if is_incremental() %}
        where event_day in ({{ touched_days(this, ref('fct_inferences')) }})
    {% endif %}

),

watermark as (

    {{ events_watermark() }}

),

client_days as (

    select
        client_id,
        event_day,
        cast(sum(events) as bigint) as client_day_requests
    from partials
    group by client_id, event_day

),

repeats as (

    select
        client_id,
        event_day,
        model,
        input_hash,
        cast(sum(events) as bigint) as repeats,
        count(distinct user_hash) as distinct_users,
        min(first_seen) as first_seen,
        max(last_seen) as last_seen,
        min(sample_event_id) as sample_event_id
    from partials
    where input_hash is not null
    group by client_id, event_day, model, input_hash
    having sum(events) >= {{ min_repeats }}

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

-- the text of each kept input, from one of its events (the day's other events are not read)
samples as (

    select
        event_id,
        {{ canonical_json_object('input_features') }} as input_canonical
    from {{ ref('fct_inferences') }}
    where event_id in (select sample_event_id from top_repeats)
        {% if is_incremental() %}
            and event_day in ({{ touched_days(this, ref('fct_inferences')) }})
        {% endif %}

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
        samples.input_canonical as input_features,
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
    inner join samples
        on top_repeats.sample_event_id = samples.event_id
    cross join watermark

)

select * from final

-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{{ config(**incremental_by_hour('event_hour', 'event_day')) }}

-- The mergeable partial aggregate of mart_client_usage_daily and of mart_model_lineage's
-- traffic: per client, endpoint, model, version, UTC hour and latency value, the events with
-- that latency and their predictions, errors, first and last time, tokens and cost. Everything
-- adds up (or merges by min/max) across hours, and one row per latency value keeps its
-- events' count, so an exact quantile of any set of hours is the quantile of the merged
-- counts (macro quantile_of_counts). Cost is summed as exact decimals, so a merge equals one
-- pass over the events. Incremental by UTC hour, like mart_inference_hourly.
with events as (

    {{ events_of_touched_hours() }}

),

prices as (

    select * from {{ ref('model_prices') }}

),

watermark as (

    {{ events_watermark() }}

),

usage_fields as (

    select
        coalesce(events.client_id, 'unknown') as client_id,
        coalesce(events.endpoint, 'unknown') as endpoint,
        events.model,
        events.model_version,
        events.event_day,
        date_trunc('hour', events.event_ts) as event_hour,
        events.event_ts,
        events.status,
        events.predictions,
        events.latency_ms,
        -- OpenAI chat names first, then the Responses API's input/output names
        coalesce(
            try_cast({{ json_text('events.usage', 'prompt_tokens') }} as bigint),
            try_cast({{ json_text('events.usage', 'input_tokens') }} as bigint)
        ) as prompt_tokens,
        coalesce(
            try_cast({{ json_text('events.usage', 'completion_tokens') }} as bigint),
            try_cast({{ json_text('events.usage', 'output_tokens') }} as bigint)
        ) as completion_tokens,
        try_cast(
            try_cast({{ json_text('events.usage', 'cost_usd') }} as double) as decimal(38, 18)
        ) as reported_cost_usd,
        prices.prompt_usd_per_1k_tokens,
        prices.completion_usd_per_1k_tokens
    from events
    left join prices on events.model = prices.model

),

costed as (

    select
        *,
        case
            when reported_cost_usd is null
                and (prompt_tokens is not null or completion_tokens is not null)
                then try_cast(
                        coalesce(prompt_tokens, 0) / 1000 * prompt_usd_per_1k_tokens
                        + coalesce(completion_tokens, 0) / 1000 * completion_usd_per_1k_tokens
                        as decimal(38, 18)
                    )
        end as estimated_cost_usd
    from usage_fields

),

hourly as (

    select
        ---------- grain
        client_id,
        endpoint,
        model,
        model_version,
        event_day,
        event_hour,
        latency_ms,
        ---------- traffic
        count(*) as requests,
        cast(sum(predictions) as bigint) as predictions,
        count(*) filter (where status = 'error') as errors,
        min(event_ts) as first_seen,
        max(event_ts) as last_seen,
        ---------- tokens
        cast(sum(prompt_tokens) as bigint) as prompt_tokens,
        cast(sum(completion_tokens) as bigint) as completion_tokens,
        count(*) filter (
            where prompt_tokens is not null or completion_tokens is not null
        ) as events_with_tokens,
        sum(try_cast(latency_ms as decimal(38, 9))) as latency_sum_ms,
        ---------- cost (exact decimals)
        sum(reported_cost_usd) as cost_reported_usd,
        sum(estimated_cost_usd) as cost_estimated_usd,
        count(reported_cost_usd) as events_cost_reported,
        count(estimated_cost_usd) as events_cost_estimated
    from costed
    group by client_id, endpoint, model, model_version, event_day, event_hour, latency_ms

),

final as (

    select
        hourly.*,
        watermark.source_watermark
    from hourly
    cross join watermark

)

select * from final

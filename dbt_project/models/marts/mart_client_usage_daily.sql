-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
{#- a table built before batched requests gains their columns in place (macros/predictions.sql),
    outside the build's transaction -#}
{%- set add_columns = "{{ add_columns_in_place({'predictions': ['bigint', 'requests']}) }}" %}
{{ config(pre_hook={"sql": add_columns, "transaction": false}, **incremental_by_day('event_day')) }}

-- Usage per client, endpoint, model and UTC day: requests, predictions (a batched request
-- counts one per element), errors, latency, users, tokens and cost. Cost is the event's own
-- usage.cost_usd when it has one, else its tokens at the model's price (seed model_prices).
-- Latency and cost are summed as exact decimals, so the figures do not depend on row order (a
-- day-by-day build equals a full one bit for bit). Incremental by UTC day, like
-- mart_inference_hourly.
with events as (

    {{ events_of_touched_days() }}

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
        events.event_day,
        events.status,
        events.predictions,
        events.latency_ms,
        try_cast(events.latency_ms as decimal(38, 9)) as latency_ms_exact,
        events.user_hash,
        events.geo_country,
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

daily as (

    select
        ---------- grain
        client_id,
        endpoint,
        model,
        event_day,
        ---------- traffic
        count(*) as requests,
        cast(sum(predictions) as bigint) as predictions,
        count(*) filter (where status = 'error') as errors,
        count(distinct user_hash) as distinct_users,
        ---------- latency (exact within the day)
        avg(latency_ms_exact) as latency_mean_ms,
        {{ quantile('latency_ms', 0.95) }} as latency_p95_ms,
        ---------- tokens
        cast(sum(prompt_tokens) as bigint) as prompt_tokens,
        cast(sum(completion_tokens) as bigint) as completion_tokens,
        count(*) filter (
            where prompt_tokens is not null or completion_tokens is not null
        ) as events_with_tokens,
        ---------- cost
        sum(reported_cost_usd) as cost_reported_usd,
        sum(estimated_cost_usd) as cost_estimated_usd,
        count(reported_cost_usd) as events_cost_reported,
        count(estimated_cost_usd) as events_cost_estimated
    from costed
    group by client_id, endpoint, model, event_day

),

country_counts as (

    select
        client_id,
        endpoint,
        model,
        event_day,
        geo_country,
        count(*) as country_requests
    from costed
    where geo_country is not null
    group by client_id, endpoint, model, event_day, geo_country

),

ranked_countries as (

    select
        *,
        row_number() over (
            partition by client_id, endpoint, model, event_day
            order by country_requests desc, geo_country asc
        ) as country_rank
    from country_counts

),

top_country as (

    select
        client_id,
        endpoint,
        model,
        event_day,
        geo_country as top_country,
        country_requests as top_country_requests
    from ranked_countries
    where country_rank = 1

),

final as (

    select
        daily.client_id,
        daily.endpoint,
        daily.model,
        daily.event_day,
        daily.requests,
        daily.predictions,
        daily.errors,
        daily.distinct_users,
        daily.latency_mean_ms,
        daily.latency_p95_ms,
        daily.prompt_tokens,
        daily.completion_tokens,
        daily.events_with_tokens,
        daily.events_cost_reported,
        daily.events_cost_estimated,
        daily.errors / daily.requests as error_rate,
        cast(daily.cost_reported_usd as double) as cost_reported_usd,
        cast(daily.cost_estimated_usd as double) as cost_estimated_usd,
        case
            when daily.events_cost_reported + daily.events_cost_estimated > 0
                then cast(
                        coalesce(daily.cost_reported_usd, 0) + coalesce(daily.cost_estimated_usd, 0)
                        as double
                    )
        end as cost_usd,
        case
            when daily.events_cost_reported > 0 and daily.events_cost_estimated > 0 then 'mixed'
            when daily.events_cost_reported > 0 then 'reported'
            when daily.events_cost_estimated > 0 then 'price_table'
            else 'none'
        end as cost_source,
        top_country.top_country,
        top_country.top_country_requests,
        watermark.source_watermark
    from daily
    left join top_country
        on daily.client_id = top_country.client_id
            and daily.endpoint = top_country.endpoint
            and daily.model = top_country.model
            and daily.event_day = top_country.event_day
    cross join watermark

)

select * from final

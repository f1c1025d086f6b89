-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
{#- a table built before batched requests gains their columns in place (macros/predictions.sql),
    outside the build's transaction -#}
{%- set add_columns = "{{ add_columns_in_place({'predictions': ['bigint', 'requests']}) }}" %}
{{ config(pre_hook={"sql": add_columns, "transaction": false}, **incremental_by_day('event_day')) }}

-- Usage per client, endpoint, model and UTC day: requests, predictions (a batched request
-- counts one per element), errors, latency, users, tokens and cost. Cost is the event's own
-- usage.cost_usd when it has one, else its tokens at the model's price (seed model_prices).
-- Latency and cost are summed as exact decimals, so the figures do not depend on row order (a
-- day-by-day build equals a full one). Incremental by UTC day: a touched day is merged from
-- its hours' partial aggregates (int_client_usage_hourly: counts, tokens, cost and events per
-- latency value, for the exact p95; int_client_users_hourly: events per user and country, for
-- exact distinct users and the top country), not read again from the events.
with usage as (

    select * from {{ ref('int_client_usage_hourly') }}
    {% if is_incremental() %}
        where event_day in ({{ touched_days(this, ref('fct_inferences')) }})
    {% endif %}

),

users as (

    select * from {{ ref('int_client_users_hourly') }}
    {% if is_incremental() %}
        where event_day in ({{ touched_days(this, ref('fct_inferences')) }})
    {% endif %}

),

watermark as (

    {{ events_watermark() }}

),

daily_usage as (

    select
        ---------- grain
        client_id,
        endpoint,
        model,
        event_day,
        ---------- traffic
        cast(sum(requests) as bigint) as requests,
        cast(sum(predictions) as bigint) as predictions,
        cast(sum(errors) as bigint) as errors,
        ---------- latency (exact within the day)
        sum(latency_sum_ms) as latency_sum_exact,
        sum(requests) filter (where latency_ms is not null) as latency_events,
        ---------- tokens
        cast(sum(prompt_tokens) as bigint) as prompt_tokens,
        cast(sum(completion_tokens) as bigint) as completion_tokens,
        cast(sum(events_with_tokens) as bigint) as events_with_tokens,
        ---------- cost
        sum(cost_reported_usd) as cost_reported_usd,
        sum(cost_estimated_usd) as cost_estimated_usd,
        cast(sum(events_cost_reported) as bigint) as events_cost_reported,
        cast(sum(events_cost_estimated) as bigint) as events_cost_estimated
    from usage
    group by client_id, endpoint, model, event_day

),

latency_p95 as (

    {{ quantile_of_counts(
        'usage', ['client_id', 'endpoint', 'model', 'event_day'], 'latency_ms', 'requests',
        0.95, 'latency_p95_ms'
    ) }}

),

daily_users as (

    select
        client_id,
        endpoint,
        model,
        event_day,
        count(distinct user_hash) as distinct_users
    from users
    group by client_id, endpoint, model, event_day

),

daily as (

    select
        daily_usage.*,
        cast(
            daily_usage.latency_sum_exact / daily_usage.latency_events as double
        ) as latency_mean_ms,
        latency_p95.latency_p95_ms,
        daily_users.distinct_users
    from daily_usage
    left join latency_p95
        on daily_usage.client_id = latency_p95.client_id
            and daily_usage.endpoint = latency_p95.endpoint
            and daily_usage.model = latency_p95.model
            and daily_usage.event_day = latency_p95.event_day
    inner join daily_users
        on daily_usage.client_id = daily_users.client_id
            and daily_usage.endpoint = daily_users.endpoint
            and daily_usage.model = daily_users.model
            and daily_usage.event_day = daily_users.event_day

),

country_counts as (

    select
        client_id,
        endpoint,
        model,
        event_day,
        geo_country,
        sum(requests) as country_requests
    from users
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
        cast(country_requests as bigint) as top_country_requests
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

-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{{ config(**incremental_by_hour('hour', 'event_day')) }}

-- Latency p50/p95/p99 per hour, pre-merged for every combination of model, version and
-- endpoint, each either kept or rolled up (null = all): the overview's latency chart reads the
-- one row whose scope its filters leave (rollup_level: how many of the three are rolled up),
-- and merges latency_buckets only when its filters select several values of one of them.
{%- set scopes = [] %}
{%- for model in [true, false] %}{% for version in [true, false] %}{% for endpoint in [true, false] %}
    {%- do scopes.append({'model': model, 'model_version': version, 'endpoint': endpoint}) %}
{%- endfor %}{% endfor %}{% endfor %}
with buckets as (

    select * from {{ ref('mart_latency_buckets_hourly') }}
    {% if is_incremental() %}
        where {{ in_hours('hour', 'event_day', touched_hour_values()) }}
    {% endif %}

),

scoped as (

    {%- for scope in scopes %}
        select
            hour,
            event_day,
            {%- for column, kept in scope.items() %}
                {{ column if kept else 'cast(null as string)' }} as {{ column }},
            {%- endfor %}
            {{ scope.values() | reject | list | length }} as rollup_level,
            bucket,
            events
        from buckets
        {{ "union all" if not loop.last }}
    {%- endfor %}

),

percentiles as (

    {%- set scope_keys = ['hour', 'event_day', 'model', 'model_version', 'endpoint', 'rollup_level'] %}
    {{ latency_percentiles_by('scoped', scope_keys) }}

),

watermark as (

    {{ events_watermark() }}

),

final as (

    select
        percentiles.model,
        percentiles.model_version,
        percentiles.endpoint,
        percentiles.hour,
        percentiles.event_day,
        percentiles.rollup_level,
        percentiles.events,
        percentiles.latency_p50_ms,
        percentiles.latency_p95_ms,
        percentiles.latency_p99_ms,
        -- only the finest rows: a chart merges those when no single row answers it
        case when percentiles.rollup_level = 0 then percentiles.latency_buckets end as latency_buckets,
        watermark.source_watermark
    from percentiles
    cross join watermark

)

select * from final

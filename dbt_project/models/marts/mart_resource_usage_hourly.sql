-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{{ config(**incremental_by_hour('hour', 'event_day')) }}

-- CPU, memory and GPU use per model, version and hour, from the events that report
-- `resources` (numbers or numeric strings; anything else counts as not reported). Every hour
-- with traffic has a row. Readings are exact decimals (9 places), so sums and averages do not
-- depend on row order: a day-by-day build equals a full one bit for bit. Incremental by UTC
-- hour, like mart_inference_hourly.
with events as (

    {{ events_of_touched_hours() }}

),

watermark as (

    {{ events_watermark() }}

),

readings as (

    select
        model,
        model_version,
        date_trunc('hour', event_ts) as hour,
        event_day,
        resources is not null as reports_resources,
        try_cast(
            try_cast({{ json_text('resources', 'cpu_pct') }} as double) as decimal(38, 9)
        ) as cpu_pct,
        try_cast(
            try_cast({{ json_text('resources', 'memory_mb') }} as double) as decimal(38, 9)
        ) as memory_mb,
        try_cast(
            try_cast({{ json_text('resources', 'gpu_util_pct') }} as double) as decimal(38, 9)
        ) as gpu_util_pct,
        try_cast(
            try_cast({{ json_text('resources', 'gpu_memory_mb') }} as double) as decimal(38, 9)
        ) as gpu_memory_mb
    from events

),

hourly as (

    select
        ---------- grain
        model,
        model_version,
        hour,
        event_day,
        ---------- coverage
        count(*) as requests,
        count(*) filter (where reports_resources) as events_reporting,
        count(cpu_pct) as events_reporting_cpu,
        count(gpu_util_pct) as events_reporting_gpu,
        ---------- CPU and memory
        cast(avg(cpu_pct) as double) as cpu_pct_avg,
        cast(max(cpu_pct) as double) as cpu_pct_max,
        cast(avg(memory_mb) as double) as memory_mb_avg,
        cast(max(memory_mb) as double) as memory_mb_max,
        ---------- GPU
        cast(avg(gpu_util_pct) as double) as gpu_util_pct_avg,
        cast(max(gpu_util_pct) as double) as gpu_util_pct_max,
        cast(avg(gpu_memory_mb) as double) as gpu_memory_mb_avg,
        cast(max(gpu_memory_mb) as double) as gpu_memory_mb_max
    from readings
    group by model, model_version, hour, event_day

),

final as (

    select
        hourly.*,
        watermark.source_watermark
    from hourly
    cross join watermark

)

select * from final

-- Each hour's figures beside rolling baselines and z-scores: usage per model (all versions,
-- one row per hour even when no request came) against the same hour of the trailing days;
-- error rate, p95 latency and mean confidence per model version against the trailing days;
-- and, for every series, a robust fallback (median and MAD of the trailing 24 hours) for when
-- the history is too short (a new model or version; the fallback itself needs a whole
-- trailing day). Rebuilt whole from the hourly marts.
with hourly as (

    select * from {{ ref('mart_inference_hourly') }}

),

latency_buckets as (

    select * from {{ ref('mart_latency_buckets_hourly') }}

),

version_hours as (

    select
        model,
        model_version,
        hour,
        sum(requests) as requests,
        sum(predictions) as predictions,
        sum(errors) as errors,
        -- prediction-weighted across endpoints (exact for one-endpoint models)
        sum(confidence_mean * predictions)
        / nullif(sum(predictions) filter (where confidence_mean is not null), 0) as confidence_mean
    from hourly
    group by model, model_version, hour

),

version_latency as (

    select
        model,
        model_version,
        hour,
        -- merged buckets across endpoints: never an average of percentiles
        {{ latency_bucket_quantile('bucket', 'events', 0.95) }} as latency_p95_ms
    from latency_buckets
    group by model, model_version, hour

),

model_hours as (

    select
        model,
        hour,
        sum(requests) as requests
    from hourly
    group by model, hour

),

model_spans as (

    select
        model,
        min(hour) as first_hour,
        max(hour) as last_hour
    from model_hours
    group by model

),

hour_spine as (

    select
        model,
        {{ hours_between('first_hour', 'last_hour') }}
    from model_spans

),

usage_series as (

    select
        hour_spine.model,
        'all' as model_version,
        hour_spine.hour,
        'requests' as metric,
        cast(coalesce(model_hours.requests, 0) as double) as metric_value,
        coalesce(model_hours.requests, 0) as sample_size
    from hour_spine
    left join model_hours
        on hour_spine.model = model_hours.model
            and hour_spine.hour = model_hours.hour

),

version_series as (

    select
        model,
        model_version,
        hour,
        'error_rate' as metric,
        errors / requests as metric_value,
        requests as sample_size
    from version_hours
    union all
    select
        version_hours.model,
        version_hours.model_version,
        version_hours.hour,
        'confidence_mean' as metric,
        version_hours.confidence_mean as metric_value,
        version_hours.predictions as sample_size
    from version_hours
    where version_hours.confidence_mean is not null
    union all
    select
        version_latency.model,
        version_latency.model_version,
        version_latency.hour,
        'latency_p95_ms' as metric,
        version_latency.latency_p95_ms as metric_value,
        version_hours.requests as sample_size
    from version_latency
    inner join version_hours
        on version_latency.model = version_hours.model
            and version_latency.model_version = version_hours.model_version
            and version_latency.hour = version_hours.hour

),

series as (

    select * from usage_series
    union all
    select * from version_series

),

windowed as (

    select
        *,
        ---------- history of this series (a new version starts at zero)
        -- a double, not 24.0: Spark divides by a decimal literal in decimal (6 places)
        cast({{ timestamp_diff('hour', 'min(hour) over whole_series', 'hour') }} as double) / 24
            as history_days,
        max(hour) over whole_series = hour as is_latest_hour,
        ---------- primary: same hour of the trailing days (usage) or the trailing days
        case
            when metric = 'requests' then avg(metric_value) over same_hour_days
            else avg(metric_value) over trailing_days
        end as primary_mean,
        case
            when metric = 'requests' then stddev_samp(metric_value) over same_hour_days
            else stddev_samp(metric_value) over trailing_days
        end as primary_stddev,
        case
            when metric = 'requests' then count(metric_value) over same_hour_days
            else count(metric_value) over trailing_days
        end as primary_points,
        ---------- fallback: median and MAD of the trailing 24 hours
        {{ window_median('metric_value', 'trailing_day') }} as fallback_median,
        {{ window_mad('metric_value', 'trailing_day') }} as fallback_mad,
        count(metric_value) over trailing_day as fallback_points
    from series
    window
        whole_series as (partition by model, model_version, metric),
        same_hour_days as (
            partition by model, model_version, metric, hour(hour)
            order by hour
            range between interval {{ var('anomaly_baseline_days', 7) }} days preceding
            and interval 1 day preceding
        ),
        -- both bounds in hours: Spark takes no frame whose bounds are of two interval types
        trailing_days as (
            partition by model, model_version, metric
            order by hour
            range between interval {{ (var('anomaly_baseline_days', 7) | int) * 24 }} hours preceding
            and interval 1 hour preceding
        ),
        trailing_day as (
            partition by model, model_version, metric
            order by hour
            range between interval 24 hours preceding and interval 1 hour preceding
        )

),

spreads as (

    -- Floors keep a short or quiet history from making every wobble an outlier: counts are
    -- at least Poisson (sqrt of the mean), rates at least binomial for this hour's requests.
    select
        *,
        case metric
            when 'requests' then greatest(primary_stddev, sqrt(primary_mean), 1)
            when 'error_rate'
                then greatest(
                        primary_stddev,
                        sqrt(greatest(primary_mean, 0.001) * (1 - primary_mean) / sample_size)
                    )
            when 'latency_p95_ms' then greatest(primary_stddev, 0.05 * primary_mean)
            -- a mean of values in [0, 1]: its standard error is at most sqrt(m (1 − m) / n)
            else greatest(primary_stddev, sqrt(primary_mean * (1 - primary_mean) / sample_size), 0.005)
        end as primary_spread,
        case metric
            when 'requests' then greatest(1.4826 * fallback_mad, sqrt(fallback_median), 1)
            when 'error_rate'
                then greatest(
                        1.4826 * fallback_mad,
                        sqrt(greatest(fallback_median, 0.001) * (1 - fallback_median) / sample_size)
                    )
            when 'latency_p95_ms' then greatest(1.4826 * fallback_mad, 0.05 * fallback_median)
            else greatest(
                    1.4826 * fallback_mad,
                    sqrt(fallback_median * (1 - fallback_median) / sample_size),
                    0.005
                )
        end as fallback_spread
    from windowed

),

final as (

    select
        ---------- grain
        model,
        model_version,
        hour,
        metric,
        ---------- the hour
        metric_value,
        sample_size,
        is_latest_hour,
        history_days,
        ---------- primary baseline
        case when metric = 'requests' then 'same_hour_mean' else 'trailing_mean' end
            as primary_kind,
        primary_mean,
        primary_spread,
        primary_points,
        -- rounded: a figure equal to its baseline up to the last bit (summed in another
        -- order) would otherwise differ in relative terms between two builds
        round((metric_value - primary_mean) / primary_spread, 6) as primary_z,
        ---------- robust fallback
        fallback_median,
        fallback_spread,
        fallback_points,
        round((metric_value - fallback_median) / fallback_spread, 6) as fallback_z,
        ---------- the baseline the dashboards show (alert rules choose per model)
        case
            when
                history_days >= {{ var('anomaly_min_history_days', 3) }}
                and primary_points >= 3
                then case when metric = 'requests' then 'same_hour_mean' else 'trailing_mean' end
            when history_days >= 1 and fallback_points >= 6 then 'trailing_24h_median_mad'
            else 'none'
        end as baseline_kind
    from spreads

)

select
    *,
    case baseline_kind
        when 'none' then null
        when 'trailing_24h_median_mad' then fallback_z
        else primary_z
    end as z_score
from final

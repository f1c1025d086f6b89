-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{{ config(**incremental_by_hour('hour', 'event_day')) }}

{#- Incremental: the prediction hours to recount, listed before the query runs (see
    int_fairness_counts_hourly). -#}
{%- set rebuild_hours = touched_prediction_hour_values() if is_incremental() else [] %}

-- The mergeable partial aggregate of the per-class figures (mart_model_performance_class_daily,
-- and the macro averages and calibration of mart_model_performance_daily): per model version,
-- prediction hour and class seen as a label or a prediction, the true positives, predictions
-- and labels of the class; and per confidence bin (10 equal-width bins, 1.0 in the last), the
-- labelled predictions, the correct ones and their confidences' sum (added in event_id order).
-- A day's figures are those of the sums of its hours'. Incremental by prediction hour, like
-- int_fairness_counts_hourly.
with labelled as (

    select
        *,
        date_trunc('hour', event_ts) as hour
    from {{ ref('int_labels_joined_to_inferences') }}
    where prediction is not null
        {% if is_incremental() %}
            and {{ in_hours("date_trunc('hour', event_ts)", 'event_day', rebuild_hours) }}
        {% endif %}

),

watermark as (

    {{ events_and_labels_watermark() }}

),

class_rows as (

    -- each labelled prediction counts once for its label's class, once for its prediction's
    select
        model,
        model_version,
        hour,
        event_day,
        label as class_label,
        case when prediction = label then 1 else 0 end as true_positives,
        0 as predicted,
        1 as support
    from labelled
    union all
    select
        model,
        model_version,
        hour,
        event_day,
        prediction as class_label,
        0 as true_positives,
        1 as predicted,
        0 as support
    from labelled

),

classes as (

    select
        model,
        model_version,
        hour,
        event_day,
        'class' as count_kind,
        class_label,
        cast(null as integer) as confidence_bin,
        cast(sum(true_positives) as bigint) as true_positives,
        cast(sum(predicted) as bigint) as predicted,
        cast(sum(support) as bigint) as support,
        cast(null as bigint) as bin_rows,
        cast(null as bigint) as bin_correct,
        cast(null as double) as bin_confidence_sum
    from class_rows
    group by model, model_version, hour, event_day, class_label

),

calibration_bins as (

    select
        model,
        model_version,
        hour,
        event_day,
        'confidence_bin' as count_kind,
        cast(null as string) as class_label,
        cast(least(floor(confidence * 10), 9) as integer) as confidence_bin,
        cast(null as bigint) as true_positives,
        cast(null as bigint) as predicted,
        cast(null as bigint) as support,
        count(*) as bin_rows,
        count(*) filter (where is_correct) as bin_correct,
        {{ ordered_sum('confidence', ['event_id']) }} as bin_confidence_sum
    from labelled
    where confidence is not null
    group by
        model, model_version, hour, event_day, cast(least(floor(confidence * 10), 9) as integer)

),

final as (

    select
        counts.*,
        watermark.source_watermark
    from (
        select * from classes
        union all
        select * from calibration_bins
    ) as counts
    cross join watermark

)

select * from final

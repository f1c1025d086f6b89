-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{{ config(**incremental_by_hour('hour', 'event_day')) }}

{#- Incremental: the prediction hours to recount, listed before the query runs (see
    int_fairness_counts_hourly). -#}
{%- set rebuild_hours = touched_prediction_hour_values() if is_incremental() else [] %}

-- The mergeable partial aggregate of mart_model_performance_daily: per model version and
-- prediction hour, the predictions and, of those with ground truth, the counts and sums each
-- figure needs (correct predictions, label delay, regression errors). Counts and integer
-- seconds add up exactly; the error sums are added in event_id order, so a rebuild gives the
-- same bits whatever the row order. Incremental by prediction hour, like
-- int_fairness_counts_hourly: the hours new or rewritten events touch and the hours whose
-- predictions received labels since.
with predictions as (

    select
        model,
        model_version,
        date_trunc('hour', event_ts) as hour,
        event_day,
        count(*) as predictions
    from {{ ref('fct_inferences') }}
    where prediction is not null
        {% if is_incremental() %}
            and {{ in_hours("date_trunc('hour', event_ts)", 'event_day', rebuild_hours) }}
        {% endif %}
    group by model, model_version, date_trunc('hour', event_ts), event_day

),

labelled as (

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

labelled_counts as (

    select
        model,
        model_version,
        hour,
        count(*) as labelled_predictions,
        count(*) filter (where is_correct) as correct_predictions,
        count(labeled_at) as label_delay_rows,
        cast(sum({{ timestamp_diff('second', 'event_ts', 'labeled_at') }}) as bigint)
            as label_delay_seconds,
        max(labeled_at) as newest_labeled_at,
        ---------- regression (rows where both are numbers)
        count(*) filter (
            where prediction_value is not null and label_value is not null
        ) as regression_rows,
        {{ ordered_sum('abs(prediction_value - label_value)', ['event_id']) }}
            as absolute_error_sum,
        {{ ordered_sum('power(prediction_value - label_value, 2)', ['event_id']) }}
            as squared_error_sum
    from labelled
    group by model, model_version, hour

),

final as (

    select
        predictions.model,
        predictions.model_version,
        predictions.hour,
        predictions.event_day,
        predictions.predictions,
        coalesce(labelled_counts.labelled_predictions, 0) as labelled_predictions,
        coalesce(labelled_counts.correct_predictions, 0) as correct_predictions,
        coalesce(labelled_counts.label_delay_rows, 0) as label_delay_rows,
        labelled_counts.label_delay_seconds,
        labelled_counts.newest_labeled_at,
        coalesce(labelled_counts.regression_rows, 0) as regression_rows,
        labelled_counts.absolute_error_sum,
        labelled_counts.squared_error_sum,
        watermark.source_watermark
    from predictions
    left join labelled_counts
        on predictions.model = labelled_counts.model
            and predictions.model_version = labelled_counts.model_version
            and predictions.hour = labelled_counts.hour
    cross join watermark

)

select * from final

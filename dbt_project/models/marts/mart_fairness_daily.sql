-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
-- depends_on: {{ ref('int_labels_joined_to_inferences') }}  (touched_prediction_days)
{{ config(**incremental_by_day('day')) }}

-- Fairness slices: per model version, prediction day and segment of each configured segment
-- feature (seed fairness_segments), the prediction rate of the positive class, accuracy and
-- recall against the ground truth, and each segment's ratio to the best segment of the same
-- feature that day. Segments with too few labels are kept and marked, and left out of "best".
-- The day's counts are the sums of its hours' in int_fairness_counts_hourly (exact: counts
-- merge), so late events or labels cost their hours' recount and a re-sum of the day's small
-- partial rows, not a rescan of the day's predictions. Incremental by prediction day, like
-- mart_model_performance_daily.
with
{% if is_incremental() %}
    touched as (

        {{ touched_prediction_days(this) }}

    ),
{% endif %}

hourly as (

    select * from {{ ref('int_fairness_counts_hourly') }}
    {% if is_incremental() %}
        where event_day in (select event_day from touched)
    {% endif %}

),

segments as (

    select * from {{ ref('fairness_segments') }}

),

positive_classes as (

    {{ model_settings(
        'performance_thresholds', '(select distinct model from hourly)', ['positive_class'],
    ) }}

),

per_segment as (

    select
        ---------- grain
        hourly.model,
        hourly.model_version,
        hourly.event_day as day,
        hourly.segment_feature,
        hourly.segment,
        ---------- counts
        cast(sum(hourly.predictions) as bigint) as predictions,
        cast(sum(hourly.positive_predictions) as bigint) as positive_predictions,
        cast(sum(hourly.labelled_predictions) as bigint) as labelled_predictions,
        cast(sum(hourly.correct_predictions) as bigint) as correct_predictions,
        cast(sum(hourly.actual_positives) as bigint) as actual_positives,
        cast(sum(hourly.true_positives) as bigint) as true_positives,
        any_value(positive_classes.positive_class) as positive_class,
        any_value(segments.min_labels) as min_labels,
        any_value(segments.ratio_floor) as ratio_floor
    from hourly
    inner join segments on hourly.segment_feature = segments.segment_feature
    inner join positive_classes on hourly.model = positive_classes.model
    group by
        hourly.model, hourly.model_version, hourly.event_day, hourly.segment_feature,
        hourly.segment

),

measured as (

    select
        *,
        case when positive_class is not null then positive_predictions / predictions end
            as prediction_rate,
        labelled_predictions / predictions as label_coverage,
        correct_predictions / nullif(labelled_predictions, 0) as accuracy,
        true_positives / nullif(actual_positives, 0) as recall,
        labelled_predictions >= min_labels as has_enough_labels,
        predictions >= min_labels as has_enough_predictions
    from per_segment

),

best as (

    select
        *,
        -- no FILTER: Spark takes none on a window aggregate
        max(case when has_enough_labels then accuracy end) over slice as best_accuracy,
        max(case when has_enough_labels and actual_positives > 0 then recall end) over slice
            as best_recall,
        max(case when has_enough_predictions then prediction_rate end) over slice
            as best_prediction_rate
    from measured
    window slice as (partition by model, model_version, day, segment_feature)

),

watermarks as (

    {{ events_and_labels_watermark() }}

),

final as (

    select
        best.*,
        case when has_enough_labels then accuracy / nullif(best_accuracy, 0) end
            as accuracy_ratio,
        case when has_enough_labels and actual_positives > 0
                then recall / nullif(best_recall, 0)
        end as recall_ratio,
        case when has_enough_predictions
                then prediction_rate / nullif(best_prediction_rate, 0)
        end
            as prediction_rate_ratio,
        coalesce(
            has_enough_labels and accuracy / nullif(best_accuracy, 0) < ratio_floor, false
        ) as below_floor,
        watermarks.source_watermark
    from best
    cross join watermarks

)

select * from final

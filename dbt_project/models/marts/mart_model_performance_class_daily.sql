-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
-- depends_on: {{ ref('int_labels_joined_to_inferences') }}  (touched_prediction_days)
{{ config(**incremental_by_day('day')) }}

-- Precision, recall and F1 of each class, per classifier version and prediction day, over the
-- predictions with ground truth (scikit-learn's precision_recall_fscore_support with
-- zero_division=0, one row per class seen as a label or a prediction), from the sums of the
-- day's hourly class counts (int_performance_bin_counts_hourly; counts merge exactly).
-- Incremental like mart_model_performance_daily: days touched by new events or by labels
-- arriving late.
with
{% if is_incremental() %}
    touched as (

        {{ touched_prediction_days(this) }}

    ),
{% endif %}

hourly_classes as (

    select * from {{ ref('int_performance_bin_counts_hourly') }}
    where count_kind = 'class'
        {% if is_incremental() %}
            and event_day in (select event_day from touched)
        {% endif %}

),

hourly_totals as (

    select * from {{ ref('int_performance_counts_hourly') }}
    where labelled_predictions > 0
        {% if is_incremental() %}
            and event_day in (select event_day from touched)
        {% endif %}

),

classifiers as (

    select settings.model
    from (
        {{ model_settings(
            'performance_thresholds', '(select distinct model from hourly_classes)', ['task'],
        ) }}
    ) as settings
    where settings.task = 'classification'

),

labelled_per_day as (

    select
        model,
        model_version,
        event_day,
        cast(sum(labelled_predictions) as bigint) as labelled_predictions
    from hourly_totals
    group by model, model_version, event_day

),

class_counts as (

    select
        model,
        model_version,
        event_day,
        class_label,
        cast(sum(true_positives) as bigint) as true_positives,
        cast(sum(predicted) as bigint) as predicted,
        cast(sum(support) as bigint) as support
    from hourly_classes
    where model in (select model from classifiers)
    group by model, model_version, event_day, class_label

),

counted as (

    select
        class_counts.model,
        class_counts.model_version,
        class_counts.event_day as day,
        class_counts.class_label,
        class_counts.true_positives,
        class_counts.predicted,
        class_counts.support,
        labelled_per_day.labelled_predictions
    from class_counts
    inner join labelled_per_day
        on class_counts.model = labelled_per_day.model
            and class_counts.model_version = labelled_per_day.model_version
            and class_counts.event_day = labelled_per_day.event_day

),

watermarks as (

    {{ events_and_labels_watermark() }}

),

final as (

    select
        counted.*,
        coalesce(true_positives / nullif(predicted, 0), 0) as precision,
        coalesce(true_positives / nullif(support, 0), 0) as recall,
        coalesce(2 * true_positives / nullif(predicted + support, 0), 0) as f1,
        watermarks.source_watermark
    from counted
    cross join watermarks

)

select * from final

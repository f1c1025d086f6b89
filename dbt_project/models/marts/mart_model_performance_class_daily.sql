-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
{{ config(**incremental_by_day('day')) }}

-- Precision, recall and F1 of each class, per classifier version and prediction day, over the
-- predictions with ground truth (scikit-learn's precision_recall_fscore_support with
-- zero_division=0, one row per class seen as a label or a prediction). Incremental like
-- mart_model_performance_daily: days touched by new events or by labels arriving late.
with
{% if is_incremental() %}
    touched as (

        {{ touched_prediction_days(this) }}

    ),
{% endif %}

labelled as (

    select * from {{ ref('int_labels_joined_to_inferences') }}
    where prediction is not null
        {% if is_incremental() %}
            and event_day in (select event_day from touched)
        {% endif %}

),

classifiers as (

    select settings.model
    from (
        {{ model_settings(
            'performance_thresholds', '(select distinct model from labelled)', ['task'],
        ) }}
    ) as settings
    where settings.task = 'classification'

),

classes as (

    select distinct
        model,
        model_version,
        event_day,
        label as class_label
    from labelled
    union
    select distinct
        model,
        model_version,
        event_day,
        prediction as class_label
    from labelled

),

counted as (

    select
        classes.model,
        classes.model_version,
        classes.event_day as day,
        classes.class_label,
        count(*) filter (
            where labelled.prediction = classes.class_label
            and labelled.label = classes.class_label
        ) as true_positives,
        count(*) filter (where labelled.prediction = classes.class_label) as predicted,
        count(*) filter (where labelled.label = classes.class_label) as support,
        count(*) as labelled_predictions
    from classes
    inner join labelled
        on classes.model = labelled.model
            and classes.model_version = labelled.model_version
            and classes.event_day = labelled.event_day
    where classes.model in (select model from classifiers)
    group by classes.model, classes.model_version, classes.event_day, classes.class_label

),

watermarks as (

    -- one watermark for both inputs: every event and label ingested so far is in this build
    select
        greatest(
            coalesce((select max(ingested_at) from {{ ref('fct_inferences') }}), timestamp '1970-01-01'),
            coalesce((select max(ingested_at) from {{ ref('stg_bronze__labels') }}), timestamp '1970-01-01')
        ) as source_watermark

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

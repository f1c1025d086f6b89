-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
{{ config(**incremental_by_day('day')) }}

-- Fairness slices: per model version, prediction day and segment of each configured segment
-- feature (seed fairness_segments), the prediction rate of the positive class, accuracy and
-- recall against the ground truth, and each segment's ratio to the best segment of the same
-- feature that day. Segments with too few labels are kept and marked, and left out of "best".
-- Incremental like mart_model_performance_daily.
with
{% if is_incremental() %}
    touched as (

        {{ touched_prediction_days(this) }}

    ),
{% endif %}

predictions as (

    select
        event_id,
        model,
        model_version,
        event_day,
        prediction,
        input_features,
        geo_country,
        geo_region
    from {{ ref('fct_inferences') }}
    where prediction is not null
        {% if is_incremental() %}
            and event_day in (select event_day from touched)
        {% endif %}

),

labels as (

    select
        event_id,
        label,
        is_correct
    from {{ ref('int_labels_joined_to_inferences') }}
    where prediction is not null
        {% if is_incremental() %}
            and event_day in (select event_day from touched)
        {% endif %}

),

segments as (

    select * from {{ ref('fairness_segments') }}

),

positive_classes as (

    {{ model_settings(
        'performance_thresholds', '(select distinct model from predictions)', ['positive_class'],
    ) }}

),

sliced as (

    select
        predictions.model,
        predictions.model_version,
        predictions.event_day,
        segments.segment_feature,
        segments.min_labels,
        segments.ratio_floor,
        case segments.segment_feature
            when 'geo_country' then predictions.geo_country
            when 'geo_region' then predictions.geo_region
            else {{ json_text_at('predictions.input_features', 'segments.segment_feature') }}
        end as segment,
        predictions.prediction,
        positive_classes.positive_class,
        labels.label,
        labels.is_correct
    from predictions
    cross join segments
    inner join positive_classes on predictions.model = positive_classes.model
    left join labels on predictions.event_id = labels.event_id

),

per_segment as (

    select
        ---------- grain
        model,
        model_version,
        event_day as day,
        segment_feature,
        segment,
        ---------- counts
        count(*) as predictions,
        count(*) filter (where prediction = positive_class) as positive_predictions,
        count(label) as labelled_predictions,
        count(*) filter (where is_correct) as correct_predictions,
        count(*) filter (where label = positive_class) as actual_positives,
        count(*) filter (where label = positive_class and prediction = positive_class)
            as true_positives,
        any_value(positive_class) as positive_class,
        any_value(min_labels) as min_labels,
        any_value(ratio_floor) as ratio_floor
    from sliced
    where segment is not null
    group by model, model_version, event_day, segment_feature, segment

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

    -- one watermark for both inputs: every event and label ingested so far is in this build
    select
        greatest(
            coalesce((select max(ingested_at) from {{ ref('fct_inferences') }}), timestamp '1970-01-01'),
            coalesce((select max(ingested_at) from {{ ref('stg_bronze__labels') }}), timestamp '1970-01-01')
        ) as source_watermark

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

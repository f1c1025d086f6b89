-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_hours, read when incremental)
{{ config(**incremental_by_hour('hour', 'event_day')) }}

{#- Incremental: the prediction hours to recount are listed before the query runs, so that
    DuckDB prunes fct_inferences by day range before reading the input features. -#}
{%- set rebuild_hours = touched_prediction_hour_values() if is_incremental() else [] %}

-- The mergeable partial aggregate of mart_fairness_daily: per model version, prediction hour,
-- segment feature (seed fairness_segments) and segment, the counts each fairness figure is a
-- ratio of. Counts add up across hours, so a day's figures are those of the sums of its
-- hours'. Incremental by prediction hour: the hours new or rewritten events touch and the
-- hours whose predictions received labels since (late ground truth).
with predictions as (

    select
        event_id,
        model,
        model_version,
        date_trunc('hour', event_ts) as hour,
        event_day,
        prediction,
        input_features,
        geo_country,
        geo_region
    from {{ ref('fct_inferences') }}
    where prediction is not null
        {% if is_incremental() %}
            and {{ in_hours("date_trunc('hour', event_ts)", 'event_day', rebuild_hours) }}
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
            and {{ in_hours("date_trunc('hour', event_ts)", 'event_day', rebuild_hours) }}
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

watermark as (

    {{ events_and_labels_watermark() }}

),

sliced as (

    select
        predictions.model,
        predictions.model_version,
        predictions.hour,
        predictions.event_day,
        segments.segment_feature,
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

counted as (

    select
        ---------- grain
        model,
        model_version,
        hour,
        event_day,
        segment_feature,
        segment,
        ---------- counts
        count(*) as predictions,
        count(*) filter (where prediction = positive_class) as positive_predictions,
        count(label) as labelled_predictions,
        count(*) filter (where is_correct) as correct_predictions,
        count(*) filter (where label = positive_class) as actual_positives,
        count(*) filter (where label = positive_class and prediction = positive_class)
            as true_positives
    from sliced
    where segment is not null
    group by model, model_version, hour, event_day, segment_feature, segment

),

final as (

    select
        counted.*,
        watermark.source_watermark
    from counted
    cross join watermark

)

select * from final

-- depends_on: {{ ref('int_superseded_event_days') }}  (touched_days, called only when incremental)
-- depends_on: {{ ref('int_labels_joined_to_inferences') }}  (touched_prediction_days)
{{ config(**incremental_by_day('day')) }}

-- Production quality per model version and prediction day, from the predictions that have
-- ground truth: accuracy, macro precision/recall/F1 and calibration error (ECE, 10 equal-width
-- confidence bins) for classifiers, MAE and RMSE for regressors, beside the training-time
-- figures of the registry and a concept-drift status. The day's figures are computed from the
-- sums of its hours' partial aggregates (int_performance_counts_hourly,
-- int_performance_bin_counts_hourly): counts merge exactly, so a late event or label costs its
-- hour's recount and a re-sum of the day's small partial rows. Incremental by the *prediction* day:
-- a run rebuilds the days new events touch and the days late labels belong to (labels
-- ingested since the row's source_watermark), and no other.
with
{% if is_incremental() %}
    touched as (

        {{ touched_prediction_days(this) }}

    ),
{% endif %}

hourly as (

    select * from {{ ref('int_performance_counts_hourly') }}
    {% if is_incremental() %}
        where event_day in (select event_day from touched)
    {% endif %}

),

hourly_bins as (

    select * from {{ ref('int_performance_bin_counts_hourly') }}
    {% if is_incremental() %}
        where event_day in (select event_day from touched)
    {% endif %}

),

predictions as (

    select
        model,
        model_version,
        event_day,
        cast(sum(predictions) as bigint) as predictions
    from hourly
    group by model, model_version, event_day

),

thresholds as (

    {{ model_settings(
        'performance_thresholds', '(select distinct model from predictions)',
        ['task', 'min_labels', 'warning_tolerance', 'drift_tolerance', 'min_z'],
    ) }}

),

training as (

    select
        model,
        model_version,
        try_cast({{ json_text('training_metrics', 'accuracy') }} as double) as training_accuracy,
        try_cast({{ json_text('training_metrics', 'f1_macro') }} as double) as training_f1_macro,
        try_cast({{ json_text('training_metrics', 'ece') }} as double) as training_ece,
        try_cast({{ json_text('training_metrics', 'mae') }} as double) as training_mae,
        try_cast({{ json_text('training_metrics', 'rmse') }} as double) as training_rmse
    from {{ ref('stg_lake__registry') }}

),

per_class as (

    select
        model,
        model_version,
        event_day,
        class_label,
        cast(sum(true_positives) as bigint) as true_positives,
        cast(sum(predicted) as bigint) as predicted,
        cast(sum(support) as bigint) as support
    from hourly_bins
    where count_kind = 'class'
    group by model, model_version, event_day, class_label

),

macro as (

    -- scikit-learn's average='macro' over the classes seen as label or prediction, with
    -- zero_division=0 (summed in class order: the same bits whatever the row order)
    select
        model,
        model_version,
        event_day,
        count(*) as classes,
        {{ ordered_sum('coalesce(true_positives / nullif(predicted, 0), 0)', ['class_label']) }}
        / count(*) as precision_macro,
        {{ ordered_sum('coalesce(true_positives / nullif(support, 0), 0)', ['class_label']) }}
        / count(*) as recall_macro,
        {{ ordered_sum(
            'coalesce(2 * true_positives / nullif(predicted + support, 0), 0)', ['class_label']
        ) }}
        / count(*) as f1_macro
    from per_class
    group by model, model_version, event_day

),

calibration_bins as (

    select
        model,
        model_version,
        event_day,
        confidence_bin,
        cast(sum(bin_rows) as bigint) as bin_rows,
        -- an integer ratio is a double on both engines
        cast(sum(bin_correct) as double) / sum(bin_rows) as bin_accuracy,
        {{ ordered_sum('bin_confidence_sum', ['hour']) }} / sum(bin_rows) as bin_confidence
    from hourly_bins
    where count_kind = 'confidence_bin'
    group by model, model_version, event_day, confidence_bin

),

calibration as (

    select
        model,
        model_version,
        event_day,
        cast(sum(bin_rows) as bigint) as calibration_rows,
        {{ ordered_sum('bin_rows * abs(bin_accuracy - bin_confidence)', ['confidence_bin']) }}
        / sum(bin_rows) as ece
    from calibration_bins
    group by model, model_version, event_day

),

daily as (

    select
        model,
        model_version,
        event_day,
        cast(sum(labelled_predictions) as bigint) as labelled_predictions,
        cast(sum(correct_predictions) as bigint) as correct_predictions,
        cast(sum(label_delay_seconds) as double) / 3600 / nullif(sum(label_delay_rows), 0)
            as label_delay_hours_mean,
        max(newest_labeled_at) as newest_labeled_at,
        ---------- regression (rows where both are numbers)
        cast(sum(regression_rows) as bigint) as regression_rows,
        {{ ordered_sum('absolute_error_sum', ['hour']) }} / nullif(sum(regression_rows), 0)
            as mae,
        sqrt({{ ordered_sum('squared_error_sum', ['hour']) }} / nullif(sum(regression_rows), 0))
            as rmse
    from hourly
    where labelled_predictions > 0
    group by model, model_version, event_day

),

watermarks as (

    {{ events_and_labels_watermark() }}

),

measured as (

    select
        ---------- grain
        predictions.model,
        predictions.model_version,
        predictions.event_day as day,
        thresholds.task,
        ---------- coverage
        predictions.predictions,
        coalesce(daily.labelled_predictions, 0) as labelled_predictions,
        coalesce(daily.labelled_predictions, 0) / predictions.predictions as label_coverage,
        daily.label_delay_hours_mean,
        daily.newest_labeled_at,
        ---------- classification
        case when thresholds.task = 'classification'
                then daily.correct_predictions / daily.labelled_predictions
        end as accuracy,
        case when thresholds.task = 'classification' then macro.precision_macro end
            as precision_macro,
        case when thresholds.task = 'classification' then macro.recall_macro end as recall_macro,
        case when thresholds.task = 'classification' then macro.f1_macro end as f1_macro,
        case when thresholds.task = 'classification' then calibration.ece end as ece,
        case when thresholds.task = 'classification' then macro.classes end as classes,
        coalesce(calibration.calibration_rows, 0) as calibration_rows,
        ---------- regression
        case when thresholds.task = 'regression' then daily.mae end as mae,
        case when thresholds.task = 'regression' then daily.rmse end as rmse,
        coalesce(daily.regression_rows, 0) as regression_rows,
        ---------- training time
        training.training_accuracy,
        training.training_f1_macro,
        training.training_ece,
        training.training_mae,
        training.training_rmse,
        thresholds.min_labels,
        thresholds.warning_tolerance,
        thresholds.drift_tolerance,
        thresholds.min_z
    from predictions
    inner join thresholds on predictions.model = thresholds.model
    left join daily
        on predictions.model = daily.model
            and predictions.model_version = daily.model_version
            and predictions.event_day = daily.event_day
    left join macro
        on predictions.model = macro.model
            and predictions.model_version = macro.model_version
            and predictions.event_day = macro.event_day
    left join calibration
        on predictions.model = calibration.model
            and predictions.model_version = calibration.model_version
            and predictions.event_day = calibration.event_day
    left join training
        on predictions.model = training.model
            and predictions.model_version = training.model_version

),

compared as (

    select
        *,
        -- how far production falls short of training: accuracy points, or MAE's relative rise
        case
            when task = 'classification' then training_accuracy - accuracy
            when task = 'regression' then mae / nullif(training_mae, 0) - 1
        end as shortfall,
        -- the shortfall in standard errors of a binomial accuracy at the day's label count
        case
            when task = 'classification'
                then (training_accuracy - accuracy)
                    / nullif(sqrt(training_accuracy * (1 - training_accuracy) / labelled_predictions), 0)
        end as shortfall_z
    from measured

),

final as (

    select
        compared.*,
        case
            when labelled_predictions < min_labels then 'insufficient_labels'
            when shortfall is null then 'no_training_metrics'
            when shortfall > drift_tolerance and coalesce(shortfall_z >= min_z, true) then 'drift'
            when shortfall > warning_tolerance and coalesce(shortfall_z >= min_z, true)
                then 'warning'
            else 'stable'
        end as concept_drift_status,
        watermarks.source_watermark
    from compared
    cross join watermarks

)

select * from final

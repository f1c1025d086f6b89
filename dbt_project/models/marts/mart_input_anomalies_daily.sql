-- Share of each day's sampled inputs that the model version's isolation forest (fitted on its
-- training reference) calls anomalous, beside the share expected of unchanged inputs.
with scores as (

    select * from {{ ref('stg_lake__anomaly_scores') }}

),

daily as (

    select
        ---------- grain
        model,
        model_version,
        day,
        ---------- the sample
        count(*) as scored_events,
        any_value(day_events) as day_events,
        count(*) filter (where is_anomalous) as anomalous_events,
        ---------- scores
        avg(anomaly_score) as anomaly_score_mean,
        any_value(score_threshold) as score_threshold,
        any_value(expected_share) as expected_share,
        max(scored_at) as scored_at
    from scores
    group by model, model_version, day

),

final as (

    select
        *,
        anomalous_events / scored_events as anomalous_share,
        anomalous_events / scored_events / nullif(expected_share, 0) as anomalous_share_ratio
    from daily

)

select * from final

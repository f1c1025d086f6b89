{#- No scores yet reads as no rows: DuckDB's readers fail on a glob matching nothing. -#}
{%- set has_scores = lake_has_files('anomaly_scores/*/*/*.parquet') -%}

-- Isolation-forest scores of sampled events, one row per scored event (inferwatch.anomaly).
with scores as (

    {% if has_scores -%}
        select * from {{ source('lake', 'anomaly_scores') }}
    {%- else -%}
        select
            cast(null as string) as model,
            cast(null as string) as model_version,
            cast(null as date) as day,
            cast(null as string) as event_id,
            cast(null as double) as anomaly_score,
            cast(null as double) as score_threshold,
            cast(null as boolean) as is_anomalous,
            cast(null as double) as expected_share,
            cast(null as bigint) as day_events,
            cast(null as timestamp) as scored_at
        where false
    {%- endif %}

)

select
    ---------- ids
    model,
    model_version,
    cast(day as date) as day,
    event_id,
    ---------- score (higher is more anomalous) and the reference's cut-off
    anomaly_score,
    score_threshold,
    is_anomalous,
    expected_share,
    ---------- the sample
    day_events,
    scored_at
from scores

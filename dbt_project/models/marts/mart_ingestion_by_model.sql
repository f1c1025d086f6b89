-- Lines of each raw object (current version) by the model they name and the batch that judged
-- them: events loaded into fct_inferences and lines quarantined. The publishing gate reads the
-- rows of the batches it has not passed yet (README.md, "Validation: the publishing gate"): a
-- model that loses too many of its lines holds the build back; junk (model null) only warns.
with loaded as (

    select
        object_key,
        batch_id,
        ingested_at,
        model,
        count(*) as events_loaded,
        0 as lines_quarantined,
        cast(null as string) as top_reason
    from {{ ref('fct_inferences') }}
    group by object_key, batch_id, ingested_at, model

),

quarantine_reasons as (

    select
        object_key,
        batch_id,
        ingested_at,
        model,
        reason,
        count(*) as lines
    from {{ ref('stg_quarantine') }}
    group by object_key, batch_id, ingested_at, model, reason

),

quarantined as (

    select
        object_key,
        batch_id,
        ingested_at,
        model,
        0 as events_loaded,
        sum(lines) as lines_quarantined,
        -- a tie goes to the alphabetically last reason, so every rebuild gives the same text
        {{ arg_max('reason', ['lines', 'reason']) }} as top_reason
    from quarantine_reasons
    group by object_key, batch_id, ingested_at, model

),

lines as (

    select * from loaded
    union all
    select * from quarantined

)

select
    object_key,
    batch_id,
    ingested_at,
    model,
    sum(events_loaded) as events_loaded,
    sum(lines_quarantined) as lines_quarantined,
    max(top_reason) as top_reason
from lines
group by object_key, batch_id, ingested_at, model

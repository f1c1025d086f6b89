-- Lines of each raw object (current version) by the ingest they arrived in and the model they
-- name: events loaded into fct_inferences and lines quarantined. Lines a quarantine replay
-- loaded or re-judged count in the ingest they came from. The publishing gate judges each
-- ingest not yet passed on its own (README.md, "Validation: the publishing gate"): a model
-- that lost too many of its lines holds the build back; junk (model null) only warns.
with manifest as (

    select * from {{ ref('stg_bronze__manifest') }}

),

-- each batch of an object (ingest or replay) and the ingest it extends
batches as (

    select distinct
        object_key,
        batch_id,
        base_batch_id
    from manifest

),

ingests as (

    select
        object_key,
        batch_id,
        min(ingested_at) as ingested_at
    from manifest
    where batch_id = base_batch_id
    group by object_key, batch_id

),

loaded as (

    select
        object_key,
        batch_id,
        model,
        count(*) as events_loaded,
        0 as lines_quarantined,
        cast(null as string) as top_reason
    from {{ ref('fct_inferences') }}
    group by object_key, batch_id, model

),

quarantine_reasons as (

    select
        object_key,
        batch_id,
        model,
        reason,
        count(*) as lines
    from {{ ref('stg_quarantine') }}
    group by object_key, batch_id, model, reason

),

quarantined as (

    select
        object_key,
        batch_id,
        model,
        0 as events_loaded,
        sum(lines) as lines_quarantined,
        -- a tie goes to the alphabetically last reason, so every rebuild gives the same text
        {{ arg_max('reason', ['lines', 'reason']) }} as top_reason
    from quarantine_reasons
    group by object_key, batch_id, model

),

judged as (

    select * from loaded
    union all
    select * from quarantined

),

by_ingest as (

    select
        judged.object_key,
        batches.base_batch_id as batch_id,
        judged.model,
        judged.events_loaded,
        judged.lines_quarantined,
        judged.top_reason
    from judged
    inner join batches
        on judged.object_key = batches.object_key and judged.batch_id = batches.batch_id

)

select
    by_ingest.object_key,
    by_ingest.batch_id,
    ingests.ingested_at,
    by_ingest.model,
    sum(by_ingest.events_loaded) as events_loaded,
    sum(by_ingest.lines_quarantined) as lines_quarantined,
    max(by_ingest.top_reason) as top_reason
from by_ingest
inner join ingests
    on by_ingest.object_key = ingests.object_key and by_ingest.batch_id = ingests.batch_id
group by by_ingest.object_key, by_ingest.batch_id, ingests.ingested_at, by_ingest.model

-- Every manifest row ever written: one per ingestion (or quarantine replay) of a raw object.
with manifest as (

    select * from {{ source('bronze', 'manifest') }}
    -- manifests older than adapters or replays lack these columns: they read as null
    union all by name
    select
        null::bigint as lines_merged,
        null::varchar as base_batch_id
    where false

)

select
    ---------- ids
    object_key,
    batch_id,
    -- the ingest batch this row's rows extend: itself for an ingest, the replayed one for a replay
    coalesce(base_batch_id, batch_id) as base_batch_id,
    chunk,
    object_version,
    ---------- numerics
    object_size,
    lines_read,
    lines_loaded,
    lines_quarantined,
    lines_blank,
    coalesce(lines_merged, 0) as lines_merged,
    ---------- flags and times
    truncated,
    ingested_at
from manifest

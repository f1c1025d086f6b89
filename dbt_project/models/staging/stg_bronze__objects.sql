-- The current version of every ingested raw object: the newest manifest row per key (an
-- ingest, or a quarantine replay that updated its counts).
with manifest as (

    select * from {{ ref('stg_bronze__manifest') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by object_key order by ingested_at desc, batch_id desc
        ) as version_rank
    from manifest

)

select
    ---------- ids
    object_key,
    batch_id,
    base_batch_id,
    chunk,
    object_version,
    ---------- numerics
    object_size,
    lines_read,
    lines_loaded,
    lines_quarantined,
    lines_blank,
    lines_merged,
    inflated_bytes,
    ---------- flags and times
    truncated,
    limit_exceeded,
    batch_id <> base_batch_id as replayed,
    ingested_at
from ranked
where version_rank = 1

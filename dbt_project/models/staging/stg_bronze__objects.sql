-- The current version of every ingested raw object: the newest manifest row per key.
with manifest as (

    select * from {{ source('bronze', 'manifest') }}
    -- manifests written before adapters existed have no lines_merged column: it reads as null
    union all by name
    select null::bigint as lines_merged
    where false

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
from ranked
where version_rank = 1

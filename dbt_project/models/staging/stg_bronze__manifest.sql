{%- set optional_columns = {
    'lines_merged': 'bigint', 'base_batch_id': 'string',
    'limit_exceeded': 'string', 'inflated_bytes': 'bigint',
} -%}

-- Every manifest row ever written: one per ingestion (or quarantine replay) of a raw object.
with manifest as (

    -- manifests older than adapters, replays or size caps lack these columns: they read as null
    {{ with_optional_columns(source('bronze', 'manifest'), optional_columns) }}

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
    inflated_bytes,
    ---------- flags and times
    truncated,
    -- the size cap that stopped the read (README: Limits), null when none did
    limit_exceeded,
    ingested_at
from manifest

-- The bronze batches holding the current rows of each raw object: its newest ingest batch and
-- the quarantine replays based on it. A rewritten object starts a new ingest batch, so every
-- older row of it drops out; an uncommitted batch (no manifest row) never counts.
with manifest as (

    select * from {{ ref('stg_bronze__manifest') }}

),

current_objects as (

    select * from {{ ref('stg_bronze__objects') }}

)

select distinct
    manifest.object_key,
    manifest.batch_id
from manifest
inner join current_objects
    on manifest.object_key = current_objects.object_key
        and manifest.base_batch_id = current_objects.base_batch_id

-- One row per rejected raw line of the current object versions.
with quarantine as (

    select * from {{ ref('stg_quarantine') }}

)

select
    object_key,
    line_number,
    reason,
    model,
    raw_line,
    raw_sha256,
    batch_id,
    ingested_at
from quarantine

-- One row per rejected ground-truth label line (current version of its label object), as
-- fct_quarantine is for the inference log. Published in ops.duckdb.
with quarantine as (

    select * from {{ ref('stg_bronze__label_quarantine') }}

)

select
    object_key,
    line_number,
    reason,
    raw_line,
    raw_sha256,
    batch_id,
    ingested_at
from quarantine

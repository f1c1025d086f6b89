-- Rejected lines of the current version of each raw object. A quarantine replay writes a new
-- row for each line it re-judged (reason null once the line loaded): the newest row per line wins.
with quarantine as (

    select * from {{ source('bronze', 'quarantine') }}

),

current_batches as (

    select * from {{ ref('stg_bronze__object_batches') }}

),

ranked as (

    select
        quarantine.*,
        row_number() over (
            partition by quarantine.object_key, quarantine.line_number
            order by quarantine.ingested_at desc
        ) as judgement_rank
    from quarantine
    inner join current_batches
        on quarantine.object_key = current_batches.object_key
            and quarantine.batch_id = current_batches.batch_id

)

select
    object_key,
    line_number,
    reason,
    raw_line,
    raw_sha256,
    batch_id,
    ingested_at
from ranked
where judgement_rank = 1 and reason is not null

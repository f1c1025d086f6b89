{%- set optional_columns = {'model': 'string'} -%}

-- Rejected lines of the current version of each raw object. A quarantine replay writes a new
-- row for each line it re-judged (reason null once the line loaded): the newest row per line wins.
with quarantine as (

    -- quarantine files older than the model column lack it: their lines name no model
    {{ with_optional_columns(source('bronze', 'quarantine'), optional_columns) }}

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
    -- the model the line names, when it is a valid name (else null: junk, a bad name)
    model,
    raw_line,
    raw_sha256,
    batch_id,
    ingested_at
from ranked
where judgement_rank = 1 and reason is not null

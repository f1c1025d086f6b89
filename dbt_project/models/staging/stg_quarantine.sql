-- Rejected lines of the current version of each raw object.
with quarantine as (

    select * from {{ source('bronze', 'quarantine') }}

),

current_objects as (

    select
        object_key,
        batch_id
    from {{ ref('stg_bronze__objects') }}

)

select
    quarantine.object_key,
    quarantine.line_number,
    quarantine.reason,
    quarantine.raw_line,
    quarantine.raw_sha256,
    quarantine.batch_id,
    quarantine.ingested_at
from quarantine
inner join current_objects
    on quarantine.object_key = current_objects.object_key
        and quarantine.batch_id = current_objects.batch_id

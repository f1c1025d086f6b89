{%- set optional_columns = {'predictions': 'int', 'batch_elements': batch_elements_type()} -%}

-- Accepted events of the current version of each raw object (rewritten objects' old rows
-- stay in bronze but drop out here).
with events as (

    -- bronze written before batched requests lacks predictions and batch_elements: null
    {{ with_optional_columns(source('bronze', 'events'), optional_columns) }}

),

current_objects as (

    select
        object_key,
        batch_id
    from {{ ref('stg_bronze__object_batches') }}

)

select
    ---------- ids
    events.event_id,
    events.request_id,
    events.model,
    events.model_version,
    events.endpoint,
    events.client_id,
    events.user_hash,
    ---------- time
    events.event_ts,
    cast(events.event_ts as date) as event_day,
    ---------- outcome
    events.status,
    events.error_type,
    events.error_message,
    events.retry_count,
    events.fallback,
    ---------- numerics
    events.latency_ms,
    events.confidence,
    events.prediction,
    ---------- batched requests: predictions per request, and each one's inputs and outputs
    coalesce(events.predictions, 1) as predictions,
    events.batch_elements,
    ---------- nested (JSON text)
    events.input_features,
    events.geo_country,
    events.geo_region,
    events.resources,
    events.model_metadata,
    events.usage,
    events.extra,
    events.schema_version,
    ---------- lineage to the raw line
    events.object_key,
    events.line_number,
    events.batch_id,
    events.ingested_at
from events
inner join current_objects
    on events.object_key = current_objects.object_key
        and events.batch_id = current_objects.batch_id

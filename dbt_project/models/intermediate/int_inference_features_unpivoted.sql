-- Production values in long form: per hour (and its day), model version and input feature (the
-- keys of input_features), plus the outputs as pseudo-features `prediction` and `confidence`
-- (an input key of either name is left out), each distinct value once with the events that sent
-- it (`value_count`). Values follow the same JSON rule as the references. Every prediction
-- counts: a batched request's elements each bring their own inputs and outputs.
{%- set events_by_hour -%}
    (select *, date_trunc('hour', event_ts) as hour from {{ ref('fct_inferences') }})
{%- endset %}
with events as (

    {{ predictions_of(events_by_hour, ['hour', 'event_day', 'model', 'model_version']) }}

),

{{ unpivot_inference_features('events', ['hour', 'event_day']) }}

select * from feature_values

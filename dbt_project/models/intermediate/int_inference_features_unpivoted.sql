-- Production values in long form: per day, model version and input feature (the keys of
-- input_features), plus the outputs as pseudo-features `prediction` and `confidence` (an input
-- key of either name is left out), each distinct value once with the events that sent it
-- (`value_count`). Values follow the same JSON rule as the references. Every prediction counts:
-- a batched request's elements each bring their own inputs and outputs.
with events as (

    {{ predictions_of(ref('fct_inferences'), ['event_day', 'model', 'model_version']) }}

),

{{ unpivot_inference_features('events') }}

select * from feature_values

-- Production values in long form: one row per event and input feature (the keys of
-- input_features), plus the outputs as pseudo-features `prediction` and `confidence` (an input
-- key of either name is left out). Values follow the same JSON rule as the references.
with events as (

    select
        event_day,
        model,
        model_version,
        input_features,
        prediction,
        confidence
    from {{ ref('fct_inferences') }}

),

entries as (

    select
        event_day,
        model,
        model_version,
        unnest(list_concat(
            list_filter(
                map_entries(json_transform(input_features, '"MAP(VARCHAR, JSON)"')),
                input_entry -> input_entry.key not in ('prediction', 'confidence')
            ),
            [
                -- fct_inferences keeps a text label as is and other predictions as JSON text
                struct_pack(
                    key := 'prediction',
                    value := case
                        when json_valid(prediction) then cast(prediction as json) else to_json(prediction)
                    end
                ),
                struct_pack(key := 'confidence', value := to_json(confidence))
            ]
        )) as entry
    from events

),

typed_entries as (

    select
        event_day,
        model,
        model_version,
        entry.key as feature,
        entry.value,
        json_type(entry.value) as value_type
    from entries

),

feature_values as (

    select
        ---------- ids
        event_day,
        model,
        model_version,
        feature,
        ---------- value
        {{ json_scalar_number('value', 'value_type') }} as value_num,
        {{ json_scalar_text('value', 'value_type') }} as value_cat
    from typed_entries
    where value_type != 'NULL'

)

select * from feature_values

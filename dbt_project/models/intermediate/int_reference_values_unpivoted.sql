-- The training references in long form: one row per reference row and feature with a value.
-- A feature is numeric when every reference value of it is a JSON number, else categorical;
-- `prediction` and `confidence` are the output pseudo-features.
with reference_rows as (

    select * from {{ ref('stg_lake__reference') }}

),

entries as (

    select
        reference_rows.model,
        reference_rows.model_version as reference_version,
        unnest(
            map_entries(json_transform(to_json(reference_rows), '"MAP(VARCHAR, JSON)"'))
        ) as entry
    from reference_rows

),

typed_entries as (

    select
        model,
        reference_version,
        entry.key as feature,
        entry.value,
        json_type(entry.value) as value_type
    from entries
    where entry.key not in ('model', 'model_version', 'reference_file')

),

reference_values as (

    select
        model,
        reference_version,
        feature,
        {{ json_scalar_number('value', 'value_type') }} as value_num,
        {{ json_scalar_text('value', 'value_type') }} as value_cat
    from typed_entries
    where value_type != 'NULL'

),

typed as (

    select
        ---------- ids
        model,
        reference_version,
        feature,
        ---------- kind
        case
            when
                bool_and(value_num is not null)
                    over (partition by model, reference_version, feature)
                then 'numeric'
            else 'categorical'
        end as feature_type,
        case when feature in ('prediction', 'confidence') then 'output' else 'input' end as feature_role,
        ---------- value
        value_num,
        value_cat
    from reference_values

)

select * from typed

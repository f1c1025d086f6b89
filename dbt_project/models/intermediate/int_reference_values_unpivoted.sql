{{ config(materialized=ephemeral_or_table()) }}

-- The training references in long form: one row per reference row and feature with a value.
-- A feature is numeric when every reference value of it is a JSON number, else categorical;
-- `prediction` and `confidence` are the output pseudo-features.
with reference_rows as (

    select * from {{ ref('stg_lake__reference') }}

),

{{ unpivot_reference_values('reference_rows', ref('stg_lake__reference')) }},

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

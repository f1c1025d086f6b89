{{ config(materialized='table') }}

-- Every model version seen in production and the reference it is compared with: its own when
-- it has one, else the newest earlier version of the same model that has one. Versions are
-- ordered by the numbers in their names (v2 < v10, 1.2.9 < 1.2.10), ties by name; a version
-- with no reference of its own or earlier (`unknown` has no number) gets none.
with production_versions as (

    select
        model,
        model_version,
        min(event_day) as first_day,
        max(event_day) as last_day
    from {{ ref('fct_inferences') }}
    group by model, model_version

),

reference_versions as (

    select distinct
        model,
        reference_version,
        reference_fingerprint
    from {{ ref('int_reference_bins') }}

),

version_keys as (

    select
        *,
        {{ version_number_key('model_version') }} as version_key
    from production_versions

),

reference_keys as (

    select
        *,
        {{ version_number_key('reference_version') }} as version_key
    from reference_versions

),

candidates as (

    select
        version_keys.model,
        version_keys.model_version,
        reference_keys.reference_version,
        reference_keys.reference_fingerprint,
        row_number() over (
            partition by version_keys.model, version_keys.model_version
            order by reference_keys.version_key desc, reference_keys.reference_version desc
        ) as preference
    from version_keys
    inner join reference_keys
        on version_keys.model = reference_keys.model
            and (
                version_keys.version_key > reference_keys.version_key
                or (
                    version_keys.version_key = reference_keys.version_key
                    and version_keys.model_version >= reference_keys.reference_version
                )
            )

),

final as (

    select
        ---------- ids
        production_versions.model,
        production_versions.model_version,
        ---------- the reference used
        candidates.reference_version,
        candidates.reference_version != production_versions.model_version as uses_fallback_reference,
        candidates.reference_fingerprint,
        ---------- days the version served
        production_versions.first_day,
        production_versions.last_day
    from production_versions
    left join candidates
        on production_versions.model = candidates.model
            and production_versions.model_version = candidates.model_version
            and candidates.preference = 1

)

select * from final

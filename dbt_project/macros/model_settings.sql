{# Per-model settings from a seed whose row `model = '*'` holds the defaults: one row per model
   of `models` (a relation or a subquery with a `model` column), each setting the model's own
   value where the seed has one, else the default. #}
{% macro model_settings(seed, models, columns) %}
    select
        models.model,
        {%- for column in columns %}
            coalesce(specific.{{ column }}, defaults.{{ column }}) as {{ column }}
            {{- "," if not loop.last }}
        {%- endfor %}
    from {{ models }} as models
    left join {{ ref(seed) }} as specific on models.model = specific.model
    left join {{ ref(seed) }} as defaults on defaults.model = '*'
{% endmacro %}

{# Per-model settings from a seed whose row `model = '*'` holds the defaults: one row per model
   of `models` (a relation or a subquery with a `model` column), each setting the model's own
   value where the seed has one, else the default. `task` may also come from the model's registry
   entries (`inferwatch model register --task`), between the seed's own row and its default:
   a team that onboards a regression model says so where it registers it. #}
{% macro model_settings(seed, models, columns) %}
    select
        models.model,
        {%- for column in columns %}
            {%- if column == 'task' %}
                coalesce(specific.task, registered.task, defaults.task) as task
            {%- else %}
                coalesce(specific.{{ column }}, defaults.{{ column }}) as {{ column }}
            {%- endif %}
            {{- "," if not loop.last }}
        {%- endfor %}
    from {{ models }} as models
    left join {{ ref(seed) }} as specific on models.model = specific.model
    left join {{ ref(seed) }} as defaults on defaults.model = '*'
    {%- if 'task' in columns %}
        left join (
            -- One task per model: the latest registered version's that names a valid one.
            select
                model,
                {{ arg_max('task', ['deployed_at', 'model_version']) }} as task
            from {{ ref('stg_lake__registry') }}
            where task in ('classification', 'regression')
            group by model
        ) as registered on models.model = registered.model
    {%- endif %}
{% endmacro %}

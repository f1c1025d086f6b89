{# One data test per model that runs the model's column and grain tests as one query.

   dbt spends ~50-100 ms of its own on every test node whatever the test reads, and the project
   declares ~330 of them, so on an hour's data that overhead was most of a build. `model_checks`
   (declared once per model, beside its other tests) runs every *folded* test of its model:
   each one's own SQL (the same generic test macro, arguments and touched-partition scope),
   unioned, one row per failing row, with the failing test's name in `failed_check`. It fails
   when any of them would, and the build names the failed tests (inferwatch.transform).

   A test is folded when it is one of `folded_test_names()` with dbt's default pass/fail
   settings (severity error, the project's `where`, no fail_calc / warn_if / error_if / limit /
   store_failures of its own) and no Jinja in its arguments but a plain `{{ var('name') }}` or
   `{{ var('name', number) }}`. Any other test (e.g. a warning)
   runs as its own node. The pipeline's builds leave the folded tests out (inferwatch.transform,
   FOLDED_TESTS mirrors this rule); `dbt build` by hand runs both, which checks the same rows
   twice. #}

{% macro folded_test_names() %}
    {{ return(['not_null', 'unique', 'accepted_values', 'value_in_range',
               'not_less_than_column', 'unique_combination']) }}
{% endmacro %}


{# Whether `node` (a test of the graph) is run by its model's model_checks. #}
{% macro is_folded_test(node) %}
    {%- set meta = node.test_metadata -%}
    {%- if node.resource_type != 'test' or not meta or meta.namespace
            or meta.name not in folded_test_names() or not node.attached_node -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set c = node.config -%}
    {%- if (c.severity | lower) != 'error' or c.where != '__touched_partitions__'
            or c.fail_calc != 'count(*)' or c.warn_if != '!= 0' or c.error_if != '!= 0'
            or c.limit is not none or c.store_failures -%}
        {{ return(false) }}
    {%- endif -%}
    {%- for key, value in meta.kwargs.items() if key != 'model' -%}
        {%- if value is string and ('{{' in value or '{%' in value)
                and not modules.re.match(folded_var_pattern(), value) -%}
            {{ return(false) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(true) }}
{% endmacro %}


{# The one Jinja a folded test's argument may hold: {{ var('name') }} or {{ var('name', 10) }}
   (inferwatch.transform.FOLDED_VAR says the same). #}
{% macro folded_var_pattern() %}
    {{ return("^[{][{] *var[(] *'([A-Za-z0-9_]+)' *(, *(-?[0-9.]+) *)?[)] *[}][}]$") }}
{% endmacro %}


{# A folded test's argument as its own node would see it (a var() rendered). #}
{% macro folded_argument(value) %}
    {%- set found = modules.re.match(folded_var_pattern(), value) if value is string else none -%}
    {%- if found is none -%}
        {{ return(value) }}
    {%- elif found.group(3) is none -%}
        {{ return(var(found.group(1))) }}
    {%- endif -%}
    {{ return(var(found.group(1), fromjson(found.group(3)))) }}
{% endmacro %}


{# The model this test is attached to (`model` is the test node here, not the relation). #}
{% macro checked_model_id() %}
    {{ return(model.attached_node) }}
{% endmacro %}


{# One folded test's SQL over `relation`: its generic test macro (`test_<name>`, from dbt's
   context, so a kind added to folded_test_names() needs nothing here). #}
{% macro folded_test_sql(name, relation, kwargs) %}
    {%- if name not in folded_test_names() -%}
        {{ exceptions.raise_compiler_error('model_checks cannot run a ' ~ name ~ ' test') }}
    {%- endif -%}
    {{ return(context['test_' ~ name](relation, **kwargs)) }}
{% endmacro %}


{% test model_checks(model) %}
    {%- set parts = [] -%}
    {%- if execute -%}
        {%- set subject = checked_model_id() -%}
        {%- for node in graph.nodes.values() | sort(attribute='name')
                if node.resource_type == 'test' and node.attached_node == subject
                and is_folded_test(node) -%}
            {%- set kwargs = {} -%}
            {%- for key, value in node.test_metadata.kwargs.items() if key != 'model' -%}
                {%- do kwargs.update({key: folded_argument(value)}) -%}
            {%- endfor -%}
            {%- set scoped = touched_rows(model, grain_keys(node.test_metadata)) -%}
            {%- do parts.append(
                "select '" ~ node.name ~ "' as failed_check from (\n"
                ~ folded_test_sql(node.test_metadata.name, scoped, kwargs)
                ~ "\n) as failing"
            ) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if parts -%}
        {{ parts | join('\nunion all\n') }}
    {%- else -%}
        select cast(null as varchar) as failed_check where false
    {%- endif -%}
{% endtest %}

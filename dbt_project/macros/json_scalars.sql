{# JSON scalars as the number or the text drift compares: one rule for reference and production. #}
{% macro json_scalar_number(json_value, json_type) -%}
    case
        when {{ json_type }} in ('BIGINT', 'UBIGINT', 'DOUBLE') then try_cast({{ json_value }} as double)
    end
{%- endmacro %}

{% macro json_scalar_text(json_value, json_type) -%}
    case {{ json_type }}
        when 'NULL' then null
        when 'VARCHAR' then json_extract_string({{ json_value }}, '$')
        else cast({{ json_value }} as varchar)
    end
{%- endmacro %}

{# A column never below another of the same row (e.g. predictions >= requests). #}
{% test not_less_than_column(model, column_name, other_column) %}
select {{ column_name }}, {{ other_column }}
from {{ model }}
where {{ column_name }} < {{ other_column }}
{% endtest %}

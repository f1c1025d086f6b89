{# What reading a raw object showed, from its manifest counts (`objects` names the relation):
   the status both ingestion marts (logs and labels) give an object whose raw file is there. #}
{% macro object_read_status(objects) %}
    case
        when {{ objects }}.limit_exceeded is not null then 'too_large'
        when {{ objects }}.truncated then 'truncated'
        when {{ objects }}.lines_read = 0 then 'empty'
        when {{ objects }}.lines_loaded = 0 and {{ objects }}.lines_quarantined > 0
            then 'all_quarantined'
        when {{ objects }}.lines_quarantined > 0 then 'loaded_with_quarantine'
        else 'loaded'
    end
{% endmacro %}

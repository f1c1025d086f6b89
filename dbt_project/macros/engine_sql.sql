{# Where DuckDB's SQL and Spark's differ, one macro per construct, dispatched on the adapter
   (duckdb__ is the embedded default, spark__ the distributed target; docs/scaling.md). Models
   call these only where the SQL must differ; everything else is written once for both. #}

{# How a day-incremental model replaces its days: DuckDB deletes and inserts by day; Spark's
   Parquet tables (no Delta/Iceberg jars here) overwrite the day partitions the build writes. #}
{% macro incremental_by_day(day_column) -%}
    {{ return(adapter.dispatch('incremental_by_day', 'inferwatch')(day_column)) }}
{%- endmacro %}

{% macro duckdb__incremental_by_day(day_column) -%}
    {{ return({
        'materialized': 'incremental',
        'unique_key': day_column,
        'incremental_strategy': 'delete+insert',
    }) }}
{%- endmacro %}

{% macro spark__incremental_by_day(day_column) -%}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': 'insert_overwrite',
        'partition_by': [day_column],
        'file_format': 'parquet',
    }) }}
{%- endmacro %}


{# How an hour-incremental model replaces its hours. DuckDB: before the insert, a pre-hook
   deletes every touched hour (touched_hours), also one whose events all vanished (a rewrite
   that dropped them), which delete+insert by key alone would leave; then the rebuilt hours
   are inserted. Spark keeps day partitions (insert_overwrite needs a partition column, and an
   hour partition per model version would mean thousands of small Parquet files): there the
   model rebuilds the touched days (events_of_touched_hours). `pre_hook`: the model's own hooks,
   run first. #}
{% macro incremental_by_hour(hour_column, day_column, pre_hook=[]) -%}
    {{ return(adapter.dispatch('incremental_by_hour', 'inferwatch')(hour_column, day_column, pre_hook)) }}
{%- endmacro %}

{% macro duckdb__incremental_by_hour(hour_column, day_column, pre_hook) -%}
    {%- set delete_touched_hours -%}
        {{ '{%' }} if is_incremental() {{ '%}' }}
        delete from {{ '{{ this }}' }}
        where {{ hour_column }} in (
            {{ "{{ touched_hours(this, ref('fct_inferences')) }}" }}
        )
        {{ '{%' }} endif {{ '%}' }}
    {%- endset -%}
    {{ return({
        'materialized': 'incremental',
        'unique_key': hour_column,
        'incremental_strategy': 'delete+insert',
        'pre_hook': pre_hook + [delete_touched_hours],
    }) }}
{%- endmacro %}

{% macro spark__incremental_by_hour(hour_column, day_column, pre_hook) -%}
    {%- set config = incremental_by_day(day_column) -%}
    {%- do config.update({'pre_hook': pre_hook}) -%}
    {{ return(config) }}
{%- endmacro %}


{# Continuous quantile with linear interpolation between order statistics (numpy's default):
   DuckDB's quantile_cont, Spark's exact percentile (not percentile_approx). #}
{% macro quantile(column, fraction) -%}
    {{ return(adapter.dispatch('quantile', 'inferwatch')(column, fraction)) }}
{%- endmacro %}

{% macro duckdb__quantile(column, fraction) -%}
    quantile_cont({{ column }}, {{ fraction }})
{%- endmacro %}

{% macro spark__quantile(column, fraction) -%}
    percentile({{ column }}, {{ fraction }})
{%- endmacro %}


{# A JSON object's member as text (null when absent): DuckDB's ->>, Spark's get_json_object. #}
{% macro json_text(json_column, key) -%}
    {{ return(adapter.dispatch('json_text', 'inferwatch')(json_column, key)) }}
{%- endmacro %}

{% macro duckdb__json_text(json_column, key) -%}
    {{ json_column }} ->> '{{ key }}'
{%- endmacro %}

{% macro spark__json_text(json_column, key) -%}
    get_json_object({{ json_column }}, '$.{{ key }}')
{%- endmacro %}


{# A JSON object's member as JSON (objects and arrays stay JSON text on Spark). #}
{% macro json_member(json_column, key) -%}
    {{ return(adapter.dispatch('json_member', 'inferwatch')(json_column, key)) }}
{%- endmacro %}

{% macro duckdb__json_member(json_column, key) -%}
    {{ json_column }} -> '{{ key }}'
{%- endmacro %}

{% macro spark__json_member(json_column, key) -%}
    get_json_object({{ json_column }}, '$.{{ key }}')
{%- endmacro %}


{# An RFC 3339 text (any offset) as a UTC timestamp, null when it does not parse. #}
{% macro try_utc_timestamp(text) -%}
    {{ return(adapter.dispatch('try_utc_timestamp', 'inferwatch')(text)) }}
{%- endmacro %}

{% macro duckdb__try_utc_timestamp(text) -%}
    try_cast({{ text }} as timestamptz) at time zone 'UTC'
{%- endmacro %}

{# the session time zone is UTC (profiles.yml), so Spark's timestamp is UTC #}
{% macro spark__try_utc_timestamp(text) -%}
    try_cast({{ text }} as timestamp)
{%- endmacro %}


{# The value of `expression` on the row with the largest (order_by...) tuple. #}
{% macro arg_max(expression, order_by) -%}
    {{ return(adapter.dispatch('arg_max', 'inferwatch')(expression, order_by)) }}
{%- endmacro %}

{% macro duckdb__arg_max(expression, order_by) -%}
    arg_max({{ expression }}, ({{ order_by | join(', ') }}))
{%- endmacro %}

{% macro spark__arg_max(expression, order_by) -%}
    max_by({{ expression }}, struct({{ order_by | join(', ') }}))
{%- endmacro %}


{# A sum in a fixed order, so that a rebuild gives the same bits whatever the row order.
   Spark has no ordered aggregates: it sorts the collected terms and folds them. #}
{% macro ordered_sum(expression, order_by) -%}
    {{ return(adapter.dispatch('ordered_sum', 'inferwatch')(expression, order_by)) }}
{%- endmacro %}

{% macro duckdb__ordered_sum(expression, order_by) -%}
    sum({{ expression }} order by {{ order_by | join(', ') }})
{%- endmacro %}

{% macro spark__ordered_sum(expression, order_by) -%}
    aggregate(
        array_sort(collect_list(struct(
            {%- for key in order_by %}{{ key }} as sort_key_{{ loop.index }}, {% endfor -%}
            cast({{ expression }} as double) as term
        ))),
        cast(0 as double),
        (total, item) -> total + coalesce(item.term, 0)
    )
{%- endmacro %}


{# Text values joined in their own order; null when no row (or only nulls) passes `where`. #}
{% macro sorted_string_agg(expression, separator, where=none) -%}
    {{ return(adapter.dispatch('sorted_string_agg', 'inferwatch')(expression, separator, where)) }}
{%- endmacro %}

{% macro duckdb__sorted_string_agg(expression, separator, where) -%}
    string_agg({{ expression }}, '{{ separator }}' order by {{ expression }})
    {%- if where %} filter (where {{ where }}){% endif %}
{%- endmacro %}

{% macro spark__sorted_string_agg(expression, separator, where) -%}
    {%- set filtered = ' filter (where ' ~ where ~ ')' if where else '' -%}
    case
        when count({{ expression }}){{ filtered }} > 0
            then array_join(array_sort(collect_list({{ expression }}){{ filtered }}), '{{ separator }}')
    end
{%- endmacro %}


{# A text aggregate in a given order (no filter), e.g. for a fingerprint. #}
{% macro ordered_string_agg(expression, separator, order_by) -%}
    {{ return(adapter.dispatch('ordered_string_agg', 'inferwatch')(expression, separator, order_by)) }}
{%- endmacro %}

{% macro duckdb__ordered_string_agg(expression, separator, order_by) -%}
    string_agg({{ expression }}, '{{ separator }}' order by {{ order_by | join(', ') }})
{%- endmacro %}

{% macro spark__ordered_string_agg(expression, separator, order_by) -%}
    array_join(transform(
        array_sort(collect_list(struct(
            {%- for key in order_by %}{{ key }} as sort_key_{{ loop.index }}, {% endfor -%}
            {{ expression }} as item
        ))),
        entry -> entry.item
    ), '{{ separator }}')
{%- endmacro %}


{# One row per day from `first_day` to `last_day` (both included), as a column `event_day`. #}
{% macro days_between(first_day, last_day) -%}
    {{ return(adapter.dispatch('days_between', 'inferwatch')(first_day, last_day)) }}
{%- endmacro %}

{% macro duckdb__days_between(first_day, last_day) -%}
    unnest(generate_series({{ first_day }}, {{ last_day }}, interval 1 day))::date as event_day
{%- endmacro %}

{% macro spark__days_between(first_day, last_day) -%}
    explode(sequence({{ first_day }}, {{ last_day }}, interval 1 day)) as event_day
{%- endmacro %}


{# The numbers in a version name as a list to order by (v2 < v10, 1.2.9 < 1.2.10). #}
{% macro version_number_key(version) -%}
    {{ return(adapter.dispatch('version_number_key', 'inferwatch')(version)) }}
{%- endmacro %}

{% macro duckdb__version_number_key(version) -%}
    list_transform(
        regexp_extract_all({{ version }}, '\d+'), digits -> try_cast(digits as hugeint)
    )
{%- endmacro %}

{# Spark's string literals take backslash escapes: '\\d' is the regex \d #}
{% macro spark__version_number_key(version) -%}
    transform(
        regexp_extract_all({{ version }}, '\\d+', 0), digits -> try_cast(digits as decimal(38, 0))
    )
{%- endmacro %}


{# Every column of `relation` except `excluded`: DuckDB's `* exclude`; Spark lists the columns
   of `columns_of` (a built relation with the same columns as `relation`, or their names). #}
{% macro star_except(relation, excluded, columns_of) -%}
    {{ return(adapter.dispatch('star_except', 'inferwatch')(relation, excluded, columns_of)) }}
{%- endmacro %}

{% macro duckdb__star_except(relation, excluded, columns_of) -%}
    {{ relation }}.* exclude ({{ excluded | join(', ') }})
{%- endmacro %}

{% macro spark__star_except(relation, excluded, columns_of) -%}
    {%- if not execute -%}
        {{ return(relation ~ '.*') }}
    {%- endif -%}
    {%- set kept = [] -%}
    {%- set names = columns_of if columns_of is sequence and columns_of is not string
        else adapter.get_columns_in_relation(columns_of) | map(attribute='name') | list -%}
    {%- for name in names if name not in excluded -%}
        {%- do kept.append(relation ~ '.' ~ adapter.quote(name)) -%}
    {%- endfor -%}
    {{ kept | join(',\n    ') }}
{%- endmacro %}


{# Each value in the bin of `bins` that holds it: bins are contiguous and right-closed,
   (bin_lower, bin_upper], the first open below and the last open above. DuckDB finds the bin
   with an ASOF join (the last bin_lower below the value); Spark, which has none, with the
   range condition itself. `keys` are the (value side, bin side) pairs that must match. #}
{% macro join_bin_of_value(bins, value, keys) -%}
    {{ return(adapter.dispatch('join_bin_of_value', 'inferwatch')(bins, value, keys)) }}
{%- endmacro %}

{% macro duckdb__join_bin_of_value(bins, value, keys) -%}
    asof inner join {{ bins }}
        on {% for left, right in keys %}{{ left }} = {{ right }}
            and {% endfor %}{{ value }} > coalesce({{ bins }}.bin_lower, cast('-infinity' as double))
{%- endmacro %}

{% macro spark__join_bin_of_value(bins, value, keys) -%}
    inner join {{ bins }}
        on {% for left, right in keys %}{{ left }} = {{ right }}
            and {% endfor %}{{ value }} > coalesce({{ bins }}.bin_lower, cast('-infinity' as double))
            and ({{ bins }}.bin_upper is null or {{ value }} <= {{ bins }}.bin_upper)
{%- endmacro %}


{# Text as JSON, null when it is not JSON (Spark's JSON functions read text as it is). #}
{% macro try_json(text) -%}
    {{ return(adapter.dispatch('try_json', 'inferwatch')(text)) }}
{%- endmacro %}

{% macro duckdb__try_json(text) -%}
    try_cast({{ text }} as json)
{%- endmacro %}

{% macro spark__try_json(text) -%}
    {{ text }}
{%- endmacro %}


{# The integers start, .., stop - 1 as a one-column table (alias it: `as levels (level)`):
   DuckDB's range() table function; Spark's range() names its column `id`, so it is listed. #}
{% macro integer_range(start, stop) -%}
    {{ return(adapter.dispatch('integer_range', 'inferwatch')(start, stop)) }}
{%- endmacro %}

{% macro duckdb__integer_range(start, stop) -%}
    range({{ start }}, {{ stop }})
{%- endmacro %}

{% macro spark__integer_range(start, stop) -%}
    (values {% for number in range(start, stop) %}({{ number }}){{ ', ' if not loop.last }}{% endfor %})
{%- endmacro %}


{# An intermediate model that the models after it read several times: ephemeral (a CTE) on
   DuckDB; a table on Spark, which recomputes a CTE at every reference. #}
{% macro ephemeral_or_table() -%}
    {{ return(adapter.dispatch('ephemeral_or_table', 'inferwatch')()) }}
{%- endmacro %}

{% macro duckdb__ephemeral_or_table() -%}
    {{ return('ephemeral') }}
{%- endmacro %}

{% macro spark__ephemeral_or_table() -%}
    {{ return('table') }}
{%- endmacro %}


{# Whole `part`s (second, minute, hour, day) between two timestamps, counted as DuckDB's
   date_diff counts them: boundaries crossed (00:00:00.9 → 00:00:02.1 is 2 seconds), where
   Spark's timestampdiff counts elapsed units (1). #}
{% macro timestamp_diff(part, start, end) -%}
    {{ return(adapter.dispatch('timestamp_diff', 'inferwatch')(part, start, end)) }}
{%- endmacro %}

{% macro duckdb__timestamp_diff(part, start, end) -%}
    date_diff('{{ part }}', {{ start }}, {{ end }})
{%- endmacro %}

{% macro spark__timestamp_diff(part, start, end) -%}
    {%- set seconds = {'second': 1, 'minute': 60, 'hour': 3600, 'day': 86400}[part] -%}
    (unix_seconds(date_trunc('{{ part }}', {{ end }}))
        - unix_seconds(date_trunc('{{ part }}', {{ start }}))) div {{ seconds }}
{%- endmacro %}


{# A JSON object's member as text, the key given by an expression (a column), not a literal. #}
{% macro json_text_at(json_column, key_expression) -%}
    {{ return(adapter.dispatch('json_text_at', 'inferwatch')(json_column, key_expression)) }}
{%- endmacro %}

{% macro duckdb__json_text_at(json_column, key_expression) -%}
    {{ json_column }} ->> {{ key_expression }}
{%- endmacro %}

{% macro spark__json_text_at(json_column, key_expression) -%}
    get_json_object({{ json_column }}, concat('$.', {{ key_expression }}))
{%- endmacro %}


{# A timestamp as text in a strftime format (%Y %m %d %H %M %S only): Spark takes Java's
   date patterns instead. #}
{% macro format_timestamp(timestamp, format) -%}
    {{ return(adapter.dispatch('format_timestamp', 'inferwatch')(timestamp, format)) }}
{%- endmacro %}

{% macro duckdb__format_timestamp(timestamp, format) -%}
    strftime({{ timestamp }}, '{{ format }}')
{%- endmacro %}

{% macro spark__format_timestamp(timestamp, format) -%}
    {%- set pattern = format | replace('%Y', 'yyyy') | replace('%m', 'MM') | replace('%d', 'dd')
        | replace('%H', 'HH') | replace('%M', 'mm') | replace('%S', 'ss') -%}
    date_format({{ timestamp }}, '{{ pattern }}')
{%- endmacro %}


{# One row per hour from `first_hour` to `last_hour` (both included), as a column `hour`. #}
{% macro hours_between(first_hour, last_hour) -%}
    {{ return(adapter.dispatch('hours_between', 'inferwatch')(first_hour, last_hour)) }}
{%- endmacro %}

{% macro duckdb__hours_between(first_hour, last_hour) -%}
    unnest(generate_series({{ first_hour }}, {{ last_hour }}, interval 1 hour)) as hour
{%- endmacro %}

{% macro spark__hours_between(first_hour, last_hour) -%}
    explode(sequence({{ first_hour }}, {{ last_hour }}, interval 1 hour)) as hour
{%- endmacro %}


{# The median and the median absolute deviation (about that median) of `expression` over a
   named window frame, interpolated like quantile_cont. Spark's median and percentile take no
   window frame, so it sorts the frame's values (collect_list) and interpolates itself. #}
{% macro window_median(expression, window) -%}
    {{ return(adapter.dispatch('window_median', 'inferwatch')(expression, window)) }}
{%- endmacro %}

{% macro duckdb__window_median(expression, window) -%}
    median({{ expression }}) over {{ window }}
{%- endmacro %}

{% macro spark__window_median(expression, window) -%}
    {{ spark_array_median('collect_list(' ~ expression ~ ') over ' ~ window) }}
{%- endmacro %}

{% macro window_mad(expression, window) -%}
    {{ return(adapter.dispatch('window_mad', 'inferwatch')(expression, window)) }}
{%- endmacro %}

{% macro duckdb__window_mad(expression, window) -%}
    mad({{ expression }}) over {{ window }}
{%- endmacro %}

{% macro spark__window_mad(expression, window) -%}
    {%- set values = 'collect_list(' ~ expression ~ ') over ' ~ window -%}
    {{ spark_array_median(
        'transform(' ~ values ~ ', frame_value -> abs(frame_value - '
        ~ spark_array_median(values) ~ '))'
    ) }}
{%- endmacro %}

{# The median of an array of numbers (null when empty): the middle value, or the two middle
   values interpolated as quantile_cont does (low + (high - low) * 0.5). #}
{% macro spark_array_median(values) -%}
    {%- set sorted = 'array_sort(' ~ values ~ ')' -%}
    {%- set low = 'get(' ~ sorted ~ ', cast(floor((size(' ~ values ~ ') - 1) / 2) as int))' -%}
    {%- set high = 'get(' ~ sorted ~ ', cast(ceil((size(' ~ values ~ ') - 1) / 2) as int))' -%}
    ({{ low }} + ({{ high }} - {{ low }}) * 0.5)
{%- endmacro %}

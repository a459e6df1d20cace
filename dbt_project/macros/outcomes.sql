{#
    Helpers of the closing-the-loop marts (models/marts/outcomes).
#}

{#- plan_period_unit: var plan_period (month | quarter | year) as a date_trunc unit. -#}
{% macro plan_period_unit() -%}
    {%- set value = var('plan_period', 'month') | string -%}
    {%- if value not in ['month', 'quarter', 'year'] -%}
        {{ exceptions.raise_compiler_error("var plan_period must be month, quarter or year, got '" ~ value ~ "'") }}
    {%- endif -%}
    '{{ value }}'
{%- endmacro %}


{#-
    published_column_or(table, column, fallback): the column of the published table, or the
    fallback expression when the table was published before the column existed (the
    publisher adds new columns on the first publish that has them). True-ish while parsing.
-#}
{% macro published_column_or(table_name, column, fallback) -%}
    {%- if not execute -%}
        {{ column }}
    {%- else -%}
        {%- set relation = adapter.get_relation(
            database=target.database, schema=var('publish_schema'), identifier=table_name
        ) -%}
        {%- set names = adapter.get_columns_in_relation(relation) | map(attribute='name') | list
            if relation is not none else [] -%}
        {%- if column in names -%}{{ column }}{%- else -%}{{ fallback }}{%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#- health_part: 1 at 0 falling linearly to 0 at bad_at; 1 when the value is unknown
    (greatest() skips nulls, so the null case is spelled out). -#}
{% macro health_part(value_expr, bad_at) -%}
    case
        when {{ value_expr }} is null then 1
        else greatest(0, 1 - cast({{ value_expr }} as numeric) / {{ sql_number(bad_at) }})
    end
{%- endmacro %}

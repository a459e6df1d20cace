{#
    Date windows ending at the run's as-of date A.
#}

{#- in_window: `date_expr` lies in (A - days, A], the last `days` days up to A. -#}
{% macro in_window(date_expr, days) -%}
    ({{ date_expr }} > {{ as_of_date() }} - {{ days | int }} and {{ date_expr }} <= {{ as_of_date() }})
{%- endmacro %}

{#
    Date windows ending at the run's as-of date A.
#}

{#- in_window: `date_expr` lies in (A - days, A], the last `days` days up to A. -#}
{% macro in_window(date_expr, days) -%}
    ({{ date_expr }} > {{ as_of_date() }} - {{ days | int }} and {{ date_expr }} <= {{ as_of_date() }})
{%- endmacro %}


{#- months_to_as_of: one row per calendar month from the first order's month (an `orders`
    relation with order_date in the model) to A's month: month_start_date and month_end_date
    (A for A's own month). A call block adds columns computed from `month_start`. -#}
{% macro months_to_as_of() -%}
    select
        cast(month_start as date) as month_start_date,
        least(
            cast(month_start + interval '1 month' - interval '1 day' as date),
            {{ as_of_date() }}
        ) as month_end_date{% if caller is defined %},
        {{ caller() | trim }}{% endif %}
    from generate_series(
            (select date_trunc('month', min(order_date)) from orders),
            date_trunc('month', {{ as_of_date() }}),
            interval '1 month'
        ) as month_start
{%- endmacro %}

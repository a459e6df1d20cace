{#
    Revenue = covered customers x active rate x revenue per active customer, and the
    month-over-month change split into the three factors by chained substitution (covered
    customers first, then active rate, then revenue per active customer; the last effect is
    the rest, so the three add up to the change exactly). One arithmetic for every table that
    decomposes revenue this way (sales_kpis per region x channel, sales_rep_performance per
    rep's book). The relation needs covered_customers, active_customers and revenue.
#}

{#- the two rates, exact (0 when there is nothing to divide by) -#}
{% macro revenue_factor_rates() -%}
    coalesce(active_customers / nullif(cast(covered_customers as numeric), 0), 0) as active_rate_exact,
    coalesce(revenue / nullif(active_customers, 0), 0) as revenue_per_active_exact
{%- endmacro %}


{#- the previous month's factors, over a window named `window_name` (partition by the
    segment, order by the month) -#}
{% macro revenue_factor_previous(window_name) -%}
    lag(covered_customers) over {{ window_name }} as previous_covered_customers,
    lag(active_rate_exact) over {{ window_name }} as previous_active_rate,
    lag(revenue_per_active_exact) over {{ window_name }} as previous_revenue_per_active,
    lag(revenue) over {{ window_name }} as previous_revenue
{%- endmacro %}


{#- the change and the first two effects, rounded to cents; the third is
    revenue_change - covered_customers_effect - active_rate_effect -#}
{% macro revenue_factor_effects() -%}
    revenue - previous_revenue as revenue_change,
    round(
        (covered_customers - previous_covered_customers)
        * previous_active_rate * previous_revenue_per_active,
        2
    ) as covered_customers_effect,
    round(
        covered_customers * (active_rate_exact - previous_active_rate)
        * previous_revenue_per_active,
        2
    ) as active_rate_effect
{%- endmacro %}

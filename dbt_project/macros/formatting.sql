{#
    Adapter-specific formatting (to_char is PostgreSQL's).
#}

{#- format_amount: 1234.5 -> '1,234.50' (thousands separators, 2 decimals). -#}
{% macro format_amount(amount_expr) -%}
    {{ return(adapter.dispatch('format_amount', 'tierflow')(amount_expr)) }}
{%- endmacro %}

{% macro postgres__format_amount(amount_expr) -%}
    to_char({{ amount_expr }}, 'FM999,999,999,999,999,990.00')
{%- endmacro %}


{#- format_share: 0.2 -> '20%', 0.125 -> '12.5%'. -#}
{% macro format_share(share_expr) -%}
    {{ return(adapter.dispatch('format_share', 'tierflow')(share_expr)) }}
{%- endmacro %}

{% macro postgres__format_share(share_expr) -%}
    (cast(trim_scale(round(100 * ({{ share_expr }}), 1)) as text) || '%')
{%- endmacro %}

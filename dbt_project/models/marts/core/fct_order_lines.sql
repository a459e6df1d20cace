-- One row per order line (order_id, line_number), amounts in the base currency rounded to
-- cents. Rounded parts add up exactly: net_revenue = gross_revenue - discount and
-- gross_margin = net_revenue - cogs, so sums over lines stay consistent.
--
-- Incremental: a run rebuilds every line of each order that a load newer than the
-- newest source_load_id already here delivered (its header or any of its lines), and
-- replaces that order's lines (delete+insert on order_id). Old orders re-delivered late
-- are thus corrected; a new fx rate or product cost does not touch already built orders.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_id',
        on_schema_change='append_new_columns',
        indexes=[{'columns': ['order_id']}],
    )
}}

with

order_lines as (

    select * from {{ ref('int_order_lines_converted') }}

),

orders_to_build as (

    select order_id
    from order_lines
    group by order_id
    {% if is_incremental() %}
    having max(source_load_id) > {{ incremental_watermark('source_load_id') }}
    {% endif %}

),

lines_to_build as (

    select order_lines.*
    from order_lines
    inner join orders_to_build
        on order_lines.order_id = orders_to_build.order_id

),

rounded as (

    select
        *,
        round(gross_revenue, 2) as gross_revenue_rounded,
        round(discount, 2) as discount_rounded,
        round(cogs, 2) as cogs_rounded
    from lines_to_build

),

final as (

    select
        -- ids
        order_id,
        line_number,
        customer_id,
        product_id,

        -- dates
        order_date,

        -- attributes
        status,
        currency,
        fx_rate,
        is_cost_from_standard,

        -- quantities
        quantity,

        -- money in the order's currency
        unit_price,

        -- money in the base currency
        gross_revenue_rounded as gross_revenue,
        discount_rounded as discount,
        gross_revenue_rounded - discount_rounded as net_revenue,
        cogs_rounded as cogs,
        gross_revenue_rounded - discount_rounded - cogs_rounded as gross_margin,

        -- load metadata
        source_load_id

    from rounded

)

select * from final

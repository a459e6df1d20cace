-- One row per order line (order_id, line_number), amounts in the base currency rounded to
-- cents. Rounded parts add up exactly: net_revenue = gross_revenue - discount and
-- gross_margin = net_revenue - cogs, so sums over lines stay consistent.
with

order_lines as (

    select * from {{ ref('int_order_lines_converted') }}

),

rounded as (

    select
        *,
        round(gross_revenue, 2) as gross_revenue_rounded,
        round(discount, 2) as discount_rounded,
        round(cogs, 2) as cogs_rounded
    from order_lines

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
        gross_revenue_rounded - discount_rounded - cogs_rounded as gross_margin

    from rounded

)

select * from final

-- Order lines with their order's context and every amount converted to the base currency.
-- This is the ONE place where currency conversion happens: everything downstream reads
-- base-currency amounts from here. Amounts are not rounded here (rounding is done in the
-- fct models).
--
-- fx rule (SPEC "extract contract"): the latest rate on or before the order date; rate 1
-- when the currency is the base currency. A product's standard_cost is in the product's
-- currency (the base currency when the product has none) and is converted with the rate
-- of that currency on the order date.
--
-- Incremental like the order facts (macros/incremental.sql): a night converts the lines of
-- the orders whose header or any line is new to the table (a newer load or a later date
-- folder) and of the orders whose rows here came from date folders after A (a rerun of an
-- earlier date); a new fx rate or product cost does not touch already converted orders.
{{ as_known_incremental_config(
    key_columns=['order_id', 'line_number'],
    not_null_columns=['fx_rate', 'source_load_id', 'source_business_date'],
) }}

with

-- `not materialized`: read twice, each read finds its rows through the indexes
-- (a materialized CTE is a copy of the whole input, scanned)
all_order_lines as not materialized (

    select * from {{ ref('stg_erp__order_lines') }}

),

all_orders as not materialized (

    select * from {{ ref('stg_erp__orders') }}

),

{% if is_incremental() %}
orders_to_build as (

    select all_order_lines.order_id
    from all_order_lines
    where {{ is_new_to_build('all_order_lines') }}
    union
    select all_orders.order_id
    from all_orders
    where {{ is_new_to_build('all_orders') }}
    union
    {{ built_after_as_of_date('order_id') }}

),

order_lines as (

    select all_order_lines.*
    from all_order_lines
    inner join orders_to_build
        on all_order_lines.order_id = orders_to_build.order_id

),

orders as (

    select all_orders.*
    from all_orders
    inner join orders_to_build
        on all_orders.order_id = orders_to_build.order_id

),
{% else %}
order_lines as (

    select * from all_order_lines

),

orders as (

    select * from all_orders

),
{% endif %}

products as (

    select * from {{ ref('stg_erp__products') }}

),

fx_rates as (

    select * from {{ ref('stg_erp__fx_rates') }}

),

fx_rate_days as (

    select * from {{ ref('int_fx_rate_days') }}

),

fx_rate_latest as (

    {{ fx_rate_latest('fx_rates') }}

),

lines_with_context as (

    select
        order_lines.order_id,
        order_lines.line_number,
        orders.customer_id,
        order_lines.product_id,
        orders.order_date,
        orders.status,
        orders.currency,
        coalesce(products.currency, {{ base_currency() }}) as cost_currency,
        order_lines.quantity,
        order_lines.unit_price,
        order_lines.discount_amount,
        order_lines.unit_cost,
        products.standard_cost,
        -- the newer of the loads that delivered the line and its order header
        greatest(order_lines.load_id, orders.load_id) as source_load_id,
        -- and the later of the date folders they came from
        greatest(order_lines.business_date, orders.business_date) as source_business_date
    from order_lines
    inner join orders
        on order_lines.order_id = orders.order_id
    left join products
        on order_lines.product_id = products.product_id

),

lines_with_rates as (

    select
        lines_with_context.*,
        {{ fx_rate_or_one('lines_with_context.currency', fx_rate_on_date('order_fx')) }}
            as fx_rate,
        {{ fx_rate_or_one('lines_with_context.cost_currency', fx_rate_on_date('cost_fx')) }}
            as standard_cost_fx_rate
    from lines_with_context
    {{ fx_rate_join('order_fx', 'lines_with_context.currency', 'lines_with_context.order_date') }}
    {{ fx_rate_join('cost_fx', 'lines_with_context.cost_currency', 'lines_with_context.order_date') }}

),

converted as (

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
        cost_currency,
        fx_rate,
        standard_cost_fx_rate,
        unit_cost is null as is_cost_from_standard,

        -- quantities
        quantity,

        -- money in the order's currency, as delivered
        unit_price,
        discount_amount,
        unit_cost,

        -- money in the base currency (unrounded)
        quantity * unit_price * fx_rate as gross_revenue,
        coalesce(discount_amount, 0) * fx_rate as discount,
        (quantity * unit_price - coalesce(discount_amount, 0)) * fx_rate as net_revenue,
        case
            when unit_cost is not null then quantity * unit_cost * fx_rate
            else quantity * standard_cost * standard_cost_fx_rate
        end as cogs,

        -- load metadata
        source_load_id,
        source_business_date

    from lines_with_rates

),

final as (

    select * from converted

)

select * from final

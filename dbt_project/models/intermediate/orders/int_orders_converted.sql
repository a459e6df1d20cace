-- Order headers with their order-level amounts (shipping_cost) converted to the base
-- currency, by the fx rule of macros/fx.sql on the order date. Line amounts are converted
-- in int_order_lines_converted; each amount is converted in exactly one place.
--
-- Incremental like the order facts (macros/incremental.sql): a night converts the orders
-- new to the table (a newer load or a later date folder) and those whose row here came
-- from a date folder after A (a rerun of an earlier date).
{{ as_known_incremental_config(
    key_columns=['order_id'],
    not_null_columns=['fx_rate', 'shipping_cost', 'source_load_id', 'source_business_date'],
) }}

with

all_orders as (

    select * from {{ ref('stg_erp__orders') }}

),

orders as (

    select all_orders.*
    from all_orders
    {% if is_incremental() %}
    where {{ is_new_to_build('all_orders') }}
        or all_orders.order_id in ({{ built_after_as_of_date('order_id') }})
    {% endif %}

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

orders_with_rates as (

    select
        orders.*,
        {{ fx_rate_or_one('orders.currency', fx_rate_on_date('order_fx')) }} as fx_rate
    from orders
    {{ fx_rate_join('order_fx', 'orders.currency', 'orders.order_date') }}

),

final as (

    select
        -- ids
        order_id,
        customer_id,

        -- dates
        order_date,

        -- attributes
        status,
        currency,
        channel,
        sales_rep,
        fx_rate,

        -- money in the order's currency, as delivered
        shipping_cost as shipping_cost_in_currency,

        -- money in the base currency (unrounded; 0 when none delivered)
        coalesce(shipping_cost, 0) * fx_rate as shipping_cost,

        -- load metadata
        load_id as source_load_id,
        business_date as source_business_date

    from orders_with_rates

)

select * from final

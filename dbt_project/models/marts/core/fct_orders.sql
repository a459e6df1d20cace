-- One row per order (every order, also those without lines) as known on the as-of date A,
-- amounts in the base currency summed from fct_order_lines so that an order always equals
-- the sum of its lines. Revenue counts completed orders only (counted_revenue); returned
-- orders count as zero.
--
-- Incremental like fct_order_lines (macros/incremental.sql): a run rebuilds each order
-- whose header or lines are new to this table, and each order whose row here came from date
-- folders after A, reading the lines fct_order_lines rebuilt in the same run.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_id',
        on_schema_change='append_new_columns',
        indexes=watermark_indexes(),
        pre_hook=["{{ build_number_sequence() }}"],
        post_hook=[
            "{{ delete_rows_delivered_after_as_of_date() if is_incremental() }}",
            "{{ build_number_index() }}",
            enforce_key_hook(
                ['order_id'],
                [
                    'customer_id', 'order_date', 'status', 'net_revenue', 'counted_revenue', 'shipping_cost',
                    'source_load_id', 'source_business_date',
                ],
            ),
            "{{ enforce_row_rules() }}",
        ],
    )
}}

with

-- `not materialized`: read twice, each read finds its rows through the indexes
-- (a materialized CTE is a copy of the whole input, scanned)
all_orders as not materialized (

    select * from {{ ref('int_orders_converted') }}

),

all_order_lines as not materialized (

    select * from {{ ref('fct_order_lines') }}

),

{% if is_incremental() %}
orders_to_build as (

    -- a union, not `in (subquery)`: each branch is one scan, whatever the table sizes
    select all_orders.order_id
    from all_orders
    where {{ is_new_to_facts('all_orders') }}
    union
    select all_order_lines.order_id
    from all_order_lines
    where {{ is_new_to_facts('all_order_lines') }}
    union
    {{ built_after_as_of_date('order_id') }}

),

orders as (

    select all_orders.*
    from all_orders
    inner join orders_to_build
        on all_orders.order_id = orders_to_build.order_id

),

order_lines as (

    select all_order_lines.*
    from all_order_lines
    inner join orders_to_build
        on all_order_lines.order_id = orders_to_build.order_id

),
{% else %}
-- a full build reads every order and line as they are: joining them to the list of every
-- order id cost a sort and a merge join of 3.7 M lines (6.3 s against 3.6 s at 100,000
-- customers, docs/performance.md "Stop 29")
orders as (

    select * from all_orders

),

order_lines as (

    select * from all_order_lines

),
{% endif %}

order_line_totals as (

    select
        order_id,
        -- every line of an order carries the order's rate
        max(fx_rate) as fx_rate,
        count(*) as line_count,
        sum(gross_revenue) as gross_revenue,
        sum(discount) as discount,
        sum(net_revenue) as net_revenue,
        -- a line without cost (no fx rate for its product's currency) leaves the order's
        -- cost unknown rather than understated
        case when count(cogs) = count(*) then sum(cogs) end as cogs,
        case when count(gross_margin) = count(*) then sum(gross_margin) end as gross_margin,
        max(source_load_id) as source_load_id,
        max(source_business_date) as source_business_date
    from order_lines
    group by order_id

),

final as (

    select
        -- ids
        orders.order_id,
        orders.customer_id,

        -- dates
        orders.order_date,

        -- attributes
        orders.status,
        orders.currency,
        orders.channel,
        orders.sales_rep,
        order_line_totals.fx_rate,
        coalesce(order_line_totals.line_count, 0) as line_count,
        orders.status = 'returned' as is_returned,

        -- money in the base currency
        coalesce(order_line_totals.gross_revenue, 0) as gross_revenue,
        coalesce(order_line_totals.discount, 0) as discount,
        coalesce(order_line_totals.net_revenue, 0) as net_revenue,
        case
            when order_line_totals.order_id is null then 0
            else order_line_totals.cogs
        end as cogs,
        case
            when order_line_totals.order_id is null then 0
            else order_line_totals.gross_margin
        end as gross_margin,
        case
            when orders.status = 'completed' then coalesce(order_line_totals.net_revenue, 0)
            else 0
        end as counted_revenue,
        round(orders.shipping_cost, 2) as shipping_cost,

        -- load metadata
        greatest(orders.source_load_id, order_line_totals.source_load_id) as source_load_id,
        greatest(orders.source_business_date, order_line_totals.source_business_date)
            as source_business_date

    from orders
    left join order_line_totals
        on orders.order_id = order_line_totals.order_id

)

-- the build number here, not in `final`: nextval() is volatile, and PostgreSQL copies a CTE
-- that calls a volatile function whole before reading it (a full build at 100,000 customers
-- wrote 3.6 M order lines to a 495 MB temporary file first: 6.5 -> 4.6 s; fct_order_lines)
select
    final.*,
    {{ build_number() }} as build_number
from final

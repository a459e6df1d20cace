{%- set window_days = var('rfm_window_days') | int -%}
{%- set rates = var('cost_to_serve') -%}
-- One row per customer and as-of date A: revenue, cost of goods and gross margin of the
-- completed orders in the window (A - rfm_window_days, A], the cost to serve in the same
-- window (support minutes, sales activities, per-order handling and shipping, cost of
-- capital on receivables, rates from var cost_to_serve), the net contribution, and the
-- whale curve (rank by contribution, cumulative share of the total). Every money column
-- is rounded to cents and the rounded parts add up exactly. A rerun of a date replaces
-- that date's rows.
with

customers as (

    select * from {{ ref('dim_customers') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

tickets as (

    select * from {{ ref('stg_service__tickets') }}

),

activities as (

    select * from {{ ref('stg_crm__activities') }}

),

invoices as (

    select * from {{ ref('int_invoices_converted') }}

),

population as (

    select customer_id
    from customers
    where created_at <= {{ as_of_date() }}

),

order_totals as (

    -- completed orders bring revenue; completed and returned orders were shipped and
    -- handled (cancelled and pending ones were not)
    select
        customer_id,
        count(*) filter (where status = 'completed') as completed_orders,
        count(*) filter (where status in ('completed', 'returned')) as shipped_orders,
        coalesce(sum(counted_revenue), 0) as revenue,
        -- a line without a known cost (no fx rate for its product) counts as 0 here;
        -- fct_order_lines warns about it
        coalesce(sum(cogs) filter (where status = 'completed'), 0) as cogs,
        coalesce(sum(shipping_cost) filter (where status in ('completed', 'returned')), 0)
            as shipping_cost
    from orders
    where {{ in_window('order_date', window_days) }}
    group by customer_id

),

support_totals as (

    select
        customer_id,
        count(*) as tickets,
        coalesce(sum(handling_minutes), 0) as support_minutes
    from tickets
    where {{ in_window('cast(opened_at as date)', window_days) }}
    group by customer_id

),

activity_totals as (

    select
        customer_id,
        count(*) as activities,
        coalesce(sum(cost), 0) as activity_cost
    from activities
    where {{ in_window('activity_date', window_days) }}
    group by customer_id

),

receivable_days as (

    -- days each invoice was outstanding inside the window: from the invoice date (or the
    -- window start) until it was paid, written off (dated by its last update) or A
    select
        customer_id,
        amount,
        greatest(
            least(
                case
                    when paid_date is not null then paid_date
                    when status = 'written_off' then cast(updated_at as date)
                    else {{ as_of_date() }}
                end,
                {{ as_of_date() }}
            )
            - greatest(invoice_date, {{ as_of_date() }} - {{ window_days }}),
            0
        ) as days_outstanding
    from invoices
    where invoice_date <= {{ as_of_date() }}

),

receivable_totals as (

    select
        customer_id,
        sum(amount * days_outstanding) as amount_days_outstanding
    from receivable_days
    group by customer_id

),

components as (

    select
        population.customer_id,
        coalesce(order_totals.completed_orders, 0) as completed_orders,
        coalesce(order_totals.shipped_orders, 0) as shipped_orders,
        coalesce(support_totals.tickets, 0) as tickets,
        coalesce(support_totals.support_minutes, 0) as support_minutes,
        coalesce(activity_totals.activities, 0) as activities,
        round(coalesce(order_totals.revenue, 0), 2) as revenue,
        round(coalesce(order_totals.cogs, 0), 2) as cogs,
        round(
            coalesce(support_totals.support_minutes, 0)
            * {{ sql_number(rates.support_cost_per_minute) }},
            2
        ) as support_cost,
        round(coalesce(activity_totals.activity_cost, 0), 2) as activity_cost,
        round(
            coalesce(order_totals.shipped_orders, 0)
            * {{ sql_number(rates.handling_cost_per_order) }},
            2
        ) as handling_cost,
        round(coalesce(order_totals.shipping_cost, 0), 2) as shipping_cost,
        round(
            coalesce(receivable_totals.amount_days_outstanding, 0)
            * {{ sql_number(rates.annual_cost_of_capital) }} / 365,
            2
        ) as capital_cost
    from population
    left join order_totals
        on population.customer_id = order_totals.customer_id
    left join support_totals
        on population.customer_id = support_totals.customer_id
    left join activity_totals
        on population.customer_id = activity_totals.customer_id
    left join receivable_totals
        on population.customer_id = receivable_totals.customer_id

),

contributions as (

    select
        *,
        revenue - cogs as gross_margin,
        support_cost + activity_cost + handling_cost + shipping_cost + capital_cost
            as cost_to_serve,
        revenue - cogs
        - (support_cost + activity_cost + handling_cost + shipping_cost + capital_cost)
            as net_contribution
    from components

),

whale_curve as (

    -- best contributor first; ties broken by customer_id so the curve is deterministic
    select
        *,
        row_number() over (order by net_contribution desc, customer_id asc) as contribution_rank,
        sum(net_contribution) over (
            order by net_contribution desc, customer_id asc
            rows between unbounded preceding and current row
        ) as cumulative_contribution,
        sum(net_contribution) over () as total_contribution
    from contributions

),

final as (

    select
        -- ids
        customer_id,

        -- dates
        {{ as_of_date() }} as as_of_date,

        -- activity counts in the window
        completed_orders,
        shipped_orders,
        tickets,
        support_minutes,
        activities,

        -- margin (base currency)
        revenue,
        cogs,
        gross_margin,
        round(gross_margin / nullif(revenue, 0), 4) as gross_margin_pct,

        -- cost to serve (base currency)
        support_cost,
        activity_cost,
        handling_cost,
        shipping_cost,
        capital_cost,
        cost_to_serve,

        -- contribution
        net_contribution,
        round(net_contribution / nullif(revenue, 0), 4) as net_contribution_pct,
        net_contribution < 0 as is_loss_making,

        -- whale curve
        contribution_rank,
        cumulative_contribution,
        round(cumulative_contribution / nullif(total_contribution, 0), 6)
            as cumulative_contribution_share

    from whale_curve

)

select * from final

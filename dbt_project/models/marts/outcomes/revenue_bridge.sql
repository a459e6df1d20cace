-- Why revenue moved: one row per month x value tier x region x channel, from the month of
-- the first order up to the month of the as-of date A (that month up to A), as known on A.
-- Per customer, revenue of the month (completed orders, in cents) against the month before:
--   new          no revenue the month before, first revenue ever this month: + revenue
--   reactivated  no revenue the month before, revenue in an earlier month: + revenue
--   churned      revenue the month before, none this month: - previous revenue
--   expansion / contraction  the rest of the change, up / down
-- so previous_revenue + new + expansion - contraction - churned + reactivated = revenue
-- exactly, per customer and so per row. A customer counts in the value tier it has on A
-- ('untiered' without one) and in its region and channel as in dim_customers ('unknown'
-- when not delivered), so a row's previous_revenue is the revenue of the same row the month
-- before. Rebuilt whole every run.
with

customers as (

    select * from {{ ref('dim_customers') }}

),

customer_tiers as (

    select * from {{ ref('customer_tiers') }}
    where as_of_date = {{ as_of_date() }}

),

orders as (

    select * from {{ ref('fct_orders') }}
    where order_date <= {{ as_of_date() }}
        and status = 'completed'

),

monthly as (

    select
        customer_id,
        cast(date_trunc('month', order_date) as date) as month_start_date,
        round(sum(counted_revenue), 2) as revenue
    from orders
    group by customer_id, cast(date_trunc('month', order_date) as date)

),

customer_months as (

    -- every customer with revenue in a month or the month before, from one pass over each
    -- customer's months in order: its months with revenue (the month before from the row
    -- before, when that is the month before), and the month after each where the next row is
    -- not that month (no revenue: a churn). Not a union of joins of the months with the
    -- monthly rows, then two lookups back into them: at 100,000 customers that was 1.2 M rows
    -- sorted and merged three times (8.6 s of 11 s, docs/performance.md "Stop 29")
    select
        customer_id,
        month_start_date,
        revenue,
        lag(month_start_date) over customer_history as previous_month_start_date,
        lag(revenue) over customer_history as previous_month_revenue,
        lead(month_start_date) over customer_history as next_month_start_date,
        -- the first month with revenue (null: never any)
        min(month_start_date) filter (where revenue > 0) over (partition by customer_id)
            as first_month
    from monthly
    window customer_history as (partition by customer_id order by month_start_date)

),

changes as (

    select
        customer_id,
        month_start_date,
        case
            when previous_month_start_date = cast(month_start_date - interval '1 month' as date)
                then previous_month_revenue
            else 0
        end as previous_revenue,
        revenue,
        first_month
    from customer_months

    union all

    -- the month after a month with revenue, without any: up to the month of A
    select
        customer_id,
        cast(month_start_date + interval '1 month' as date) as month_start_date,
        revenue as previous_revenue,
        0 as revenue,
        first_month
    from customer_months
    where (
        next_month_start_date is null
        or next_month_start_date <> cast(month_start_date + interval '1 month' as date)
    )
    and month_start_date < cast(date_trunc('month', {{ as_of_date() }}) as date)

),

classified as (

    select
        *,
        case
            when previous_revenue <= 0 and revenue > 0 and first_month = month_start_date then revenue
            else 0
        end as new_revenue,
        case
            when previous_revenue <= 0 and revenue > 0 and first_month < month_start_date then revenue
            else 0
        end as reactivated_revenue,
        case when previous_revenue > 0 and revenue <= 0 then previous_revenue else 0 end as churned_revenue
    from changes

),

terms as (

    select
        *,
        -- what new, reactivated and churned leave of the change
        (revenue - previous_revenue) - new_revenue - reactivated_revenue + churned_revenue as rest
    from classified

),

segmented as (

    select
        terms.*,
        coalesce(customer_tiers.value_tier, 'untiered') as value_tier,
        coalesce(customer_tiers.value_tier_rank, 999) as tier_rank,
        coalesce(customers.region, 'unknown') as region,
        coalesce(customers.channel, 'unknown') as channel
    from terms
    left join customer_tiers
        on terms.customer_id = customer_tiers.customer_id
    left join customers
        on terms.customer_id = customers.customer_id

),

final as (

    select
        -- the row
        month_start_date,
        to_char(month_start_date, 'YYYY-MM') as month,  -- noqa: RF04
        value_tier,
        min(tier_rank) as tier_rank,
        region,
        channel,

        -- the bridge (base currency)
        sum(previous_revenue) as previous_revenue,
        sum(new_revenue) as new_revenue,
        sum(greatest(rest, 0)) as expansion_revenue,
        sum(greatest(-rest, 0)) as contraction_revenue,
        sum(churned_revenue) as churned_revenue,
        sum(reactivated_revenue) as reactivated_revenue,
        sum(revenue) as revenue,

        -- customers behind each term
        count(*) filter (where previous_revenue > 0) as previous_active_customers,
        count(*) filter (where new_revenue > 0) as new_customers,
        count(*) filter (where rest > 0) as expanding_customers,
        count(*) filter (where rest < 0) as contracting_customers,
        count(*) filter (where churned_revenue > 0) as churned_customers,
        count(*) filter (where reactivated_revenue > 0) as reactivated_customers,
        count(*) filter (where revenue > 0) as active_customers,

        -- dates
        {{ as_of_date() }} as as_of_date

    from segmented
    group by month_start_date, value_tier, region, channel

)

select * from final

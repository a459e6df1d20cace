-- Retention triangle: one row per first-purchase month (cohort) x months since x value tier
-- at first tiering, on as-of date A, as known on A. A customer's cohort is the month of its
-- first completed order with revenue; months_since runs from 0 (the cohort month) to the
-- month of A. active_share = customers with revenue in that month / the cohort's customers;
-- revenue_retention = the month's revenue net of returns (completed revenue - net revenue of
-- returned orders, by order month) / the cohort month's. The tier is the first one BI was
-- shown for the customer (bi.customer_tier_history), else its tier on A ('untiered' without
-- one). Rebuilt whole every run.
with

orders as (

    select * from {{ ref('fct_orders') }}
    where order_date <= {{ as_of_date() }}
        and status in ('completed', 'returned')

),

customer_tiers as (

    select * from {{ ref('customer_tiers') }}
    where as_of_date = {{ as_of_date() }}

),

monthly as (

    select
        customer_id,
        cast(date_trunc('month', order_date) as date) as month_start_date,
        coalesce(sum(counted_revenue) filter (where status = 'completed'), 0) as revenue,
        coalesce(sum(net_revenue) filter (where status = 'returned'), 0) as returned_revenue
    from orders
    group by customer_id, cast(date_trunc('month', order_date) as date)

),

cohorts as (

    select
        monthly.customer_id,
        min(monthly.month_start_date) as cohort_month
    from monthly
    where monthly.revenue > 0
    group by monthly.customer_id

),

{% if has_published_history('customer_tier_history')
    and has_published_index('customer_tier_history', ['customer_id', 'as_of_date']) %}
first_tiers as (

    -- each cohort member's first published tier, one index probe per customer: the history
    -- grows by every customer each night (6 M rows at 100,000 customers after 62 nights; the
    -- model 3.6 s reading it whole, 2.7 s by probes; docs/performance.md "Stop 29")
    select
        cohorts.customer_id,
        first_tier.value_tier
    from cohorts
    cross join lateral (
        select history.value_tier
        from {{ source('published', 'customer_tier_history') }} as history
        where history.customer_id = cohorts.customer_id
            and history.as_of_date <= {{ as_of_date() }}
        order by history.as_of_date
        limit 1
    ) as first_tier

),
{% elif has_published_history('customer_tier_history') %}
first_tiers as (

    -- no (customer_id, as_of_date) index yet (the publish creates it): the whole history
    select distinct on (customer_id)
        customer_id,
        value_tier
    from {{ source('published', 'customer_tier_history') }}
    where as_of_date <= {{ as_of_date() }}
    order by customer_id, as_of_date

),
{% else %}
first_tiers as (

    select
        cast(null as text) as customer_id,
        cast(null as text) as value_tier
    where false

),
{% endif %}

members as (

    select
        cohorts.customer_id,
        cohorts.cohort_month,
        coalesce(first_tiers.value_tier, customer_tiers.value_tier, 'untiered') as value_tier
    from cohorts
    left join first_tiers
        on cohorts.customer_id = first_tiers.customer_id
    left join customer_tiers
        on cohorts.customer_id = customer_tiers.customer_id

),

cohort_months as (

    -- the triangle's cells: each cohort and tier with its size, every month from the
    -- cohort's to A's
    select
        sizes.cohort_month,
        sizes.value_tier,
        sizes.customers,
        cast(month_start as date) as month_start_date
    from (
        select
            cohort_month,
            value_tier,
            count(*) as customers
        from members
        group by cohort_month, value_tier
    ) as sizes
    cross join lateral generate_series(
        sizes.cohort_month, date_trunc('month', {{ as_of_date() }}), interval '1 month'
    ) as month_start

),

activity as (

    -- the members' months with orders from their cohort month on, summed per cell. Not a
    -- row for every member and month (a member without orders in a month adds nothing but
    -- to the cell's size, counted above): at 100,000 customers that grid was 1.7 M rows
    -- joined to the months with orders (docs/performance.md "Stop 29")
    select
        members.cohort_month,
        members.value_tier,
        monthly.month_start_date,
        count(*) filter (where monthly.revenue > 0) as active_customers,
        sum(monthly.revenue - monthly.returned_revenue) as net_revenue
    from members
    inner join monthly
        on members.customer_id = monthly.customer_id
            and members.cohort_month <= monthly.month_start_date
    group by members.cohort_month, members.value_tier, monthly.month_start_date

),

cells as (

    select
        cohort_months.cohort_month,
        cohort_months.value_tier,
        cast((
            extract(year from age(cohort_months.month_start_date, cohort_months.cohort_month)) * 12
            + extract(month from age(cohort_months.month_start_date, cohort_months.cohort_month))
        ) as integer) as months_since,
        cohort_months.month_start_date,
        cohort_months.customers,
        coalesce(activity.active_customers, 0) as active_customers,
        round(coalesce(activity.net_revenue, 0), 2) as net_revenue
    from cohort_months
    left join activity
        on cohort_months.cohort_month = activity.cohort_month
            and cohort_months.value_tier = activity.value_tier
            and cohort_months.month_start_date = activity.month_start_date

),

final as (

    select
        -- the cell
        cells.cohort_month,
        to_char(cells.cohort_month, 'YYYY-MM') as cohort,
        cells.months_since,
        cells.month_start_date,
        cells.value_tier,

        -- customers
        cells.customers,
        cells.active_customers,
        round(cast(cells.active_customers as numeric) / cells.customers, 4) as active_share,

        -- revenue net of returns (base currency)
        cells.net_revenue,
        first_month.net_revenue as cohort_net_revenue,
        round(cells.net_revenue / nullif(first_month.net_revenue, 0), 4) as revenue_retention,

        -- dates
        {{ as_of_date() }} as as_of_date

    from cells
    inner join cells as first_month
        on cells.cohort_month = first_month.cohort_month
            and cells.value_tier = first_month.value_tier
            and first_month.months_since = 0

)

select * from final

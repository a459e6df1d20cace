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

{% if has_published_history('customer_tier_history') %}
first_tiers as (

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

grid as (

    select
        members.*,
        cast(month_start as date) as month_start_date
    from members
    cross join lateral generate_series(
        members.cohort_month, date_trunc('month', {{ as_of_date() }}), interval '1 month'
    ) as month_start

),

activity as (

    select
        grid.cohort_month,
        grid.value_tier,
        grid.month_start_date,
        cast((
            extract(year from age(grid.month_start_date, grid.cohort_month)) * 12
            + extract(month from age(grid.month_start_date, grid.cohort_month))
        ) as integer) as months_since,
        grid.customer_id,
        coalesce(monthly.revenue, 0) > 0 as is_active,
        coalesce(monthly.revenue, 0) - coalesce(monthly.returned_revenue, 0) as net_revenue
    from grid
    left join monthly
        on grid.customer_id = monthly.customer_id
            and grid.month_start_date = monthly.month_start_date

),

cells as (

    select
        cohort_month,
        value_tier,
        months_since,
        min(month_start_date) as month_start_date,
        count(*) as customers,
        count(*) filter (where is_active) as active_customers,
        round(sum(net_revenue), 2) as net_revenue
    from activity
    group by cohort_month, value_tier, months_since

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

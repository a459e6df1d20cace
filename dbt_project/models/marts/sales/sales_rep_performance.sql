{%- set rates = var('cost_to_serve') -%}
{%- set top_tier = var('tier_levels')[0].name -%}
-- One row per month x sales rep, from the first month with an order up to the month of the
-- as-of date A (that month only up to A). A rep's book is the customers whose account
-- manager (dim_customers, as known on A) the rep is ('unassigned' without one); the reps
-- are the account managers and the sales reps named on completed orders.
--
-- The book's revenue = covered customers x active rate x revenue per active customer, and
-- its month-over-month change is split into the three factors exactly as sales_kpis does
-- (macros/revenue_factors.sql: chained substitution, covered customers, then active rate,
-- then revenue per active customer; the last effect is the rest, so the three add up to
-- the change exactly).
-- Beside the book: the orders the rep sold (erp/orders.sales_rep, any customer's), the
-- book's gross margin and net contribution after the month's cost to serve (handling and
-- shipping of shipped orders, activities, support minutes; cost of capital on receivables
-- stays in customer_profitability's window), the book's tier mix on A, and its alerts
-- (open on A; raised in the month on any published as-of date or on A). Rebuilt whole
-- every run.
with

customers as (

    select * from {{ ref('dim_customers') }}

),

orders as (

    select * from {{ ref('fct_orders') }}
    where order_date <= {{ as_of_date() }}

),

activities as (

    select * from {{ ref('stg_crm__activities') }}
    where activity_date <= {{ as_of_date() }}

),

tickets as (

    select * from {{ ref('stg_service__tickets') }}
    where cast(opened_at as date) <= {{ as_of_date() }}

),

customer_tiers as (

    select * from {{ ref('customer_tiers') }}
    where as_of_date = {{ as_of_date() }}

),

tonights_alerts as (

    select * from {{ ref('account_alerts') }}
    where as_of_date = {{ as_of_date() }}

),

{% if has_published_history('account_alerts') %}
published_alerts as (

    -- earlier nights as BI was shown them (a rerun of A counts tonight's rows, not these)
    select * from {{ source('published', 'account_alerts') }}
    where as_of_date < {{ as_of_date() }}

),
{% endif %}

books as (

    select
        customer_id,
        created_at,
        coalesce(nullif(trim(account_manager), ''), 'unassigned') as sales_rep
    from customers

),

months as (

    {{ months_to_as_of() }}

),

month_orders as (

    select
        orders.order_id,
        orders.customer_id,
        books.created_at,
        books.sales_rep as book_rep,
        nullif(trim(orders.sales_rep), '') as order_rep,
        orders.status,
        cast(date_trunc('month', orders.order_date) as date) as month_start_date,
        orders.counted_revenue,
        orders.gross_margin,
        orders.shipping_cost
    from orders
    inner join books
        on orders.customer_id = books.customer_id

),

reps as (

    select sales_rep from books
    union
    select order_rep from month_orders
    where status = 'completed' and order_rep is not null

),

book_orders as (

    select
        book_rep as sales_rep,
        month_start_date,
        count(distinct customer_id) filter (where status = 'completed') as active_customers,
        count(*) filter (where status = 'completed') as orders,
        coalesce(sum(counted_revenue) filter (where status = 'completed'), 0) as revenue,
        coalesce(sum(gross_margin) filter (where status = 'completed'), 0) as gross_margin,
        -- shipped (completed or returned) orders are handled and shipped
        count(*) filter (where status in ('completed', 'returned')) * {{ sql_number(rates.handling_cost_per_order) }}
        + coalesce(sum(shipping_cost) filter (where status in ('completed', 'returned')), 0)
            as order_cost
    from month_orders
    group by book_rep, month_start_date

),

sold_orders as (

    select
        order_rep as sales_rep,
        month_start_date,
        count(*) as sold_orders,
        sum(counted_revenue) as sold_revenue,
        coalesce(sum(counted_revenue) filter (where book_rep <> order_rep), 0) as sold_outside_book_revenue
    from month_orders
    where status = 'completed'
        and order_rep is not null
    group by order_rep, month_start_date

),

activity_costs as (

    select
        books.sales_rep,
        cast(date_trunc('month', activities.activity_date) as date) as month_start_date,
        coalesce(sum(activities.cost), 0) as activity_cost
    from activities
    inner join books
        on activities.customer_id = books.customer_id
    group by books.sales_rep, date_trunc('month', activities.activity_date)

),

support_costs as (

    select
        books.sales_rep,
        cast(date_trunc('month', tickets.opened_at) as date) as month_start_date,
        coalesce(sum(tickets.handling_minutes), 0) * {{ sql_number(rates.support_cost_per_minute) }}
            as support_cost
    from tickets
    inner join books
        on tickets.customer_id = books.customer_id
    group by books.sales_rep, date_trunc('month', tickets.opened_at)

),

book_created_by_date as (

    select
        sales_rep,
        created_at,
        count(*) as customers
    from books
    group by sales_rep, created_at

),

covered_parts as (

    -- covered: created by the month's end, or buying in the month whatever the CRM says,
    -- counted as the two disjoint parts of that union, as in sales_kpis (the book's customers
    -- created by the month's end; the month's buyers not created by its end or with no
    -- creation date): months x creation dates, not months x books made distinct
    select
        months.month_start_date,
        book_created_by_date.sales_rep,
        book_created_by_date.customers
    from months
    inner join book_created_by_date
        on months.month_end_date >= book_created_by_date.created_at

    union all

    select
        months.month_start_date,
        month_orders.book_rep as sales_rep,
        count(distinct month_orders.customer_id) as customers
    from months
    inner join month_orders
        on months.month_start_date = month_orders.month_start_date
    where month_orders.status = 'completed'
        and (month_orders.created_at is null or month_orders.created_at > months.month_end_date)
    group by months.month_start_date, month_orders.book_rep

),

covered as (

    select
        month_start_date,
        sales_rep,
        cast(sum(customers) as bigint) as covered_customers
    from covered_parts
    group by month_start_date, sales_rep

),

tier_counts as (

    select
        books.sales_rep,
        customer_tiers.value_tier,
        customer_tiers.value_tier_rank,
        count(*) as customers
    from customer_tiers
    inner join books
        on customer_tiers.customer_id = books.customer_id
    group by books.sales_rep, customer_tiers.value_tier, customer_tiers.value_tier_rank

),

tier_mix as (

    -- the book on A: its customers by value tier, best tier first ('high 2, medium 1, low 1')
    select
        sales_rep,
        cast(sum(customers) as bigint) as book_customers,
        cast(coalesce(sum(customers) filter (where value_tier = {{ sql_literal(top_tier) }}), 0) as bigint)
            as top_tier_customers,
        string_agg(value_tier || ' ' || customers, ', ' order by value_tier_rank) as tier_mix
    from tier_counts
    group by sales_rep

),

all_alerts as (

    select
        as_of_date,
        customer_id,
        alert_type
    from tonights_alerts
    {% if has_published_history('account_alerts') -%}
    union all
    select
        as_of_date,
        customer_id,
        alert_type
    from published_alerts
    {%- endif %}

),

month_alerts as (

    -- an alert raised on several nights of a month counts once (customer x alert type)
    select
        books.sales_rep,
        cast(date_trunc('month', all_alerts.as_of_date) as date) as month_start_date,
        count(distinct all_alerts.customer_id || ':' || all_alerts.alert_type) as month_alerts
    from all_alerts
    inner join books
        on all_alerts.customer_id = books.customer_id
    group by books.sales_rep, date_trunc('month', all_alerts.as_of_date)

),

open_alerts as (

    select
        books.sales_rep,
        count(*) as open_alerts
    from tonights_alerts
    inner join books
        on tonights_alerts.customer_id = books.customer_id
    group by books.sales_rep

),

grid as (

    select
        months.month_start_date,
        months.month_end_date,
        reps.sales_rep,
        coalesce(covered.covered_customers, 0) as covered_customers,
        coalesce(book_orders.active_customers, 0) as active_customers,
        coalesce(book_orders.orders, 0) as orders,
        coalesce(book_orders.revenue, 0) as revenue,
        coalesce(book_orders.gross_margin, 0) as gross_margin,
        coalesce(book_orders.order_cost, 0) + coalesce(activity_costs.activity_cost, 0)
        + coalesce(support_costs.support_cost, 0) as cost_to_serve,
        coalesce(sold_orders.sold_orders, 0) as sold_orders,
        coalesce(sold_orders.sold_revenue, 0) as sold_revenue,
        coalesce(sold_orders.sold_outside_book_revenue, 0) as sold_outside_book_revenue,
        coalesce(month_alerts.month_alerts, 0) as month_alerts
    from months
    cross join reps
    left join covered
        on months.month_start_date = covered.month_start_date
            and reps.sales_rep = covered.sales_rep
    left join book_orders
        on months.month_start_date = book_orders.month_start_date
            and reps.sales_rep = book_orders.sales_rep
    left join sold_orders
        on months.month_start_date = sold_orders.month_start_date
            and reps.sales_rep = sold_orders.sales_rep
    left join activity_costs
        on months.month_start_date = activity_costs.month_start_date
            and reps.sales_rep = activity_costs.sales_rep
    left join support_costs
        on months.month_start_date = support_costs.month_start_date
            and reps.sales_rep = support_costs.sales_rep
    left join month_alerts
        on months.month_start_date = month_alerts.month_start_date
            and reps.sales_rep = month_alerts.sales_rep

),

factors as (

    select
        *,
        {{ revenue_factor_rates() }}
    from grid

),

with_previous as (

    select
        *,
        {{ revenue_factor_previous('rep_months') }}
    from factors
    window rep_months as (partition by sales_rep order by month_start_date)

),

effects as (

    -- the arithmetic of sales_kpis (macros/revenue_factors.sql)
    select
        *,
        {{ revenue_factor_effects() }}
    from with_previous

),

final as (

    select
        -- ids
        effects.month_start_date,
        effects.sales_rep,

        -- dates
        {{ as_of_date() }} as as_of_date,
        effects.month_end_date,
        effects.month_end_date
        = cast(effects.month_start_date + interval '1 month' - interval '1 day' as date)
            as is_complete_month,

        -- the book's customers
        effects.covered_customers,
        effects.active_customers,
        round(effects.active_rate_exact, 4) as active_rate,

        -- the book's orders and money (base currency)
        effects.orders,
        round(effects.revenue / nullif(effects.orders, 0), 2) as average_order_value,
        round(effects.revenue / nullif(effects.active_customers, 0), 2) as revenue_per_active_customer,
        effects.revenue,
        effects.gross_margin,
        effects.cost_to_serve,
        effects.gross_margin - effects.cost_to_serve as net_contribution,

        -- month-over-month change of the book's revenue (null in the first month)
        effects.previous_revenue,
        effects.revenue_change,
        effects.covered_customers_effect,
        effects.active_rate_effect,
        effects.revenue_change - effects.covered_customers_effect - effects.active_rate_effect
            as revenue_per_active_effect,

        -- what the rep sold (orders naming the rep, any customer's)
        effects.sold_orders,
        effects.sold_revenue,
        effects.sold_outside_book_revenue,

        -- the book on A
        coalesce(tier_mix.book_customers, 0) as book_customers,
        coalesce(tier_mix.top_tier_customers, 0) as top_tier_customers,
        round(tier_mix.top_tier_customers / nullif(cast(tier_mix.book_customers as numeric), 0), 4)
            as top_tier_share,
        tier_mix.tier_mix,

        -- alerts of the book's customers
        case
            when effects.month_start_date = cast(date_trunc('month', {{ as_of_date() }}) as date)
                then coalesce(open_alerts.open_alerts, 0)
        end as open_alerts,
        effects.month_alerts

    from effects
    left join tier_mix
        on effects.sales_rep = tier_mix.sales_rep
    left join open_alerts
        on effects.sales_rep = open_alerts.sales_rep
    -- months before a rep had a book or a sale carry no information
    where effects.covered_customers > 0 or effects.sold_orders > 0 or effects.previous_covered_customers > 0

)

select * from final

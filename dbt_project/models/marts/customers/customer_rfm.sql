-- One row per customer and as-of date A: recency / frequency / monetary in the window
-- (A - rfm_window_days, A], 1..5 scores, the R x F segment and the BTYD summary.
-- Only completed orders dated <= A count. A rerun of a date replaces that date's rows.
with

customers as (

    select * from {{ ref('dim_customers') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

population as (

    select customer_id
    from customers
    where created_at <= {{ as_of_date() }}

),

completed_orders as (

    select
        customer_id,
        order_id,
        order_date,
        net_revenue,
        order_date > {{ as_of_date() }} - {{ var('rfm_window_days') | int }} as is_in_window
    from orders
    where status = 'completed'
        and order_date <= {{ as_of_date() }}

),

order_summary as (

    select
        customer_id,
        max(order_date) as last_order_date,
        count(*) filter (where is_in_window) as frequency,
        coalesce(sum(net_revenue) filter (where is_in_window), 0) as monetary
    from completed_orders
    group by customer_id

),

-- BTYD summary as lifetimes.utils.summary_data_from_transaction_data(freq='D'):
-- transactions are summed per purchase day; the first purchase day is excluded from
-- the mean value.
purchase_days as (

    select
        customer_id,
        order_date as purchase_date,
        sum(net_revenue) as day_revenue,
        row_number() over (partition by customer_id order by order_date) as purchase_day_number
    from completed_orders
    group by customer_id, order_date

),

btyd_summary as (

    select
        customer_id,
        min(purchase_date) as first_purchase_date,
        count(*) - 1 as frequency_repeat,
        max(purchase_date) - min(purchase_date) as recency_btyd_days,
        {{ as_of_date() }} - min(purchase_date) as t_days,
        -- trim_scale drops the trailing zeros avg() adds (175.0000000000000000 -> 175)
        trim_scale(
            coalesce(avg(day_revenue) filter (where purchase_day_number > 1), 0)
        ) as avg_repeat_value,
        -- the CLV spend model takes only customers whose every repeat purchase day had
        -- positive revenue (docs/clv.md)
        coalesce(bool_and(day_revenue > 0) filter (where purchase_day_number > 1), true)
            as repeat_days_all_positive
    from purchase_days
    group by customer_id

),

rfm_values as (

    select
        population.customer_id,
        order_summary.last_order_date,
        {{ as_of_date() }} - order_summary.last_order_date as recency_days,
        coalesce(order_summary.frequency, 0) as frequency,
        coalesce(order_summary.monetary, 0) as monetary,
        coalesce(order_summary.frequency, 0) > 0 as has_purchase_in_window
    from population
    left join order_summary
        on population.customer_id = order_summary.customer_id

),

rfm_scored as (

    select
        *,
        -- most recent last: the smallest recency_days gets 5
        {{ rfm_score('recency_days desc') }} as r_score,
        {{ rfm_score('frequency asc') }} as f_score,
        {{ rfm_score('monetary asc') }} as m_score
    from rfm_values

),

final as (

    select
        -- ids
        rfm_scored.customer_id,

        -- dates
        {{ as_of_date() }} as as_of_date,
        rfm_scored.last_order_date,

        -- rfm values
        rfm_scored.recency_days,
        rfm_scored.frequency,
        rfm_scored.monetary,
        rfm_scored.has_purchase_in_window,

        -- rfm scores and segment
        rfm_scored.r_score,
        rfm_scored.f_score,
        rfm_scored.m_score,
        {{ rfm_segment_case('rfm_scored.r_score', 'rfm_scored.f_score', var('rfm_no_purchase_segment')) }}
            as rfm_segment,

        -- btyd summary (null when the customer never purchased)
        btyd_summary.first_purchase_date,
        btyd_summary.frequency_repeat,
        btyd_summary.recency_btyd_days,
        btyd_summary.t_days,
        btyd_summary.avg_repeat_value,
        btyd_summary.repeat_days_all_positive

    from rfm_scored
    left join btyd_summary
        on rfm_scored.customer_id = btyd_summary.customer_id

)

select * from final

-- The core of a night written by hand, for bench/bench_pipeline.py (issue 11 item 1): order
-- facts -> customer RFM + BTYD summary -> 1..5 quintile scores -> a weighted value score ->
-- three tiers (top 20% high, next 30% medium, the rest low). It reads the same order lines the
-- dbt marts read, copied beforehand into bench_core.order_lines and bench_core.customers (the
-- copy is not timed, like a COPY of an extract), and writes its results to unlogged tables of
-- schema bench_core. It is a yardstick, not a second implementation: no fx, hysteresis,
-- overrides, profitability or reasons; the marts do more than this, so the ratio is an upper
-- bound on their overhead. :as_of is replaced by the run's as-of date (date 'YYYY-MM-DD').

drop table if exists bench_core.fct_order_lines, bench_core.fct_orders, bench_core.customer_rfm,
    bench_core.customer_tiers;

create unlogged table bench_core.fct_order_lines as
select
    order_id,
    line_number,
    customer_id,
    order_date,
    status,
    round(gross_revenue, 2) as gross_revenue,
    round(discount, 2) as discount,
    round(gross_revenue, 2) - round(discount, 2) as net_revenue,
    round(cogs, 2) as cogs
from bench_core.order_lines;

create unlogged table bench_core.fct_orders as
select
    order_id,
    min(customer_id) as customer_id,
    min(order_date) as order_date,
    min(status) as status,
    count(*) as line_count,
    sum(net_revenue) as net_revenue,
    sum(net_revenue - cogs) as gross_margin
from bench_core.fct_order_lines
group by order_id;

create unlogged table bench_core.customer_rfm as
with completed as (
    select customer_id, order_date, net_revenue, gross_margin,
        order_date > :as_of - 365 as is_in_window
    from bench_core.fct_orders
    where status = 'completed' and order_date <= :as_of
),
summary as (
    select customer_id,
        max(order_date) as last_order_date,
        count(*) filter (where is_in_window) as frequency,
        coalesce(sum(net_revenue) filter (where is_in_window), 0) as monetary,
        coalesce(sum(gross_margin) filter (where is_in_window), 0) as gross_margin
    from completed
    group by customer_id
),
days as (
    select customer_id, order_date, sum(net_revenue) as day_revenue,
        row_number() over (partition by customer_id order by order_date) as day_number
    from completed
    group by customer_id, order_date
),
btyd as (
    select customer_id,
        count(*) - 1 as frequency_repeat,
        max(order_date) - min(order_date) as recency_btyd_days,
        :as_of - min(order_date) as t_days,
        coalesce(avg(day_revenue) filter (where day_number > 1), 0) as avg_repeat_value
    from days
    group by customer_id
)
select c.customer_id,
    :as_of - s.last_order_date as recency_days,
    coalesce(s.frequency, 0) as frequency,
    coalesce(s.monetary, 0) as monetary,
    coalesce(s.gross_margin, 0) as gross_margin,
    coalesce(s.frequency, 0) > 0 as has_purchase_in_window,
    b.frequency_repeat, b.recency_btyd_days, b.t_days, b.avg_repeat_value
from bench_core.customers as c
left join summary as s on s.customer_id = c.customer_id
left join btyd as b on b.customer_id = c.customer_id
where c.created_at <= :as_of;

create unlogged table bench_core.customer_tiers as
with scored as (
    select *,
        case when has_purchase_in_window then cast(ceil(5 * cume_dist() over (
            partition by has_purchase_in_window order by recency_days desc)) as integer) end as r_score,
        case when has_purchase_in_window then cast(ceil(5 * cume_dist() over (
            partition by has_purchase_in_window order by frequency)) as integer) end as f_score,
        case when has_purchase_in_window then cast(ceil(5 * cume_dist() over (
            partition by has_purchase_in_window order by monetary)) as integer) end as m_score,
        cast(ceil(5 * cume_dist() over (order by gross_margin)) as integer) as p_score
    from bench_core.customer_rfm
),
valued as (
    select *,
        round(0.35 * coalesce(m_score, 0) + 0.25 * coalesce(f_score, 0) + 0.25 * p_score
            + 0.15 * coalesce(r_score, 0), 4) as value_score
    from scored
),
positioned as (
    select *,
        cast(rank() over (order by value_score desc) - 1 as numeric) / count(*) over () as position
    from valued
)
select customer_id, value_score, r_score, f_score, m_score,
    case when position < 0.2 then 'high' when position < 0.5 then 'medium' else 'low' end as value_tier
from positioned;
